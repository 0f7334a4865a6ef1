"""The models this package ships, by name and id: what reading a file's header needs to name
its model, without loading one (and without torch). `hvqcodec.models` loads them.

Entries are never removed, so that files written by any release keep decoding.
"""

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hvqcodec.errors import HvqError
from hvqcodec.rate_control import DEFAULT_QUALITY, StageScale


@dataclass(frozen=True)
class ShippedModel:
    file: str  # in hvqcodec/weights
    model_id: int
    scale: StageScale | None = None  # a VQ-VAE model's quality scale (None: the even one)
    default_quality: float = DEFAULT_QUALITY


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
    # The hvq-v4 campaign at 26.09 CPU-hours (docs/training-hvq-v4.md), eight rate points
    # spanned evenly. Default 50: the knee of its curve on the validation photos
    # (benchmarks/results/quality_scale-hvq-v4.json, `knee`).
    "hvq-v4": ShippedModel("hvq-v4.pt", 0xFF8E6246, default_quality=50.0),
    # The same campaign at 31.01 CPU-hours: 20 CPU-hours of the main line since the growth and
    # a short decay; same scale. Default 50: the knee of its curve on the validation photos
    # (benchmarks/results/quality_scale-hvq-v4.1.json, `knee`).
    "hvq-v4.1": ShippedModel("hvq-v4.1.pt", 0xF7C88E50, default_quality=50.0),
}
DEFAULT_MODEL = "hvq-v4.1"


def shipped_path(name: str) -> Path:
    if name not in SHIPPED:
        raise HvqError(f"unknown model {name!r}; shipped models: {', '.join(SHIPPED)}")
    return Path(str(resources.files("hvqcodec") / "weights" / SHIPPED[name].file))


def model_label(model_id: int) -> str:
    """A model id as a user reads it: the shipped model's name if it is one of ours."""
    for name, entry in SHIPPED.items():
        if entry.model_id == model_id:
            return f"{name} ({model_id:08x})"
    return f"{model_id:08x}, which this version of hvqcodec does not ship"
