"""State dicts as the weights files store them: float16, or int8 with a float32 scale per
slice, and back to float32; and the fingerprint that becomes a model's id.

Every machine widens the stored tensors to exactly the same float32 weights (int8 times scale is
one IEEE product), so every machine computes with the same model.
"""

import hashlib
import json

import torch


def hash_state(h, state: dict[str, torch.Tensor]) -> None:
    """Feed every key and tensor of a state dict, in key order, to a hashlib object."""
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())


def cast(state: dict, dtype: torch.dtype) -> dict:
    """The float tensors of a state dict in `dtype`; the others unchanged."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


INT8_MIN_SIZE = 4096  # float tensors this large (convolutions, codebooks) go to int8


def int8_state(state: dict, keep: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(stored state, scales): each float tensor of two or more dimensions and at least
    `INT8_MIN_SIZE` elements, unless its key starts with one of `keep`, as int8, symmetric,
    with a float32 scale per slice of its first dimension (max |w| / 127; 1 for an all-zero
    slice); the other float tensors as float16."""
    stored, scales = cast(state, torch.float16), {}
    for k, v in state.items():
        large = v.is_floating_point() and v.dim() >= 2 and v.numel() >= INT8_MIN_SIZE
        if large and not k.startswith(keep):
            flat = v.detach().float().reshape(len(v), -1)
            peak = flat.abs().amax(1)
            scale = torch.where(peak > 0, peak / 127, torch.ones_like(peak))
            stored[k] = torch.round(flat / scale[:, None]).to(torch.int8).reshape(v.shape)
            scales[k] = scale
    return stored, scales


def float32_state(stored: dict, scales: dict) -> dict:
    """The float32 weights a stored state (float16, and int8 with `scales`) stands for; an int8
    tensor without its float32 scale, or a scale without its int8 tensor, is a ValueError."""
    state = cast(stored, torch.float32)
    unscaled = [k for k, v in stored.items() if v.dtype == torch.int8 and k not in scales]
    if unscaled:
        raise ValueError(f"int8 tensor {unscaled[0]} has no scale")
    for k, scale in scales.items():
        q = stored[k]
        if q.dtype != torch.int8 or scale.dtype != torch.float32 or scale.shape != (len(q),):
            raise ValueError(f"{k}: int8 tensor and float32 scale do not match")
        state[k] = q.float() * scale.reshape(-1, *[1] * (q.dim() - 1))
    return state


def fingerprint(configs: object, *states: dict[str, torch.Tensor]) -> int:
    """SHA-256 over the JSON of `configs`, then every tensor of each state in turn; the first
    4 bytes, as a model id."""
    h = hashlib.sha256()
    h.update(json.dumps(configs, sort_keys=True).encode())
    for state in states:
        hash_state(h, state)
    return int.from_bytes(h.digest()[:4], "big")
