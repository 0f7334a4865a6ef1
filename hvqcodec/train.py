"""Train the hierarchical VQ-VAE, then its priors, on a folder of photos.

    python -m hvqcodec.train --data ../shared/data/train --out runs/v1
    hvqcodec train --data ../shared/data/train --out runs/v1

Phase 1 trains the autoencoder on random crops (MSE + commitment). Phase 2 freezes it, codes
every training image once, and trains the three priors on aligned random crops of those code
maps (cross-entropy). The run resumes from `OUT/checkpoint.pt` whenever it is started again;
a checkpoint holds its own config, weights, optimizer and step (after nanoGPT). `--export`
writes the weights file the codec ships.
"""

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from hvqcodec.metrics import psnr_from_mse
from hvqcodec.models import save_weights
from hvqcodec.priors import HierarchicalPrior, PriorConfig
from hvqcodec.vqvae import LEVELS, HierarchicalVQVAE, VQVAEConfig, pad_to_stride

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/hvq"
    vq_steps: int = 8000
    prior_steps: int = 4000
    batch_size: int = 8
    crop: int = 192
    lr: float = 4e-4
    prior_lr: float = 1e-3
    prior_batch_size: int = 16
    prior_crop: int = 8  # top-level code positions; middle and bottom crops are 2x and 4x
    warmup: int = 200
    seed: int = 0
    log_every: int = 25
    checkpoint_seconds: float = 180.0
    threads: int = 0  # 0: torch's default
    vqvae_from: str = ""  # checkpoint whose autoencoder to reuse; trains only the priors
    model: dict = field(default_factory=lambda: VQVAEConfig().to_dict())
    prior: dict = field(default_factory=lambda: PriorConfig().to_dict())


