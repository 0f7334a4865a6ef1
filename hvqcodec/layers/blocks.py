"""Residual block (He et al., "Deep Residual Learning", CVPR 2016), optionally followed by CBAM."""

import torch
from torch import nn

from hvqcodec.layers.cbam import CBAM


class ResBlock(nn.Module):
    def __init__(self, channels: int, *, attention: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.attention = CBAM(channels) if attention else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x))
