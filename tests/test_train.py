"""Tiny training runs: both phases, exact resume, config files, torchrun with 2 ranks, export."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from hvqcodec import Codec
from hvqcodec.training import main as training_main
from tests.conftest import IMAGES, TINY_PRIOR, TINY_VQ

TINY_ARGS = [
    "--crop", "64", "--batch-size", "2", "--prior-crop", "2", "--prior-batch-size", "2",
    "--log-every", "1", "--checkpoint-seconds", "1e9", "--threads", "1",
    "--model-json", json.dumps(TINY_VQ), "--prior-json", json.dumps(TINY_PRIOR),
]  # fmt: skip


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    dog = Image.open(IMAGES / "dog.png")
    dog.save(folder / "dog.png")
    dog.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(folder / "dog-flipped.png")
    return folder


def train_main(args: list[str]) -> None:
    """The VQ-VAE family's trainer, as `hvqcodec train --family vqvae` runs it."""
    training_main(["--family", "vqvae", *args])


def test_an_unknown_family_is_refused():
    with pytest.raises(SystemExit, match="--family takes one of: hyper, vqvae"):
        training_main(["--family", "vq-vae", "--data", "x"])


def tiny(data, out, *extra):
    return ["--data", str(data), "--out", str(out), *TINY_ARGS, *extra]


def test_tiny_training_run_exports_a_working_model_and_a_card(tmp_path, data, dog):
    out, weights = tmp_path / "run", tmp_path / "tiny.pt"
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    # MS-SSIM's four downsamplings need sides over 160 pixels.
    Image.open(IMAGES / "dog.png").resize((192, 200)).save(eval_dir / "dog.png")
    args = tiny(data, out, "--vq-steps", "3", "--prior-steps", "2", "--eval-images", str(eval_dir))
    train_main([*args, "--export", str(weights), "--name", "tiny-run"])
    rows = [json.loads(line) for line in open(out / "log.jsonl")]
    assert [r["step"] for r in rows if r["phase"] == "vqvae"] == [1, 2, 3]
    assert [r["step"] for r in rows if r["phase"] == "priors"] == [1, 2]
    assert {"psnr", "perplexity_top", "usage_bottom", "loss"} <= set(rows[0])
    card = json.loads((out / "model_card.json").read_text())
    assert card["vq_steps"] == 3 and card["prior_steps"] == 2 and card["images"] == 2
    assert card["evaluation"]["rows"][0]["image"] == "dog.png"
    assert card["evaluation"]["mean"]["all_codes_exact"] is True
    markdown = (out / "MODEL_CARD.md").read_text()
    assert "# Model card: tiny-run" in markdown and "| dog.png |" in markdown
    codec = Codec(weights)
    assert codec.name == "tiny-run"
    assert codec.decode(codec.encode(dog)).size == (160, 272)


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, data):
    """2N steps == N steps, a stop, N more (across the phase boundary too)."""
    steps = ["--vq-steps", "4", "--prior-steps", "4"]
    train_main(tiny(data, tmp_path / "straight", *steps))
    for _ in range(3):
        train_main(tiny(data, tmp_path / "resumed", *steps, "--stop-after", "3"))
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert (b["phase"], b["step"]) == ("priors", 4)
    for part in ("vqvae", "prior"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])
    assert a["ranks"][0]["sampler"] == b["ranks"][0]["sampler"]
    log = lambda run: (tmp_path / run / "log.jsonl").read_text()  # noqa: E731
    strip = lambda text: [{**json.loads(r), "elapsed": 0} for r in text.splitlines()]  # noqa: E731
    assert strip(log("straight")) == strip(log("resumed"))


def test_resumed_run_drops_an_override_its_checkpoint_fixes_with_a_warning(tmp_path, data, capsys):
    steps = ["--vq-steps", "3", "--prior-steps", "1", "--stop-after", "1"]
    args = tiny(data, tmp_path / "run", *steps)
    train_main(args)
    train_main(args)  # resumed with the same flags: nothing is dropped
    assert "ignored" not in capsys.readouterr().err
    wider = json.dumps({**TINY_VQ, "channels": 2 * TINY_VQ["channels"]})
    train_main([*args, "--model-json", wider])
    err = capsys.readouterr().err
    assert "warning: --model-json ignored" in err and "fixes `model`" in err
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (ck["phase"], ck["step"]) == ("vqvae", 3)
    assert ck["config"]["model"]["channels"] == TINY_VQ["channels"]
    last = json.loads((tmp_path / "run" / "invocations.jsonl").read_text().splitlines()[-1])
    assert len(last["dropped"]) == 1


