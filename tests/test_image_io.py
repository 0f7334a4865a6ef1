"""Inputs of every mode become RGB, with a note saying what changed."""

import numpy as np
import pytest
from PIL import Image

from hvqcodec import HvqError
from hvqcodec.image_io import load_rgb


def test_rgb_array_passes_through(dog):
    rgb, notes = load_rgb(dog)
    assert rgb.shape == dog.shape and notes == []


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16"])
def test_modes_convert_to_rgb_with_a_note(dog, mode):
    im = Image.fromarray(dog)
    im = im.convert("L").convert("I;16") if mode == "I;16" else im.convert(mode)
    rgb, notes = load_rgb(im)
    assert rgb.dtype == np.uint8 and rgb.shape == (*dog.shape[:2], 3)
    assert any(mode in n for n in notes)


def test_transparency_is_composited_on_white():
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgb, _ = load_rgb(im)
    assert (rgb == 255).all()


def test_exif_orientation_is_applied(dog, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(dog).save(path, exif=exif, quality=95)
    rgb, notes = load_rgb(path)
    assert rgb.shape[:2] == (dog.shape[1], dog.shape[0])
    assert any("orientation 6" in n for n in notes)


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
