"""Structure-aware fuzzing of the .hvq decoder.

Mutations start from valid small files, RGB and version 3's (an alpha plane as a WebP or a PNG
in the ALPH chunk, grayscale): truncations, byte flips, random and extreme header fields
(sizes, lengths, counts, version, feature flags, model id, quality), random payloads and
damaged alpha planes, most with the CRC recomputed so that they reach past the checksum into
the parser, the range decoder and the alpha plane's decoder.
Every case must decode or raise HvqError, within a time limit.

    python -m tests.fuzz_hvq --cases 200000          # a longer run than the test suite's
    python -m tests.fuzz_hvq --atheris                # coverage-guided, if atheris is installed
"""

import argparse
import random
import signal
import sys
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image

from hvqcodec import Codec, HvqError, alpha
from hvqcodec.container import ALPHA_CHUNK, FLAGS_VERSION, _varint, pack, unpack

EXTREMES = [0, 1, 2, 31, 32, 33, 127, 128, 255, 256, 16383, 16384, 65535, 65536, 2**31 - 1,
            2**32 - 1, 2**35 - 1]  # fmt: skip
MAX_PIXELS = 96 * 96  # keeps each case small; the limit itself is what is being tested


class Hang(Exception):
    pass


def seeds(codec: Codec) -> list[bytes]:
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (17, 33), (40, 40), (64, 96)]
    files = [codec.encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]
    # Version 3: colour and gray with an alpha plane (soft: the encoder picks a WebP), gray.
    rgba = Image.fromarray(rng.integers(0, 256, (24, 40, 4), dtype=np.uint8))
    rgba.putalpha(Image.linear_gradient("L").resize((40, 24)))
    files += [codec.encode(im) for im in (rgba, rgba.convert("LA"), rgba.convert("L"))]
    with_png = unpack(files[-3])  # the same plane as a PNG, the other payload a reader meets
    plane = np.asarray(rgba.getchannel("A"))
    with_png.chunks[ALPHA_CHUNK] = alpha.candidates(plane)["png"]
    return files + [pack(with_png)]


def recrc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


def mutate(rng: random.Random, seed: bytes) -> bytes:
    f = unpack(seed)
    body = seed[:-4]
    choice = rng.randrange(11)
    if choice == 0:  # truncation, CRC left as it falls
        return seed[: rng.randrange(len(seed))]
    if choice == 1:  # byte flips without fixing the CRC
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if choice == 2:  # byte flips with the CRC recomputed
        data = bytearray(body)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return recrc(bytes(data))
    if choice == 3:  # sizes, zero included, so the header is rewritten in place, not by pack()
        width, height = rng.choice(EXTREMES), rng.choice(EXTREMES)
        if rng.random() < 0.5:
            width, height = rng.randint(1, 300), rng.randint(1, 300)
        rest = body[8 + len(_varint(f.width)) + len(_varint(f.height)) :]
        return recrc(body[:8] + _varint(width) + _varint(height) + rest)
    if choice == 4:  # model id, quality, version, feature flags (unknown bits included)
        f.model_id = rng.choice([f.model_id ^ (1 << rng.randrange(32)), rng.getrandbits(32)])
        f.version = rng.choice([1, 2, 3])  # version 1 files keep decoding (a byte of quality)
        f.quality = rng.randrange(256 if f.version == 1 else 10_001)
        flags = rng.choice([f.flags, rng.randrange(4), rng.randrange(256)])
        f.flags = flags if f.version >= FLAGS_VERSION else 0
        data = pack(f) if rng.random() < 0.5 else recrc(body[:3] + bytes([rng.randrange(256)])
                                                        + body[4:])  # fmt: skip
        return data
    if choice == 5:  # level count and stream lengths, with the payload as it was
        quality = f.quality.to_bytes(1 if f.version == 1 else 2, "big")
        quality += bytes([f.flags]) if f.version >= FLAGS_VERSION else b""
        head = body[:8] + _varint(f.width) + _varint(f.height) + quality
        count = rng.choice([0, 1, 2, 3, 4, 255])
        lengths = b"".join(_varint(rng.choice(EXTREMES + [rng.randrange(64)]))
                           for _ in range(count))  # fmt: skip
        return recrc(head + bytes([count]) + lengths + b"".join(f.streams))
    if choice == 6:  # random stream contents
        f.streams = [rng.randbytes(rng.randrange(0, 2 * len(s) + 8)) for s in f.streams]
        return pack(f)
    if choice == 7:  # chunks, including over-long lengths
        f.chunks = {rng.randbytes(4): rng.randbytes(rng.randrange(32)) for _ in range(3)}
        data = pack(f)[:-4]
        if rng.random() < 0.5:
            data += rng.randbytes(4) + _varint(rng.choice(EXTREMES))
        return recrc(data)
    if choice == 8:  # varints that never end
        return recrc(body[:8] + b"\xff" * rng.randint(1, 12))
    if choice == 9 and ALPHA_CHUNK in f.chunks:  # a damaged alpha plane, the file intact
        plane = bytearray(f.chunks[ALPHA_CHUNK])
        for _ in range(rng.randint(1, 8)):
            plane[rng.randrange(len(plane))] = rng.randrange(256)
        f.chunks[ALPHA_CHUNK] = bytes(plane[: rng.choice([len(plane), rng.randrange(len(plane))])])
        return pack(f)
    return rng.randbytes(rng.randrange(64))  # garbage, sometimes with the magic


