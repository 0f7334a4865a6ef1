"""10,000 mutated files: each decodes or raises HvqError, none hangs (see tests/fuzz_hvq.py)."""

from hvqcodec import Codec
from tests.conftest import tiny_model
from tests.fuzz_hvq import MAX_PIXELS, cases, check


def test_structure_aware_fuzz_10000_cases():
    # Three bottom stages: files of 3 to 5 streams, and prefixes down to 2 for the preview.
    codec = Codec(tiny_model(bottom_stages=3, stage_codebook_size=16), max_pixels=MAX_PIXELS)
    for data in cases(codec, 10_000):
        check(codec, data)  # raises on any exception but HvqError, or on a hang
