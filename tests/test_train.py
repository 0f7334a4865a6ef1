"""A tiny training run: both phases, checkpoint and resume, export to a usable weights file."""

import json
import shutil

import torch

from hvqcodec import Codec
from hvqcodec.train import main as train_main
from tests.conftest import IMAGES, TINY_PRIOR, TINY_VQ


def test_tiny_training_run_resumes_and_exports(tmp_path, dog):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(IMAGES / "dog.png", data / "dog.png")
    out, weights = tmp_path / "run", tmp_path / "tiny.pt"
    args = [
        "--data", str(data), "--out", str(out), "--crop", "64", "--batch-size", "2",
        "--prior-crop", "2", "--prior-batch-size", "2", "--log-every", "1",
        "--model-json", json.dumps(TINY_VQ), "--prior-json", json.dumps(TINY_PRIOR),
    ]  # fmt: skip
    train_main([*args, "--vq-steps", "3", "--prior-steps", "2"])
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (ck["phase"], ck["step"]) == ("priors", 2)
    assert ck["config"]["model"]["channels"] == TINY_VQ["channels"]

    # Starting again with more prior steps resumes where it stopped.
    train_main([*args, "--vq-steps", "3", "--prior-steps", "4", "--export", str(weights)])
    rows = [json.loads(line) for line in open(out / "log.jsonl")]
    vq_steps = [r["step"] for r in rows if r["phase"] == "vqvae"]
    prior_steps = [r["step"] for r in rows if r["phase"] == "priors"]
    assert vq_steps == [1, 2, 3] and prior_steps == [1, 2, 3, 4]
    assert {"psnr", "perplexity_top", "usage_bottom", "loss"} <= set(rows[0])
    assert "bpp" in rows[-1]

    codec = Codec(weights)
    assert codec.name == "hvq-custom"
    enc = codec.encode_detailed(dog)
    assert codec.decode(enc.data).size == (160, 272)
