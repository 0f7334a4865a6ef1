"""Train an hvq-v3 model end to end on distortion + lambda * rate: only the loop.

    python -m hvqcodec.train_rd --data PHOTO_FOLDER --out runs/v3
    python -m hvqcodec.train_rd --data PHOTO_FOLDER --out runs/v3 --minutes 30
    python -m hvqcodec.train_rd --data PHOTO_FOLDER --out runs/v3b --init-from ckpt.pt

One phase: the transforms, the VQ levels, the gain vectors and the VQ priors learn together
(`hvqcodec.vq_hyperprior`), each sample at a random quality. The photos named in
configs/validation.txt are held out; every `eval_minutes` the model is measured on them at
every quality (PSNR and the exact cost of the rounded symbols under the float model) and the
row goes to OUT/log.jsonl with the CPU time spent so far.

OUT/checkpoint.pt describes itself (config, weights, optimizer, step, CPU seconds, RNG and data
position) and the run resumes from it when started again, after nanoGPT. `--compact PATH`
writes the fp16 weights with the config and counters alone, small enough to commit;
`--init-from` starts a new run from one (fresh optimizer, warm-up), which is how a campaign
moves from machine to machine. `--init-from CKPT --export WEIGHTS --name NAME` writes a
checkpoint as a weights file the package can ship (large tensors outside the synthesis int8;
`--float16` keeps them float16).
"""

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from hvqcodec.distributed import Cluster, Sampler
from hvqcodec.image_io import image_paths, load_photos, random_crops
from hvqcodec.metrics import psnr_from_mse
from hvqcodec.precision import native_bf16
from hvqcodec.vq_hyperprior import STRIDE, RDOutput, VQHyperprior, VQHyperpriorConfig

VALIDATION_LIST = Path(__file__).resolve().parent.parent / "configs" / "validation.txt"
EVAL_SIDE = 512  # validation photos are centre-cropped to at most this, a multiple of STRIDE


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
    bf16: bool = True  # autocast where native; quantizers, GDN pools and likelihoods stay fp32
    threads: int = 0
    device: str = "auto"
    seed: int = 0
    log_every: int = 25
    init_from: str = ""  # a compact or full checkpoint to start from
    validation: str = str(VALIDATION_LIST)  # names of the held-out photos of `data`
    model: dict = field(default_factory=lambda: VQHyperpriorConfig().to_dict())


def validation_names(path: Path = VALIDATION_LIST) -> list[str]:
    return [s for s in path.read_text().split() if not s.startswith("#")] if path.exists() else []


def split_photos(folder: str | Path, listing: Path = VALIDATION_LIST) -> tuple[list, list]:
    """(training photos, validation photos) of a folder; those `listing` names are held out."""
    paths, held = image_paths(folder), set(validation_names(listing))
    return [p for p in paths if p.name not in held], [p for p in paths if p.name in held]


