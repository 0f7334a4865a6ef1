"""Committed files keep decoding to the same codes and pixels, and the shipped model's demo runs."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hvqcodec import Codec
from hvqcodec.cli import main
from hvqcodec.shipped import SHIPPED
from tests.conftest import assert_same_up_to_rounding
from tests.make_golden import GOLDEN, codes_digest


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_golden_files_decode_to_the_recorded_codes_and_pixels(name):
    """Each model ever shipped keeps decoding the file it wrote, with its own weights: the
    codes exactly, the pixels up to the float rounding another CPU may do in the synthesis."""
    data = (GOLDEN / f"dog.{name}.hvq").read_bytes()
    decoded = Codec(name).decode_detailed(data)
    assert codes_digest(decoded.codes) == (GOLDEN / f"dog.{name}.codes").read_text().strip()
    assert decoded.image.size == (160, 272)
    assert_same_up_to_rounding(decoded.image, Image.open(GOLDEN / f"dog.{name}.png"))


@pytest.mark.slow
def test_demo_writes_the_sample_and_its_decoding(tmp_path):
    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.output
    decoded = np.asarray(Image.open(tmp_path / "robin.png"))
    assert decoded.shape == (570, 384, 3)
    assert (tmp_path / "robin.hvq").stat().st_size > 0
