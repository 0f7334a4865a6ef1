"""Training, one trainer per model family over shared parts:

    hyper.py         the hvq-v3 family's trainer (the default model's family)
    vqvae.py         the VQ-VAE family's trainer (hvq-v1, hvq-v2), with vqvae_config.py
    checkpoint.py    atomic saves, float16 and float32 state
    data.py          the training photos and the held-out validation photos
    distributed.py   a process's place in a torchrun job, and the data each rank reads
    options.py       command-line flags from a settings dataclass

`hvqcodec train` runs `main`: the default model's family, or another by `--family`.
"""

import sys

from hvqcodec.shipped import DEFAULT_MODEL

TRAINERS = {"hyper": "hvqcodec.training.hyper", "vqvae": "hvqcodec.training.vqvae"}
DEFAULT_FAMILY = "hyper"  # the family of DEFAULT_MODEL


def main(argv: list[str] | None = None) -> None:
    """`--family NAME` (default: the default model's) picks the trainer; the other arguments
    are that trainer's."""
    import importlib

    argv = sys.argv[1:] if argv is None else list(argv)
    family = DEFAULT_FAMILY
    if "--family" in argv:
        at = argv.index("--family")
        if at + 1 == len(argv) or argv[at + 1] not in TRAINERS:
            raise SystemExit(f"--family takes one of: {', '.join(TRAINERS)}")
        family = argv[at + 1]
        argv = argv[:at] + argv[at + 2 :]
    elif argv in (["-h"], ["--help"]):
        families = ",".join(TRAINERS)
        print(f"hvqcodec train [--family {{{families}}}] ARGS: trains a model of the family "
              f"(default {DEFAULT_FAMILY}, that of {DEFAULT_MODEL}); its options:\n")  # fmt: skip
    importlib.import_module(TRAINERS[family]).main(argv)
