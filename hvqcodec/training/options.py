"""Command-line flags from a trainer's settings dataclass: one flag per field."""

import argparse
from dataclasses import MISSING, fields


def flag(name: str, tables: tuple[str, ...] = ()) -> str:
    """The flag of a field: `--batch-size` for batch_size; `--model-json` for a table."""
    return f"--{name}-json" if name in tables else "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def add_flags(
    parser: argparse.ArgumentParser,
    settings: type,
    *,
    tables: tuple[str, ...] = (),
    unset: bool = False,
) -> None:
    """A flag for each field of the dataclass `settings` except the `tables` (dicts, which
    the caller takes as JSON). `unset`: flags default to None, so that a caller can tell what
    was given from what a config file or checkpoint should supply."""
    for f in fields(settings):
        if f.name in tables:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        kind = _parse_bool if isinstance(default, bool) else type(default)
        parser.add_argument(flag(f.name), type=kind, default=None if unset else default,
                            help=f"default {default!r}")  # fmt: skip


def given(args: argparse.Namespace, settings: type, tables: tuple[str, ...] = ()) -> dict:
    """The fields of `settings` that `args` holds a value for (tables excepted)."""
    return {
        f.name: getattr(args, f.name)
        for f in fields(settings)
        if f.name not in tables and getattr(args, f.name) is not None
    }