def load_images(folder: str | Path) -> list[torch.Tensor]:
    """Every readable photo in a folder as a (3, H, W) uint8 tensor, decoded once into memory."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no images found in {folder}")
    images = []
    for p in paths:
        with Image.open(p) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        images.append(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1))
    return images


def random_crops(images, n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """A batch of random size x size crops with random horizontal flips, in [0, 1]."""
    out = []
    for i in torch.randint(len(images), (n,), generator=gen).tolist():
        img = images[i]
        if min(img.shape[1:]) < size:
            img = pad_to_stride(img[None].float(), size)[0]
        y = int(torch.randint(img.shape[1] - size + 1, (1,), generator=gen))
        x = int(torch.randint(img.shape[2] - size + 1, (1,), generator=gen))
        crop = img[:, y : y + size, x : x + size]
        if bool(torch.rand(1, generator=gen) < 0.5):
            crop = crop.flip(-1)
        out.append(crop)
    return torch.stack(out).float() / 255


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


class Run:
    """State of one training run: models, optimizer, step, and the log, all resumable."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.log_path = self.out / "log.jsonl"
        # The architecture of a run is fixed by its first checkpoint, and an autoencoder
        # reused from another run brings its own config.
        if self.ckpt_path.exists():
            saved = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)["config"]
            cfg.model, cfg.prior = saved["model"], saved["prior"]
        elif cfg.vqvae_from:
            saved = torch.load(cfg.vqvae_from, map_location="cpu", weights_only=True)["config"]
            cfg.model = saved["model"]
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.vqvae = HierarchicalVQVAE(VQVAEConfig.from_dict(cfg.model))
        self.prior = HierarchicalPrior(PriorConfig.from_dict(cfg.prior), self.vqvae.config)
        self.phase, self.step, self.elapsed = "vqvae", 0, 0.0
        self.opt = torch.optim.Adam(self.vqvae.parameters(), lr=cfg.lr)
        if self.ckpt_path.exists():
            self._resume()
        elif cfg.vqvae_from:
            # Reuse a trained autoencoder and train only priors (e.g. to compare prior designs).
            ck = torch.load(cfg.vqvae_from, map_location="cpu", weights_only=True)
            self.vqvae.load_state_dict(ck["vqvae"])
            self.phase = "priors"
            self.opt = torch.optim.Adam(self.prior.parameters(), lr=cfg.prior_lr)

    def _resume(self) -> None:
        ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        self.vqvae.load_state_dict(ck["vqvae"])
        self.prior.load_state_dict(ck["prior"])
        self.phase, self.step, self.elapsed = ck["phase"], ck["step"], ck["elapsed"]
        if self.phase == "priors":
            self.opt = torch.optim.Adam(self.prior.parameters(), lr=self.cfg.prior_lr)
        self.opt.load_state_dict(ck["optimizer"])
        self.gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        self._truncate_log()
        print(f"resumed {self.ckpt_path}: phase {self.phase}, step {self.step}", flush=True)

    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint, which the resumed run writes again."""
        if not self.log_path.exists():
            return
        order = ("vqvae", "priors")
        rows = [json.loads(line) for line in open(self.log_path)]
        keep = [
            r for r in rows
            if (order.index(r["phase"]), r["step"]) <= (order.index(self.phase), self.step)
        ]  # fmt: skip
        self.log_path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def save(self) -> None:
        ck = {
            "config": asdict(self.cfg),
            "phase": self.phase,
            "step": self.step,
            "elapsed": self.elapsed,
            "vqvae": self.vqvae.state_dict(),
            "prior": self.prior.state_dict(),
            "optimizer": self.opt.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.ckpt_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            torch.save(ck, f)
            f.flush()
            os.fsync(f.fileno())  # a machine stopped right after still has a whole checkpoint
        os.replace(tmp, self.ckpt_path)

    def log(self, record: dict) -> None:
        record = {
            "phase": self.phase,
            "step": self.step,
            "elapsed": round(self.elapsed, 1),
            **record,
        }
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    def _loop(self, total: int, base_lr: float, params, step_fn) -> None:
        last_save = time.time()
        while self.step < total:
            t0 = time.time()
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, total, base_lr, self.cfg.warmup)
            loss, record = step_fn()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.opt.step()
            self.step += 1
            self.elapsed += time.time() - t0
            if self.step % self.cfg.log_every == 0 or self.step == total:
                self.log(record)
            if time.time() - last_save > self.cfg.checkpoint_seconds or self.step == total:
                self.save()
                last_save = time.time()

    def train_vqvae(self, images) -> None:
        self.vqvae.train()

        def step():
            x = random_crops(images, self.cfg.batch_size, self.cfg.crop, self.gen)
            out = self.vqvae(x)
            mse = F.mse_loss(out.reconstruction, x)
            record = {
                "loss": (mse + out.commit_loss).item(),
                "psnr": round(psnr_from_mse(mse.item(), 1.0), 3),
            }
            record.update(
                {f"perplexity_{k}": round(v.item(), 1) for k, v in out.perplexity.items()}
            )
            record.update({f"usage_{k}": round(v.item(), 3) for k, v in out.usage.items()})
            return mse + out.commit_loss, record

        self._loop(self.cfg.vq_steps, self.cfg.lr, list(self.vqvae.parameters()), step)

    @torch.no_grad()
    def code_dataset(self, images) -> list[dict[str, torch.Tensor]]:
        self.vqvae.eval()
        codes = []
        for img in images:
            x = pad_to_stride(img[None].float() / 255)
            codes.append({k: v[0] for k, v in self.vqvae.encode(x).items()})
        return codes

    def train_priors(self, codes) -> None:
        self.prior.train()
        c = self.cfg.prior_crop
        usable = [m for m in codes if min(m["top"].shape) >= c]
        if not usable:
            raise SystemExit(f"no training image has sides of at least {c * 32} pixels "
                             "(lower --prior-crop)")  # fmt: skip

        def step():
            batch = {k: [] for k in LEVELS}
            for i in torch.randint(len(usable), (self.cfg.prior_batch_size,), generator=self.gen):
                m = usable[int(i)]
                y = int(torch.randint(m["top"].shape[0] - c + 1, (1,), generator=self.gen))
                x = int(torch.randint(m["top"].shape[1] - c + 1, (1,), generator=self.gen))
                for k, s in zip(LEVELS, (1, 2, 4)):
                    batch[k].append(m[k][y * s : (y + c) * s, x * s : (x + c) * s])
            batch = {k: torch.stack(v) for k, v in batch.items()}
            bits = self.prior.bits_per_code(batch)
            # Loss: bits per pixel of the whole crop, the quantity the codec pays.
            pixels = self.cfg.prior_batch_size * (c * 32) ** 2
            total = sum(b * batch[k].numel() for k, b in bits.items()) / pixels
            record = {"bpp": round(total.item(), 5)}
            record.update({f"bits_{k}": round(b.item(), 4) for k, b in bits.items()})
            return total, record

        self._loop(self.cfg.prior_steps, self.cfg.prior_lr, list(self.prior.parameters()), step)

    def run(self) -> None:
        images = load_images(self.cfg.data)
        print(f"{len(images)} images loaded", flush=True)
        if self.phase == "vqvae":
            self.train_vqvae(images)
            self.phase, self.step = "priors", 0
            self.opt = torch.optim.Adam(self.prior.parameters(), lr=self.cfg.prior_lr)
            self.save()
        t0 = time.time()
        codes = self.code_dataset(images)
        print(f"coded {len(codes)} images in {time.time() - t0:.0f} s", flush=True)
        self.train_priors(codes)
        plot_log(self.log_path, self.out / "training.png")
        card = model_card(self.out, len(images))
        (self.out / "model_card.json").write_text(json.dumps(card, indent=1))

    def export(self, path: str | Path, name: str) -> None:
        save_weights(path, name, self.vqvae, self.prior)


def cpu_model() -> str:
    """The CPU's model name, for model cards and benchmark reports."""
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_card(run_dir: Path, n_images: int, command: str | None = None) -> dict:
    """What a model card needs to know about a finished run, read from its files."""
    import sys

    rows = [json.loads(line) for line in open(run_dir / "log.jsonl")]
    vq = [r for r in rows if r["phase"] == "vqvae"]
    pr = [r for r in rows if r["phase"] == "priors"]
    ck = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    vq_seconds = vq[-1]["elapsed"] if vq else 0.0
    return {
        "command": command or "python -m hvqcodec.train " + " ".join(sys.argv[1:]),
        "data": ck["config"]["data"],
        "images": n_images,
        "config": ck["config"],
        "vq_steps": vq[-1]["step"] if vq else 0,
        "prior_steps": pr[-1]["step"] if pr else 0,
        "vq_train_seconds": vq_seconds,
        "prior_train_seconds": (pr[-1]["elapsed"] - vq_seconds) if pr else 0.0,
        "final_train_psnr_mean_last_10": sum(r["psnr"] for r in vq[-10:]) / max(1, len(vq[-10:])),
        "final_prior_bpp_mean_last_10": sum(r["bpp"] for r in pr[-10:]) / max(1, len(pr[-10:])),
        "hardware": f"{cpu_model()}, {torch.get_num_threads()} torch threads, no GPU",
        "torch": torch.__version__,
    }


