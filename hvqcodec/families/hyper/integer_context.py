"""Integer-exact twin of the fine level's context model (`context.ChannelContext`).

With a context model, the tables of a channel group's symbols depend on the groups decoded
before it, through their decoded latent. So, unlike hvq-v3.1's, the decoded latent itself must
be the same integers on every machine, not only the hyper synthesis' outputs:

- the gains of a quality are `round(2**GAIN_BITS * exp(log_gain))`, computed with `decimal`
  (correctly rounded everywhere) from the integer log-gains of `integer.integer_log_gain`;
- a symbol s of mean m decodes, as the float model computes `(s + m * gain) * inverse`, to
  `round((s * ONE * inverse_q + m_int * product_q) / 2**GAIN_BITS)` in int64, clamped to the
  activations' range (`ExactGains`), where `product_q` is the rounded exp of the summed
  log-gains: the integer at scale 2**ACT_BITS that the context networks and the synthesis then
  take;
- each group's network runs as integer layers (`hvqcodec.integer_layers`) on the decoded latent
  of the groups before it and its own integer mean and log-scale, in tiles with a halo that
  covers its two 3x3 convolutions, which integer arithmetic makes exact whatever the tiling.
"""

import functools
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import torch

from hvqcodec.families.hyper.context import ChannelContext, network_inputs
from hvqcodec.families.hyper.integer import ONE
from hvqcodec.integer_layers import IntegerConv3x3, IntegerLinear, check_layers, clamp_act
from hvqcodec.layers.tiling import tile_grid

GAIN_BITS = 16  # fractional bits of the exact gains
INT64_SAFE = 2**62  # every product and sum of `ExactGains.latent` stays below this
REACH = 2  # positions: a group network's two 3x3 convolutions
TILE = 128  # positions of the fine latent refined at a time
CHANNELS = 16  # channels of the exact latent computed at a time


@functools.cache
def _exp(value: int, bits: int) -> int:
    with localcontext() as ctx:
        ctx.prec = 50
        exact = Decimal(2) ** bits * (Decimal(value) / ONE).exp()
        return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


def exact_exp(log_values: torch.Tensor, bits: int = GAIN_BITS) -> torch.Tensor:
    """round(2**bits * exp(v / ONE)) for integer log-values v at scale ONE, as int64: the same
    integers on every machine."""
    return torch.tensor([_exp(int(v), bits) for v in log_values.tolist()], dtype=torch.int64)


class ExactGains:
    """A quality's gains as exact integers, and the decoded latent they give."""

    def __init__(self, log_gain: torch.Tensor, log_inverse: torch.Tensor) -> None:
        """Integer log-gain and log-inverse per channel, at scale ONE (`integer_log_gain`)."""
        self.inverse = exact_exp(log_inverse)[:, None, None]
        self.product = exact_exp(log_gain + log_inverse)[:, None, None]

    def latent(
        self, symbols: torch.Tensor, mean: torch.Tensor, part: slice, out: torch.Tensor
    ) -> torch.Tensor:
        """Write into `out` (C, H, W) int32 the decoded latent at scale ONE of channels `part`,
        clamped to the activations' range: integer `symbols` and integer means (scale ONE) of
        those channels. int64 only a few channels at a time."""
        inverse, product = self.inverse[part], self.product[part]
        bound = 2048 * ONE * int(inverse.max()) + ONE * 2**10 * int(product.max())
        if bound >= INT64_SAFE:
            raise OverflowError("the exact decoded latent could pass int64")
        for c in range(0, len(out), CHANNELS):
            c = slice(c, c + CHANNELS)
            acc = symbols[c].long() * (ONE * inverse[c]) + mean[c].long() * product[c]
            acc = torch.div(acc + 2 ** (GAIN_BITS - 1), 2**GAIN_BITS, rounding_mode="floor")
            # Only a crafted file's symbols reach the clamp; it keeps the context networks'
            # sums exact in float64 and the latent in int32.
            out[c] = clamp_act(acc)
        return out


class IntegerChannelContext:
    """Integer twin of a `ChannelContext`: group k's integer mean and log-scale refined from the
    exact decoded latent of groups 0..k-1 (and, with a checkerboard, of its own anchors)."""

    def __init__(self, context: ChannelContext) -> None:
        self.groups = context.groups
        self.slices = context.slices()
        self.checkerboard = context.checkerboard
        self.nets = {}
        for k in range(len(self.groups)):
            if (net := context.net(k)) is not None:
                linear = IntegerLinear(net[4].weight, net[4].bias)
                self.nets[k] = (IntegerConv3x3(net[0]), IntegerConv3x3(net[2]), linear)
        check_layers("context model", self.layers())

    def layers(self) -> list[IntegerLinear]:
        return [layer.linear if isinstance(layer, IntegerConv3x3) else layer
                for net in self.nets.values() for layer in net]  # fmt: skip

    def _refine(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Group k's network on a channels-last window (h, w, C) of its inputs, integer-valued
        float64: the corrected mean and log-scale (h, w, 2 * size)."""
        conv1, conv2, out = self.nets[k]
        h = conv2(conv1(x).clamp_(min=0)).clamp_(min=0)
        delta = out(h.reshape(-1, h.shape[-1])).reshape(*h.shape[:2], -1)
        size = self.groups[k]
        return clamp_act(x[..., -2 * size :] + delta)  # mean, log-scale: the input's last

    def refine(
        self,
        k: int,
        decoded: torch.Tensor | None,
        mean: torch.Tensor,
        log_scale: torch.Tensor,
        anchors: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Group k's integer mean and log-scale (size, H, W) int32, given the exact decoded
        latent of groups 0..k-1 (channels before k, H, W; None for group 0) and the group's own
        integer mean and log-scale from the hyper synthesis, all at scale ONE. With a
        checkerboard, `anchors` is the group's exact decoded latent at its anchors and 0
        elsewhere: the other positions' pass; None: the anchors' pass (`ChannelContext.refine`)."""
        inputs = network_inputs(k, decoded, mean, log_scale, anchors, self.checkerboard)
        if inputs is None:
            return mean, log_scale
        size = self.groups[k]
        refined = torch.empty(2 * size, *mean.shape[1:], dtype=torch.int32)
        for t in tile_grid(*mean.shape[1:], TILE, REACH):
            window = (slice(None), slice(t.top, t.bottom), slice(t.left, t.right))
            x = torch.cat([i[window] for i in inputs]).permute(1, 2, 0)
            part = t.crop(self._refine(k, x.double()).permute(2, 0, 1))
            refined[:, t.y0 : t.y1, t.x0 : t.x1] = part.to(torch.int32)
        return refined[:size], refined[size:]
