"""Vector quantizer with EMA codebook updates and dead-code restarts.

- Nearest-neighbour quantization with the straight-through gradient estimator:
  van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017.
- Codebook learned by exponential moving averages instead of a codebook loss (same paper,
  appendix; Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity Images with
  VQ-VAE-2", NeurIPS 2019).
- Dead codes: k-means initialisation on the first batch and restarting rarely used codes from
  encoder outputs of the current batch (Dhariwal et al., "Jukebox", 2020; Lancucki et al.,
  "Robust Training of Vector Quantized Bottleneck Models", IJCNN 2020).
- Distributed training: the EMA statistics are all-reduced and the k-means initialisation and
  restarted codes come from rank 0, so every rank holds the same codebook.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over all ranks (t itself when not distributed)."""
    if _distributed():
        dist.all_reduce(t)
    return t


def from_rank0(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's `t` on every rank."""
    if _distributed():
        dist.broadcast(t, 0)
    return t


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (B, D, H, W), straight-through in training
    indices: torch.Tensor  # (B, H, W) int64
    commit_loss: torch.Tensor
    perplexity: torch.Tensor  # exp(entropy) of code usage in the batch
    usage: torch.Tensor  # fraction of codes used at least once in the batch


def kmeans(x: torch.Tensor, k: int, *, iters: int = 10) -> torch.Tensor:
    """Plain Lloyd's k-means; rows of x are samples. Starts from random samples."""
    pick = torch.randint(0, x.shape[0], (k,), device=x.device)
    centers = x[pick].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(dim=1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1).to(x.dtype)
        centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
    return centers


class VectorQuantizer(nn.Module):
    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        decay: float = 0.99,
        commitment: float = 0.25,
        eps: float = 1e-5,
        dead_threshold: float = 0.03,
    ) -> None:
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.commitment, self.eps = decay, commitment, eps
        # A code whose EMA count of assignments per batch falls below this is restarted.
        self.dead_threshold = dead_threshold
        self.register_buffer("codebook", torch.randn(num_codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def distances(self, flat: torch.Tensor) -> torch.Tensor:
        """Squared distances (N, K) from rows of `flat` (N, D) to every code."""
        return (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.codebook.t()
            + self.codebook.pow(2).sum(1)[None, :]
        )

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        return self.distances(flat).argmin(dim=1)

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) -> code indices (B, H, W)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        return self.nearest(flat).view(b, h, w)

    def map_distances(self, z: torch.Tensor) -> torch.Tensor:
        """(1, D, H, W) -> squared distances (H * W, K), positions in raster order."""
        return self.distances(z[0].permute(1, 2, 0).reshape(-1, self.dim))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, H, W) -> vectors (B, D, H, W)."""
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        if not bool(self.initialized):
            self.codebook.copy_(from_rank0(kmeans(flat, self.num_codes)))
            self.embed_sum.copy_(self.codebook)
            self.cluster_size.fill_(1.0)
            self.initialized.fill_(True)
            return
        onehot = F.one_hot(indices, self.num_codes).to(flat.dtype)
        counts, sums = all_reduce_sum(onehot.sum(0)), all_reduce_sum(onehot.t() @ flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
            fresh = from_rank0(flat[pick].contiguous())
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        indices = self.nearest(flat)
        if self.training:
            self._update(flat.detach(), indices)
            indices = self.nearest(flat)  # the codebook may have moved (first batch: k-means)
        quantized = self.lookup(indices.view(b, h, w))
        commit_loss = self.commitment * F.mse_loss(z, quantized.detach())
        if self.training:  # straight-through gradient; at inference keep the exact codes
            quantized = z + (quantized - z).detach()
        counts = torch.bincount(indices, minlength=self.num_codes).float()
        p = counts / counts.sum()
        perplexity = torch.exp(-(p * torch.log(p.clamp(min=1e-10))).sum())
        usage = (counts > 0).float().mean()
        return QuantizerOutput(quantized, indices.view(b, h, w), commit_loss, perplexity, usage)
