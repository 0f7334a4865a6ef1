"""Train an hvq-v3 model end to end on distortion + lambda * rate: only the loop.

    hvqcodec train --data PHOTO_FOLDER --out runs/v3
    hvqcodec train --data PHOTO_FOLDER --out runs/v3 --minutes 30
    hvqcodec train --data PHOTO_FOLDER --out runs/v3b --init-from ckpt.pt

(`python -m hvqcodec.training.hyper` takes the same flags.)

One phase: the transforms, the VQ levels, the gain vectors and the VQ priors learn together
(`hvqcodec.families.hyper.model`), each sample at a random trained rate point. The photos
named in configs/validation.txt are held out; every `eval_minutes` the model is measured on them at
every rate point (PSNR and the exact cost of the rounded symbols under the float model) and the
row goes to OUT/log.jsonl with the CPU time spent so far.

OUT/checkpoint.pt describes itself (config, weights, optimizer, step, CPU seconds, RNG and data
position) and the run resumes from it when started again, after nanoGPT. `--compact PATH`
writes the fp16 weights with the config and counters alone, small enough to commit;
`--init-from` starts a new run from one (fresh optimizer, warm-up), which is how a campaign
moves from machine to machine; with a `--model-json` that makes the model larger (more latent
channels, blocks, rate points, a context model) it grows the checkpoint's model into it without
changing its function (`hvqcodec.families.hyper.growth`). `--init-from CKPT --export WEIGHTS
--name NAME` writes a checkpoint as a weights file the package can ship (large tensors outside
the synthesis int8; `--float16` keeps them float16). `--ema 0.999` validates and hands on a
moving average of the weights instead of the weights themselves.
"""

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from hvqcodec.families.hyper.growth import grow
from hvqcodec.families.hyper.model import PAD_STRIDE, RDOutput, VQHyperprior, VQHyperpriorConfig
from hvqcodec.families.hyper.weights import pack_weights
from hvqcodec.image_io import load_photos, random_crops
from hvqcodec.precision import bf16_pays
from hvqcodec.training.checkpoint import atomic_save, float16, float32, load
from hvqcodec.training.data import (
    VALIDATION_LIST,
    area_repeats,
    centre_crop,
    reconstruction_psnr,
    split_photos,
)
from hvqcodec.training.distributed import Cluster, Sampler
from hvqcodec.training.options import add_flags, given

EVAL_SIDE = 512  # validation photos are centre-cropped to at most this, a multiple of PAD_STRIDE
COMPACT_FORMAT = "hvqcodec-rd-checkpoint/1"

PROG = "hvqcodec train"  # as the CLI runs it


@dataclass
class RDTrainConfig:
    data: str = ""
    out: str = "runs/hvq-v3"
    batch_size: int = 8
    crop: int = 192
    lr: float = 2e-4
    warmup: int = 200
    minutes: float = 0.0  # stop after this many minutes of this invocation (0: no limit)
    max_steps: int = 0  # stop at this total step (0: no limit)
    eval_minutes: float = 15.0  # CPU minutes of training between validation rows
    checkpoint_seconds: float = 180.0
    bf16: bool = True  # autocast where it pays (`bf16_pays`); quantizers, GDN, likelihoods fp32
    threads: int = 0
    device: str = "auto"
    seed: int = 0
    log_every: int = 25
    sampling: str = "photo"  # photo: each photo once an epoch; area: in proportion to its pixels
    init_from: str = ""  # a compact or full checkpoint to start from
    validation: str = str(VALIDATION_LIST)  # names of the held-out photos of `data`
    model: dict = field(default_factory=lambda: VQHyperpriorConfig().to_dict())
    # Learning-rate multipliers by parameter-name prefix ({"context.": 4}: the context model's
    # parameters at 4 x lr); the first prefix a name starts with applies, others get 1.
    lr_scales: dict = field(default_factory=dict)
    # Loss weight of each rate point (empty: all 1). A sample's loss at the top lambda is
    # hundreds of times one's at the bottom, so the top rate points steer the shared transforms;
    # weights rebalance them.
    rate_weights: list = field(default_factory=list)
    # Validate and hand on an exponential moving average of the weights, this decay per step
    # (0: the weights themselves). At a constant lr the weights wander around where the loss
    # is low; their average sits nearer it, as a decay of the lr would take them (Polyak and
    # Juditsky 1992), and its validation rows vary less from one to the next.
    ema: float = 0.0


