"""The priors as the range coder sees them: integer-exact probabilities on a wavefront.

A range decoder needs the encoder's probabilities bit for bit. Float networks do not give that
across machines: BLAS kernels, SIMD widths and thread counts change the order of summation, and
an ulp of difference is enough to derail decoding (CompressAI #279, #309). After Balle, Johnston,
Minnen, "Integer Networks for Data Compression with Latent-Variable Models" (ICLR 2019), coding
evaluates the trained float priors (`hvqcodec.priors`) through an integer version of them:

- Weights become integers: `w_int = round(w * 2**s)` with one power-of-two shift `s` per tensor,
  chosen so that `|w_int| <= WEIGHT_MAX`. Biases are integers at the scale of their outputs.
- Activations are integers at scale `2**ACT_BITS`, clamped to `|a| <= ACT_MAX`.
- Each layer accumulates `sum(w_int * a_int) + b_int`. Every term and every partial sum is an
  integer of magnitude at most `fan_in * WEIGHT_MAX * ACT_MAX + |b_int| < 2**53`
  (`check_bounds` verifies this when a model is built), so float64 represents every partial sum
  exactly: the result is the same whatever order, blocking or threading BLAS uses. Layers are
  computed as matrix products (a 3x3 convolution as nine of them), so no convolution
  algorithm that rounds (Winograd, FFT) is ever involved.
- Requantizing divides by a power of two and rounds half up: exact in float64.
- Logits are integers at scale `2**LOGIT_BITS`. The softmax uses a table of
  `round(2**EXP_BITS * exp(-d / 2**LOGIT_BITS))` computed with `decimal` (correctly rounded on
  every platform), and normalization is int64 division.

The wavefront (`wavefront_schedule`) decodes every position whose causal neighbourhood is known
in one batched step; encoder and decoder both run `FixedLevelPrior.code`, and because every
number is an exact integer the batching could differ without changing a bit (a test checks it).
"""

import functools
import math
from collections.abc import Callable
from decimal import Decimal, localcontext

import numpy as np
import torch
import torch.nn.functional as F

from hvqcodec.errors import HvqError
from hvqcodec.layers import ResBlock
from hvqcodec.priors import HierarchicalPrior, LevelPrior

ACT_BITS = 14  # fractional bits of activations
ACT_MAX = 2**24  # activations are clamped to +-ACT_MAX (+-1024 in real units)
WEIGHT_MAX = 2**15  # largest integer weight magnitude
LOGIT_BITS = 8  # fractional bits of logits
EXP_BITS = 30  # the softmax table holds 2**30 * exp(-x)
PROB_BITS = 24  # integer probability tables sum to at most 2**PROB_BITS, each entry >= 1
EXACT = 2.0**53  # float64 holds every integer below this exactly

# Called once per wavefront step with the flat positions of the step and their integer
# probability tables (n, K); returns the n symbols at those positions.
StepFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def wavefront_schedule(height: int, width: int, kernel: int) -> list[np.ndarray]:
    """Flat positions grouped into steps; every position's causal neighbours are in earlier steps.

    Position (y, x) needs (y - 1, x + r), so t = (r + 1) * y + x orders them.
    """
    r = kernel // 2
    y, x = np.divmod(np.arange(height * width), width)
    t = (r + 1) * y + x
    order = np.argsort(t, kind="stable")
    bounds = np.flatnonzero(np.diff(t[order])) + 1
    return np.split(order, bounds)


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


# Positions of a level's map whose conditioning is computed at once: bounds the activations of
# the 3x3 convolutions (a few float64 maps of this many positions) on very large images. A
# Kodak image fits one band; larger maps go in bands of rows, each with the halo of rows its
# convolutions reach, so every band's output equals the whole-map computation exactly.
BAND_POSITIONS = 2**15


