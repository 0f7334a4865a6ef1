"""Inputs of every mode become RGB, an alpha plane and a grayscale flag, with a note saying
what changed; decoded pixels become the image the flags name."""

import numpy as np
import pytest
import torch
from PIL import Image

from hvqcodec import HvqError
from hvqcodec.image_io import load_rgb, output_image
from tests.conftest import tiny_hyper


def test_rgb_array_passes_through(dog):
    p = load_rgb(dog)
    rgb, notes = p.rgb, p.notes
    assert rgb.shape == dog.shape and notes == []


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA"])
def test_gray_and_alpha_arrays_read_as_the_image_of_their_mode(dog, mode):
    im = Image.fromarray(dog).convert(mode)
    if "A" in mode:  # a varying alpha, so that it is kept
        im.putalpha(Image.fromarray(dog[..., 1]))
    array = np.asarray(im)
    got, want = load_rgb(array), load_rgb(im)
    assert (got.rgb == want.rgb).all() and got.gray == want.gray == mode.startswith("L")
    assert (got.alpha is None) == (want.alpha is None) == ("A" not in mode)
    assert got.alpha is None or (got.alpha == want.alpha).all()
    if mode == "L":  # H x W x 1 is the same gray
        assert (load_rgb(array[..., None]).rgb == got.rgb).all()


@pytest.mark.parametrize("shape,dtype", [((4, 5, 5), np.uint8), ((4, 5, 3), np.float32),
                                         ((2, 4, 5, 3), np.uint8), ((0, 5), np.uint8)])  # fmt: skip
def test_other_arrays_are_refused_with_the_shapes_taken(shape, dtype):
    with pytest.raises(HvqError, match="array input must be uint8|empty"):
        load_rgb(np.zeros(shape, dtype))


@pytest.mark.parametrize(
    "mode,out",
    [("L", "L"), ("1", "L"), ("I;16", "L"), ("LA", "L"), ("P", "RGB"), ("RGBA", "RGB"),
     ("CMYK", "RGB")],
)  # fmt: skip
def test_modes_convert_to_rgb_or_gray_with_a_note_where_the_mode_changes(dog, mode, out):
    im = Image.fromarray(dog)
    if mode == "I;16":  # real 16-bit values, scaled down to 8 bits
        im = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)
    else:
        im = im.convert(mode)
    p = load_rgb(im)
    rgb, notes = p.rgb, p.notes
    assert rgb.dtype == np.uint8 and rgb.shape == (*dog.shape[:2], 3)
    assert p.gray == (out == "L") and p.alpha is None  # the dog's alpha is opaque: dropped
    if p.gray:
        assert (rgb == rgb[..., :1]).all()
    expected = [f"converted {mode} to {out}"] if mode != out else []
    assert [n.split(" (")[0] for n in notes] == expected


def test_transparency_is_kept_under_the_alpha_or_composited_onto_a_background():
    im = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    im.putpixel((0, 0), (10, 20, 30, 128))
    p = load_rgb(im)
    assert (p.rgb == (10, 20, 30)).all() and p.notes == [] and not p.gray
    assert p.alpha[0, 0] == 128 and (p.alpha.ravel()[1:] == 0).all()
    flat = load_rgb(im, background=(255, 255, 255))
    assert flat.alpha is None and (flat.rgb[1:] == 255).all()
    assert (flat.rgb[0, 0] == [(c * 128 + 255 * 127 + 127) // 255 for c in (10, 20, 30)]).all()
    assert flat.notes == ["converted RGBA to RGB (transparency composited onto #ffffff)"]
    gray = load_rgb(im.convert("LA"), background=(0, 0, 0))
    assert gray.gray and gray.alpha is None
    assert not load_rgb(im.convert("LA"), background=(255, 0, 0)).gray  # now in colour


def test_a_transparent_colour_or_palette_entry_becomes_an_alpha_plane():
    values = np.array([[0, 1000, 65535]], np.uint16)
    key = Image.fromarray(values)
    key.info["transparency"] = 1000  # a 16-bit PNG's tRNS: Pillow's conversions ignore it
    p = load_rgb(key)
    assert p.gray and p.alpha.tolist() == [[255, 0, 255]] and p.rgb[0, :, 0].tolist() == [0, 4, 255]
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 100, 0])
    palette.putdata([0, 1])
    palette.info["transparency"] = bytes([64, 255])
    p = load_rgb(palette)
    assert p.alpha.tolist() == [[64, 255]] and p.rgb[0, 1].tolist() == [200, 100, 0]
    assert p.notes == ["converted P to RGBA"]


