"""A training process's place in a torchrun job, and the data indices each rank reads; shared
by the trainers."""

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler


class Cluster:
    """This process's place in a torchrun job; rank 0 of 1 when started without torchrun."""

    def __init__(self, device: str = "auto") -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if device == "cuda" else device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP for training; buffers stay rank-local (the quantizers synchronise their own)."""
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def gather(self, obj: object) -> list:
        """`obj` of every rank, in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank (e.g. whether a checkpoint is due by its clock)."""
        return bool(self.gather(flag)[0])

    def close(self, *, failed: bool = False) -> None:
        """Leave the job. On success wait for every rank first, so that no rank tears down its
        connections while another still uses them; after a failure (other ranks may be inside
        a different collective) leave at once."""
        if self.world > 1 and dist.is_initialized():
            if not failed:
                dist.barrier()
            dist.destroy_process_group()


class Sampler:
    """Indices this rank trains on: DistributedSampler's shard of a fresh shuffle each epoch,
    read one batch at a time; its position is part of the checkpoint. `repeats`: how often
    each index comes up in an epoch (default once)."""

    def __init__(self, n: int, cluster: Cluster, seed: int, repeats: list[int] | None = None):
        self.index = [i for i in range(n) for _ in range(repeats[i] if repeats else 1)]
        self.inner = DistributedSampler(
            range(len(self.index)),
            num_replicas=cluster.world,
            rank=cluster.rank,
            shuffle=True,
            seed=seed,
        )
        self.epoch, self.offset, self.order = 0, 0, None

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.order is None:
                self.inner.set_epoch(self.epoch)
                self.order = list(self.inner)
            if self.offset == len(self.order):
                self.epoch, self.offset, self.order = self.epoch + 1, 0, None
                continue
            out.append(self.index[self.order[self.offset]])
            self.offset += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.offset, self.order = state["epoch"], state["offset"], None
