"""Training step time of hvq-v3 on this machine: forward, backward and Adam on the trainer's
batch (`RDTrainConfig`: 8 x 192^2), each way of running it on this CPU.

    python -m benchmarks.train_step --out benchmarks/results/training/train_step-avx2.json

Variants: float32, float32 + channels_last, bf16 autocast + channels_last (marked emulated
where the CPU has no bf16 hardware, `precision.native_bf16`), and the fastest of these again
under torch.compile. The result also records which the trainer picks on this machine
(`precision.bf16_pays`), so that its quick measurement can be checked against whole steps.
Each is the median of --steps steps after --warmup steps (compilation happens in the warm-up,
and is reported apart). Run it on a quiet machine: a training run beside it makes both
meaningless.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from hvqcodec.families.hyper.model import VQHyperprior, VQHyperpriorConfig
from hvqcodec.model_card import cpu_model
from hvqcodec.precision import bf16_pays, native_bf16
from hvqcodec.training.hyper import RDTrainConfig, step


def time_variant(
    config: VQHyperpriorConfig,
    *,
    channels_last: bool,
    bf16: bool,
    compiled: bool,
    batch: int,
    crop: int,
    warmup: int,
    steps: int,
) -> dict:
    torch.manual_seed(0)
    model = VQHyperprior(config).train()
    x = torch.rand(batch, 3, crop, crop)
    if channels_last:
        model, x = (
            model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    forward = torch.compile(model) if compiled else None
    levels = len(config.lambdas)
    quality = torch.arange(batch) % levels
    times = []
    for _ in range(warmup + steps):
        t = time.perf_counter()
        step(model, opt, x, quality, bf16, forward)
        times.append(time.perf_counter() - t)
    name = " + ".join(
        ["bf16 autocast" if bf16 else "float32"]
        + ["channels_last"] * channels_last
        + ["torch.compile"] * compiled
    )
    return {
        "variant": name + (" (emulated)" if bf16 and not native_bf16(torch.device("cpu")) else ""),
        "sec_per_step": round(statistics.median(times[warmup:]), 3),
        "warmup_seconds": round(sum(times[:warmup]), 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    defaults = RDTrainConfig()
    p.add_argument("--batch", type=int, default=defaults.batch_size)
    p.add_argument("--crop", type=int, default=defaults.crop)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--model-json", default="{}", help="overrides of VQHyperpriorConfig")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be at least 1 and --warmup at least 0")
    config = VQHyperpriorConfig.from_dict(
        {**VQHyperpriorConfig().to_dict(), **json.loads(args.model_json)}
    )
    run = dict(batch=args.batch, crop=args.crop, warmup=args.warmup, steps=args.steps)
    plain = [(False, False), (True, False), (True, True)]
    rows = []
    for channels_last, bf16 in plain:
        rows.append(time_variant(config, channels_last=channels_last, bf16=bf16, compiled=False,
                                 **run))  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    best = min(range(len(plain)), key=lambda i: rows[i]["sec_per_step"])
    channels_last, bf16 = plain[best]
    rows.append(time_variant(config, channels_last=channels_last, bf16=bf16, compiled=True, **run))
    print(json.dumps(rows[-1]), flush=True)
    result = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2, AVX512, ...
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch": f"{args.batch} x {args.crop}^2",
        "config": config.to_dict(),
        "variants": rows,
        "trainer_bf16": bf16_pays(torch.device("cpu")),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
