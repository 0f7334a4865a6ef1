"""The Pillow plugin through real Pillow calls."""

import io

import numpy as np
import pytest
from PIL import Image

import hvqcodec
from tests.conftest import IMAGES


@pytest.mark.slow
def test_save_open_load_thumbnail_convert(tmp_path, monkeypatch):
    src = Image.open(IMAGES / "dog.png")
    path = tmp_path / "dog.hvq"
    src.save(path)  # format from the extension
    assert path.read_bytes()[:3] == b"HVQ"

    decodes = []
    real = hvqcodec.Codec.decode_detailed
    monkeypatch.setattr(
        hvqcodec.Codec,
        "decode_detailed",
        lambda self, *a, **k: decodes.append(1) or real(self, *a, **k),
    )
    im = Image.open(path)
    assert im.format == "HVQ" and im.size == (160, 272) and im.mode == "RGB"
    assert not decodes  # lazy: header parsed, nothing decoded yet
    im.load()
    assert len(decodes) == 1
    expected = np.asarray(hvqcodec.decode(path.read_bytes()))
    np.testing.assert_array_equal(np.asarray(im), expected)

    im.thumbnail((64, 64))
    assert max(im.size) == 64
    assert Image.open(path).convert("L").mode == "L"


def test_save_with_quality_and_registered_extension(tmp_path):
    assert Image.registered_extensions()[".hvq"] == "HVQ"
    Image.open(IMAGES / "dog.png").save(tmp_path / "q.hvq", quality=1)
    assert Image.open(tmp_path / "q.hvq").info["quality"] == 1


def test_only_hvq_files_are_claimed():
    from hvqcodec.pillow_plugin import _accept

    assert _accept(b"HVQ\x01rest")
    assert not _accept((IMAGES / "dog.png").read_bytes()[:16])
    assert not _accept(b"HV")


def test_a_damaged_hvq_file_says_why(tmp_path):
    import pytest

    (tmp_path / "bad.hvq").write_bytes(b"HVQ\x07" + bytes(20))
    with pytest.raises(hvqcodec.HvqError, match="version 7"):
        Image.open(tmp_path / "bad.hvq")


@pytest.mark.slow
def test_truncated_files_load_their_complete_streams_under_load_truncated_images(monkeypatch):
    from PIL import ImageFile

    from hvqcodec import container
    from hvqcodec.codec import shipped_codec

    data = (IMAGES.parent / "golden" / "dog.hvq-v3.1.hvq").read_bytes()
    header = container.header_of(data)
    preview_end = header.size + sum(header.stream_lengths[:2])
    codec = shipped_codec("hvq-v3.1")
    full = np.asarray(codec.decode(data))
    preview = np.asarray(codec.decode(data, preview=True))
    cuts = {"no CRC": len(data) - 4, "95%": int(0.95 * len(data)), "60%": int(0.6 * len(data))}
    for cut in cuts.values():
        with pytest.raises(hvqcodec.HvqError):  # without the flag: as before, an error
            Image.open(io.BytesIO(data[:cut])).load()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for what, cut in cuts.items():
        im = Image.open(io.BytesIO(data[:cut]))
        im.load()
        expected = full if what == "no CRC" else preview
        np.testing.assert_array_equal(np.asarray(im), expected, err_msg=what)
    with pytest.raises(hvqcodec.HvqError, match="a preview needs 2"):
        Image.open(io.BytesIO(data[: preview_end - 1])).load()
    damaged = bytearray(data)
    damaged[preview_end + 10] ^= 1  # whole, but not what was written: not a truncated file
    with pytest.raises(hvqcodec.HvqError, match="damaged, not truncated"):
        Image.open(io.BytesIO(bytes(damaged))).load()
