"""Integer-exact layers: networks whose outputs are the same integers on every machine.

A range decoder needs the encoder's probabilities bit for bit. Float networks do not give that
across machines: BLAS kernels, SIMD widths and thread counts change the order of summation, and
an ulp of difference is enough to derail decoding (CompressAI #279, #309). After Balle, Johnston,
Minnen, "Integer Networks for Data Compression with Latent-Variable Models" (ICLR 2019), coding
evaluates each trained float network that decides a probability through an integer twin built
from these layers:

- Weights become integers: `w_int = round(w * 2**s)` with one power-of-two shift `s` per tensor,
  chosen so that `|w_int| <= WEIGHT_MAX`. Biases are integers at the scale of their outputs.
- Activations are integers at scale `2**ACT_BITS`, clamped to `|a| <= ACT_MAX`.
- Each layer accumulates `sum(w_int * a_int) + b_int`. Every term and every partial sum is an
  integer of magnitude at most `fan_in * WEIGHT_MAX * ACT_MAX + |b_int| < 2**53`
  (`check_layers` verifies this when a model is built), so float64 represents every partial sum
  exactly: the result is the same whatever order, blocking or threading BLAS uses. Layers are
  computed as matrix products (a 3x3 convolution as nine of them), so no convolution
  algorithm that rounds (Winograd, FFT) is ever involved.
- Requantizing divides by a power of two and rounds half up: exact in float64.
- Logits are integers at scale `2**LOGIT_BITS`. The softmax uses a table of
  `round(2**EXP_BITS * exp(-d / 2**LOGIT_BITS))` computed with `decimal` (correctly rounded on
  every platform), and normalization is int64 division.
"""

import functools
import math
from decimal import Decimal, localcontext

import torch
import torch.nn.functional as F

from hvqcodec.errors import HvqError
from hvqcodec.layers import ResBlock

ACT_BITS = 14  # fractional bits of activations
ACT_MAX = 2**24  # activations are clamped to +-ACT_MAX (+-1024 in real units)
WEIGHT_MAX = 2**15  # largest integer weight magnitude
LOGIT_BITS = 8  # fractional bits of logits
EXP_BITS = 30  # the softmax table holds 2**30 * exp(-x)
PROB_BITS = 24  # integer probability tables sum to at most 2**PROB_BITS, each entry >= 1
EXACT = 2.0**53  # float64 holds every integer below this exactly


@functools.cache
def exp_table() -> torch.Tensor:
    """round(2**EXP_BITS * exp(-d / 2**LOGIT_BITS)) for d = 0, 1, ... until it reaches 0."""
    values = []
    with localcontext() as ctx:
        ctx.prec = 40
        scale, step = Decimal(2) ** EXP_BITS, Decimal(2) ** -LOGIT_BITS
        d = 0
        while True:
            v = int((scale * (-d * step).exp()).to_integral_value())
            if v == 0:
                break
            values.append(v)
            d += 1
    return torch.tensor(values, dtype=torch.int64)


def requantize(acc: torch.Tensor, shift: int) -> torch.Tensor:
    """round(acc / 2**shift), halves up, exact for integer-valued float64 input."""
    return torch.floor(acc * 2.0**-shift + 0.5)


def clamp_act(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(-ACT_MAX, ACT_MAX)


def integer_activation(x: torch.Tensor) -> torch.Tensor:
    """Float activations (embeddings, biases) -> integers at scale 2**ACT_BITS, as float64."""
    return clamp_act(torch.round(x.double() * 2.0**ACT_BITS))


class IntegerLinear:
    """y = W x + b on integer activations; W has shape (out, fan_in) (a convolution's weight
    flattened, whose taps `IntegerConv3x3` takes from it)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, out_bits: int = ACT_BITS):
        w = weight.detach().double().reshape(weight.shape[0], -1)
        peak = float(w.abs().max())
        # Largest s with peak * 2**s <= WEIGHT_MAX (frexp: peak = m * 2**e, 0.5 <= m < 1).
        self.shift = (int(math.log2(WEIGHT_MAX)) - math.frexp(peak)[1]) if peak else 0
        self.weight_t = torch.round(w * 2.0**self.shift).t().contiguous()
        b = bias.detach().double() if bias is not None else torch.zeros(w.shape[0])
        self.bias = torch.round(b * 2.0 ** (self.shift + ACT_BITS))
        self.out_shift = self.shift + ACT_BITS - out_bits
        self.fan_in = w.shape[1]

    def bound(self) -> float:
        """Largest magnitude any partial sum, or the rounding offset added to it, can reach."""
        rounding = 2.0 ** (self.out_shift - 1)
        return self.fan_in * WEIGHT_MAX * ACT_MAX + float(self.bias.abs().max()) + rounding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, fan_in) integer-valued float64 -> (n, out), requantized (not clamped)."""
        return requantize(torch.addmm(self.bias, x, self.weight_t), self.out_shift)


class IntegerConv3x3:
    """A 3x3, padding 1 convolution on channels-last integer maps, as nine exact matrix products.

    The input is zero-padded and flattened to rows of channels; with a padded row length of
    W + 2, the input of tap (ky, kx) for every output is one contiguous slice of those rows,
    offset by ky * (W + 2) + kx. No im2col buffer is built; the two extra outputs per row that
    this computes are cropped.
    """

    def __init__(self, conv: torch.nn.Conv2d):
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1):
            raise ValueError("IntegerConv3x3 needs a 3x3 convolution with padding 1")
        # Rows of weight_t are (input channel, tap) pairs, channel-major as Conv2d stores them.
        self.linear = IntegerLinear(conv.weight, conv.bias)
        self.taps = [self.linear.weight_t[k::9].contiguous() for k in range(9)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (H, W, C) -> (H, W, C_out), clamped."""
        h, w, c = x.shape
        wp = w + 2
        flat = F.pad(x, (0, 0, 1, 1, 1, 2)).reshape(-1, c)  # one spare row for the last taps
        n = h * wp
        acc = self.linear.bias.expand(n, -1).clone()
        for k, tap in enumerate(self.taps):
            ky, kx = divmod(k, 3)
            acc.addmm_(flat[ky * wp + kx : ky * wp + kx + n], tap)
        out = requantize(acc, self.linear.out_shift).reshape(h, wp, -1)[:, :w]
        return clamp_act(out)


class IntegerResBlock:
    def __init__(self, block: ResBlock):
        if not isinstance(block.attention, torch.nn.Identity):
            raise ValueError("prior residual blocks carry no attention")
        self.conv1, self.conv2 = IntegerConv3x3(block.body[1]), IntegerConv3x3(block.body[3])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return clamp_act(x + self.conv2(self.conv1(x.clamp(min=0)).clamp_(min=0)))


def check_layers(what: str, layers: list[IntegerLinear]) -> None:
    if any(layer.bound() >= EXACT for layer in layers):
        raise HvqError(f"{what}: a layer's sums could exceed 2**53")
