"""Encoder-side refinement of the fine symbols: more encoding effort, the same decoder.

The analysis transform maps an image to its fine latent in one pass and falls short of the
latent its own synthesis could use (the amortization gap: Cremer et al., "Inference
Suboptimality in Variational Autoencoders", ICML 2018; `benchmarks.latent_gap` measures it).
Refinement closes part of that gap for each image, as in Campos et al., "Content Adaptive
Optimization for Neural Image Compression", CVPRW 2019: the fine symbols of one quality are
optimised by gradient descent on the loss the model was trained on,

    lambda(quality) * 255^2 * MSE(synthesis(symbols), image) + bits(symbols) / pixels,

with the VQ levels, the predicted means and scales, and the synthesis fixed. Rounding is
relaxed by stochastic Gumbel annealing (SGA: Yang, Bamler, Mandt, "Improving Inference for
Neural Image Compression", NeurIPS 2020): each symbol is a soft random choice between its
floor and its ceiling that hardens as the temperature falls, and both terms see that choice.
On the validation photos SGA gained 0.3 to 0.5 dB more than straight-through rounding with a
noisy rate, whose refinement lost at low rates.

Only the encoder changes: the file format and every decoder stay as they are. An effort
(0-3, as cjxl's `-e` and cwebp's `-m`) sets the iterations; 0, the default, skips refinement.
Large images are refined in tiles, each inside a frame of fixed neighbours wide enough that
every pixel its symbols reach is computed exactly.
"""

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from hvqcodec import entropy_models
from hvqcodec.families.hyper.integer import LOG_SCALE_MIN, LOG_SCALE_STEP, ONE
from hvqcodec.families.hyper.model import STRIDES, SYNTHESIS_REACH
from hvqcodec.family import check_effort
from hvqcodec.precision import bf16_pays

# Iterations per effort. Measured on 3 validation photos with hvq-v3.1, mean PSNR gain at
# equal bpp at qualities 10/40/60/75/90: 20 iterations +0.19/+0.37/+0.60/+0.74/+0.83 dB,
# 100 iterations +0.29/+0.55/+0.87/+1.07/+1.21 dB.
EFFORTS = (0, 20, 50, 100)  # one per effort 0..MAX_EFFORT
FINE_STRIDE = STRIDES["fine"]  # pixels per fine-latent position
TILE = 64  # fine-latent positions refined at a time (1024 pixels: a Kodak image is one tile)
LR = 0.1  # Adam's, in quantization steps
TEMPERATURE = 0.5  # SGA's at the start, falling linearly to TEMPERATURE_MIN
TEMPERATURE_MIN = 0.01
SEED = 0  # SGA's draws: the same image and settings give the same file


def iterations(effort: int) -> int:
    """The refinement iterations of an effort, with a clear error outside 0..3."""
    return EFFORTS[check_effort(effort)]


def lambda_at(lambdas: torch.Tensor, position: float) -> float:
    """The rate-distortion weight (times 255^2) at `position` on the scale of trained qualities
    (0..len-1, fractional), geometric between them as they were trained."""
    logs = np.log(lambdas.double().numpy())
    return math.exp(np.interp(position, range(len(logs)), logs)) * 255**2


def table_log_scales(indices: torch.Tensor) -> torch.Tensor:
    """The log of the scale that each range-coder table index stands for."""
    return (LOG_SCALE_MIN + (indices.double() + 0.5) * LOG_SCALE_STEP) / ONE


def sga_round(x: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """SGA's relaxed rounding: floor(x) plus a Gumbel-softmax weight of the ceiling, whose
    logits favour the nearer integer the more, the lower the temperature."""
    floor = torch.floor(x)
    frac = (x - floor).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(frac), -torch.atanh(1 - frac)], -1) / temperature
    uniform = torch.rand(logits.shape, generator=generator).clamp_(1e-10, 1 - 1e-10)
    weights = torch.softmax(logits - torch.log(-torch.log(uniform)), -1)
    return floor + weights[..., 1]


def descend(
    loss_of: Callable[[torch.Tensor, float], torch.Tensor],
    start: torch.Tensor,
    iterations: int,
    lr: float = LR,
) -> torch.Tensor:
    """Adam on `loss_of(x, progress)` from `start`, progress running from 0 towards 1; the
    learning rate decays linearly to a 25th so that the last steps settle."""
    x = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for i in range(iterations):
        for group in opt.param_groups:
            group["lr"] = lr * (1 - i / iterations) + lr / 25
        loss = loss_of(x, i / iterations)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return x.detach()


def refine(
    synthesis: torch.nn.Module,
    image: torch.Tensor,
    centred: torch.Tensor,
    mean_g: torch.Tensor,
    inverse: torch.Tensor,
    log_scale: torch.Tensor,
    lam: float,
    iterations: int,
    *,
    tile: int = TILE,
    reach: int = SYNTHESIS_REACH,
) -> torch.Tensor:
    """Refined symbols (C, h, w), unrounded, from the analysis' `centred` ones, for `image`
    (3, H, W) in [0, 1] with H <= 16h and W <= 16w (the latent may cover padding).

    `mean_g` (C, h, w) and `inverse` (C, 1, 1) map symbols back to the synthesis' latent, as
    the decoder does; `log_scale` (C, h, w) are the coder's scales; `lam` weighs the MSE
    against bits per pixel; `reach`: how far a symbol's pixels reach, in positions. Tiles are
    refined in turn, each among its refined neighbours."""
    generator = torch.Generator().manual_seed(SEED)
    bf16 = bf16_pays(torch.device("cpu"))
    out = centred.detach().float().clone()
    mean_g, inverse, log_scale = mean_g.float(), inverse.float(), log_scale.float()
    height, width = out.shape[-2:]
    stride = FINE_STRIDE
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            # The tile's symbols reach the pixels of the tile and `reach` positions around it (the
            # window); those pixels read symbols up to `reach` positions further out (the frame),
            # which stay fixed.
            wy0, wx0 = max(0, y0 - reach), max(0, x0 - reach)
            wy1, wx1 = min(height, y1 + reach), min(width, x1 + reach)
            fy0, fx0 = max(0, wy0 - reach), max(0, wx0 - reach)
            fy1, fx1 = min(height, wy1 + reach), min(width, wx1 + reach)
            frame = out[:, fy0:fy1, fx0:fx1]
            frame_mean = mean_g[:, fy0:fy1, fx0:fx1]
            inner = (slice(None), slice(y0 - fy0, y1 - fy0), slice(x0 - fx0, x1 - fx0))
            target = image[None, :, wy0 * stride : wy1 * stride, wx0 * stride : wx1 * stride]
            top, left = (wy0 - fy0) * stride, (wx0 - fx0) * stride
            h, w = target.shape[-2:]
            scale = log_scale[:, y0:y1, x0:x1]

            def loss_of(symbols, progress, frame=frame, frame_mean=frame_mean, inner=inner,
                        target=target, top=top, left=left, h=h, w=w, scale=scale):  # fmt: skip
                temperature = max(TEMPERATURE * (1 - progress), TEMPERATURE_MIN)
                soft = sga_round(symbols, temperature, generator)
                latent = frame.clone()
                latent[inner] = soft
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    pixels = (synthesis(((latent + frame_mean) * inverse)[None]) + 1) / 2
                distortion = F.mse_loss(pixels[..., top : top + h, left : left + w].float(), target)
                bits = entropy_models.bits(soft, scale).sum()
                return lam * distortion + bits / (h * w)

            out[:, y0:y1, x0:x1] = descend(loss_of, out[:, y0:y1, x0:x1], iterations)
    return out
