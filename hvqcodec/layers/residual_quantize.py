"""Residual vector quantization with quantizer dropout.

- Residual (multistage) VQ: each stage quantizes what the stages before it left, so the bits
  add up stage by stage while every codebook stays small (Juang, Gray, "Multiple stage vector
  quantization for speech coding", ICASSP 1982; Zeghidour et al., "SoundStream: An End-to-End
  Neural Audio Codec", IEEE/ACM TASLP 2021).
- Quantizer dropout: in training each sample keeps a random number of leading stages (none at
  all with a small probability), so every prefix of the stages decodes well and one model
  serves every rate (SoundStream, section III-C; applied to a share of the samples as in
  Kumar et al., "High-Fidelity Audio Compression with Improved RVQGAN" (DAC), NeurIPS 2023).
"""

import torch
import torch.nn.functional as F

from hvqcodec.layers.vector_quantize import QuantizerOutput, VectorQuantizer


def dropout_stages(
    batch: int, stages: int, gen: torch.Generator, *, p_none: float = 0.0, p_drop: float = 1.0
) -> torch.Tensor:
    """Stages each sample keeps, (batch,): with probability `p_drop` a random count in
    1..stages (0 with probability `p_none`), otherwise all of them. Descript's DAC drops with
    probability 0.5, so that the full rate still gets half of the training signal."""
    keep = torch.randint(1, stages + 1, (batch,), generator=gen)
    none = torch.rand(batch, generator=gen) < p_none
    keep = torch.where(none, torch.zeros_like(keep), keep)
    drop = torch.rand(batch, generator=gen) < p_drop
    return torch.where(drop, keep, torch.full_like(keep, stages))


def residual_quantize(
    quantizers: list[VectorQuantizer], z: torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[QuantizerOutput], torch.Tensor]:
    """(B, D, H, W) -> (sum of the kept stages' vectors, every stage's output, commitment loss).

    `keep`: stages kept per sample (None: all). Every stage quantizes the full residual, so its
    codebook learns on every sample; only the sum handed to the decoder drops stages.

    The commitment loss pulls z towards the sum of all the stages only. A loss per stage would
    also pull z towards the first stage's few codes, holding back what the later stages can add
    (measured: with it, stages 3 to 6 added under 0.2 dB).
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
    commit = quantizers[0].commitment * F.mse_loss(z, (z - residual).detach())
    if not z.requires_grad:
        return total, outs, commit
    # Straight-through: the decoder's gradient reaches the encoder as if unquantized, except
    # for samples that kept no stage, whose decoder input is a constant.
    through = z + (total - z).detach()
    if keep is not None:
        through = torch.where((keep > 0).view(-1, 1, 1, 1), through, total)
    return through, outs, commit