@torch.no_grad()
def validate(model: VQHyperprior, images: list[torch.Tensor], device) -> dict:
    """Mean bpp and PSNR at every trained rate point, the preview's PSNR (at the lowest rate
    point's synthesis), and the top rate point's ceiling (`VQHyperprior.ceiling`), in float32."""
    if not images:
        return {}
    was = model.training
    model.eval()
    points = len(model.config.lambdas)
    rows = [{"bpp": 0.0, "psnr": 0.0} for _ in range(points)]
    preview = ceiling = 0.0
    bottom, top = (torch.tensor([r], device=device) for r in (0, points - 1))
    for img in images:
        x = (centre_crop(img, EVAL_SIDE, PAD_STRIDE).float() / 255)[None].to(device)
        pixels = x.shape[2] * x.shape[3]
        for r in range(points):
            out = model(x, torch.tensor([r], device=device))
            rows[r]["bpp"] += sum(b.item() for b in out.bits.values()) / pixels / len(images)
            rows[r]["psnr"] += reconstruction_psnr(out.reconstruction, x) / len(images)
        preview += reconstruction_psnr(model.preview(x, bottom), x) / len(images)
        ceiling += reconstruction_psnr(model.ceiling(x, top), x) / len(images)
    model.train(was)
    return {
        "val_bpp": [round(r["bpp"], 4) for r in rows],
        "val_psnr": [round(r["psnr"], 3) for r in rows],
        "val_preview_psnr": round(preview, 3),
        "val_ceiling_psnr": round(ceiling, 3),
    }


