"""Transparency and grayscale kept: the alpha plane's coding, format version 3's flags, and
round trips through the API, the CLI and Pillow."""

import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageFile

import hvqcodec
from hvqcodec import HvqError, alpha
from hvqcodec.cli import main
from hvqcodec.container import (
    ALPHA_CHUNK,
    FLAG_ALPHA,
    FLAG_GRAY,
    header_of,
    pack,
    read_prefix,
    unpack,
)
from tests.conftest import tiny_hyper

OUT_MODE = {"RGBA": "RGBA", "LA": "LA", "P": "RGBA"}


@pytest.fixture(scope="module")
def sources(dog) -> dict[str, Image.Image]:
    """Small images with a soft, partly transparent alpha: RGBA, LA, and P with a tRNS
    chunk's alpha per palette entry; and the same pixels opaque, RGB and L."""
    rgb = Image.fromarray(dog[:48, :64])
    y, x = np.mgrid[0:48, 0:64]
    plane = np.clip(x * 5 + y * 3 - 40, 0, 255).astype(np.uint8)
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(plane))
    palette = rgb.quantize(16)
    palette.info["transparency"] = bytes([0, 96, 200] + [255] * 13)
    return {"RGBA": rgba, "LA": rgba.convert("LA"), "P": palette, "RGB": rgb, "L": rgb.convert("L")}


