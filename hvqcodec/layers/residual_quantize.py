"""Residual vector quantization with quantizer dropout.

- Residual (multistage) VQ: each stage quantizes what the stages before it left, so the bits
  add up stage by stage while every codebook stays small (Juang, Gray, "Multiple stage vector
  quantization for speech coding", ICASSP 1982; Zeghidour et al., "SoundStream: An End-to-End
  Neural Audio Codec", IEEE/ACM TASLP 2021).
- Quantizer dropout: in training each sample keeps a random number of leading stages (none at
  all with a small probability), so every prefix of the stages decodes well and one model
  serves every rate (SoundStream, section III-C).
"""

import torch

from hvqcodec.layers.vector_quantize import QuantizerOutput, VectorQuantizer


def dropout_stages(
    batch: int, stages: int, gen: torch.Generator, *, p_none: float = 0.0
) -> torch.Tensor:
    """Stages each sample keeps, (batch,) in 1..stages, or 0 with probability `p_none`."""
    keep = torch.randint(1, stages + 1, (batch,), generator=gen)
    none = torch.rand(batch, generator=gen) < p_none
    return torch.where(none, torch.zeros_like(keep), keep)


def residual_quantize(
    quantizers: list[VectorQuantizer], z: torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[QuantizerOutput]]:
    """(B, D, H, W) -> (sum of the kept stages' vectors, every stage's output).

    `keep`: stages kept per sample (None: all). Every stage quantizes the full residual, so its
    codebook learns on every sample; only the sum handed to the decoder drops stages.
    """
    residual, total, outs = z, torch.zeros_like(z), []
    for s, quantizer in enumerate(quantizers):
        out = quantizer(residual)
        outs.append(out)
        vectors = quantizer.lookup(out.indices)
        residual = residual - vectors
        if keep is not None:
            vectors = vectors * (keep > s).view(-1, 1, 1, 1).to(vectors.dtype)
        total = total + vectors
    if not z.requires_grad:
        return total, outs
    # Straight-through: the decoder's gradient reaches the encoder as if unquantized, except
    # for samples that kept no stage, whose decoder input is a constant.
    through = z + (total - z).detach()
    if keep is not None:
        through = torch.where((keep > 0).view(-1, 1, 1, 1), through, total)
    return through, outs
