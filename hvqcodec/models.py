"""The model registry: the families this package knows, by the format of their weights
file, and the loading of weights files, shipped (`hvqcodec.shipped`) or not.

A weights file is a plain dict saved with `torch.save` and read with `weights_only=True`, so
loading never unpickles arbitrary objects. Its "format" names its family
(`hvqcodec.families`); each family documents its own file.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from hvqcodec.errors import HvqError
from hvqcodec.families import hyper, vqvae
from hvqcodec.family import FamilyModel
from hvqcodec.shipped import SHIPPED, shipped_path

# Each family, by its weights format: a new family is one more line.
FAMILIES: dict[str, Callable[[dict], FamilyModel]] = {
    vqvae.WEIGHTS_FORMAT: vqvae.build,
    hyper.WEIGHTS_FORMAT: hyper.build,
}


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
