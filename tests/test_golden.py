"""Committed files keep decoding to the same pixels, and the shipped model's demo runs."""

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner

from hvqcodec import Codec
from hvqcodec.cli import main
from hvqcodec.models import SHIPPED
from tests.make_golden import GOLDEN


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_golden_files_decode_to_the_recorded_pixels(name):
    """Each model ever shipped keeps decoding the file it wrote, with its own weights."""
    data = (GOLDEN / f"dog.{name}.hvq").read_bytes()
    expected = (GOLDEN / f"dog.{name}.sha256").read_text().strip()
    image = Codec(name).decode(data)
    # The hash covers the decoded RGB pixels, not a PNG encoder's output.
    assert image.size == (160, 272)
    assert hashlib.sha256(image.tobytes()).hexdigest() == expected


def test_demo_writes_the_sample_and_its_decoding(tmp_path):
    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.output
    from PIL import Image

    decoded = np.asarray(Image.open(tmp_path / "robin.png"))
    assert decoded.shape == (570, 384, 3)
    assert (tmp_path / "robin.hvq").stat().st_size > 0
