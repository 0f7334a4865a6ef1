"""Autoregressive priors over the code maps: the entropy models that drive range coding.

PixelCNN-style (van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural Networks",
ICML 2016; "Conditional Image Generation with PixelCNN Decoders", NeurIPS 2016), shaped for
fast decoding:

- The causal part is one masked 5x5 convolution over the level's own codes (mask type A: rows
  above and the positions to the left), followed by per-position layers. It is shallow on
  purpose: a position only depends on its causal neighbourhood, so decoding can advance on a
  wavefront, every position whose neighbourhood is known in one batched step, instead of one
  network pass per symbol.
- The depth sits in a non-causal network over the already-decoded coarser levels (none for the
  top level, the top codes for the middle, top and middle for the bottom). It runs once per
  level, over the whole map.

Training evaluates all positions at once with the masked convolution. Coding evaluates an
integer-exact copy of these networks wavefront by wavefront (`hvqcodec.integer_prior`). Each
family stacks these levels its own way (`hvqcodec.families`).
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hvqcodec.layers import ResBlock


@dataclass
class PriorConfig:
    embed_dim: int = 32
    hidden: int = 96
    cond_blocks: int = 3  # depth of the non-causal network over the coarser levels
    kernel: int = 5  # of the causal masked convolution

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PriorConfig":
        return cls(**d)


def causal_offsets(kernel: int) -> list[tuple[int, int]]:
    """(dy, dx) of the positions a type-A mask keeps: the rows above, then the left of this row."""
    r = kernel // 2
    return [(dy, dx) for dy in range(-r, 1) for dx in range(-r, r + 1) if (dy, dx) < (0, 0)]


class LevelPrior(nn.Module):
    def __init__(self, num_codes: int, upper: tuple[tuple[int, int], ...], cfg: PriorConfig):
        """`upper`: (codebook size, upsampling factor) of each coarser level it depends on."""
        super().__init__()
        self.num_codes, self.kernel, self.hidden = num_codes, cfg.kernel, cfg.hidden
        e, h = cfg.embed_dim, cfg.hidden
        self.offsets = causal_offsets(cfg.kernel)
        self.embed = nn.Embedding(num_codes, e)
        self.upper_scales = [s for _, s in upper]
        self.upper_embeds = nn.ModuleList(nn.Embedding(k, e) for k, _ in upper)
        if upper:
            self.cond = nn.Sequential(
                nn.Conv2d(e * len(upper), h, 3, padding=1),
                *[ResBlock(h) for _ in range(cfg.cond_blocks)],
            )
        else:
            self.cond_bias = nn.Parameter(torch.zeros(h))
        # Weights of the masked convolution, only at the kept positions: (hidden, taps * embed).
        self.causal = nn.Linear(len(self.offsets) * e, h)
        self.head1 = nn.Linear(h, h)
        self.head2 = nn.Linear(h, num_codes)

    def conditioning(self, upper: list[torch.Tensor], shape: tuple[int, int]) -> torch.Tensor:
        """Coarser code maps [(B, h, w)] -> features (B, H, W, hidden) for this level."""
        if not self.upper_embeds:
            return self.cond_bias.expand(1, *shape, self.hidden)
        feats = [
            F.interpolate(emb(c).permute(0, 3, 1, 2), scale_factor=s, mode="nearest")
            for emb, c, s in zip(self.upper_embeds, upper, self.upper_scales)
        ]
        return self.cond(torch.cat(feats, 1)).permute(0, 2, 3, 1)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.head2(F.relu(self.head1(F.relu(h))))

    def logits(self, codes: torch.Tensor, upper: list[torch.Tensor]) -> torch.Tensor:
        """Teacher-forced logits (B, H, W, K) for all positions at once (training)."""
        e = self.embed.embedding_dim
        k, r = self.kernel, self.kernel // 2
        taps = self.causal.weight.view(self.hidden, len(self.offsets), e)
        kernel = taps.new_zeros(self.hidden, e, k * k)
        kept = [(dy + r) * k + (dx + r) for dy, dx in self.offsets]
        kernel[:, :, kept] = taps.permute(0, 2, 1)
        emb = self.embed(codes).permute(0, 3, 1, 2)
        h = F.conv2d(emb, kernel.view(self.hidden, e, k, k), self.causal.bias, padding=r)
        h = h.permute(0, 2, 3, 1) + self.conditioning(upper, codes.shape[1:])
        return self._head(h)
