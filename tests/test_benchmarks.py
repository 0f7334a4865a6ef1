"""Smoke test of the benchmark code: one small image, two settings per codec. No timing checks."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import kodak, rd, readme, speed
from hvqcodec import Codec
from hvqcodec.families.vqvae.weights import save_weights
from tests.conftest import IMAGES, tiny_hyper


@pytest.mark.slow
def test_rd_and_kodak_benchmarks_run_on_one_image(tmp_path, tiny_codec, staged_codec):
    images = tmp_path / "images"
    images.mkdir()
    # MS-SSIM's four downsamplings need sides over 160 pixels.
    Image.open(IMAGES / "dog.png").resize((192, 200)).save(images / "dog.png")
    weights = tmp_path / "tiny.pt"
    m = tiny_codec.model
    save_weights(weights, m.name, m.vqvae, m.prior)
    out = tmp_path / "out"
    args = ["--images", str(images), "--out", str(out), "--model", str(weights)]
    rd.main([*args, "--small", "--visual", "dog.png"])
    summary = json.loads((out / "rd_summary.json").read_text())
    assert {"hvqcodec", "JPEG", "WebP", "AVIF", "JPEG 2000"} <= set(summary["curves"])
    assert len(summary["curves"]["JPEG"]) == 2
    assert set(summary["reference_agreement"]) == {"JPEG", "WebP", rd.COMPRESSAI_JPEG}
    for name in ("rd_psnr.png", "rd_msssim.png", "visual_comparison.png", "rd.csv"):
        assert (out / name).stat().st_size > 0
    rows = [json.loads(line) for line in (out / "rd.jsonl").open()]
    assert all(r["bpp"] > 0 and r["psnr"] > 0 and 0 < r["ms_ssim"] <= 1 for r in rows)
    # A second run resumes: nothing is measured again.
    rd.main([*args, "--small", "--visual", "dog.png"])
    assert len((out / "rd.jsonl").read_text().splitlines()) == len(rows)
    # Other weights make the earlier hvqcodec rows stale: they are replaced, the rest kept.
    staged = tmp_path / "staged.pt"
    m = staged_codec.model
    save_weights(staged, m.name, m.vqvae, m.prior)
    args = ["--images", str(images), "--out", str(out), "--model", str(staged)]
    rd.main([*args, "--small", "--visual", "dog.png"])
    again = [json.loads(line) for line in (out / "rd.jsonl").open()]
    ours = [r for r in again if r["codec"] == "hvqcodec"]
    assert {r["version"] for r in ours} == {f"{m.model_id:08x}"} and len(ours) == 2
    before = sum(r["codec"] == "hvqcodec" for r in rows)
    assert len(again) == len(rows) - before + 2
    # An earlier model beside it, under its own name: a curve and a BD-rate of its own.
    earlier = Codec(str(weights)).name
    rd.main([*args, "--small", "--visual", "dog.png", "--also", str(weights)])
    summary = json.loads((out / "rd_summary.json").read_text())
    assert len(summary["curves"][earlier]) == 2 and earlier in summary["bd_rate_vs"]
    assert summary["model"] == m.name and summary["earlier_models"] == [earlier]

    kodak.main(args)
    result = json.loads((out / "hvq.json").read_text())
    assert result["quality"] == 75 and result["mean"]["all_codes_exact"] is True
    assert (out / "hvq-q0.json").exists() and result["mean"]["preview_psnr"] > 0
    assert (out / "hvq-q66.67.json").exists() and (out / "hvq-q100.json").exists()

    # The README generator fills its blocks from these result files.
    text = tmp_path / "README.md"
    blocks = ("kodak", "qualities", "rd", "effort", "model-card")
    text.write_text("".join(f"<!-- BEGIN {b} -->\n<!-- END {b} -->\n" for b in blocks))
    card = tmp_path / "card.json"
    train_card = {"command": "c", "data": "d", "images": 1, "config": {"crop": 64,
        "batch_size": 2, "prior_batch_size": 2}, "vq_steps": 3, "prior_steps": 2,
        "vq_train_seconds": 60, "prior_train_seconds": 60, "hardware": "h", "torch": "t",
        "final_train_psnr_mean_last_10": 20.0, "final_prior_bpp_mean_last_10": 0.1,
        "evaluation": {"folder": "f", **result}}  # fmt: skip
    card.write_text(json.dumps(train_card))
    readme.main(["--results", str(out), "--readme", str(text), "--card", str(card)])
    filled = text.read_text()
    assert "| JPEG |" in filled and "Our JPEG and WebP" in filled
    assert f"Not yet measured with {m.name}: `benchmarks.rd` with `--effort 1" in filled
    assert "| 100 | 5 |" in filled and "| 75 | 5 |" in filled and "with the quality" in filled
    assert "integer-exact prior against the float prior" in filled
    assert "### Evaluation on `f`" in filled and "| dog.png |" in filled


@pytest.mark.slow
def test_the_rd_benchmark_measures_a_higher_effort_as_its_own_curve(tmp_path):
    from tests.conftest import tiny_hyper

    images = tmp_path / "images"
    images.mkdir()
    Image.open(IMAGES / "dog.png").resize((192, 200)).save(images / "dog.png")
    weights = tmp_path / "tiny-v3.pt"
    torch.save(tiny_hyper(), weights)
    out = tmp_path / "out"
    rd.main(["--images", str(images), "--out", str(out), "--model", str(weights), "--small",
             "--visual", "dog.png", "--effort", "1"])  # fmt: skip
    summary = json.loads((out / "rd_summary.json").read_text())
    assert len(summary["curves"]["hvqcodec -e 1"]) == 2
    assert set(summary["effort_bd_rate_vs"]["hvqcodec -e 1"]) >= {"hvqcodec", "JPEG", "WebP"}
    assert "hvqcodec -e 1" not in summary["bd_rate_vs"]
    table = readme.effort_table(summary)
    assert "| hvqcodec at effort 0 |" in table and "Mean time per image" in table


def test_the_campaign_plot_reads_a_compact_checkpoints_log(tmp_path):
    import torch

    from benchmarks import campaign

    rows = [{"step": s, "cpu_hours": h, "val_bpp": [0.1, 0.3], "val_psnr": [22.0 + h, 24.0 + h]}
            for s, h in ((0, 0.0), (100, 0.5), (100, 0.5), (250, 1.0))]  # fmt: skip
    log = "\n".join(json.dumps(r) for r in [*rows, {"step": 300, "loss": 1.0}]) + "\n"
    torch.save({"format": "hvqcodec-rd-checkpoint/1", "log": log}, tmp_path / "ck.pt")
    out = tmp_path / "campaign.png"
    campaign.main(["--log", str(tmp_path / "ck.pt"), "--out", str(out), "--grown-at", "0.5"])
    assert out.stat().st_size > 0
    assert [r["step"] for r in campaign.validation_rows(tmp_path / "ck.pt")] == [0, 100, 250]


def test_the_campaign_compares_with_the_baseline_only_where_both_reach():
    from benchmarks import campaign

    baseline = {"curve": [{"bpp": 0.1, "psnr": 24.0}, {"bpp": 0.4, "psnr": 26.0}]}
    row = {"val_bpp": [0.05, 0.2, 0.5], "val_psnr": [23.0, 25.5, 27.0]}
    ((bpp, margin),) = campaign.margins(row, baseline)  # 0.05 and 0.5 lie outside its range
    assert bpp == 0.2 and margin == pytest.approx(0.5)


def test_a_validation_result_is_ahead_only_if_ahead_at_every_shared_rate():
    from benchmarks.validation import comparison

    def result(model: str, *points: tuple[float, float]) -> dict:
        return {"model": model, "curve": [{"bpp": b, "psnr": p} for b, p in points]}

    other = result("old", (0.1, 24.0), (0.4, 26.0))
    ahead = result("new", (0.1, 24.2), (0.4, 26.1))
    behind_once = result("new", (0.1, 24.2), (0.4, 25.9))
    outside = result("new", (0.05, 30.0), (0.8, 40.0))
    assert comparison(ahead, other).endswith("ahead at every rate both reach: True")
    assert "-0.10 dB at 0.400 bpp" in comparison(behind_once, other)
    assert comparison(behind_once, other).endswith("False")
    assert comparison(outside, other).endswith("False")  # no shared rate proves nothing


def test_a_validation_result_is_compared_on_each_sources_photos_apart():
    from benchmarks.validation import by_source

    def result(model: str, *per_photo: list[tuple[float, float]]) -> dict:
        curve = [dict(zip(("bpp", "psnr"), np.mean(q, axis=0)), per_photo=q) for q in per_photo]
        return {"model": model, "photos": ["a_1.jpg", "b_1.png", "a_2.jpg"], "curve": curve}

    # per quality: photos a_1, b_1, a_2; the new model is ahead on b's photo, behind on a's
    old = result("old", [(0.1, 20), (0.1, 30), (0.1, 22)], [(0.4, 24), (0.4, 34), (0.4, 26)])
    new = result("new", [(0.2, 21), (0.2, 33), (0.2, 23)], [(0.3, 22), (0.3, 34), (0.3, 24)])
    a, b = by_source(new, old)
    assert (
        a == "a, 2 of 3 photos: -1.00 dB at 0.200 bpp, -1.17 dB at 0.300 bpp; "
        "ahead at every rate both reach: False"
    )
    assert (
        b == "b, 1 of 3 photos: +1.00 dB at 0.200 bpp, +0.83 dB at 0.300 bpp; "
        "ahead at every rate both reach: True"
    )
    assert by_source(new, {**old, "photos": ["c_1.png", "b_1.png", "a_2.jpg"]}) == []
    del old["curve"][0]["per_photo"]
    assert by_source(new, old) == []  # an earlier result without its photos' rows


def test_the_train_step_benchmark_times_a_real_step():
    from benchmarks.train_step import time_variant
    from hvqcodec.families.hyper.model import VQHyperpriorConfig
    from tests.conftest import TINY_HYPER as TINY

    row = time_variant(VQHyperpriorConfig(**TINY), channels_last=True, bf16=False,
                       compiled=False, batch=2, crop=64, warmup=1, steps=1)  # fmt: skip
    assert row["variant"] == "float32 + channels_last"
    assert row["sec_per_step"] > 0 and row["warmup_seconds"] >= 0


def test_the_latent_gap_is_measured_against_the_unrefined_curve():
    import torch

    from benchmarks import latent_gap
    from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
    from tests.test_vq_hyperprior import TINY

    torch.manual_seed(0)
    net = VQHyperprior(VQHyperpriorConfig(**TINY)).eval().requires_grad_(False)
    x = torch.rand(1, 3, 64, 64)
    (still,) = latent_gap.gap(net, x, [1], iterations=0, lr=0.05)
    # No step taken: the same symbols, on the curve they are measured against.
    assert (still["refined_bpp"], still["refined_psnr"]) == (still["bpp"], still["psnr"])
    assert abs(still["gain_db"]) < 1e-9
    (moved,) = latent_gap.gap(net, x, [1], iterations=5, lr=1.0)
    assert (moved["refined_bpp"], moved["refined_psnr"]) != (moved["bpp"], moved["psnr"])


def test_the_speed_benchmark_measures_each_step_in_its_own_process(tmp_path):
    """Its two steps through the real file path, and the README table of their rows."""
    weights = tmp_path / "tiny-v3.pt"
    torch.save(tiny_hyper(), weights)
    png, hvq = tmp_path / "in.png", tmp_path / "in.hvq"
    Image.open(IMAGES / "dog.png").save(png)
    row = {"size": "dog"}
    for step in ("encode", "decode"):
        r = speed.one_step(step, png, hvq, 2, str(weights), None)
        assert (r["width"], r["height"]) == Image.open(png).size and r["bpp"] > 0
        assert r["seconds"]["total"] >= r["seconds"]["network"] > 0 and r["peak_rss_mb"] > 0
        speed.add_step(row, step, r)
    assert Image.open(hvq.with_suffix(".out.png")).size == Image.open(png).size
    deeper = tmp_path / "deeper.pt"
    torch.save(tiny_hyper(synthesis_blocks=1), deeper)
    kmac, more = speed.kmac_per_pixel(str(weights)), speed.kmac_per_pixel(str(deeper))
    assert more["analysis"] == kmac["analysis"] > 0 and more["synthesis"] > kmac["synthesis"] > 0
    table = readme.speed_table({"cpu": "x", "cores": 2, "kmac_per_pixel": kmac, "rows": [row]})
    assert table.count("\n| ") == 2 and f"| {row['width']}x{row['height']} |" in table
    assert f"synthesis {kmac['synthesis']:.1f} kMAC per pixel" in table


def test_the_context_gain_is_zero_for_an_untrained_context_and_measured_for_a_trained_one(
    tmp_path, dog
):
    from benchmarks import context_gain
    from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
    from tests.conftest import TINY_HYPER

    torch.manual_seed(0)
    config = {**TINY_HYPER, "context_groups": (4, 4, 8), "context_channels": 8}
    net = VQHyperprior(VQHyperpriorConfig(**config))
    x = torch.from_numpy(dog[:64, :64].copy()).permute(2, 0, 1)[None].float() / 255
    compact = {"config": {"model": net.config.to_dict()}, "step": 7, "cpu_seconds": 36.0}
    torch.save({**compact, "model": net.state_dict()}, tmp_path / "fresh.pt")
    with torch.no_grad():
        for group in net.context.nets:  # a trained context's corrections are nonzero
            group[-1].bias.normal_(std=0.5)
    torch.save({**compact, "model": net.state_dict()}, tmp_path / "trained.pt")
    fresh = context_gain.saving(tmp_path / "fresh.pt", [x])
    assert fresh["step"] == 7 and fresh["cpu_hours"] == 0.01
    assert all(r["saving_of_fine"] == 0 for r in fresh["rate_points"])  # starts at zero
    trained = context_gain.saving(tmp_path / "trained.pt", [x])["rate_points"]
    assert len(trained) == len(net.config.lambdas)
    assert all(r["saving_of_fine"] != 0 and r["fine_bpp_with"] > 0 for r in trained)
    assert "checkerboard_saving" not in trained[0]
    # A checkerboard: what its second pass saves, zero while its networks are untrained.
    board = VQHyperprior(VQHyperpriorConfig(**{**config, "context_checkerboard": True}))
    path, compact["config"] = tmp_path / "board.pt", {"model": board.config.to_dict()}
    torch.save({**compact, "model": board.state_dict()}, path)
    rows = context_gain.saving(path, [x])["rate_points"]
    assert all(r["checkerboard_saving"] == 0 for r in rows)
    with torch.no_grad():
        for group in board.context.nets:
            group[-1].weight.normal_(std=0.5)
    torch.save({**compact, "model": board.state_dict()}, path)
    rows = context_gain.saving(path, [x])["rate_points"]
    assert all(r["checkerboard_saving"] != 0 for r in rows)


def test_the_knee_is_where_the_curve_bends_most_above_its_chord():
    from benchmarks.quality_sweep import knee

    # PSNR rises fast to quality 40, then hardly: the knee is there, whatever the spacing.
    rows = [{"quality": q, "bpp": b, "psnr": p}
            for q, b, p in ((0, 0.05, 22), (20, 0.2, 27), (40, 0.6, 31), (60, 1.4, 32),
                            (80, 2.2, 32.5), (100, 3.0, 32.8))]  # fmt: skip
    assert knee(rows) == 40
    later = [{**r, "psnr": p} for r, p in zip(rows, (22, 24, 26, 31.5, 32.5, 32.8))]
    assert knee(later) == 60
