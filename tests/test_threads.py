"""The prior's probabilities are integer-exact, so no thread count ever changes a file."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hvqcodec import Codec
from hvqcodec.families.vqvae.weights import save_weights

SCRIPT = """
import hashlib, sys, torch
from hvqcodec import Codec
torch.set_num_threads(int(sys.argv[3]))
codec = Codec(sys.argv[1])
if sys.argv[2] == "encode":
    sys.stdout.buffer.write(codec.encode(sys.argv[4]))
else:
    data = sys.stdin.buffer.read()
    print(hashlib.sha256(codec.decode(data).tobytes()).hexdigest())
"""


def run(weights, mode: str, threads: str, stdin: bytes | None = None) -> bytes:
    """SCRIPT in a fresh process with OMP_NUM_THREADS=threads: a file, or a decoding's hash."""
    from tests.conftest import IMAGES

    env = {**os.environ, "OMP_NUM_THREADS": threads}
    args = [sys.executable, "-c", SCRIPT, str(weights), mode, threads, str(IMAGES / "dog.png")]
    return subprocess.run(args, input=stdin, env=env, capture_output=True, check=True).stdout


@pytest.mark.slow
def test_same_file_decodes_identically_under_1_and_2_threads(wide_prior_codec, dog):
    codec = wide_prior_codec
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        data = codec.encode(dog)
        torch.set_num_threads(1)
        one = codec.decode_detailed(data)
        torch.set_num_threads(2)
        two = codec.decode_detailed(data)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(np.asarray(one.image), np.asarray(two.image))
    for level in one.codes:
        np.testing.assert_array_equal(one.codes[level], two.codes[level])


@pytest.mark.slow
def test_encode_and_decode_in_processes_with_different_thread_counts(tmp_path, wide_prior_codec):
    weights = tmp_path / "wide.pt"
    m = wide_prior_codec.model
    save_weights(weights, m.name, m.vqvae, m.prior)

    data = run(weights, "encode", "1")
    assert Codec(weights).decode(data).size == (160, 272)
    hashes = {run(weights, "decode", t, stdin=data) for t in ("1", "2", "4")}
    assert len(hashes) == 1, hashes
    expected = hashlib.sha256(Codec(weights).decode(data).tobytes()).hexdigest()
    assert hashes.pop().decode().strip() == expected


@pytest.mark.slow
@pytest.mark.parametrize("checkerboard", [False, True], ids=["channels", "checkerboard"])
def test_a_context_models_file_decodes_alike_under_1_2_and_4_threads(tmp_path, checkerboard):
    """Its tables come from the exact decoded latent of earlier groups (and, with a
    checkerboard, of the group's own anchors): any thread count's ulp there would derail the
    later passes, or change their pixels."""
    from tests.conftest import tiny_hyper

    weights = tmp_path / "context.pt"
    config = dict(context_groups=(2, 2, 4, 8), context_checkerboard=checkerboard)
    torch.save(tiny_hyper(**config), weights)

    data = run(weights, "encode", "2")
    hashes = {run(weights, "decode", t, stdin=data) for t in ("1", "2", "4")}
    assert len(hashes) == 1, hashes
