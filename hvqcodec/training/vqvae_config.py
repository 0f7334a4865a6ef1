"""The VQ-VAE trainer's settings, and what a resumed run keeps from its checkpoint.

A run's config is layered: the defaults, then the config file (TOML or JSON), then the flags. A
resumed run (OUT/checkpoint.pt exists) starts from its saved config instead of the defaults, so
that a bare restart continues as it was, and the file and flags still override it, except for
the settings in CHECKPOINT_FIXES: those stay as saved, with a warning for each override that is
dropped.
"""

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from hvqcodec.families.vqvae.model import VQVAEConfig
from hvqcodec.priors import PriorConfig
from hvqcodec.training.options import flag as table_flag

# What a checkpoint fixes: a resumed run keeps these as saved, whatever the file or flags say.
# The architecture, because the saved weights have it; the seed, because the data order of the
# epoch under way derives from it; the starting weights, because the checkpoint's replace them.
CHECKPOINT_FIXES = ("model", "prior", "seed", "vqvae_from", "init_from")
# Settings merged key by key (TOML tables, JSON flags) rather than replaced whole.
TABLES = ("model", "prior")


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/hvq"
    vq_steps: int = 4000
    prior_steps: int = 2000
    batch_size: int = 8  # per rank
    crop: int = 192
    lr: float = 4e-4
    prior_lr: float = 1e-3
    prior_batch_size: int = 16  # per rank
    prior_crop: int = 8  # top-level code positions; middle and bottom crops are 2x and 4x
    warmup: int = 200
    seed: int = 0
    log_every: int = 25
    checkpoint_seconds: float = 180.0
    threads: int = 0  # 0: torch's default
    device: str = "auto"  # auto (cuda if present), cpu, cuda
    vqvae_from: str = ""  # checkpoint whose autoencoder to reuse; trains only the priors
    # Checkpoint or weights file to start from; parts the architecture adds start fresh.
    init_from: str = ""
    # Quantizer dropout: the share of samples that keep a random prefix of the bottom stages
    # (the others keep all), and the share of those that keep none.
    quantizer_dropout: float = 1.0
    no_bottom_rate: float = 0.0
    eval_images: str = ""  # folder the model card is evaluated on (e.g. Kodak); "" skips it
    model: dict = field(default_factory=lambda: VQVAEConfig().to_dict())
    prior: dict = field(default_factory=lambda: PriorConfig().to_dict())


def flag(name: str) -> str:
    """The command-line flag that sets a TrainConfig field."""
    return table_flag(name, TABLES)


def read_config_file(path: str | Path) -> dict:
    """A TOML or JSON file of TrainConfig fields; `[model]` and `[prior]` tables override the
    architecture's defaults key by key."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        values = tomllib.loads(text)
    else:
        values = json.loads(text)
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise SystemExit(f"{path}: unknown settings {sorted(unknown)}")
    return values


def make_config(file_values: dict, overrides: dict, saved: dict | None = None) -> TrainConfig:
    """Defaults, then a resumed run's own saved config, then the config file, then flags. The
    saved config is only a base here; `resolve_config` applies CHECKPOINT_FIXES."""
    known = {f.name for f in fields(TrainConfig)}
    # A checkpoint of an older trainer may hold settings since removed.
    saved = {k: v for k, v in (saved or {}).items() if k in known}
    cfg = TrainConfig()
    for values in (saved, file_values, overrides):
        for k, v in values.items():
            setattr(cfg, k, {**getattr(cfg, k), **v} if k in TABLES else v)
    return cfg


def saved_config(checkpoint: str | Path) -> dict:
    """The config in a training checkpoint, memory-mapped so that its weights are not read."""
    return torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["config"]


def resolve_config(
    file_values: dict, overrides: dict, config_file: str | None = None
) -> tuple[TrainConfig, list[str]]:
    """The run's config, and a warning for each setting of the file or flags that it drops:
    those a resumed run's checkpoint fixes, or the autoencoder config of a new run that reuses
    another run's autoencoder (`vqvae_from`), which brings its own."""
    cfg = make_config(file_values, overrides)
    checkpoint = Path(cfg.out) / "checkpoint.pt"
    if checkpoint.exists():
        saved = saved_config(checkpoint)
        cfg = make_config(file_values, overrides, saved)
        fixed = {k: saved[k] for k in CHECKPOINT_FIXES if k in saved}
        cause = f"the run resumes from {checkpoint}, which fixes"
    elif cfg.vqvae_from:
        fixed = {"model": saved_config(cfg.vqvae_from)["model"]}
        cause = f"the autoencoder reused from {cfg.vqvae_from} brings its own"
    else:
        return cfg, []
    warnings = []
    for k, kept in fixed.items():
        for source, values in ((flag(k), overrides), (f"`{k}` in {config_file}", file_values)):
            if k not in values:
                continue
            wanted = {**kept, **values[k]} if k in TABLES else values[k]
            if _plain(wanted) != _plain(kept):
                warnings.append(f"warning: {source} ignored: {cause} `{k}`")
        setattr(cfg, k, kept)
    return cfg, warnings


def _plain(value: object) -> object:
    """JSON's view of a value: a tuple saved from the defaults equals a list from a flag."""
    return json.loads(json.dumps(value))