def alpha_of(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGBA"))[..., 3]


@pytest.fixture(scope="module")
def rgba_file(tiny_hyper_codec, sources) -> bytes:
    return tiny_hyper_codec.encode(sources["RGBA"])


def test_the_chunk_is_the_smallest_candidate_and_decodes_exactly():
    rng = np.random.default_rng(0)
    binary = np.where(rng.random((30, 50)) < 0.3, 0, 255).astype(np.uint8)
    soft = rng.integers(0, 256, (30, 50), dtype=np.uint8)
    for plane in (binary, soft):
        assert "webp-m6" not in alpha.candidates(plane)  # effort 0: no slow search
        tried = alpha.candidates(plane, effort=2)
        assert ("png-1bit" in tried) == (plane is binary) and "webp-m6" in tried
        chunk = alpha.encode(plane, effort=2)
        assert len(chunk) == min(len(c) for c in tried.values())
        for payload in tried.values():
            np.testing.assert_array_equal(alpha.decode(payload, 50, 30), plane)
    assert alpha.coding(tried["png"]) == "PNG" and alpha.coding(tried["webp-m4"]) == "WebP"


def test_a_plane_too_wide_for_webp_is_a_png():
    plane = np.zeros((1, alpha.WEBP_MAX_SIDE + 1), np.uint8)
    assert set(alpha.candidates(plane)) == {"png", "png-1bit"}


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_alpha_round_trips_exactly_through_the_api(tiny_hyper_codec, sources, mode):
    im = sources[mode]
    assert (alpha_of(im) < 255).any()
    data = hvqcodec.encode(im, model=tiny_hyper_codec)
    header = unpack(data)
    assert header.version == 3 and header.has_alpha and ALPHA_CHUNK in header.chunks
    assert header.gray == (mode == "LA")
    out = hvqcodec.decode(data, model=tiny_hyper_codec)
    assert out.mode == OUT_MODE[mode]
    np.testing.assert_array_equal(alpha_of(out), alpha_of(im))


def test_an_opaque_alpha_is_dropped_and_the_file_is_the_rgb_ones(tiny_hyper_codec, sources):
    rgb = sources["RGB"]
    data = tiny_hyper_codec.encode(rgb.convert("RGBA"))
    assert data == tiny_hyper_codec.encode(rgb) and data[3] == 2
    assert unpack(data).chunks == {} and tiny_hyper_codec.decode(data).mode == "RGB"


def test_grayscale_decodes_to_l_the_rounded_mean_of_the_rgb(tiny_hyper_codec, sources):
    gray = sources["L"]
    sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    for im in (gray, sixteen):
        data = tiny_hyper_codec.encode(im)
        f = unpack(data)
        assert f.flags == FLAG_GRAY and f.version == 3
        out = tiny_hyper_codec.decode(data)
        assert out.mode == "L"
        f.flags, f.version = 0, 2  # the same codes, read as colour
        rgb = np.asarray(tiny_hyper_codec.decode(pack(f))).astype(int)
        np.testing.assert_array_equal(np.asarray(out), (rgb.sum(axis=2) + 1) // 3)
    assert data == tiny_hyper_codec.encode(gray)  # the 16-bit source scaled to the same gray


def test_background_composites_and_stores_no_alpha(tiny_hyper_codec, sources):
    for mode, out in (("RGBA", "RGB"), ("LA", "L")):
        enc = tiny_hyper_codec.encode_detailed(sources[mode], background="white")
        assert unpack(enc.data).chunks == {} and tiny_hyper_codec.decode(enc.data).mode == out
        assert "transparency composited onto #ffffff" in enc.notes[-1]
    colour = tiny_hyper_codec.encode(sources["LA"], background="#ff0000")
    assert tiny_hyper_codec.decode(colour).mode == "RGB"
    with pytest.raises(HvqError, match="unknown colour 'mauvish'"):
        tiny_hyper_codec.encode(sources["RGBA"], background="mauvish")


def test_metadata_false_keeps_the_alpha(tiny_hyper_codec, sources, rgba_file):
    assert tiny_hyper_codec.encode(sources["RGBA"], metadata=False) == rgba_file


def test_a_preview_uses_the_alpha_a_complete_file_holds_and_a_prefix_is_opaque(
    tiny_hyper_codec, sources, rgba_file
):
    expected = alpha_of(sources["RGBA"])
    whole = tiny_hyper_codec.decode(rgba_file, preview=True)
    np.testing.assert_array_equal(alpha_of(whole), expected)
    prefix = read_prefix(io.BytesIO(rgba_file), 2)
    part = tiny_hyper_codec.decode(prefix, preview=True)
    assert part.mode == "RGBA" and (alpha_of(part) == 255).all()
    # Every stream, the chunk whole, the CRC cut: a truncated file's decoder uses the chunk.
    cut = tiny_hyper_codec.decode_detailed(rgba_file[:-2], streams=3).image
    np.testing.assert_array_equal(alpha_of(cut), expected)
    cut = tiny_hyper_codec.decode_detailed(rgba_file[: header_of(rgba_file).streams_end + 9],
                                           streams=3).image  # fmt: skip
    assert cut.mode == "RGBA" and (alpha_of(cut) == 255).all()


def test_version_3_files_that_break_the_rules_are_refused(tiny_hyper_codec, rgba_file):
    def decode_with(**changes) -> None:
        f = unpack(rgba_file)
        for k, v in changes.items():
            setattr(f, k, v)
        tiny_hyper_codec.decode(pack(f))

    with pytest.raises(HvqError, match=r"unsupported feature flags 0x06"):
        decode_with(flags=FLAG_ALPHA | 4)
    future = bytearray(rgba_file)
    future[12] |= 0x80  # magic, version, model id, 1-byte width and height, quality: flags
    with pytest.raises(HvqError, match="unsupported feature flags 0x82"):
        Image.open(io.BytesIO(bytes(future)))  # the header alone says so
    with pytest.raises(HvqError, match="alpha plane, but no ALPH chunk"):
        decode_with(chunks={})
    payload = unpack(rgba_file).chunks[ALPHA_CHUNK]
    damaged = payload[:20] + bytes(b ^ 0x55 for b in payload[20:])
    bad = {
        "does not decode": damaged,
        "is 5x4, the image 64x48": alpha.encode(np.zeros((4, 5), np.uint8)),
        "neither a PNG nor a lossless WebP": b"GIF89a" + payload[6:],
        "not greyscale": alpha._save(Image.new("RGB", (64, 48)), "PNG"),
    }
    for message, chunk in bad.items():
        with pytest.raises(HvqError, match=message):
            decode_with(chunks={ALPHA_CHUNK: chunk})
    with pytest.raises(HvqError, match="need format version 3"):
        decode_with(version=2)


def test_the_flags_say_what_the_decoder_outputs(tiny_hyper_codec, rgba_file):
    f = unpack(rgba_file)
    f.flags, f.version = 0, 2  # an ALPH chunk without the flag is a chunk to skip
    assert tiny_hyper_codec.decode(pack(f)).mode == "RGB"
    f.version = 3  # flags 0 in version 3: valid, if no writer makes it
    assert tiny_hyper_codec.decode(pack(f)).mode == "RGB"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    torch.save(tiny_hyper(), path)
    return str(path)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_alpha_round_trips_exactly_through_the_cli(tmp_path, weights, sources, mode):
    sources[mode].save(tmp_path / "in.png")
    assert cli("compress", tmp_path / "in.png", "-m", weights).exit_code == 0
    r = cli("info", tmp_path / "in.hvq")
    size = len(unpack((tmp_path / "in.hvq").read_bytes()).chunks[ALPHA_CHUNK])
    assert f"64x48 {OUT_MODE[mode]}," in r.output and f"alpha: {size} bytes (WebP)" in r.output
    assert "metadata" not in r.output
    r = cli("decompress", tmp_path / "in.hvq", "-m", weights, "-o", tmp_path / "out.png")
    assert r.exit_code == 0, r.output
    out = Image.open(tmp_path / "out.png")
    assert out.mode == OUT_MODE[mode]
    np.testing.assert_array_equal(alpha_of(out), alpha_of(sources[mode]))


def test_strip_keeps_the_alpha_and_background_drops_it(tmp_path, weights, sources):
    sources["RGBA"].save(tmp_path / "in.png")
    assert cli("compress", tmp_path / "in.png", "-m", weights, "--strip").exit_code == 0
    assert ALPHA_CHUNK in unpack((tmp_path / "in.hvq").read_bytes()).chunks
    r = cli("compress", tmp_path / "in.png", "-m", weights, "--background", "white", "-f")
    assert r.exit_code == 0 and "composited onto #ffffff" in r.output
    assert header_of((tmp_path / "in.hvq").read_bytes()).mode == "RGB"
    r = cli("compress", tmp_path / "in.png", "-m", weights, "--background", "mauvish", "-f")
    assert r.exit_code == 2 and "unknown colour 'mauvish'" in r.output
    assert "Traceback" not in r.output


def noise_under(im: Image.Image, seed: int) -> Image.Image:
    """`im` (RGBA) with random colour wherever it is fully transparent."""
    planes = np.array(im)
    hidden = planes[..., 3] == 0
    planes[hidden, :3] = np.random.default_rng(seed).integers(0, 256, (hidden.sum(), 3))
    return Image.fromarray(planes)


def test_the_fill_keeps_what_shows_and_is_smooth_where_nothing_does(sources):
    planes = np.asarray(noise_under(sources["RGBA"], 0))
    colour, plane = planes[..., :3], planes[..., 3]
    filled = alpha.fill_hidden(colour, plane)
    shows = plane > 0
    assert (filled[shows] == colour[shows]).all() and (filled[~shows] != colour[~shows]).any()

    def roughness(x):  # mean step between horizontal neighbours that are both hidden
        both = ~shows[:, 1:] & ~shows[:, :-1]
        return np.abs(np.diff(x.astype(int), axis=1))[both].mean()

    assert roughness(filled) < roughness(colour) / 10
    one = np.where(shows[..., None], np.uint8([10, 200, 30]), colour)  # one colour shows
    assert np.abs(alpha.fill_hidden(one, plane).astype(int) - [10, 200, 30]).max() <= 10
    assert alpha.fill_hidden(colour, np.full_like(plane, 9)) is colour  # nothing hidden
    assert (alpha.fill_hidden(colour, np.zeros_like(plane)) == 128).all()  # nothing shows


def test_what_lies_under_transparency_changes_no_byte_unless_exact(tiny_hyper_codec, sources,
                                                                   tmp_path, weights):  # fmt: skip
    a, b = noise_under(sources["RGBA"], 1), noise_under(sources["RGBA"], 2)
    q = 100  # where the tiny model's symbols see the colour of a few corner pixels
    assert tiny_hyper_codec.encode(a, q) == tiny_hyper_codec.encode(b, q)
    exact = tiny_hyper_codec.encode(a, q, exact=True)
    assert exact != tiny_hyper_codec.encode(b, q, exact=True)
    a.save(tmp_path / "in.png")
    r = cli("compress", tmp_path / "in.png", "-m", weights, "-q", q, "--exact")
    assert (
        r.exit_code == 0
        and unpack((tmp_path / "in.hvq").read_bytes()).streams == unpack(exact).streams
    )
    a.save(tmp_path / "in.hvq", quality=q, exact=True)  # Pillow's plugin, as its WebP saver
    saved = unpack((tmp_path / "in.hvq").read_bytes()).streams
    assert saved == unpack(hvqcodec.encode(a, q, exact=True)).streams  # the default model's
    assert saved != unpack(hvqcodec.encode(a, q)).streams


@pytest.mark.parametrize("suffix,mode", [(".jpg", "RGB"), (".ppm", "RGB"), (".webp", "RGBA")])
def test_decompressing_to_a_format_without_alpha_composites_onto_white(
    tmp_path, weights, sources, suffix, mode
):
    sources["RGBA"].save(tmp_path / "in.png")
    assert cli("compress", tmp_path / "in.png", "-m", weights).exit_code == 0
    out = tmp_path / f"out{suffix}"
    r = cli("decompress", tmp_path / "in.hvq", "-m", weights, "-o", out)
    assert r.exit_code == 0, r.output
    assert ("composited the transparency onto white" in r.output) == (mode == "RGB")
    assert Image.open(out).mode == mode
    if suffix == ".ppm":  # lossless: the composite itself, white where the alpha is 0
        pixels = np.asarray(Image.open(out))
        assert (pixels[alpha_of(sources["RGBA"]) == 0] == 255).all()


def test_pillow_reads_the_mode_from_the_header_and_saves_alpha(tmp_path, sources, monkeypatch):
    for mode in ("RGBA", "LA", "P", "L"):
        path = tmp_path / f"{mode}.hvq"
        sources[mode].save(path)
        monkeypatch.setattr(hvqcodec.Codec, "decode_detailed", None)  # nothing decodes yet
        im = Image.open(path)
        assert im.mode == OUT_MODE.get(mode, mode)
        monkeypatch.undo()
        im.load()
        assert im.mode == OUT_MODE.get(mode, mode)
        if mode != "L":
            np.testing.assert_array_equal(alpha_of(im), alpha_of(sources[mode]))
    buf = io.BytesIO()
    sources["RGBA"].save(buf, format="HVQ", background="white")
    assert Image.open(buf).mode == "RGB"


def test_a_truncated_rgba_file_loads_as_rgba_under_load_truncated_images(sources, monkeypatch):
    buf = io.BytesIO()
    sources["RGBA"].save(buf, format="HVQ")
    data = buf.getvalue()
    header = header_of(data)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    cuts = {
        "in the CRC": (len(data) - 2, alpha_of(sources["RGBA"])),
        "in the ALPH chunk": (header.streams_end + 9, 255),
        "in the last stream": (header.streams_end - 1, 255),
    }
    for what, (cut, expected) in cuts.items():
        im = Image.open(io.BytesIO(data[:cut]))
        im.load()
        assert im.mode == "RGBA", what
        assert (alpha_of(im) == expected).all(), what


@pytest.mark.slow
def test_the_alpha_benchmark_writes_its_table(tmp_path):
    import json

    from benchmarks import alpha as bench

    bench.main(["--out", str(tmp_path / "alpha.json")])
    rows = json.loads((tmp_path / "alpha.json").read_text())["rows"]
    assert [r["image"] for r in rows] == list(bench.planes())
    for r in rows:
        for effort in ("effort_0", "effort_2"):
            e = r[effort]
            assert e["chunk_bytes"] == min(e["candidates"].values()) <= r["png_l_bytes"]
        assert r["effort_2"]["chunk_bytes"] <= r["effort_0"]["chunk_bytes"]
