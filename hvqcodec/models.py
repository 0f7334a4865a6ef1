"""The model registry: the families this package knows, by the format of their weights
file, and the models it ships, by name and id.

A weights file is a plain dict saved with `torch.save` and read with `weights_only=True`, so
loading never unpickles arbitrary objects. Its "format" names its family
(`hvqcodec.families`); each family documents its own file.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from hvqcodec.errors import HvqError
from hvqcodec.families import hyper, vqvae
from hvqcodec.family import DEFAULT_QUALITY, FamilyModel
from hvqcodec.rate_control import StageScale

# Each family, by its weights format: a new family is one more line.
FAMILIES: dict[str, Callable[[dict], FamilyModel]] = {
    vqvae.WEIGHTS_FORMAT: vqvae.build,
    hyper.WEIGHTS_FORMAT: hyper.build,
}


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
    # hvq-v3's campaign at 10.69 CPU-hours (docs/training-hvq-v3.md); same scale.
    "hvq-v3.1": ShippedModel("hvq-v3.1.pt", 0x0DA3E743),
}
DEFAULT_MODEL = "hvq-v3.1"


def build_model(weights: dict) -> FamilyModel:
    """Instantiate a model from a weights dict, by its family. Weights that are a shipped
    model's, however they were loaded, get its quality scale and default."""
    kind = weights.get("format") if isinstance(weights, dict) else None
    family = FAMILIES.get(kind) if isinstance(kind, str) else None
    if family is None:
        known = ", ".join(FAMILIES)
        raise HvqError(f"not an hvqcodec weights file (expected format {known})")
    model = family(weights)
    entry = next((e for e in SHIPPED.values() if e.model_id == model.model_id), None)
    if entry is not None:
        if entry.scale is not None:
            model.scale = entry.scale
        model.default_quality = entry.default_quality
    return model


def load_weights(path: str | Path) -> FamilyModel:
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


def load_shipped(name: str) -> FamilyModel:
    """A shipped model, checked against the id the registry expects."""
    model = load_weights(shipped_path(name))
    entry = SHIPPED[name]
    if model.model_id != entry.model_id:
        raise HvqError(
            f"shipped weights for {name} are damaged: "
            f"id {model.model_id:08x}, expected {entry.model_id:08x}"
        )
    return model
