"""Smoke test of the benchmark code: one small image, two settings per codec. No timing checks."""

import json

from PIL import Image

from benchmarks import kodak, rd
from hvqcodec.models import save_weights
from tests.conftest import IMAGES


def test_rd_and_kodak_benchmarks_run_on_one_image(tmp_path, tiny_codec):
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
    assert set(summary["reference_agreement"]) == {"JPEG", "WebP"}
    for name in ("rd_psnr.png", "rd_msssim.png", "visual_comparison.png", "rd.csv"):
        assert (out / name).stat().st_size > 0
    rows = [json.loads(line) for line in (out / "rd.jsonl").open()]
    assert all(r["bpp"] > 0 and r["psnr"] > 0 and 0 < r["ms_ssim"] <= 1 for r in rows)
    # A second run resumes: nothing is measured again.
    rd.main([*args, "--small", "--visual", "dog.png"])
    assert len((out / "rd.jsonl").read_text().splitlines()) == len(rows)

    kodak.main(args)
    result = json.loads((out / "hvq.json").read_text())
    assert result["mean"]["all_codes_exact"] is True