def test_premultiplied_modes_are_unpremultiplied():
    for mode, value, rgb in (("RGBa", (100, 50, 20, 128), (199, 99, 39)), ("La", (100, 128),
                                                                         (199,) * 3)):  # fmt: skip
        p = load_rgb(Image.new(mode, (2, 2), value))
        assert p.alpha.tolist() == [[128, 128]] * 2 and p.rgb[0, 0].tolist() == list(rgb), mode


def test_decoded_gray_is_the_rounded_mean_and_alpha_a_last_band():
    rgb = np.array([[[1, 0, 0], [1, 1, 0], [255, 255, 254], [7, 8, 9]]], np.uint8)
    assert np.asarray(output_image(rgb, True, None)).tolist() == [[0, 1, 255, 8]]
    alpha = np.array([[0, 1, 2, 3]], np.uint8)
    assert output_image(rgb, True, alpha).mode == "LA"
    rgba = output_image(rgb, False, alpha)
    assert rgba.mode == "RGBA" and np.asarray(rgba)[..., 3].tolist() == alpha.tolist()
    assert output_image(rgb, False, None).mode == "RGB"


def test_exif_orientation_is_applied(dog, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(dog).save(path, exif=exif, quality=95)
    p = load_rgb(path)
    assert p.rgb.shape[:2] == (dog.shape[1], dog.shape[0])
    assert any("orientation 6" in n for n in p.notes)
    # The stored EXIF no longer asks viewers to rotate the already rotated pixels.
    stored = Image.Exif()
    stored.load(p.exif)
    assert stored[0x0112] == 1


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(HvqError, match="not an image"):
        load_rgb(path)


def test_truncated_image(tmp_path, dog):
    path = tmp_path / "cut.png"
    Image.fromarray(dog).save(path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(HvqError, match="cut.png"):
        load_rgb(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(HvqError, match="no such file"):
        load_rgb(tmp_path / "absent.png")
    with pytest.raises(HvqError, match="directory"):
        load_rgb(tmp_path)


def test_icc_profile_and_exif_travel_through_the_codec(tiny_codec, dog, tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "hvq camera"  # Make
    path = tmp_path / "tagged.png"
    Image.fromarray(dog).save(path, icc_profile=icc, exif=exif)
    decoded = tiny_codec.decode(tiny_codec.encode(path))
    assert decoded.info["icc_profile"] == icc
    back = Image.Exif()
    back.load(decoded.info["exif"])
    assert back[0x010F] == "hvq camera"
    stripped = tiny_codec.decode(tiny_codec.encode_detailed(path, metadata=False).data)
    assert "icc_profile" not in stripped.info and "exif" not in stripped.info


def test_16_bit_values_are_scaled_to_8_bits():
    im = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert (load_rgb(im).rgb == 255).all()
    dark = Image.fromarray(np.full((4, 4), 200 * 257, np.uint16))
    assert (load_rgb(dark).rgb == 200).all()


def test_non_rgb_icc_profile_is_dropped_with_a_note(dog):
    from PIL import ImageCms

    gray_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    im = Image.fromarray(dog).convert("L")
    im.info["icc_profile"] = gray_icc
    p = load_rgb(im)
    assert p.icc_profile is None and any("ICC" in n for n in p.notes)


def test_empty_pil_image_is_refused():
    with pytest.raises(HvqError, match="empty"):
        load_rgb(Image.new("RGB", (0, 0)))


def _tiff(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian TIFF header with one IFD of (tag, type, count, value bytes) entries."""
    import struct

    head = b"II*\x00" + struct.pack("<I", 8)
    data_at, ifd, extra = 8 + 2 + 12 * len(entries) + 4, struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, kind, count, data_at + len(extra))
            extra += value
    return head + ifd + struct.pack("<I", 0) + extra


def broken_jpeg(path, dog, entries) -> None:
    """A JPEG whose EXIF holds the given raw entries (ASCII where a number belongs)."""
    Image.fromarray(dog).save(path, "JPEG", exif=b"Exif\x00\x00" + _tiff(entries))


def test_an_exif_block_that_cannot_be_rewritten_is_dropped_with_a_note(dog, tmp_path):
    path = tmp_path / "x.jpg"
    broken_jpeg(path, dog, [(0x011A, 2, 8, b"seventy\x00")])  # X resolution as a string
    p = load_rgb(path)
    assert p.exif is None and p.rgb.shape == dog.shape
    assert any("dropped the EXIF" in n and "TypeError" in n for n in p.notes), p.notes


def test_an_invalid_orientation_leaves_the_image_as_stored(dog, tmp_path):
    path = tmp_path / "x.jpg"
    broken_jpeg(path, dog, [(0x0112, 2, 4, b"abc\x00")])
    p = load_rgb(path)
    assert p.rgb.shape == dog.shape
    assert any("invalid EXIF orientation 'abc'" in n for n in p.notes), p.notes


def test_a_truncated_icc_profile_is_dropped_with_a_note(dog):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(dog)
    im.info["icc_profile"] = icc[: len(icc) // 2]
    p = load_rgb(im)
    assert p.icc_profile is None and any("truncated" in n for n in p.notes), p.notes


def test_pillow_warnings_become_notes(dog, recwarn):
    import warnings

    im = Image.fromarray(dog)

    class Warns(type(im)):
        def getexif(self):
            msg = "Corrupt EXIF data.  Expecting to read 12 bytes but only got 6."
            warnings.warn(msg, UserWarning, stacklevel=2)
            return super().getexif()

    im.__class__ = Warns
    p = load_rgb(im)
    assert "Pillow: Corrupt EXIF data.  Expecting to read 12 bytes but only got 6." in p.notes
    assert not recwarn.list


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


@pytest.mark.parametrize("source", ["jpg", "png", "webp"])
def test_xmp_travels_through_the_api_the_cli_and_pillow(tiny_hyper_codec, dog, tmp_path, source):
    from click.testing import CliRunner
    from PIL.PngImagePlugin import PngInfo

    from hvqcodec.cli import main
    from hvqcodec.container import PNG_XMP_KEY

    path = tmp_path / f"rated.{source}"
    if source == "png":
        info = PngInfo()
        info.add_itxt(PNG_XMP_KEY, XMP.decode())
        Image.fromarray(dog).save(path, pnginfo=info)
    else:
        Image.fromarray(dog).save(path, xmp=XMP)
    data = tiny_hyper_codec.encode(path)
    assert tiny_hyper_codec.decode(data).info["xmp"] == XMP  # the API
    weights = tmp_path / "tiny.pt"
    torch.save(tiny_hyper(), weights)
    run = CliRunner().invoke
    assert run(main, ["compress", str(path), "-m", str(weights)]).exit_code == 0
    hvq = path.with_suffix(".hvq")
    assert Image.open(hvq).info["xmp"] == XMP  # Pillow, from the header read alone
    for out, read in (("out.png", lambda im: im.info[PNG_XMP_KEY].encode()),
                      ("out.jpg", lambda im: im.info["xmp"])):  # fmt: skip
        assert run(main, ["decompress", str(hvq), "-o", str(tmp_path / out), "-m", str(weights)]
                   ).exit_code == 0  # fmt: skip
        assert read(Image.open(tmp_path / out)) == XMP, out
    assert run(main, ["compress", str(path), "-m", str(weights), "--strip", "-f"]).exit_code == 0
    assert "xmp" not in Image.open(hvq).info
