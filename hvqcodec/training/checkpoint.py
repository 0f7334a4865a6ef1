"""What every trainer does with its checkpoints: write them whole or not at all, and move
weights between the float32 they train in and the float16 they are kept in."""

import os
from pathlib import Path

import torch

from hvqcodec.storage import cast


def atomic_save(obj: object, path: str | Path) -> None:
    """`torch.save` to a temporary file, synced, then renamed over `path`: a machine stopped at
    any moment leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def float16(state: dict) -> dict:
    """A state dict's float tensors as float16: a compact checkpoint's weights."""
    return cast(state, torch.float16)


def float32(state: dict) -> dict:
    """A stored state dict's float tensors widened back to float32."""
    return cast(state, torch.float32)


def load(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