def test_config_file_with_overrides_logged(tmp_path, data):
    config = tmp_path / "run.toml"
    config.write_text(
        f'data = "{data}"\nout = "{tmp_path / "run"}"\nvq_steps = 2\nprior_steps = 1\n'
        "crop = 64\nbatch_size = 2\nprior_crop = 2\nprior_batch_size = 2\n"
        f"[model]\nchannels = {TINY_VQ['channels']}\ncode_dim = {TINY_VQ['code_dim']}\n"
        f"decoder_channels = {list(TINY_VQ['decoder_channels'])}\n"
        f"[prior]\nhidden = {TINY_PRIOR['hidden']}\nembed_dim = {TINY_PRIOR['embed_dim']}\n"
        f"cond_blocks = {TINY_PRIOR['cond_blocks']}\n"
    )
    train_main(["--config", str(config), "--prior-steps", "2", "--threads", "1"])
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["config"]["vq_steps"] == 2 and ck["config"]["prior_steps"] == 2
    assert ck["config"]["model"]["channels"] == TINY_VQ["channels"]
    assert ck["config"]["model"]["codebook_sizes"] == (512, 256, 128)  # a default kept
    (entry,) = [json.loads(x) for x in open(tmp_path / "run" / "invocations.jsonl")]
    assert entry["overrides"] == {"prior_steps": 2, "threads": 1}
    assert entry["config_file"] == str(config)
    assert entry["command"].startswith("hvqcodec train --family vqvae --config ")
    bad = tmp_path / "bad.json"
    for text in ('{"vq_stpes": 3}', "{not json"):
        bad.write_text(text)
        with pytest.raises(SystemExit):
            train_main(["--config", str(bad)])
    with pytest.raises(SystemExit):
        train_main(["--config", str(tmp_path / "missing.toml")])


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights_and_codebooks(tmp_path, data):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "hvqcodec.training.vqvae", *tiny(data, out, "--vq-steps", "3", "--prior-steps", "2"),
        "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[:3000]
    report = json.loads((out / "rank_digests.json").read_text())
    assert report["world"] == 2
    assert len(set(report["digests"])) == 1
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(ck["ranks"]) == 2
    # The ranks read different data: their RNG streams and sampler shards differ.
    assert not torch.equal(ck["ranks"][0]["generator"], ck["ranks"][1]["generator"])
    assert np.isfinite(ck["vqvae"]["quantizers.top.codebook"].numpy()).all()


@pytest.mark.slow
def test_adding_bottom_stages_warm_starts_from_a_smaller_model(tmp_path, data, dog):
    base = tmp_path / "base.pt"
    train_main([*tiny(data, tmp_path / "a", "--vq-steps", "2", "--prior-steps", "1"),
                "--export", str(base)])  # fmt: skip
    staged = tmp_path / "staged.pt"
    stages = json.dumps({**TINY_VQ, "bottom_stages": 3, "stage_codebook_size": 8})
    args = tiny(data, tmp_path / "b", "--vq-steps", "2", "--prior-steps", "1")
    args += ["--model-json", stages, "--init-from", str(base), "--no-bottom-rate", "0.5"]
    train_main([*args, "--export", str(staged)])
    before = torch.load(base, weights_only=True)
    after = torch.load(staged, weights_only=True)
    # The first stage's codebook came from the base model (then moved by two EMA steps).
    key = "quantizers.bottom.codebook"
    assert torch.allclose(before["vqvae"][key].float(), after["vqvae"][key].float(), atol=0.05)
    assert "quantizers.bottom3.codebook" in after["vqvae"]
    assert "levels.bottom3.head2.weight" in after["prior"]
    rows = [json.loads(line) for line in open(tmp_path / "b" / "log.jsonl")]
    assert "perplexity_bottom3" in rows[0]
    codec = Codec(staged)
    assert codec.qualities == (0, 33.33, 66.67, 100)
    for q in codec.qualities:
        assert codec.decode(codec.encode(dog, q)).size == (160, 272)
