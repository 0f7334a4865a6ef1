"""The VQ-VAE family's priors: one wavefront `LevelPrior` per stream, each conditioned on
every stream coded before it."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hvqcodec.families.vqvae.model import VQVAEConfig, stream_names, stream_stride
from hvqcodec.priors import LevelPrior, PriorConfig


class HierarchicalPrior(nn.Module):
    """Top: unconditional. Middle: conditioned on top. Bottom: conditioned on top and middle.
    Each further bottom stage: conditioned on top, middle and the bottom stages before it."""

    def __init__(self, config: PriorConfig | None = None, vq: VQVAEConfig | None = None):
        super().__init__()
        self.config = cfg = config or PriorConfig()
        vq = vq or VQVAEConfig()
        self.streams = stream_names(vq.bottom_stages)
        levels = {}
        for i, name in enumerate(self.streams):
            # Each earlier map is upsampled to this stream's size.
            upper = tuple(
                (vq.codebook_size(u), stream_stride(u) // stream_stride(name))
                for u in self.streams[:i]
            )
            levels[name] = LevelPrior(vq.codebook_size(name), upper, cfg)
        self.levels = nn.ModuleDict(levels)

    def upper_of(self, name: str, codes: dict) -> list:
        """The code maps stream `name` is conditioned on: every stream coded before it."""
        return [codes[k] for k in self.streams[: self.streams.index(name)]]

    def forward(self, codes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.bits_per_code(codes)

    def bits_per_code(self, codes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean cross-entropy in bits per code of each stream given (training loss)."""
        out = {}
        for name, prior in self.levels.items():
            if name not in codes:  # a file of fewer bottom stages
                continue
            logits = prior.logits(codes[name], self.upper_of(name, codes))
            ce = F.cross_entropy(logits.reshape(-1, prior.num_codes), codes[name].reshape(-1))
            out[name] = ce / np.log(2)
        return out
