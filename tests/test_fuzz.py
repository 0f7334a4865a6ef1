"""10,000 mutated files: each decodes or raises HvqError, none hangs (see tests/fuzz_hvq.py)."""

from hvqcodec import Codec
from tests.conftest import tiny_model
from tests.fuzz_hvq import MAX_PIXELS, cases, check


def test_structure_aware_fuzz_10000_cases():
    codec = Codec(tiny_model(), max_pixels=MAX_PIXELS)
    for data in cases(codec, 10_000):
        check(codec, data)  # raises on any exception but HvqError, or on a hang
