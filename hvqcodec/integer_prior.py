"""The wavefront prior as the range coder sees it: integer-exact probabilities of one level.

`IntegerLevelPrior` is the integer twin (`hvqcodec.integer_layers`) of a trained
`hvqcodec.priors.LevelPrior`. The wavefront (`wavefront_schedule`) decodes every position whose
causal neighbourhood is known in one batched step; encoder and decoder both run
`IntegerLevelPrior.code`, and because every number is an exact integer the batching could differ
without changing a bit (a test checks it).
"""

from collections.abc import Callable

import numpy as np
import torch

from hvqcodec.integer_layers import (
    LOGIT_BITS,
    PROB_BITS,
    IntegerConv3x3,
    IntegerLinear,
    IntegerResBlock,
    clamp_act,
    exp_table,
    integer_activation,
)
from hvqcodec.priors import LevelPrior

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


# Positions of a level's map whose conditioning is computed at once: bounds the activations of
# the 3x3 convolutions (a few float64 maps of this many positions) on very large images. A
# Kodak image fits one band; larger maps go in bands of rows, each with the halo of rows its
# convolutions reach, so every band's output equals the whole-map computation exactly.
BAND_POSITIONS = 2**15


class IntegerLevelPrior:
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
