"""10,000 mutated files, a quarter each of the VQ-VAE family, the hvq-v3 family and the latter
with a context model, channel groups alone or with a checkerboard inside them: each decodes,
whole and as a preview, or raises HvqError; none hangs."""

import pytest

from tests.fuzz_hvq import FAMILIES, cases, check, fuzz_codec


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_structure_aware_fuzz_10000_cases(family):
    codec = fuzz_codec(family)
    for data in cases(codec, 10_000 // len(FAMILIES)):
        check(codec, data)  # raises on any exception but HvqError, or on a hang
