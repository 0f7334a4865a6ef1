"""Gain units: one set of weights for every rate.

Cui, Wang, Gao, Bai, Yan, Dong, "Asymmetric Gained Deep Image Compression With Continuous Rate
Adaptation", CVPR 2021. The latent is scaled channel by channel by a gain vector before
rounding and by an inverse gain vector after it; a larger gain means finer quantization and a
higher rate. Each trained rate point has its own pair of vectors, and exponential interpolation
between neighbouring pairs gives a continuous quality scale.
"""

import torch
from torch import nn


class GainUnits(nn.Module):
    def __init__(self, points: int, channels: int, *, low: float = 0.5, high: float = 2.0):
        """`points` trained rate points; gains start geometric from `low` (rate index 0) to
        `high`; inverse gains at 1 / gain."""
        super().__init__()
        start = torch.linspace(torch.tensor(low).log(), torch.tensor(high).log(), points)
        # Stored as logs: gains stay positive, and interpolation is linear in this domain.
        self.log_gains = nn.Parameter(start[:, None].repeat(1, channels))
        self.log_inverses = nn.Parameter(-start[:, None].repeat(1, channels))

    @property
    def points(self) -> int:
        return self.log_gains.shape[0]

    def log_gain(self, rate_index: torch.Tensor) -> torch.Tensor:
        return rows_at(self.log_gains, rate_index)

    def gain(self, rate_index: torch.Tensor) -> torch.Tensor:
        return self.log_gain(rate_index).exp()

    def inverse(self, rate_index: torch.Tensor) -> torch.Tensor:
        return rows_at(self.log_inverses, rate_index).exp()


def rows_at(table: torch.Tensor, rate_index: torch.Tensor) -> torch.Tensor:
    """Rows of a per-rate-point `table` (points, C) at fractional `rate_index` (B,), linearly
    interpolated -> (B, C, 1, 1)."""
    points = table.shape[0]
    index = rate_index.to(table.dtype).clamp(0, points - 1)
    lo = index.floor().long().clamp(max=max(points - 2, 0))
    hi = (lo + 1).clamp(max=points - 1)
    t = (index - lo.to(index.dtype))[:, None]
    return ((1 - t) * table[lo] + t * table[hi])[:, :, None, None]


def row_at_quality(table: torch.Tensor, hundredths: int, steps: int) -> torch.Tensor:
    """The row of a per-rate-point `table` (points, C) at quality `hundredths` of 0..`steps`
    (a file's quality field, which spans the rate points evenly), linear between the nearest
    two: float64 arithmetic on the stored values, elementwise, so the same on every machine."""
    table = table.detach().double()
    pos = hundredths * (table.shape[0] - 1)
    lo, rem = divmod(pos, steps)
    hi = min(lo + 1, table.shape[0] - 1)
    return (table[lo] * (steps - rem) + table[hi] * rem) / steps
