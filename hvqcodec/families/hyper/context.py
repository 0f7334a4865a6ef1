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

With `checkerboard`, each group is coded in two passes, after He et al., "Checkerboard Context
Model for Efficient Learned Image Compression", CVPR 2021, as inside ELIC's groups: first its
anchors (positions whose row plus column is even), then the rest, whose network also sees the
group's decoded anchors, four of them beside each position. The anchors' pass feeds zeros in
their place (group 0's anchors have no context at all); so the same network serves both
passes, and growing a channel-only context into a checkerboard one, with zero weights on the
anchors' input, leaves it computing what it did.
"""

from collections.abc import Callable

import torch
from torch import nn


def anchors(height: int, width: int, device=None) -> torch.Tensor:
    """(1, 1, height, width) float mask of the checkerboard's anchors: row + column even."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None]
    return ((rows + cols) % 2 == 0).float()[None, None]


def network_inputs(
    k: int,
    decoded: torch.Tensor | None,
    mean: torch.Tensor,
    log_scale: torch.Tensor,
    anchors: torch.Tensor | None,
    checkerboard: bool,
) -> list[torch.Tensor] | None:
    """Group k's network inputs, in order (channels first): the decoded latent of the groups
    before it, with a checkerboard the group's decoded anchors (zeros in the anchors' pass),
    its mean, its log-scale. None where no network runs: group 0, but in a checkerboard's
    second pass."""
    if k == 0 and anchors is None:
        return None
    own = [torch.zeros_like(mean) if anchors is None else anchors] if checkerboard else []
    return [*([decoded] if k else []), *own, mean, log_scale]


def _group_net(inputs: int, channels: int, size: int) -> nn.Sequential:
    last = nn.Conv2d(channels, 2 * size, 1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Conv2d(inputs, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        last,
    )


class ChannelContext(nn.Module):
    def __init__(
        self, groups: tuple[int, ...], channels: int, *, checkerboard: bool = False
    ) -> None:
        """`groups`: the fine latent's channels in coding order, split into groups of these
        sizes; `channels`: the width of each group's network; `checkerboard`: each group in
        two spatial passes. Network inputs, in order: the decoded latent of the groups before
        (with `checkerboard`, then the group's own decoded anchors), mean, log-scale."""
        super().__init__()
        self.groups = tuple(groups)
        self.checkerboard = checkerboard
        first = 0 if checkerboard else 1  # without a checkerboard group 0 has no network
        self.nets = nn.ModuleList(
            _group_net(self.inputs(k), channels, size)
            for k, size in enumerate(self.groups)
            if k >= first
        )

    def inputs(self, k: int) -> int:
        """Input channels of group k's network."""
        return sum(self.groups[:k]) + (3 if self.checkerboard else 2) * self.groups[k]

    def net(self, k: int) -> nn.Sequential | None:
        """Group k's network, if it has one."""
        k -= 0 if self.checkerboard else 1
        return self.nets[k] if k >= 0 else None

    def slices(self) -> list[slice]:
        """Each group's channels of the fine latent."""
        starts = [sum(self.groups[:k]) for k in range(len(self.groups) + 1)]
        return [slice(a, b) for a, b in zip(starts, starts[1:])]

    def refine(
        self,
        k: int,
        decoded: torch.Tensor | None,
        mean: torch.Tensor,
        log_scale: torch.Tensor,
        anchors: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Group k's mean and log-scale (B, size, h, w), given the decoded latent of groups
        0..k-1 (B, channels before k, h, w; None for group 0). With a checkerboard, `anchors`
        is the group's decoded latent at its anchors and zero elsewhere (B, size, h, w): the
        pass of the other positions; None: the anchors' pass."""
        inputs = network_inputs(k, decoded, mean, log_scale, anchors, self.checkerboard)
        if inputs is None:
            return mean, log_scale
        delta = self.net(k)(torch.cat(inputs, 1))
        size = self.groups[k]
        return mean + delta[:, :size], log_scale + delta[:, size:]

    def group(
        self,
        k: int,
        decoded: torch.Tensor | None,
        mean: torch.Tensor,
        log_scale: torch.Tensor,
        decode: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Group k's mean and log-scale at every position: one pass, or with a checkerboard
        the anchors' and then the other positions', which see `decode(anchors' mean)`, the
        group's decoded latent, at the anchors."""
        m, s = self.refine(k, decoded, mean, log_scale)
        if not self.checkerboard:
            return m, s
        a = anchors(*mean.shape[2:], device=mean.device)
        m2, s2 = self.refine(k, decoded, mean, log_scale, decode(m) * a)
        return torch.lerp(m2, m, a), torch.lerp(s2, s, a)