def centre_crop(img: torch.Tensor, side: int = EVAL_SIDE) -> torch.Tensor:
    h, w = (min(side, s) // STRIDE * STRIDE for s in img.shape[1:])
    y, x = (img.shape[1] - h) // 2, (img.shape[2] - w) // 2
    return img[:, y : y + h, x : x + w]


def reconstruction_psnr(reconstruction: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR in dB of a reconstruction in [0, 1] (clamped, as the codec's pixels are) against x."""
    return psnr_from_mse(F.mse_loss(reconstruction.clamp(0, 1), x).item(), 1.0)


@torch.no_grad()
def validate(model: VQHyperprior, images: list[torch.Tensor], device) -> dict:
    """Mean bpp and PSNR at every trained quality, the preview's PSNR, and the top quality's
    ceiling (`VQHyperprior.ceiling`), in float32."""
    if not images:
        return {}
    was = model.training
    model.eval()
    levels = len(model.config.lambdas)
    rows = [{"bpp": 0.0, "psnr": 0.0} for _ in range(levels)]
    preview = ceiling = 0.0
    top = torch.tensor([levels - 1], device=device)
    for img in images:
        x = (centre_crop(img).float() / 255)[None].to(device)
        pixels = x.shape[2] * x.shape[3]
        for q in range(levels):
            out = model(x, torch.tensor([q], device=device))
            rows[q]["bpp"] += sum(b.item() for b in out.bits.values()) / pixels / len(images)
            rows[q]["psnr"] += reconstruction_psnr(out.reconstruction, x) / len(images)
        preview += reconstruction_psnr(model.preview(x), x) / len(images)
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
    quality: torch.Tensor,
    bf16: bool,
    forward: Callable[[torch.Tensor, torch.Tensor], RDOutput] | None = None,
) -> tuple[torch.Tensor, RDOutput]:
    """One training step on a batch in [0, 1] at per-sample trained qualities: the loss
    lambda(q) * 255^2 * MSE + bpp (+ the VQ commitment), backward, clipping, Adam.
    `forward`: a compiled `model` (torch.compile), if any."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        o = (model if forward is None else forward)(x, quality)
    mse = (o.reconstruction.float() - x).pow(2).flatten(1).mean(1)
    bpp = sum(o.bits.values()) / (x.shape[2] * x.shape[3])
    loss = (model.lambdas[quality] * 255**2 * mse + bpp).mean() + o.commit_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, o


def compact_state(model: VQHyperprior, cfg: RDTrainConfig, counters: dict, log: Path) -> dict:
    """fp16 weights, the config, the counters and the log so far: what a campaign commits
    between sessions, and all a fresh machine needs to go on."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    rows = log.read_text() if log.exists() else ""
    return {"format": "hvqcodec-rd-checkpoint/1", "config": asdict(cfg), "model": state,
            "log": rows, **counters}  # fmt: skip


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def float_state(state: dict) -> dict:
    """A compact checkpoint's fp16 weights widened back to fp32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def checkpoint_model(checkpoint: str | Path) -> tuple[VQHyperprior, dict]:
    """The float32 model a compact or full checkpoint holds, and the checkpoint itself."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = VQHyperprior(VQHyperpriorConfig.from_dict(ck["config"]["model"]))
    model.load_state_dict(float_state(ck["model"]))
    return model, ck


def export(checkpoint: str | Path, out: str | Path, name: str, *, int8: bool = True) -> None:
    """A compact or full checkpoint as a shipped weights file (`models.pack_hyper_weights`)."""
    from hvqcodec.models import pack_hyper_weights  # the trainer itself never needs the codec

    model, _ = checkpoint_model(checkpoint)
    atomic_save(pack_hyper_weights(name, model.eval(), int8=int8), Path(out))


def train(cfg: RDTrainConfig, compact: str | None = None, overrides: dict | None = None) -> None:
    """`overrides` of the model config also apply over an `init_from` checkpoint's config, for
    changes that keep the weights' shapes (the lambdas, say)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"
    ck = None
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if ck is not None:
        cfg.model = ck["config"]["model"]
    elif cfg.init_from:
        init = torch.load(cfg.init_from, map_location="cpu", weights_only=True)
        cfg.model = {**init["config"]["model"], **(overrides or {})}
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cluster = Cluster(cfg.device)
    device = cluster.device
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = VQHyperprior(VQHyperpriorConfig.from_dict(cfg.model))
    counters = {"step": 0, "cpu_seconds": 0.0, "last_eval": 0.0, "steps_before": 0}
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sampler_state, warm_from = None, 0
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        counters = ck["counters"]
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        sampler_state = ck["sampler"]
        print(f"resumed {ckpt_path} at step {counters['step']}", flush=True)
    elif cfg.init_from:
        model.load_state_dict(float_state(init["model"]))
        counters = {k: init[k] for k in counters}
        warm_from = counters["step"]
        if init.get("log") and not log_path.exists():  # the campaign's curve goes on
            log_path.write_text(init["log"])
        print(f"initialised from {cfg.init_from} at step {warm_from}; fresh optimizer", flush=True)
    model.to(device).train()
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    train_paths, val_paths = split_photos(cfg.data, Path(cfg.validation))
    t0 = time.time()
    images, val_images = load_photos(train_paths), load_photos(val_paths)
    print(f"{len(images)} training and {len(val_images)} validation photos decoded in "
          f"{time.time() - t0:.0f} s", flush=True)  # fmt: skip
    sampler = Sampler(len(images), cluster, cfg.seed)
    if sampler_state:
        sampler.load_state_dict(sampler_state)
    levels = len(model.config.lambdas)
    pixels = cfg.crop**2
    if cfg.bf16 and not native_bf16(device):
        cfg.bf16 = False  # so the checkpoint's config says how this run trained
        print(f"note: no native bf16 on this {device.type}; training in float32", flush=True)

    def save() -> None:
        atomic_save(
            {"config": asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(),
             "counters": counters, "generator": gen.get_state(),
             "torch_rng": torch.get_rng_state(), "sampler": sampler.state_dict()},
            ckpt_path,
        )  # fmt: skip

    def log(row: dict) -> None:
        row = {"step": counters["step"], "cpu_hours": round(counters["cpu_seconds"] / 3600, 4),
               **row}  # fmt: skip
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def evaluate() -> None:
        if val_images:
            log(validate(model, val_images, device))

    if counters["step"] == 0 and ck is None:
        evaluate()
    start, last_save = time.time(), time.time()
    while True:
        if cfg.minutes and time.time() - start > 60 * cfg.minutes:
            break
        if cfg.max_steps and counters["step"] >= cfg.max_steps:
            break
        t = time.time()
        since = counters["step"] - warm_from
        lr = cfg.lr * min(1.0, (since + 1) / cfg.warmup) if ck is None or warm_from else cfg.lr
        for g in opt.param_groups:
            g["lr"] = lr
        x = random_crops(images, sampler.take(cfg.batch_size), cfg.crop, gen).to(device)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        quality = torch.randint(levels, (len(x),), generator=gen).to(device)
        loss, o = step(model, opt, x, quality, cfg.bf16)
        counters["step"] += 1
        counters["cpu_seconds"] += time.time() - t
        if counters["step"] % cfg.log_every == 0:
            row = {"loss": round(loss.item(), 4), "lr": lr}
            row["sec_per_step"] = round(time.time() - t, 3)
            row.update({f"bpp_{k}": round(v.mean().item() / pixels, 4) for k, v in o.bits.items()})
            row.update({f"perplexity_{k}": round(v.item(), 1) for k, v in o.perplexity.items()})
            log(row)
        if counters["cpu_seconds"] - counters["last_eval"] >= 60 * cfg.eval_minutes:
            counters["last_eval"] = counters["cpu_seconds"]
            evaluate()
        if time.time() - last_save > cfg.checkpoint_seconds:
            save()
            last_save = time.time()
    evaluate()
    save()
    if compact:
        atomic_save(compact_state(model, cfg, counters, log_path), Path(compact))
        print(f"wrote {compact}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    defaults = RDTrainConfig()
    for f in fields(RDTrainConfig):
        if f.name == "model":
            continue
        default = getattr(defaults, f.name)
        kind = type(default)
        if isinstance(default, bool):
            kind = lambda s: s.lower() in ("1", "true", "yes")  # noqa: E731
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default,
                       help=f"default {default!r}")  # fmt: skip
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
    cfg = RDTrainConfig(**{f.name: getattr(args, f.name) for f in fields(RDTrainConfig)
                           if f.name != "model"})  # fmt: skip
    overrides = json.loads(args.model_json) if args.model_json else {}
    cfg.model = {**cfg.model, **overrides}
    if not cfg.data:
        p.error("--data is required")
    train(cfg, args.compact, overrides)


if __name__ == "__main__":
    main()
