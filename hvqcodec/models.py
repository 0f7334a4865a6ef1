"""Shipped models: the weights file, model ids, and the registry of models this package knows.

A weights file is a plain dict saved with `torch.save` and read with `weights_only=True`, so
loading never unpickles arbitrary objects. Two families:

    {"format": "hvqcodec-weights/1", "name": str, "vqvae_config": dict, "prior_config": dict,
     "vqvae": state_dict, "prior": state_dict}               # hvq-v1, hvq-v2: VQ-VAE levels
    {"format": "hvqcodec-weights/2", "name": str, "config": dict, "model": state_dict,
     "tables": int32 (T, width), "radii": int32 (T,),        # hvq-v3: VQ side info + scalar
     "scales": {key: float32 (len,)}}                        # optional: int8 tensors' scales

Float tensors are stored as float16 to halve the package size, and in a file with "scales" the
large ones outside the synthesis as int8 times one float32 scale per slice of their first
dimension (`int8_state`), which takes hvq-v3 from 20 to 12 MB. Either is widened to float32
on load (int8 times scale, one IEEE product), so every machine computes with exactly the same
weights.
"""

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from hvqcodec.errors import HvqError
from hvqcodec.integer_hyperprior import FixedHyperSynthesis, gaussian_tables
from hvqcodec.integer_prior import FixedLevelPrior, FixedPrior, check_layers
from hvqcodec.priors import HierarchicalPrior, PriorConfig
from hvqcodec.rate_control import StageScale
from hvqcodec.vq_hyperprior import VQHyperprior, VQHyperpriorConfig
from hvqcodec.vqvae import HierarchicalVQVAE, VQVAEConfig

WEIGHTS_FORMAT = "hvqcodec-weights/1"
HYPER_WEIGHTS_FORMAT = "hvqcodec-weights/2"

# The quality a user gets without asking, on the 0-100 scale, where cwebp's default is 75 too.
DEFAULT_QUALITY = 75.0


@dataclass(frozen=True)
class ShippedModel:
    file: str  # in hvqcodec/weights
    model_id: int
    scale: StageScale | None = None  # a VQ-VAE model's quality scale (None: the even one)
    default_quality: float = DEFAULT_QUALITY


# Models shipped inside the package. Entries are never removed, so files written by any
# release keep decoding.
SHIPPED: dict[str, ShippedModel] = {
    "hvq-v1": ShippedModel("hvq-v1.pt", 0x7B730E24),
    # Knots spaced so that log bpp is about linear in quality at the knots on 12 training photos
    # (benchmarks/results/quality_scale-hvq-v2.json; between them rate jumps just past the lower
    # knot); 75, the default, is 2 stages: the knee, past which each stage adds about 0.12 bpp
    # for under 0.5 dB.
    "hvq-v2": ShippedModel(
        "hvq-v2.pt", 0xCA65E6AE, StageScale(((0, 0), (5000, 1), (7500, 2), (9000, 3), (10000, 4)))
    ),
    # Quality 0..100 spans its six trained gains evenly, interpolated between them.
    "hvq-v3": ShippedModel("hvq-v3.pt", 0x43FE2DB3),
    # hvq-v3's campaign at 10.69 CPU-hours (checkpoints/README.md); same scale.
    "hvq-v3.1": ShippedModel("hvq-v3.1.pt", 0x0DA3E743),
}
DEFAULT_MODEL = "hvq-v3.1"


@dataclass
class Model:
    name: str
    model_id: int  # 32-bit fingerprint of configs and weights, written into every .hvq file
    vqvae: HierarchicalVQVAE
    prior: HierarchicalPrior  # float, as trained
    coder: FixedPrior  # its integer-exact twin, which computes the probabilities for coding
    scale: StageScale | None = None  # None: `StageScale.even` over its bottom stages
    default_quality: float = DEFAULT_QUALITY

    def __post_init__(self) -> None:
        if self.scale is None:
            self.scale = StageScale.even(self.vqvae.config.bottom_stages)


@dataclass
class HyperModel:
    """An hvq-v3 model: the float networks and the integer-exact twins that coding runs."""

    name: str
    model_id: int
    net: VQHyperprior
    priors: dict[str, FixedLevelPrior]  # the VQ levels' priors, integer-exact
    hyper: FixedHyperSynthesis  # mean and log-scale of the fine symbols, integer-exact
    tables: np.ndarray  # (T, width) int64 probability tables of the fine symbols
    radii: np.ndarray  # (T,) each table spans -radius..radius
    default_quality: float = DEFAULT_QUALITY  # quality 0..100 spans the trained gains evenly