def step(
    model: VQHyperprior,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    rate_index: torch.Tensor,
    bf16: bool,
    forward: Callable[[torch.Tensor, torch.Tensor], RDOutput] | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, RDOutput]:
    """One training step on a batch in [0, 1] at per-sample trained rate points: the loss
    lambda(r) * 255^2 * MSE + bpp (+ the VQ commitment), backward, clipping, Adam.
    `forward`: a compiled `model` (torch.compile), if any; `weights`: each rate point's loss
    weight (None: all 1)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        o = (model if forward is None else forward)(x, rate_index)
    mse = (o.reconstruction.float() - x).pow(2).flatten(1).mean(1)
    bpp = sum(o.bits.values()) / (x.shape[2] * x.shape[3])
    per_sample = model.lambdas[rate_index] * 255**2 * mse + bpp
    if weights is not None:
        per_sample = per_sample * weights[rate_index]
    loss = per_sample.mean() + o.commit_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, o


def compact_state(model: VQHyperprior, cfg: RDTrainConfig, counters: dict, log: Path) -> dict:
    """fp16 weights, the config, the counters and the log so far: what a campaign commits
    between sessions, and all a fresh machine needs to go on."""
    rows = log.read_text() if log.exists() else ""
    return {"format": COMPACT_FORMAT, "config": asdict(cfg), "model": float16(model.state_dict()),
            "log": rows, **counters}  # fmt: skip


def handed_on(ck: dict) -> dict:
    """A compact or full checkpoint's weights, float32: a full one's moving average where its
    run kept one (`RDTrainConfig.ema`), as its compact checkpoint holds."""
    if "average" not in ck:
        return float32(ck["model"])
    prefix = "module."
    return {k[len(prefix) :]: v for k, v in ck["average"].items() if k.startswith(prefix)}


def checkpoint_model(checkpoint: str | Path) -> tuple[VQHyperprior, dict]:
    """The float32 model a compact or full checkpoint holds, and the checkpoint itself."""
    ck = load(checkpoint)
    model = VQHyperprior(VQHyperpriorConfig.from_dict(ck["config"]["model"]))
    model.load_state_dict(handed_on(ck))
    return model, ck


def export(checkpoint: str | Path, out: str | Path, name: str, *, int8: bool = True) -> None:
    """A compact or full checkpoint as a shipped weights file (`families.hyper.weights`)."""
    model, _ = checkpoint_model(checkpoint)
    atomic_save(pack_weights(name, model.eval(), int8=int8), out)


def param_groups(model: torch.nn.Module, scales: dict[str, float]) -> list[dict]:
    """The optimizer's parameter groups: one per prefix of `scales` that names any parameter,
    its `scale` the prefix's value, then the rest at scale 1; each with its parameters' names,
    so that a resumed run can carry their state into another grouping."""
    grouped: dict[str | None, list] = {prefix: [] for prefix in scales}
    grouped[None] = []
    for name, p in model.named_parameters():
        grouped[next((k for k in scales if name.startswith(k)), None)].append((name, p))
    return [{"params": [p for _, p in members], "names": [n for n, _ in members],
             "scale": float(scales[prefix]) if prefix is not None else 1.0}
            for prefix, members in grouped.items() if members]  # fmt: skip


def carried_state(opt: torch.optim.Optimizer, saved: dict, model: torch.nn.Module) -> dict:
    """`opt`'s state dict holding a checkpoint's optimizer state (`saved`), matched by
    parameter name, whatever the two groupings; a checkpoint without names had one group of
    `model.parameters()`. The groups' settings are `opt`'s own."""
    names = [n for g in saved["param_groups"] for n in g.get("names", ())]
    if not names:
        names = [n for n, _ in model.named_parameters()]
    indices = [i for g in saved["param_groups"] for i in g["params"]]
    by_name = {n: saved["state"][i] for n, i in zip(names, indices) if i in saved["state"]}
    target = opt.state_dict()
    ours = [n for g in opt.param_groups for n in g["names"]]
    target["state"] = {i: by_name[n] for i, n in enumerate(ours) if n in by_name}
    return target


class Run:
    """One training run's state: the model, optimizer, counters, RNG and data position. Its
    full checkpoint (OUT/checkpoint.pt) describes itself, and a run started again resumes it."""

    def __init__(self, cfg: RDTrainConfig, overrides: dict | None = None) -> None:
        """`overrides` of the model config also apply over an `init_from` checkpoint's
        config, for changes that keep the weights' shapes (the lambdas, say)."""
        self.cfg, self.out = cfg, Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path, self.log_path = self.out / "checkpoint.pt", self.out / "log.jsonl"
        ck = load(self.ckpt_path) if self.ckpt_path.exists() else None
        init = load(cfg.init_from) if ck is None and cfg.init_from else None
        if ck is not None:
            cfg.model = ck["config"]["model"]
        elif init is not None:
            cfg.model = {**init["config"]["model"], **(overrides or {})}
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cluster = Cluster(cfg.device)
        self.device = self.cluster.device
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.model = VQHyperprior(VQHyperpriorConfig.from_dict(cfg.model))
        points = len(self.model.config.lambdas)
        if cfg.rate_weights and len(cfg.rate_weights) != points:
            raise SystemExit(f"--rate-weights-json gives {len(cfg.rate_weights)} weights; "
                             f"the model has {points} rate points")  # fmt: skip
        # On the device once, not every step.
        weights = torch.tensor(cfg.rate_weights, device=self.device) if cfg.rate_weights else None
        self.rate_weights = weights
        self.counters = {"step": 0, "cpu_seconds": 0.0, "last_eval": 0.0, "steps_before": 0}
        self.resumed, self.warm_from, self.sampler_state = ck is not None, 0, None
        if init is not None:
            self._initialise(init)
        self.opt = torch.optim.Adam(param_groups(self.model, cfg.lr_scales), lr=cfg.lr)
        if ck is not None:
            self._resume(ck)
        self.model.to(self.device).train()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.average = None
        if not 0 <= cfg.ema < 1:
            raise SystemExit(f"--ema must be at least 0 and below 1, not {cfg.ema}")
        if cfg.ema:
            self.average = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
            if ck is not None and "average" in ck:
                self.average.load_state_dict(ck["average"])

    def averaged(self) -> VQHyperprior:
        """The weights validated and handed on: their moving average where `ema` is set."""
        return self.model if self.average is None else self.average.module

    def _update_average(self) -> None:
        self.average.update_parameters(self.model)
        # The buffers (the codebooks, themselves moving averages) are the model's own.
        for mine, live in zip(self.average.module.buffers(), self.model.buffers(), strict=True):
            mine.copy_(live)

    def _resume(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(carried_state(self.opt, ck["optimizer"], self.model))
        self.counters = ck["counters"]
        self.gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        self.sampler_state = ck["sampler"]
        print(f"resumed {self.ckpt_path} at step {self.counters['step']}", flush=True)

    def _initialise(self, init: dict) -> None:
        """From a compact or full checkpoint: its weights and counters, a fresh optimizer. A
        config that `--model-json` made larger than the checkpoint's grows its model
        (`families.hyper.growth`)."""
        old = VQHyperprior(VQHyperpriorConfig.from_dict(init["config"]["model"]))
        old.load_state_dict(handed_on(init))
        shapes = {k: v.shape for k, v in self.model.state_dict().items()}
        if shapes == {k: v.shape for k, v in old.state_dict().items()}:
            self.model.load_state_dict(old.state_dict())
        else:
            self.model = grow(old, self.model.config)
            print(f"grown from {init['config']['model']}", flush=True)
        self.counters = {k: init[k] for k in self.counters}
        self.warm_from = self.counters["step"]
        if init.get("log") and not self.log_path.exists():  # the campaign's curve goes on
            self.log_path.write_text(init["log"])
        print(f"initialised from {self.cfg.init_from} at step {self.warm_from}; fresh optimizer",
              flush=True)  # fmt: skip

    def load_data(self) -> None:
        cfg = self.cfg
        train_paths, val_paths = split_photos(cfg.data, Path(cfg.validation))
        t0 = time.time()
        self.images, self.val_images = load_photos(train_paths), load_photos(val_paths)
        print(f"{len(self.images)} training and {len(self.val_images)} validation photos "
              f"decoded in {time.time() - t0:.0f} s", flush=True)  # fmt: skip
        if cfg.sampling not in ("photo", "area"):
            raise SystemExit(f"--sampling must be photo or area, not {cfg.sampling!r}")
        repeats = area_repeats(self.images) if cfg.sampling == "area" else None
        self.sampler = Sampler(len(self.images), self.cluster, cfg.seed, repeats)
        if self.sampler_state:
            self.sampler.load_state_dict(self.sampler_state)
        if cfg.bf16 and not bf16_pays(self.device):
            cfg.bf16 = False  # so the checkpoint's config says how this run trained
            print(f"note: bf16 is not faster on this {self.device.type}; training in float32",
                  flush=True)  # fmt: skip

    def save(self) -> None:
        atomic_save(
            {"config": asdict(self.cfg), "model": self.model.state_dict(),
             "optimizer": self.opt.state_dict(), "counters": self.counters,
             "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
             "sampler": self.sampler.state_dict(),
             **({"average": self.average.state_dict()} if self.average else {})},
            self.ckpt_path,
        )  # fmt: skip

    def log(self, row: dict) -> None:
        c = self.counters
        row = {"step": c["step"], "cpu_hours": round(c["cpu_seconds"] / 3600, 4), **row}
        with open(self.log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def evaluate(self) -> None:
        # Every evaluation restarts the interval, so that a leg's closing one is not followed
        # by another a few minutes into the next leg.
        self.counters["last_eval"] = self.counters["cpu_seconds"]
        if self.val_images:
            row = validate(self.averaged(), self.val_images, self.device)
            self.log({**row, "ema": self.cfg.ema} if self.average else row)

    def lr(self) -> float:
        """Warm-up over `warmup` steps for a new run or a fresh optimizer; else the base rate."""
        cfg, since = self.cfg, self.counters["step"] - self.warm_from
        warming = not self.resumed or self.warm_from
        return cfg.lr * min(1.0, (since + 1) / cfg.warmup) if warming else cfg.lr

    def train_step(self) -> None:
        cfg, t = self.cfg, time.time()
        lr = self.lr()
        for g in self.opt.param_groups:
            g["lr"] = lr * g["scale"]
        x = random_crops(self.images, self.sampler.take(cfg.batch_size), cfg.crop, self.gen)
        x = x.to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        points = len(self.model.config.lambdas)
        rate_index = torch.randint(points, (len(x),), generator=self.gen).to(self.device)
        loss, o = step(self.model, self.opt, x, rate_index, cfg.bf16, weights=self.rate_weights)
        if self.average is not None:
            self._update_average()
        self.counters["step"] += 1
        self.counters["cpu_seconds"] += time.time() - t
        if self.counters["step"] % cfg.log_every == 0:
            row = {"loss": round(loss.item(), 4), "lr": lr}
            row["sec_per_step"] = round(time.time() - t, 3)
            pixels = cfg.crop**2
            row.update({f"bpp_{k}": round(v.mean().item() / pixels, 4) for k, v in o.bits.items()})
            row.update({f"perplexity_{k}": round(v.item(), 1) for k, v in o.perplexity.items()})
            self.log(row)

    def loop(self) -> None:
        """Train until `minutes` or `max_steps`, validating every `eval_minutes` of CPU time
        and checkpointing every `checkpoint_seconds`; then validate and save once more."""
        cfg, c = self.cfg, self.counters
        if c["step"] == 0 and not self.resumed:
            self.evaluate()
        start = last_save = time.time()
        while not (cfg.minutes and time.time() - start > 60 * cfg.minutes) and not (
            cfg.max_steps and c["step"] >= cfg.max_steps
        ):
            self.train_step()
            if c["cpu_seconds"] - c["last_eval"] >= 60 * cfg.eval_minutes:
                self.evaluate()
            if time.time() - last_save > cfg.checkpoint_seconds:
                self.save()
                last_save = time.time()
        self.evaluate()
        self.save()


def train(cfg: RDTrainConfig, compact: str | None = None, overrides: dict | None = None) -> None:
    """Train (or resume) a run; `compact`: also write its compact checkpoint at the end."""
    run = Run(cfg, overrides)
    run.load_data()
    run.loop()
    if compact:
        atomic_save(compact_state(run.averaged(), cfg, run.counters, run.log_path), compact)
        print(f"wrote {compact}", flush=True)


def _positive_numbers(text: str, kind: type, example: str) -> dict | list:
    """A JSON `kind` (object or array) whose values are positive numbers, else a usage error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    numbers = value.values() if isinstance(value, dict) else value
    if not isinstance(value, kind) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in numbers
    ):
        raise argparse.ArgumentTypeError(f"give {example}")
    return value


def lr_scales(text: str) -> dict[str, float]:
    """--lr-scales-json: a JSON object from parameter-name prefixes to positive numbers."""
    scales = _positive_numbers(
        text, dict, "an object of prefixes to positive numbers, e.g. '{\"context.\": 4}'"
    )
    return {str(k): float(v) for k, v in scales.items()}


def rate_weights(text: str) -> list[float]:
    """--rate-weights-json: a JSON array of positive numbers, one per rate point."""
    weights = _positive_numbers(text, list, "an array of positive numbers, one per rate point")
    return [float(v) for v in weights]


TABLES = ("model", "lr_scales", "rate_weights")  # config fields given as JSON flags


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_flags(p, RDTrainConfig, tables=TABLES)
    p.add_argument("--lr-scales-json", type=lr_scales, default={},
                   help="learning-rate multipliers by parameter-name prefix, as JSON: "
                   "'{\"context.\": 4}' trains the context model at 4 x --lr")  # fmt: skip
    p.add_argument(
        "--rate-weights-json", type=rate_weights, default=[],
        help="each rate point's loss weight, as a JSON array (default: all 1)",
    )  # fmt: skip
    p.add_argument(
        "--model-json",
        help="JSON overrides of the model config (new runs only; "
        "with --init-from, over the checkpoint's config)",
    )
    p.add_argument("--compact", help="at the end, also write a compact fp16 checkpoint here")
    p.add_argument("--export", metavar="WEIGHTS",
                   help="write the --init-from checkpoint as a weights file, named --name, "
                   "and exit (no training)")  # fmt: skip
    p.add_argument("--name", help="the exported model's name (a new one: shipped files stay)")
    p.add_argument("--float16", action="store_true",
                   help="export every float tensor as float16, not large ones as int8")  # fmt: skip
    args = p.parse_args(argv)
    if args.export:
        if not args.init_from or not args.name:
            p.error("--export needs --init-from CHECKPOINT and --name NAME")
        export(args.init_from, args.export, args.name, int8=not args.float16)
        print(f"wrote {args.export}")
        return
    cfg = RDTrainConfig(**given(args, RDTrainConfig, tables=TABLES))
    cfg.lr_scales, cfg.rate_weights = args.lr_scales_json, args.rate_weights_json
    overrides = json.loads(args.model_json) if args.model_json else {}
    cfg.model = {**cfg.model, **overrides}
    if not cfg.data:
        p.error("--data is required")
    train(cfg, args.compact, overrides)


if __name__ == "__main__":
    main()