def cases(codec: Codec, n: int, seed: int = 0) -> Iterator[bytes]:
    rng = random.Random(seed)
    pool = seeds(codec)
    for _ in range(n):
        data = mutate(rng, rng.choice(pool))
        if rng.random() < 0.05:
            data = b"HVQ" + data[3:]
        yield data


def check(codec: Codec, data: bytes, seconds: int = 5) -> None:
    """Decode or raise HvqError; anything else, or a hang, propagates."""

    def on_alarm(*_):
        raise Hang(f"decoding took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        for preview in (False, True):  # a preview parses a prefix, without the CRC's shield
            signal.alarm(seconds)
            try:
                codec.decode(data, preview=preview)
            except HvqError:
                pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


FAMILIES = ("vq-vae", "vq-hyperprior", "vq-hyperprior-context", "vq-hyperprior-checkerboard")


def fuzz_codec(family: str = "vq-vae") -> Codec:
    """A tiny model of either family: the VQ-VAE with three bottom stages (files of 3 to 5
    streams), or hvq-v3's VQ side information and scalar fine level (3), with or without a
    context model for the fine level (its channel groups coded in turn, each in one pass or as a
    checkerboard's two); previews of 2."""
    if family.startswith("vq-hyperprior"):
        from hvqcodec.models import build_model
        from tests.conftest import tiny_hyper

        config = {}
        if family != "vq-hyperprior":
            config = {"context_groups": (2, 2, 4, 8),
                      "context_checkerboard": family.endswith("checkerboard")}  # fmt: skip
        return Codec(build_model(tiny_hyper(**config)), max_pixels=MAX_PIXELS)
    from tests.conftest import tiny_model

    return Codec(tiny_model(bottom_stages=3, stage_codebook_size=16), max_pixels=MAX_PIXELS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--atheris", action="store_true")
    p.add_argument("--family", choices=FAMILIES, default=FAMILIES[0])
    args, rest = p.parse_known_args()
    codec = fuzz_codec(args.family)
    if args.atheris:
        import atheris

        atheris.Setup([sys.argv[0], *rest], lambda data: check(codec, data))
        atheris.Fuzz()
    for i, data in enumerate(cases(codec, args.cases, args.seed)):
        try:
            check(codec, data)
        except Exception:
            print(f"case {i} failed on input {data.hex()}", file=sys.stderr)
            raise
    print(f"{args.cases} cases: every one decoded or raised HvqError")


if __name__ == "__main__":
    main()