class FixedLevelPrior:
    """Integer-exact twin of one `LevelPrior`, used for coding."""

    def __init__(self, prior: LevelPrior):
        self.num_codes, self.kernel, self.offsets = prior.num_codes, prior.kernel, prior.offsets
        self.embed = integer_activation(prior.embed.weight)
        self.upper_scales = prior.upper_scales
        self.upper_embeds = [integer_activation(e.weight) for e in prior.upper_embeds]
        if self.upper_embeds:
            self.cond_in = IntegerConv3x3(prior.cond[0])
            self.cond_blocks = [IntegerResBlock(b) for b in prior.cond[1:]]
        else:
            self.cond_bias = integer_activation(prior.cond_bias)
        self.causal = IntegerLinear(prior.causal.weight, prior.causal.bias)
        self.head1 = IntegerLinear(prior.head1.weight, prior.head1.bias)
        self.head2 = IntegerLinear(prior.head2.weight, prior.head2.bias, out_bits=LOGIT_BITS)

    def layers(self) -> list[IntegerLinear]:
        convs = []
        if self.upper_embeds:
            convs = [self.cond_in] + [c for b in self.cond_blocks for c in (b.conv1, b.conv2)]
        return [c.linear for c in convs] + [self.causal, self.head1, self.head2]

    def conditioning(self, upper: list[np.ndarray], shape: tuple[int, int]) -> torch.Tensor:
        """Coarser code maps [(h, w)] -> integer features (H * W, hidden) for this level."""
        height, width = shape
        if not self.upper_embeds:
            return self.cond_bias.expand(height * width, -1)
        halo = 1 + 2 * len(self.cond_blocks)  # rows each side that reach a band's output
        rows = max(2 * halo, BAND_POSITIONS // width)
        out = []
        for y0 in range(0, height, rows):
            y1 = min(y0 + rows, height)
            lo, hi = max(0, y0 - halo), min(height, y1 + halo)
            feats = []
            for emb, codes, s in zip(self.upper_embeds, upper, self.upper_scales):
                part = torch.from_numpy(np.asarray(codes)[lo // s : (hi + s - 1) // s])
                f = emb[part].repeat_interleave(s, 0).repeat_interleave(s, 1)
                feats.append(f[lo - (lo // s) * s :][: hi - lo])
            x = self.cond_in(torch.cat(feats, 2))
            for block in self.cond_blocks:
                x = block(x)
            # Clamped to 2**24, so float32 holds these integers exactly in half the memory.
            out.append(x[y0 - lo : y1 - lo].reshape(-1, x.shape[2]).float())
        return torch.cat(out)

    def tables(self, context: torch.Tensor, cond: torch.Tensor) -> np.ndarray:
        """Causal context embeddings (n, taps * embed) + conditioning (n, hidden) -> (n, K)
        integer probability tables, each entry >= 1, each row summing to <= 2**PROB_BITS."""
        h = clamp_act(self.causal(context) + cond).clamp_(min=0)
        h = clamp_act(self.head1(h)).clamp_(min=0)
        logits = self.head2(h).long()
        table = exp_table()
        d = (logits.max(dim=1, keepdim=True).values - logits).clamp_(max=len(table) - 1)
        p = table[d]  # the largest logit maps to 2**EXP_BITS, so each row sums to >= 2**30
        q = p * ((1 << PROB_BITS) - self.num_codes) // p.sum(dim=1, keepdim=True) + 1
        return q.numpy()

    def _layout(self, shape: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """A zeroed buffer of code embeddings, padded by r rows above and r columns each side,
        each position's own index in it, and the indices of its causal neighbours."""
        height, width = shape
        r = self.kernel // 2
        padded_w = width + 2 * r
        buf = torch.zeros((height + r) * padded_w, self.embed.shape[1], dtype=torch.float64)
        y, x = np.divmod(np.arange(height * width), width)
        own = (y + r) * padded_w + (x + r)
        ctx = own[:, None] + np.array([dy * padded_w + dx for dy, dx in self.offsets])[None, :]
        return buf, own, ctx

    def code(self, upper: list[np.ndarray], shape: tuple[int, int], step: StepFn) -> np.ndarray:
        """Run the wavefront over one (H, W) map; `step` encodes or decodes each batch of symbols.

        Encoder and decoder both call this; positions not yet decoded stay zero in the buffer,
        which the causal mask never reads.
        """
        buf, own, ctx = self._layout(shape)
        cond = self.conditioning(upper, shape)
        codes = np.zeros(len(own), dtype=np.int64)
        for positions in wavefront_schedule(*shape, self.kernel):
            index = torch.from_numpy(positions)
            patches = buf[torch.from_numpy(ctx[positions])].reshape(len(positions), -1)
            symbols = np.asarray(step(positions, self.tables(patches, cond[index])))
            codes[positions] = symbols
            buf[torch.from_numpy(own[positions])] = self.embed[torch.from_numpy(symbols)]
        return codes.reshape(shape)

    def all_tables(self, codes: np.ndarray, upper: list[np.ndarray]) -> np.ndarray:
        """The tables of every position of a known map in one batch (H * W, K), raster order."""
        buf, own, ctx = self._layout(codes.shape)
        buf[torch.from_numpy(own)] = self.embed[torch.from_numpy(codes.reshape(-1))]
        patches = buf[torch.from_numpy(ctx)].reshape(len(own), -1)
        return self.tables(patches, self.conditioning(upper, codes.shape))


class FixedPrior:
    """Integer-exact twins of a `HierarchicalPrior`'s levels, built once per loaded model."""

    def __init__(self, prior: HierarchicalPrior):
        self.levels = {name: FixedLevelPrior(p) for name, p in prior.levels.items()}
        check_bounds(self)


def check_bounds(prior: FixedPrior) -> None:
    """Refuse a model whose integer layers could leave float64's exact range."""
    for name, level in prior.levels.items():
        check_layers(f"prior level {name}", level.layers())


def check_layers(what: str, layers: list[IntegerLinear]) -> None:
    if any(layer.bound() >= EXACT for layer in layers):
        raise HvqError(f"{what}: a layer's sums could exceed 2**53")
