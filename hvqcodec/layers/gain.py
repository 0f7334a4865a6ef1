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
    def __init__(self, levels: int, channels: int, *, low: float = 0.5, high: float = 2.0):
        """Gains start geometric from `low` (level 0) to `high`; inverse gains at 1 / gain."""
        super().__init__()
        start = torch.linspace(torch.tensor(low).log(), torch.tensor(high).log(), levels)
        # Stored as logs: gains stay positive, and interpolation is linear in this domain.
        self.log_gains = nn.Parameter(start[:, None].repeat(1, channels))
        self.log_inverses = nn.Parameter(-start[:, None].repeat(1, channels))

    @property
    def levels(self) -> int:
        return self.log_gains.shape[0]

    def _log_at(self, table: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Rows of `table` at fractional `level` (B,), linearly interpolated -> (B, C, 1, 1)."""
        level = level.to(table.dtype).clamp(0, self.levels - 1)
        lo = level.floor().long().clamp(max=max(self.levels - 2, 0))
        hi = (lo + 1).clamp(max=self.levels - 1)
        t = (level - lo.to(level.dtype))[:, None]
        return ((1 - t) * table[lo] + t * table[hi])[:, :, None, None]

    def log_gain(self, level: torch.Tensor) -> torch.Tensor:
        return self._log_at(self.log_gains, level)

    def gain(self, level: torch.Tensor) -> torch.Tensor:
        return self.log_gain(level).exp()

    def inverse(self, level: torch.Tensor) -> torch.Tensor:
        return self._log_at(self.log_inverses, level).exp()
