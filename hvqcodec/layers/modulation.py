"""Rate modulation: a transform whose features depend on the rate it decodes at.

Choi, El-Khamy, Lee, "Variable Rate Deep Image Compression With a Conditional Autoencoder",
ICCV 2019 (conditional convolution: each output channel scaled and shifted by vectors of the
rate-distortion trade-off), and Yang, Bai, Herranz, "Variable Rate Deep Image Compression with
Modulated Autoencoder", IEEE SPL 2020. With gain units alone (`hvqcodec.layers.gain`) one
synthesis serves every rate, and its shared weights follow the rate points whose losses are
largest; a scale and a shift per channel and rate point let it decode coarse and fine latents
differently at a negligible cost per pixel.

Each trained rate point has a row of log-scales and a row of shifts, both zero at the start
(the identity), interpolated between rate points as the gains are. The modulation sits right
after a convolution, so that at one rate it folds into that convolution's weights and bias
(`fold`): a decoder runs a plain convolution.
"""

import copy

import torch
from torch import nn

from hvqcodec.layers.gain import row_at_quality, rows_at


class RateModulation(nn.Module):
    def __init__(self, points: int, channels: int) -> None:
        """`points` trained rate points, `channels` output channels of the modulated layer."""
        super().__init__()
        self.log_scales = nn.Parameter(torch.zeros(points, channels))
        self.shifts = nn.Parameter(torch.zeros(points, channels))

    def forward(self, x: torch.Tensor, rate_index: torch.Tensor) -> torch.Tensor:
        """Features (B, C, H, W) at a fractional rate index (B,) each."""
        scale = rows_at(self.log_scales, rate_index).exp()
        return x * scale.to(x.dtype) + rows_at(self.shifts, rate_index).to(x.dtype)

    @torch.no_grad()
    def fold(self, conv: nn.Conv2d | nn.ConvTranspose2d, hundredths: int, steps: int) -> nn.Module:
        """A copy of `conv` that computes this modulation of its output at quality
        `hundredths` of 0..`steps` (which spans the rate points evenly): each output channel's
        weights and bias times its scale, plus its shift. The rows are interpolated in float64
        from the stored values, elementwise, so the same on every machine."""
        scale = row_at_quality(self.log_scales, hundredths, steps).exp()
        shift = row_at_quality(self.shifts, hundredths, steps)
        out = copy.deepcopy(conv)
        # A convolution's output channels are the weight's first dimension, a transposed one's
        # its second.
        dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        shape = [1] * out.weight.dim()
        shape[dim] = -1
        out.weight.copy_((out.weight.double() * scale.view(shape)).float())
        out.bias.copy_((out.bias.double() * scale + shift).float())
        return out
