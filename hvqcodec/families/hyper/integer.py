"""The fine level's entropy model as the range coder sees it: integer-exact scale indices.

A decoder must pick, for every fine symbol, the very probability table the encoder picked.
The table is chosen by the symbol's predicted log-scale, which the hyper synthesis computes
from the decoded VQ levels. So that every machine and thread count agrees, that network runs
as an integer network (`hvqcodec.integer_layers`, after Balle, Johnston, Minnen,
"Integer Networks for Data Compression with Latent-Variable Models", ICLR 2019), and the
gain of the quality is added to the log-scale in integers:

    index = clamp(floor((log_scale + log_gain - LOG_SCALE_MIN) / LOG_SCALE_STEP), 0, T - 1)

with every term an integer at scale 2**ACT_BITS. The tables themselves (discretized
Gaussians, one per index) are computed once when a model is exported and stored in its weights
file as integers, so no machine recomputes an erfc.

The predicted mean only centres the symbols (`round(y * gain - mean * gain)`) and returns in
the decoder's float reconstruction, so it need not be bit-exact across machines; it is computed
from the same integer outputs, elementwise in float64, so it is exact across thread counts.
"""

import math

import numpy as np
import torch

from hvqcodec.entropy_models import SCALE_MAX, SCALE_MIN
from hvqcodec.families.hyper.transforms import HyperSynthesis
from hvqcodec.integer_layers import (
    ACT_BITS,
    PROB_BITS,
    IntegerConv3x3,
    IntegerLinear,
    IntegerResBlock,
    clamp_act,
    integer_activation,
)
from hvqcodec.layers.gain import row_at_quality
from hvqcodec.rate_control import FULL

TABLES = 64  # scale indices
TAIL = 8.0  # a table spans +-TAIL scales (at least +-2); symbols beyond are clamped
ONE = 2**ACT_BITS
LOG_SCALE_MIN = round(math.log(SCALE_MIN) * ONE)
LOG_SCALE_STEP = round((math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (TABLES - 1) * ONE)


def table_scale(index: int) -> float:
    """The scale of table `index`: the geometric centre of the log-scales it covers."""
    return math.exp((LOG_SCALE_MIN + (index + 0.5) * LOG_SCALE_STEP) / ONE)


def gaussian_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """(TABLES, width) int32 probability tables of symbols -R..R, zero-padded, and each R.
    Each row's entries are >= 1 and sum to at most 2**PROB_BITS, like the priors' tables."""
    radii = [max(2, math.ceil(TAIL * table_scale(i))) for i in range(TABLES)]
    width = 2 * max(radii) + 1
    out = torch.zeros(TABLES, width, dtype=torch.int32)
    for i, r in enumerate(radii):
        s = torch.arange(-r, r + 1, dtype=torch.float64) / table_scale(i)
        half = 0.5 / table_scale(i)
        cdf = lambda v: 0.5 * torch.erfc(-v / math.sqrt(2))  # noqa: E731
        p = cdf(s + half) - cdf(s - half)
        k = 2 * r + 1
        q = torch.floor(p * ((1 << PROB_BITS) - k) / p.sum()) + 1
        out[i, :k] = q.to(torch.int32)
    return out, torch.tensor(radii, dtype=torch.int32)


def _shuffle(x: torch.Tensor) -> torch.Tensor:
    """PixelShuffle(2) on a channels-last (H, W, 4C) map -> (2H, 2W, C)."""
    h, w, c4 = x.shape
    c = c4 // 4
    return x.reshape(h, w, c, 2, 2).permute(0, 3, 1, 4, 2).reshape(2 * h, 2 * w, c)


class IntegerHyperSynthesis:
    """Integer-exact twin of a `HyperSynthesis`: VQ codes -> integer mean and log-scale."""

    def __init__(self, net: HyperSynthesis, codebooks: dict[str, torch.Tensor]):
        self.latent = net.latent
        self.codebooks = {k: integer_activation(v) for k, v in codebooks.items()}
        self.top_up = IntegerConv3x3(net.top_up[0])
        self.at32_in = IntegerConv3x3(net.at32[0])
        self.at32_block = IntegerResBlock(net.at32[1])
        self.to16 = IntegerConv3x3(net.to16[0])
        self.at16_conv = IntegerConv3x3(net.at16[1])
        self.at16_out = IntegerLinear(net.at16[3].weight, net.at16[3].bias)

    def layers(self) -> list[IntegerLinear]:
        convs = [self.top_up, self.at32_in, self.at32_block.conv1, self.at32_block.conv2,
                 self.to16, self.at16_conv]  # fmt: skip
        return [c.linear for c in convs] + [self.at16_out]

    def __call__(self, top: np.ndarray, middle: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Code maps (h, w) and (2h, 2w) -> integer mean and log-scale, each (latent, 4h, 4w),
        at scale 2**ACT_BITS, as float64."""
        t = self.codebooks["top"][torch.from_numpy(np.asarray(top))]
        m = self.codebooks["middle"][torch.from_numpy(np.asarray(middle))]
        x = _shuffle(self.top_up(t))
        x = self.at32_in(torch.cat([x, m], 2))
        x = self.at32_block(x).clamp_(min=0)
        x = _shuffle(self.to16(x)).clamp_(min=0)
        x = self.at16_conv(x).clamp_(min=0)
        h, w, c = x.shape
        out = clamp_act(self.at16_out(x.reshape(-1, c))).reshape(h, w, -1).permute(2, 0, 1)
        return out[: self.latent], out[self.latent :]


def integer_log_gain(log_gains: torch.Tensor, hundredths: int, steps: int = FULL) -> torch.Tensor:
    """Per-channel log-gain at quality `hundredths` of 0..steps (the header's field), which
    spans the trained rate points evenly, as integers at scale 2**ACT_BITS. Float64
    arithmetic on the stored weights, elementwise: the same on every machine."""
    return torch.round(row_at_quality(log_gains, hundredths, steps) * ONE)


def scale_indices(log_scale: torch.Tensor, log_gain: torch.Tensor) -> torch.Tensor:
    """Integer log-scales (C, H, W) plus per-channel integer log-gains (C,) -> table indices."""
    total = log_scale.long() + log_gain.long()[:, None, None]
    return torch.div(total - LOG_SCALE_MIN, LOG_SCALE_STEP, rounding_mode="floor").clamp_(
        0, TABLES - 1
    )
