"""A context model for the fine level: channel groups decoded one after another, each group's
mean and log-scale refined from the groups decoded before it.

After Minnen and Singh, "Channel-wise Autoregressive Entropy Models for Learned Image
Compression", ICIP 2020 (slices of the latent, each conditioned on those before it), with the
uneven groups of He et al., "ELIC: Efficient Learned Image Compression with Unevenly Grouped
Space-Channel Contextual Adaptive Coding", CVPR 2022 (small groups first, where the context
helps most). Decoding takes one parallel pass per group, never one per symbol.

Each group's network sees the decoded latent of every earlier group and the hyper synthesis'
mean and log-scale of its own, and adds a correction to them. Its last layer starts at zero, so
a model given a context starts out computing exactly what it computed without one. The networks
are built of 3x3 and 1x1 convolutions and ReLU, the layers that integer-exact twins run
(`hvqcodec.integer_layers`), because the scale they give picks the coder's tables.
"""

import torch
from torch import nn


class ChannelContext(nn.Module):
    def __init__(self, groups: tuple[int, ...], channels: int) -> None:
        """`groups`: the fine latent's channels in coding order, split into groups of these
        sizes; `channels`: the width of each group's network."""
        super().__init__()
        self.groups = tuple(groups)
        self.nets = nn.ModuleList()
        for k, size in enumerate(self.groups[1:], start=1):
            last = nn.Conv2d(channels, 2 * size, 1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.nets.append(
                nn.Sequential(
                    nn.Conv2d(sum(self.groups[:k]) + 2 * size, channels, 3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(channels, channels, 3, padding=1),
                    nn.ReLU(inplace=True),
                    last,
                )
            )

    def slices(self) -> list[slice]:
        """Each group's channels of the fine latent."""
        starts = [sum(self.groups[:k]) for k in range(len(self.groups) + 1)]
        return [slice(a, b) for a, b in zip(starts, starts[1:])]

    def refine(
        self, k: int, decoded: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Group k's mean and log-scale (B, size, h, w), given the decoded latent of groups
        0..k-1 (B, channels before k, h, w); group 0 has no context."""
        if k == 0:
            return mean, log_scale
        delta = self.nets[k - 1](torch.cat([decoded, mean, log_scale], 1))
        size = self.groups[k]
        return mean + delta[:, :size], log_scale + delta[:, size:]