def plot_log(log_path: Path, png_path: Path) -> None:
    """Loss, PSNR, perplexity and prior bpp against step; skipped when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no training plot (pip install hvqcodec[train])")
        return
    rows = [json.loads(line) for line in open(log_path)]
    vq = [r for r in rows if r["phase"] == "vqvae"]
    pr = [r for r in rows if r["phase"] == "priors"]
    fig, ax = plt.subplots(1, 4, figsize=(18, 4))
    ax[0].plot([r["step"] for r in vq], [r["loss"] for r in vq])
    ax[0].set(title="autoencoder loss", xlabel="step", yscale="log")
    ax[1].plot([r["step"] for r in vq], [r["psnr"] for r in vq])
    ax[1].set(title="training PSNR (dB)", xlabel="step")
    for k in LEVELS:
        ax[2].plot([r["step"] for r in vq], [r[f"perplexity_{k}"] for r in vq], label=k)
    ax[2].set(title="codebook perplexity per batch", xlabel="step")
    ax[2].legend()
    ax[3].plot([r["step"] for r in pr], [r["bpp"] for r in pr])
    ax[3].set(title="prior rate (bpp)", xlabel="step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("model", "prior"):
            continue
        default = getattr(defaults, f.name)
        p.add_argument("--" + f.name.replace("_", "-"), type=type(default), default=default)
    p.add_argument("--model-json", help="JSON overrides for the autoencoder config")
    p.add_argument("--prior-json", help="JSON overrides for the prior config")
    p.add_argument("--export", help="after training, write the shipped weights file here")
    p.add_argument("--name", default="hvq-custom", help="model name stored in the weights file")
    args = p.parse_args(argv)
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if hasattr(defaults, k)})
    if args.model_json:
        cfg.model = {**cfg.model, **json.loads(args.model_json)}
    if args.prior_json:
        cfg.prior = {**cfg.prior, **json.loads(args.prior_json)}
    if not cfg.data:
        p.error("--data is required")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Run(cfg)
    run.run()
    if args.export:
        run.export(args.export, args.name)
        print(f"wrote {args.export}")


if __name__ == "__main__":
    main()
