"""Every .hvq file decodes by default with the model its header names, however it is read."""

import hashlib
import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFile

import hvqcodec
from hvqcodec import Codec, HvqError, container
from hvqcodec.cli import main
from hvqcodec.codec import shipped_codec
from hvqcodec.shipped import SHIPPED
from tests.conftest import assert_same_up_to_rounding
from tests.make_golden import GOLDEN


def golden(name: str) -> bytes:
    return (GOLDEN / f"dog.{name}.hvq").read_bytes()


def decoded(name: str) -> Image.Image:
    """A golden file as its own model decodes it on this machine (test_golden checks that
    against the recorded pixels), through the cached codec that loads each model once."""
    return shipped_codec(name).decode(golden(name))


def digest(image: Image.Image) -> str:
    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_golden_files_decode_through_every_default_path(name, tmp_path):
    data, expected = golden(name), digest(decoded(name))
    assert digest(hvqcodec.decode(data)) == expected
    path = tmp_path / "dog.hvq"
    path.write_bytes(data)
    with Image.open(path) as im:
        im.load()
        assert digest(im) == expected
    r = CliRunner().invoke(main, ["decompress", str(path), "-o", str(tmp_path / "dog.png")])
    assert r.exit_code == 0, r.output
    assert digest(Image.open(tmp_path / "dog.png")) == expected
    r = CliRunner().invoke(main, ["info", "-v", str(path)])
    assert r.exit_code == 0 and f"model {name}" in r.output and "total" in r.output, r.output


@pytest.mark.slow
def test_a_mixed_batch_decompresses_in_one_run_with_workers(tmp_path):
    for name in SHIPPED:
        (tmp_path / f"{name}.hvq").write_bytes(golden(name))
    r = CliRunner().invoke(main, ["decompress", str(tmp_path), "-j", "2"])
    assert r.exit_code == 0, r.output
    for name in SHIPPED:  # the workers run fewer threads each
        assert_same_up_to_rounding(Image.open(tmp_path / f"{name}.png"), decoded(name))


@pytest.mark.slow
def test_models_load_lazily_and_once():
    shipped_codec.cache_clear()
    data = golden("hvq-v1")
    hvqcodec.decode(data)
    hvqcodec.decode(data, preview=True)
    info = shipped_codec.cache_info()
    assert (info.currsize, info.misses, info.hits) == (1, 1, 1)  # hvq-v2 was never loaded


def test_an_explicit_model_overrides_and_a_codec_refuses_other_files():
    data = golden("hvq-v1")
    needs = r"needs model hvq-v1 \(7b730e24\), but the codec has hvq-v2"
    with pytest.raises(HvqError, match=needs):
        hvqcodec.decode(data, model="hvq-v2")
    with pytest.raises(HvqError, match="needs model hvq-v1"):
        Codec("hvq-v2").decode(data)


def test_an_unknown_model_id_names_it_and_the_known_models(tmp_path):
    f = container.unpack(golden("hvq-v2"))
    f.model_id = 0x12345678
    data = container.pack(f)
    known = ", ".join(f"{n} ({e.model_id:08x})" for n, e in SHIPPED.items())
    with pytest.raises(HvqError, match="12345678") as e:
        hvqcodec.decode(data)
    assert known in str(e.value)
    (tmp_path / "x.hvq").write_bytes(data)
    r = CliRunner().invoke(main, ["decompress", str(tmp_path / "x.hvq")])
    assert r.exit_code == 1 and "12345678" in r.output and "Traceback" not in r.output


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        self.read_bytes += len(out)
        return out


def big_file() -> bytes:
    """A 4096x4096 file of hvq-v2's layout with 2 MiB of (undecodable) streams."""
    streams = [bytes([s]) * (2**21 // 6) for s in range(6)]
    icc = b"profile" * 10
    return container.pack(
        container.HvqFile(4096, 4096, SHIPPED["hvq-v2"].model_id, 6250, streams, {b"ICCP": icc})
    )


def test_open_reads_the_header_and_chunks_only_and_verify_checks_the_crc(monkeypatch):
    data = big_file()
    fp = CountingReader(data)
    with Image.open(fp) as im:
        assert im.size == (4096, 4096) and im.format == "HVQ"
        assert im.info["icc_profile"] == b"profile" * 10 and im.info["quality"] == 62.5
        assert fp.read_bytes < 200  # the header and the chunks, none of the 2 MiB of streams
        im.verify()  # intact
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0x10
    with Image.open(io.BytesIO(bytes(bad))) as im, pytest.raises(HvqError, match="CRC32"):
        im.verify()


@pytest.mark.slow
def test_an_incremental_parser_knows_the_size_from_the_header_and_decodes_on_close():
    data, expected = golden("hvq-v2"), digest(decoded("hvq-v2"))
    header = container.header_of(data)
    for chunk in (1024, 97):
        p = ImageFile.Parser()
        p.feed(data[: header.size - 1])
        assert p.image is None  # not enough data yet, not an error
        p.feed(data[header.size - 1 : header.size])
        assert p.image.size == (160, 272)
        for i in range(header.size, len(data), chunk):
            p.feed(data[i : i + chunk])
        image = p.close()
        assert digest(image) == expected


def test_an_incremental_parser_of_a_file_with_metadata(tiny_codec, dog):
    f = container.unpack(tiny_codec.encode(dog))
    f.chunks[b"ICCP"] = b"x" * 3000
    data = container.pack(f)
    p = ImageFile.Parser()
    for i in range(0, len(data), 1024):
        p.feed(data[i : i + 1024])
    assert p.image.size == dog.shape[1::-1]
    # The tiny model ships with no release, so decoding names it; the metadata was read.
    with pytest.raises(HvqError, match="does not ship"):
        p.close()
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["icc_profile"] == b"x" * 3000
    p = ImageFile.Parser()
    p.feed(data[:-10])  # all but the end of the chunk and the CRC: the size, no metadata yet
    assert p.image.size == dog.shape[1::-1] and "icc_profile" not in p.image.info
    np.testing.assert_array_equal(
        np.asarray(hvqcodec.decode(data, model=tiny_codec)), np.asarray(tiny_codec.decode(data))
    )
