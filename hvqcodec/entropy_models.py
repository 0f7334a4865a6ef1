"""Entropy models of the scalar fine level: a discretized Gaussian per symbol.

Mean-scale conditional model after Balle, Minnen, Singh, Hwang, Johnston, "Variational Image
Compression with a Scale Hyperprior", ICLR 2018, and Minnen, Balle, Toderici, "Joint
Autoregressive and Hierarchical Priors for Learned Image Compression", NeurIPS 2018. Here the
mean and scale of every fine symbol come from the decoded VQ levels
(`hvqcodec.families.hyper.transforms`).

The coded symbol is `round(y - mu)`, and its probability is the Gaussian mass of its unit bin:
P(s) = Phi((s + 1/2) / sigma) - Phi((s - 1/2) / sigma). Scales are predicted as logs and
bounded below by SCALE_MIN, where the narrowest bin table still spends a few bits' worth of
resolution on the outcomes next to zero.

Training uses additive uniform noise as a differentiable proxy for rounding in the rate term
(Balle, Laparra, Simoncelli, "End-to-end Optimized Image Compression", ICLR 2017), and rounds
with a straight-through gradient for the decoder's input ("mixed" quantization: Minnen, Singh,
"Channel-wise Autoregressive Entropy Models for Learned Image Compression", ICIP 2020).
"""

import math

import torch

SCALE_MIN = 0.11
SCALE_MAX = 256.0
LIKELIHOOD_MIN = 1e-9  # floor of a symbol's probability in training (-log2: 30 bits)


def _standard_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def bits(values: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(bin of `values`) under a zero-mean Gaussian of scale exp(log_scale), elementwise.

    `values` are symbols (y - mu, rounded or noisy). The bin mass is computed on the left tail
    (|v| mirrored) where the CDF's differences keep their precision. Always in float32.
    """
    with torch.autocast(values.device.type, enabled=False):
        v = values.float().abs()
        scale = log_scale.float().exp().clamp(SCALE_MIN, SCALE_MAX)
        upper = _standard_cdf((0.5 - v) / scale)
        lower = _standard_cdf((-0.5 - v) / scale)
        return -torch.log2((upper - lower).clamp(min=LIKELIHOOD_MIN))


def noisy(x: torch.Tensor) -> torch.Tensor:
    """x plus uniform noise in [-1/2, 1/2): the rate term's stand-in for rounding."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


def round_through(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def scale_table(count: int = 64) -> torch.Tensor:
    """Log-spaced scales from SCALE_MIN to SCALE_MAX, the scales a coder quantizes to."""
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), count))
