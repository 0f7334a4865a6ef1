"""How far the analysis falls short of the latents its own synthesis could use: the
amortization gap (Cremer et al., "Inference Suboptimality in Variational Autoencoders", ICML
2018), measured as in Campos et al., "Content Adaptive Optimization for Neural Image
Compression", CVPRW 2019.

    python -m benchmarks.latent_gap --images ../shared/data/train \
        --checkpoint checkpoints/hvq-v3-campaign.pt \
        --out benchmarks/results/training/latent_gap-step63752.json

For validation photos (configs/validation.txt, centre crops), at each quality: the fine
symbols the analysis gives, then the same symbols refined by gradient descent on the training
loss (lambda * 255^2 * MSE through straight-through rounding + bits of noisy symbols), with the
VQ levels, priors, gains and synthesis fixed. `gain_db` is the refined point's PSNR over the
unrefined curve at the same bpp (interpolated in log bpp across fractional qualities). Float
model, no files: a diagnostic for the design of the transforms, not a codec result.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hvqcodec import entropy_models
from hvqcodec.families.hyper import refinement
from hvqcodec.families.hyper.model import PAD_STRIDE, VQHyperprior
from hvqcodec.image_io import load_photos
from hvqcodec.training.data import centre_crop, reconstruction_psnr, split_photos
from hvqcodec.training.hyper import checkpoint_model


class Point:
    """One image at one rate index (a fractional position on the trained rate points): the
    fixed side information and the fine level's terms."""

    def __init__(self, net: VQHyperprior, x: torch.Tensor, rate_index: float) -> None:
        self.net, self.x, self.pixels = net, x, x.shape[2] * x.shape[3]
        self.q = q = torch.tensor([rate_index])
        self.lam = refinement.lambda_at(net.lambdas, rate_index)
        with torch.no_grad():
            y = net.analysis(x * 2 - 1)
            _, quantized, _ = net.side_information(y)
            mean, log_scale = net.hyper_synthesis(quantized["top"], quantized["middle"])
        self.gain, self.inverse = net.gains.gain(q), net.gains.inverse(q)
        self.mean_g, self.log_scale = mean * self.gain, log_scale + net.gains.log_gain(q)
        self.centred = y * self.gain - self.mean_g

    def terms(self, symbols: torch.Tensor, rate_symbols: torch.Tensor) -> tuple:
        """(bpp, reconstruction) of `symbols`, the rate counted on `rate_symbols`."""
        y_hat = (symbols + self.mean_g) * self.inverse
        reconstruction = (self.net.synthesize(y_hat, self.q) + 1) / 2
        bits = entropy_models.bits(rate_symbols, self.log_scale).sum()
        return bits / self.pixels, reconstruction

    @torch.no_grad()
    def measure(self, centred: torch.Tensor) -> tuple[float, float]:
        """(bpp, PSNR) of rounding `centred`."""
        symbols = torch.round(centred)
        bpp, reconstruction = self.terms(symbols, symbols)
        return float(bpp), reconstruction_psnr(reconstruction, self.x)

    def unrefined(self) -> tuple[float, float]:
        return self.measure(self.centred)

    def refine(self, iterations: int, lr: float) -> torch.Tensor:
        """Straight-through rounding for the distortion, noisy symbols for the rate (the
        training's terms; the codec's own refinement uses SGA instead)."""

        def loss_of(centred: torch.Tensor, progress: float) -> torch.Tensor:
            bpp, reconstruction = self.terms(
                entropy_models.round_through(centred), entropy_models.noisy(centred)
            )
            return self.lam * F.mse_loss(reconstruction, self.x) + bpp

        return refinement.descend(loss_of, self.centred, iterations, lr)


def gap(net: VQHyperprior, x: torch.Tensor, qualities, iterations: int, lr: float) -> list[dict]:
    levels = len(net.lambdas)
    curve = [Point(net, x, q).unrefined() for q in np.linspace(0, levels - 1, 5 * levels - 4)]
    rates, psnrs = np.log([c[0] for c in curve]), [c[1] for c in curve]
    rows = []
    for q in qualities:
        point = Point(net, x, q)
        bpp, psnr = point.unrefined()
        refined_bpp, refined_psnr = point.measure(point.refine(iterations, lr))
        at_rate = float(np.interp(math.log(refined_bpp), rates, psnrs))
        rows.append({"quality": q, "bpp": bpp, "psnr": psnr, "refined_bpp": refined_bpp,
                     "refined_psnr": refined_psnr, "gain_db": refined_psnr - at_rate})  # fmt: skip
        print(json.dumps({k: round(v, 4) for k, v in rows[-1].items()}), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", required=True, type=Path, help="the training folder")
    p.add_argument("--checkpoint", required=True, type=Path, help="a training checkpoint")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--count", type=int, default=4, help="validation photos, in list order")
    p.add_argument("--side", type=int, default=256, help="centre crop")
    p.add_argument("--qualities", type=float, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--lr", type=float, default=0.05, help="Adam's, in quantization steps")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the refinement's noise
    net, ck = checkpoint_model(args.checkpoint)
    net.eval().requires_grad_(False)
    _, held_out = split_photos(args.images)
    photos = load_photos(held_out[: args.count])
    rows = []
    for path, img in zip(held_out, photos):
        x = (centre_crop(img, args.side, PAD_STRIDE).float() / 255)[None]
        rows += [{"photo": path.name, **r} for r in gap(net, x, args.qualities, args.iterations,
                                                        args.lr)]  # fmt: skip
    summary = {
        str(q): {k: float(np.mean([r[k] for r in rows if r["quality"] == q]))
                 for k in ("bpp", "psnr", "refined_bpp", "refined_psnr", "gain_db")}
        for q in args.qualities
    }  # fmt: skip
    result = {"checkpoint": str(args.checkpoint), "step": ck["step"], "iterations": args.iterations,
              "lr": args.lr, "side": args.side, "mean": summary, "rows": rows}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
