"""10,000 mutated files: each decodes, whole and as a preview, or raises HvqError; none hangs."""

from tests.fuzz_hvq import cases, check, fuzz_codec


def test_structure_aware_fuzz_10000_cases():
    codec = fuzz_codec()
    for data in cases(codec, 10_000):
        check(codec, data)  # raises on any exception but HvqError, or on a hang