def hash_state(h, state: dict[str, torch.Tensor]) -> None:
    """Feed every key and tensor of a state dict, in key order, to a hashlib object."""
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())


def fingerprint(weights: dict) -> int:
    """SHA-256 over the configs and every tensor, in key order; the first 4 bytes."""
    h = hashlib.sha256()
    h.update(
        json.dumps([weights["vqvae_config"], weights["prior_config"]], sort_keys=True).encode()
    )
    for part in ("vqvae", "prior"):
        hash_state(h, weights[part])
    return int.from_bytes(h.digest()[:4], "big")


def hyper_fingerprint(weights: dict) -> int:
    """SHA-256 over the config, every tensor of the model, then the tables, then the int8
    scales if any; the first 4 bytes."""
    h = hashlib.sha256()
    h.update(json.dumps(weights["config"], sort_keys=True).encode())
    hash_state(h, weights["model"])
    hash_state(h, {"radii": weights["radii"], "tables": weights["tables"]})
    if weights.get("scales"):
        hash_state(h, weights["scales"])
    return int.from_bytes(h.digest()[:4], "big")


def _cast(state: dict, dtype: torch.dtype) -> dict:
    """The float tensors of a state dict in `dtype`; the others unchanged."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


INT8_MIN_SIZE = 4096  # float tensors this large (convolutions, codebooks) go to int8


def int8_state(state: dict, keep: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(stored state, scales): each float tensor of two or more dimensions and at least
    `INT8_MIN_SIZE` elements, unless its key starts with one of `keep`, as int8, symmetric,
    with a float32 scale per slice of its first dimension (max |w| / 127; 1 for an all-zero
    slice); the other float tensors as float16."""
    stored, scales = _cast(state, torch.float16), {}
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
    state = _cast(stored, torch.float32)
    unscaled = [k for k, v in stored.items() if v.dtype == torch.int8 and k not in scales]
    if unscaled:
        raise ValueError(f"int8 tensor {unscaled[0]} has no scale")
    for k, scale in scales.items():
        q = stored[k]
        if q.dtype != torch.int8 or scale.dtype != torch.float32 or scale.shape != (len(q),):
            raise ValueError(f"{k}: int8 tensor and float32 scale do not match")
        state[k] = q.float() * scale.reshape(-1, *[1] * (q.dim() - 1))
    return state


def pack_weights(name: str, vqvae: HierarchicalVQVAE, prior: HierarchicalPrior) -> dict:
    return {
        "format": WEIGHTS_FORMAT,
        "name": name,
        "vqvae_config": vqvae.config.to_dict(),
        "prior_config": prior.config.to_dict(),
        "vqvae": _cast(vqvae.state_dict(), torch.float16),
        "prior": _cast(prior.state_dict(), torch.float16),
    }


def keep_stages(weights: dict, stages: int) -> dict:
    """The weights with only the first `stages` bottom stages: a model for the lower rates.
    Nothing before a stage depends on it, so what remains is unchanged."""
    have = weights["vqvae_config"].get("bottom_stages", 1)
    if not 1 <= stages <= have:
        raise HvqError(f"cannot keep {stages} of {have} bottom stages")
    dropped = [f"bottom{s}" for s in range(stages + 1, have + 1)]

    def keep(state: dict, prefix: str) -> dict:
        return {k: v for k, v in state.items() if k.split(".")[1] not in dropped
                or not k.startswith(prefix)}  # fmt: skip

    return {
        **weights,
        "vqvae_config": {**weights["vqvae_config"], "bottom_stages": stages},
        "vqvae": keep(weights["vqvae"], "quantizers."),
        "prior": keep(weights["prior"], "levels."),
    }


# The synthesis, which the pixels come from, stays float16: with it in int8 too, hvq-v3 lost up
# to 0.05 dB on the validation photos, without it 0.006 at most (benchmarks/results/
# validation-step43010-*.json).
KEEP_FLOAT16 = ("synthesis.",)


