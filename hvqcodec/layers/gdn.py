"""Generalized divisive normalization, the nonlinearity of the learned transform codecs.

- GDN / IGDN: y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2), and its inverse x_i * sqrt(...)
  in the synthesis transform. Balle, Laparra, Simoncelli, "Density Modeling of Images Using a
  Generalized Normalization Transformation", ICLR 2016.
- GDN1: y_i = x_i / (beta_i + sum_j gamma_ij |x_j|), no square root. Johnston, Eban, Gordon,
  Balle, "Computationally Efficient Neural Image Compression", 2019.

The normalisation pool is computed in float32 even under bf16 autocast: squares and sums of
bf16 activations lose the precision the division needs.
"""

import torch
import torch.nn.functional as F
from torch import nn

# Lower bound of beta, and of the reparameterised weights, as in Balle's reference code.
_BETA_MIN = 1e-6
_PEDESTAL = 2.0**-36


class GDN(nn.Module):
    def __init__(
        self, channels: int, *, inverse: bool = False, simplified: bool = False,
        gamma_init: float = 0.1,
    ) -> None:  # fmt: skip
        """`inverse`: IGDN (synthesis). `simplified`: GDN1, |x| and no square root."""
        super().__init__()
        self.inverse, self.simplified = inverse, simplified
        # beta and gamma are stored as sqrt(value + pedestal) so that they stay non-negative
        # under gradient descent (Balle 2016, section 3).
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + _PEDESTAL))
        gamma = gamma_init * torch.eye(channels)
        self.gamma = nn.Parameter(torch.sqrt(gamma + _PEDESTAL))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            beta = self.beta.float().pow(2).sub(_PEDESTAL).clamp(min=_BETA_MIN)
            gamma = self.gamma.float().pow(2).sub(_PEDESTAL).clamp(min=0)
            c = gamma.shape[0]
            pool = F.conv2d(x.abs() if self.simplified else x * x, gamma.view(c, c, 1, 1), beta)
            norm = pool if self.simplified else torch.sqrt(pool)
            y = x * norm if self.inverse else x / norm
        return y.to(dtype)
