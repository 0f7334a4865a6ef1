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

    def _log_at(self, table: torch.Tensor, rate_index: torch.Tensor) -> torch.Tensor:
        """Rows of `table` at fractional `rate_index` (B,), linearly interpolated ->
        (B, C, 1, 1)."""
        index = rate_index.to(table.dtype).clamp(0, self.points - 1)
        lo = index.floor().long().clamp(max=max(self.points - 2, 0))
        hi = (lo + 1).clamp(max=self.points - 1)
        t = (index - lo.to(index.dtype))[:, None]
        return ((1 - t) * table[lo] + t * table[hi])[:, :, None, None]

    def log_gain(self, rate_index: torch.Tensor) -> torch.Tensor:
        return self._log_at(self.log_gains, rate_index)

    def gain(self, rate_index: torch.Tensor) -> torch.Tensor:
        return self.log_gain(rate_index).exp()

    def inverse(self, rate_index: torch.Tensor) -> torch.Tensor:
        return self._log_at(self.log_inverses, rate_index).exp()