def pack_hyper_weights(name: str, net: VQHyperprior, *, int8: bool = True) -> dict:
    """A weights file of `net`; `int8=False` keeps every float tensor float16, as hvq-v3's
    first file (20 MB) does. With int8 it is 12 MB, so that a retrained model fits beside the
    ones already shipped."""
    tables, radii = gaussian_tables()
    state = net.state_dict()
    model, scales = int8_state(state, KEEP_FLOAT16) if int8 else (_cast(state, torch.float16), {})
    weights = {
        "format": HYPER_WEIGHTS_FORMAT,
        "name": name,
        "config": net.config.to_dict(),
        "model": model,
        "tables": tables,
        "radii": radii,
    }
    return {**weights, "scales": scales} if scales else weights


def build_hyper_model(weights: dict) -> HyperModel:
    try:
        net = VQHyperprior(VQHyperpriorConfig.from_dict(weights["config"]))
        net.load_state_dict(float32_state(weights["model"], weights.get("scales") or {}))
        tables, radii = weights["tables"].long().numpy(), weights["radii"].long().numpy()
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise HvqError(f"weights file is corrupt or incompatible: {e}") from None
    net.eval().requires_grad_(False)  # the encoder's refinement wants gradients of symbols only
    codebooks = {k: q.codebook for k, q in net.quantizers.items()}
    priors = {k: FixedLevelPrior(p) for k, p in net.priors.items()}
    hyper = FixedHyperSynthesis(net.hyper_synthesis, codebooks)
    for what, level in {**priors, "hyper synthesis": hyper}.items():
        check_layers(what, level.layers())
    name = str(weights.get("name", "?"))
    return HyperModel(name, hyper_fingerprint(weights), net, priors, hyper, tables, radii)


def save_weights(path: str | Path, name: str, vqvae: HierarchicalVQVAE, prior: HierarchicalPrior):
    torch.save(pack_weights(name, vqvae, prior), path)


def build_model(weights: dict) -> Model | HyperModel:
    """Instantiate a model from a weights dict (as saved by `save_weights`). Weights that are
    a shipped model's, however they were loaded, get its quality scale and default."""
    model = _build(weights)
    entry = next((e for e in SHIPPED.values() if e.model_id == model.model_id), None)
    if entry is not None:
        if entry.scale is not None:
            model.scale = entry.scale
        model.default_quality = entry.default_quality
    return model


def _build(weights: dict) -> Model | HyperModel:
    if isinstance(weights, dict) and weights.get("format") == HYPER_WEIGHTS_FORMAT:
        return build_hyper_model(weights)
    if not isinstance(weights, dict) or weights.get("format") != WEIGHTS_FORMAT:
        raise HvqError(f"not an hvqcodec weights file (expected format {WEIGHTS_FORMAT})")
    try:
        vq_cfg = VQVAEConfig.from_dict(weights["vqvae_config"])
        vqvae = HierarchicalVQVAE(vq_cfg)
        prior = HierarchicalPrior(PriorConfig.from_dict(weights["prior_config"]), vq_cfg)
        vqvae.load_state_dict(_cast(weights["vqvae"], torch.float32))
        prior.load_state_dict(_cast(weights["prior"], torch.float32))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise HvqError(f"weights file is corrupt or incompatible: {e}") from None
    vqvae.eval()
    prior.eval()
    name = str(weights.get("name", "?"))
    return Model(name, fingerprint(weights), vqvae, prior, FixedPrior(prior))


def load_weights(path: str | Path) -> Model | HyperModel:
    """Load a weights file; a missing, corrupt or foreign file raises HvqError."""
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HvqError(f"weights file not found: {path}") from None
    except Exception as e:  # torch raises many types for a damaged archive
        raise HvqError(f"cannot read weights file {path}: {e}") from None
    return build_model(weights)


def shipped_path(name: str) -> Path:
    if name not in SHIPPED:
        raise HvqError(f"unknown model {name!r}; shipped models: {', '.join(SHIPPED)}")
    return Path(str(resources.files("hvqcodec") / "weights" / SHIPPED[name].file))


def load_shipped(name: str) -> Model | HyperModel:
    """A shipped model, checked against the id the registry expects."""
    model = load_weights(shipped_path(name))
    entry = SHIPPED[name]
    if model.model_id != entry.model_id:
        raise HvqError(
            f"shipped weights for {name} are damaged: "
            f"id {model.model_id:08x}, expected {entry.model_id:08x}"
        )
    return model
