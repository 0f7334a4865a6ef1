"""Train the hierarchical VQ-VAE, then its priors, on a folder of photos.

    python -m hvqcodec.train --config configs/hvq-v1.toml
    python -m hvqcodec.train --config configs/hvq-v1.toml --vq-steps 500 --out runs/short
    torchrun --nproc_per_node=4 -m hvqcodec.train --config configs/hvq-v1.toml --device cuda

Phase 1 trains the autoencoder on random crops (MSE + commitment). Phase 2 freezes it, codes
every training image once, and trains the three priors on aligned random crops of those code
maps (cross-entropy). A config file (TOML or JSON) holds every hyperparameter; flags override
it, and each invocation's overrides are logged to OUT/invocations.jsonl.

The run resumes exactly from `OUT/checkpoint.pt` whenever it is started again: the checkpoint
holds its own config, weights, optimizer, step, every rank's RNG state and data position (after
nanoGPT), so 2N steps equal N steps, a stop, and N more. Under torchrun, training runs with
DistributedDataParallel (gloo on CPU, NCCL on GPU); each rank reads its shard of the data
through a DistributedSampler, and the quantizers all-reduce their codebook statistics so that
every rank holds identical codebooks (checked at the end). At the end rank 0 writes
OUT/MODEL_CARD.md, evaluated on `eval_images` with the benchmark code; `--export` writes the
weights file the codec ships.
"""

import hashlib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from hvqcodec.layers.residual_quantize import dropout_stages
from hvqcodec.metrics import psnr_from_mse
from hvqcodec.models import build_model, hash_state, keep_stages, pack_weights
from hvqcodec.priors import HierarchicalPrior, PriorConfig
from hvqcodec.vqvae import HierarchicalVQVAE, VQVAEConfig, pad_to_stride, stream_stride

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


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
    """Defaults, then a resumed run's own saved config, then the config file, then flags."""
    cfg = TrainConfig()
    for values in (saved or {}, file_values, overrides):
        for k, v in values.items():
            if k in ("model", "prior"):
                setattr(cfg, k, {**getattr(cfg, k), **v})
            else:
                setattr(cfg, k, v)
    return cfg


class Cluster:
    """This process's place in a torchrun job; rank 0 of 1 when started without torchrun."""

    def __init__(self, device: str = "auto") -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if device == "cuda" else device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP for training; buffers stay rank-local (the quantizers synchronise their own)."""
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def gather(self, obj) -> list:
        """`obj` of every rank, in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank (e.g. whether a checkpoint is due by its clock)."""
        return bool(self.gather(flag)[0])

    def close(self, *, failed: bool = False) -> None:
        """Leave the job. On success wait for every rank first, so that no rank tears down its
        connections while another still uses them; after a failure (other ranks may be inside
        a different collective) leave at once."""
        if self.world > 1 and dist.is_initialized():
            if not failed:
                dist.barrier()
            dist.destroy_process_group()


class Sampler:
    """Indices this rank trains on: DistributedSampler's shard of a fresh shuffle each epoch,
    read one batch at a time; its position is part of the checkpoint."""

    def __init__(self, n: int, cluster: Cluster, seed: int) -> None:
        self.inner = DistributedSampler(
            range(n), num_replicas=cluster.world, rank=cluster.rank, shuffle=True, seed=seed
        )
        self.epoch, self.offset, self.order = 0, 0, None

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.order is None:
                self.inner.set_epoch(self.epoch)
                self.order = list(self.inner)
            if self.offset == len(self.order):
                self.epoch, self.offset, self.order = self.epoch + 1, 0, None
                continue
            out.append(self.order[self.offset])
            self.offset += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.offset, self.order = state["epoch"], state["offset"], None


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


def random_crops(images, indices: list[int], size: int, gen: torch.Generator) -> torch.Tensor:
    """A random size x size crop of each chosen image with random horizontal flips, in [0, 1]."""
    out = []
    for i in indices:
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


def state_digest(*modules: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer: equal on two ranks only if bit-identical."""
    h = hashlib.sha256()
    for m in modules:
        hash_state(h, m.state_dict())
    return h.hexdigest()


class Stopped(Exception):
    """`--stop-after` steps were taken; the checkpoint is saved."""


class Run:
    """State of one training run: models, optimizer, step, RNG, data position and the log."""

    def __init__(self, cfg: TrainConfig, cluster: Cluster | None = None) -> None:
        self.cfg, self.cluster = cfg, cluster or Cluster(cfg.device)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.log_path = self.out / "log.jsonl"
        self.stop_after: int | None = None
        # The architecture of a run is fixed by its first checkpoint, and an autoencoder
        # reused from another run brings its own config.
        ck = reused = None
        if self.ckpt_path.exists():
            ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
            cfg.model, cfg.prior = ck["config"]["model"], ck["config"]["prior"]
        elif cfg.vqvae_from:
            reused = torch.load(cfg.vqvae_from, map_location="cpu", weights_only=True)
            cfg.model = reused["config"]["model"]
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.gen = torch.Generator().manual_seed(cfg.seed + self.cluster.rank)
        self.vqvae = HierarchicalVQVAE(VQVAEConfig.from_dict(cfg.model))
        self.prior = HierarchicalPrior(PriorConfig.from_dict(cfg.prior), self.vqvae.config)
        self.vqvae.to(self.cluster.device)
        self.prior.to(self.cluster.device)
        self.phase, self.step, self.elapsed = "vqvae", 0, 0.0
        self.opt = torch.optim.Adam(self.vqvae.parameters(), lr=cfg.lr)
        self.sampler_state: dict | None = None
        if ck is not None:
            self._resume(ck)
        elif reused is not None:
            # Reuse a trained autoencoder and train only priors (e.g. to compare prior designs).
            self.vqvae.load_state_dict(reused["vqvae"])
            self._start_priors()
        elif cfg.init_from:
            self._initialise(cfg.init_from)

    def _initialise(self, path: str) -> None:
        """Warm start from a checkpoint or weights file. New modules (e.g. added bottom
        stages and their priors) keep their fresh initialisation; a new quantizer k-means
        initialises itself on its first batch."""
        ck = torch.load(path, map_location="cpu", weights_only=True)
        for part, module in (("vqvae", self.vqvae), ("prior", self.prior)):
            state = {k: v.float() if v.is_floating_point() else v for k, v in ck[part].items()}
            missing, unexpected = module.load_state_dict(state, strict=False)
            if unexpected:
                raise SystemExit(f"{path}: {part} has parameters this model lacks: {unexpected}")
            if missing and self.cluster.main:
                fresh = sorted({k.split(".")[1] for k in missing})
                print(f"init {part} from {path}; fresh: {fresh}", flush=True)

    def _start_priors(self) -> None:
        self.phase, self.step = "priors", 0
        self.opt = torch.optim.Adam(self.prior.parameters(), lr=self.cfg.prior_lr)
        self.sampler_state = None

    def _resume(self, ck: dict) -> None:
        self.vqvae.load_state_dict(ck["vqvae"])
        self.prior.load_state_dict(ck["prior"])
        self.phase, self.step, self.elapsed = ck["phase"], ck["step"], ck["elapsed"]
        if self.phase == "priors":
            self.opt = torch.optim.Adam(self.prior.parameters(), lr=self.cfg.prior_lr)
        self.opt.load_state_dict(ck["optimizer"])
        ranks = ck.get("ranks")
        if ranks is None:  # a checkpoint from before per-rank state: RNG only, no data position
            ranks = [{"generator": ck["generator"], "torch_rng": ck["torch_rng"]}]
        if len(ranks) != self.cluster.world:
            raise SystemExit(
                f"checkpoint has {len(ranks)} ranks; this job has {self.cluster.world}"
            )
        mine = ranks[self.cluster.rank]
        self.gen.set_state(mine["generator"])
        torch.set_rng_state(mine["torch_rng"])
        if "cuda_rng" in mine and self.cluster.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], self.cluster.device)
        self.sampler_state = mine.get("sampler")
        if self.cluster.main:
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

    def sampler(self, n: int) -> Sampler:
        s = Sampler(n, self.cluster, self.cfg.seed)
        if self.sampler_state is not None:
            s.load_state_dict(self.sampler_state)
        self.current_sampler = s
        return s

    def save(self) -> None:
        """Every rank contributes its RNG and data position; rank 0 writes the file."""
        mine = {
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "sampler": self.current_sampler.state_dict(),
        }
        if self.cluster.device.type == "cuda":
            mine["cuda_rng"] = torch.cuda.get_rng_state(self.cluster.device)
        ranks = self.cluster.gather(mine)
        if not self.cluster.main:
            return
        ck = {
            "config": asdict(self.cfg),
            "phase": self.phase,
            "step": self.step,
            "elapsed": self.elapsed,
            "vqvae": self.vqvae.state_dict(),
            "prior": self.prior.state_dict(),
            "optimizer": self.opt.state_dict(),
            "ranks": ranks,
        }
        tmp = self.ckpt_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            torch.save(ck, f)
            f.flush()
            os.fsync(f.fileno())  # a machine stopped right after still has a whole checkpoint
        os.replace(tmp, self.ckpt_path)

    def log(self, record: dict) -> None:
        if not self.cluster.main:
            return
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
            if self.stop_after is not None:
                self.stop_after -= 1
            due = time.time() - last_save > self.cfg.checkpoint_seconds
            if self.cluster.agree(due) or self.step == total or self.stop_after == 0:
                self.save()
                last_save = time.time()
            if self.stop_after == 0 and not (self.phase == "priors" and self.step == total):
                raise Stopped

    def train_vqvae(self, images) -> None:
        self.vqvae.train()
        model = self.cluster.wrap(self.vqvae)
        sampler = self.sampler(len(images))

        stages = self.vqvae.config.bottom_stages
        dropout = self.cfg.quantizer_dropout > 0 and (stages > 1 or self.cfg.no_bottom_rate > 0)

        def step():
            indices = sampler.take(self.cfg.batch_size)
            x = random_crops(images, indices, self.cfg.crop, self.gen).to(self.cluster.device)
            keep = None
            if dropout:
                b = len(indices)
                keep = dropout_stages(
                    b, stages, self.gen,
                    p_none=self.cfg.no_bottom_rate, p_drop=self.cfg.quantizer_dropout,
                )  # fmt: skip
                keep = keep.to(self.cluster.device)
            out = model(x, keep)
            mse = F.mse_loss(out.reconstruction, x)
            record = {
                "loss": (mse + out.commit_loss).item(),
                "psnr": round(psnr_from_mse(mse.item(), 1.0), 3),
            }
            if keep is not None and bool((keep == stages).any()):
                full = keep == stages  # the samples that kept every stage
                mse_full = F.mse_loss(out.reconstruction[full], x[full]).item()
                record["psnr_all_stages"] = round(psnr_from_mse(mse_full, 1.0), 3)
            record.update(
                {f"perplexity_{k}": round(v.item(), 1) for k, v in out.perplexity.items()}
            )
            record.update({f"usage_{k}": round(v.item(), 3) for k, v in out.usage.items()})
            return mse + out.commit_loss, record

        self._loop(self.cfg.vq_steps, self.cfg.lr, list(self.vqvae.parameters()), step)

    @torch.no_grad()
    def code_dataset(self, images) -> list[dict[str, torch.Tensor]]:
        """Code maps of every training image (each rank codes all of them: a single pass)."""
        self.vqvae.eval()
        codes = []
        for img in images:
            x = pad_to_stride(img[None].float() / 255).to(self.cluster.device)
            codes.append({k: v[0].cpu() for k, v in self.vqvae.encode(x).items()})
        return codes

    def train_priors(self, codes) -> None:
        self.prior.train()
        model = self.cluster.wrap(self.prior)
        c = self.cfg.prior_crop
        usable = [m for m in codes if min(m["top"].shape) >= c]
        if not usable:
            raise SystemExit(f"no training image has sides of at least {c * 32} pixels "
                             "(lower --prior-crop)")  # fmt: skip
        sampler = self.sampler(len(usable))

        def step():
            batch = {k: [] for k in self.prior.streams}
            for i in sampler.take(self.cfg.prior_batch_size):
                m = usable[i]
                y = int(torch.randint(m["top"].shape[0] - c + 1, (1,), generator=self.gen))
                x = int(torch.randint(m["top"].shape[1] - c + 1, (1,), generator=self.gen))
                for k in batch:
                    s = stream_stride("top") // stream_stride(k)
                    batch[k].append(m[k][y * s : (y + c) * s, x * s : (x + c) * s])
            batch = {k: torch.stack(v).to(self.cluster.device) for k, v in batch.items()}
            bits = model(batch)
            # Loss: bits per pixel of the whole crop, the quantity the codec pays.
            pixels = self.cfg.prior_batch_size * (c * 32) ** 2
            total = sum(b * batch[k].numel() for k, b in bits.items()) / pixels
            record = {"bpp": round(total.item(), 5)}
            record.update({f"bits_{k}": round(b.item(), 4) for k, b in bits.items()})
            return total, record

        self._loop(self.cfg.prior_steps, self.cfg.prior_lr, list(self.prior.parameters()), step)

    def run(self) -> bool:
        """Train both phases; False when `stop_after` stopped it first."""
        images = load_images(self.cfg.data)
        print(f"{len(images)} images loaded", flush=True)
        try:
            if self.phase == "vqvae":
                self.train_vqvae(images)
                self._start_priors()
            t0 = time.time()
            codes = self.code_dataset(images)
            print(f"coded {len(codes)} images in {time.time() - t0:.0f} s", flush=True)
            self.train_priors(codes)
        except Stopped:
            return False
        self.check_ranks_agree()
        self.n_images = len(images)
        return True

    def check_ranks_agree(self) -> None:
        """Every rank must end with bit-identical weights and codebooks."""
        digests = self.cluster.gather(state_digest(self.vqvae, self.prior))
        if self.cluster.main:
            report = {"world": self.cluster.world, "digests": digests}
            (self.out / "rank_digests.json").write_text(json.dumps(report, indent=1))
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks ended with different weights: {digests}")

    def weights(self, name: str) -> dict:
        return pack_weights(name, self.vqvae.cpu(), self.prior.cpu())

    def finish(
        self, name: str, export: str | None, command: str, stages: int | None = None
    ) -> None:
        """Rank 0: weights file (with the first `stages` bottom stages only, if given),
        training plot, model card (evaluated on `eval_images`)."""
        if not self.cluster.main:
            return
        weights = self.weights(name)
        if stages is not None:
            weights = keep_stages(weights, stages)
        if export:
            tmp = Path(export).with_suffix(".tmp")
            torch.save(weights, tmp)
            os.replace(tmp, export)
            print(f"wrote {export}", flush=True)
        plot_log(self.log_path, self.out / "training.png")
        card = model_card(self.out, self.n_images, command, self.cluster)
        card["name"] = name
        if self.cfg.eval_images:
            from hvqcodec.codec import Codec
            from hvqcodec.evaluate import evaluate

            result = evaluate(Codec(build_model(weights)), Path(self.cfg.eval_images))
            card["evaluation"] = {"folder": self.cfg.eval_images, **result}
        (self.out / "model_card.json").write_text(json.dumps(card, indent=1))
        (self.out / "MODEL_CARD.md").write_text(card_markdown(card))
        print(f"wrote {self.out / 'MODEL_CARD.md'}", flush=True)


def model_card(run_dir: Path, n_images: int, command: str, cluster: Cluster) -> dict:
    """What a model card needs to know about a finished run, read from its files."""
    from hvqcodec.evaluate import cpu_model

    rows = [json.loads(line) for line in open(run_dir / "log.jsonl")]
    vq = [r for r in rows if r["phase"] == "vqvae"]
    pr = [r for r in rows if r["phase"] == "priors"]
    ck = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    vq_seconds = vq[-1]["elapsed"] if vq else 0.0
    if cluster.device.type == "cuda":
        hardware = f"{cluster.world} x {torch.cuda.get_device_name(cluster.device)}"
    else:
        hardware = f"{cluster.world} x {cpu_model()}, {torch.get_num_threads()} torch threads"
    return {
        "command": command,
        "data": ck["config"]["data"],
        "images": n_images,
        "config": ck["config"],
        "vq_steps": vq[-1]["step"] if vq else 0,
        "prior_steps": pr[-1]["step"] if pr else 0,
        "vq_train_seconds": vq_seconds,
        "prior_train_seconds": (pr[-1]["elapsed"] - vq_seconds) if pr else 0.0,
        "final_train_psnr_mean_last_10": sum(r["psnr"] for r in vq[-10:]) / max(1, len(vq[-10:])),
        "final_prior_bpp_mean_last_10": sum(r["bpp"] for r in pr[-10:]) / max(1, len(pr[-10:])),
        "hardware": hardware,
        "torch": torch.__version__,
    }


def card_markdown(card: dict, level: int = 1) -> str:
    """The model card as Markdown, from `model_card`'s dict (plus `evaluation`, `notes`), its
    title a heading of `level` (0: no title, as where the README embeds it)."""
    cfg = card["config"]
    lines = [f"{'#' * level} Model card: {card.get('name', '?')}", ""] if level else []
    lines += [
        f"- Command: `{card['command']}`",
        f"- Data: `{card['data']}`, {card['images']} photos; random {cfg['crop']}x{cfg['crop']} "
        "crops for the autoencoder, aligned code-map crops for the priors.",
        f"- Steps: {card['vq_steps']} autoencoder steps (batch {cfg['batch_size']} per rank), "
        f"{card['prior_steps']} prior steps (batch {cfg['prior_batch_size']} per rank).",
        f"- Time: {card['vq_train_seconds'] / 60:.0f} min autoencoder + "
        f"{card['prior_train_seconds'] / 60:.0f} min priors of optimisation steps.",
        f"- Hardware: {card['hardware']}; torch {card['torch']}.",
        f"- End of training: PSNR {card['final_train_psnr_mean_last_10']:.2f} dB on training "
        f"crops, prior rate {card['final_prior_bpp_mean_last_10']:.4f} bpp on training crops.",
    ]
    for note in card.get("notes", []):
        lines.append(f"- Note: {note}")
    ev = card.get("evaluation")
    if ev:
        m = ev["mean"]
        lines += [
            "",
            f"{'#' * (level + 1) if level else '###'} Evaluation on `{ev['folder']}` "
            f"({ev['images']} images; `hvqcodec.evaluate`, real file sizes)",
            "",
            "| bpp | PSNR (dB) | MS-SSIM | median encode (s) | median decode (s) |",
            "|---|---|---|---|---|",
            f"| {m['bpp']:.4f} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | "
            f"{m['median_encode_s']:.2f} | {m['median_decode_s']:.2f} |",
            "",
            "| image | bpp | PSNR (dB) | MS-SSIM |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['image']} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['ms_ssim']:.4f} |"
            for r in ev["rows"]
        ]
    return "\n".join(lines) + "\n"


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
    streams = [k.removeprefix("perplexity_") for k in (vq[0] if vq else {}) if "perplexity_" in k]
    for k in streams:
        ax[2].plot([r["step"] for r in vq], [r[f"perplexity_{k}"] for r in vq], label=k)
    ax[2].set(title="codebook perplexity per batch", xlabel="step")
    if streams:  # a run that reused an autoencoder has no autoencoder rows
        ax[2].legend()
    ax[3].plot([r["step"] for r in pr], [r["bpp"] for r in pr])
    ax[3].set(title="prior rate (bpp)", xlabel="step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    import argparse

    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", help="TOML or JSON file of settings; flags override it")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("model", "prior"):
            continue
        default = getattr(defaults, f.name)
        p.add_argument(
            "--" + f.name.replace("_", "-"), type=type(default), default=None,
            help=f"default {default!r}",
        )  # fmt: skip
    p.add_argument("--model-json", help="JSON overrides for the autoencoder config")
    p.add_argument("--prior-json", help="JSON overrides for the prior config")
    p.add_argument("--export", help="after training, write the shipped weights file here")
    p.add_argument("--name", default="hvq-custom", help="model name stored in the weights file")
    p.add_argument(
        "--export-stages", type=int, help="export only the first N bottom stages (lower rates)"
    )
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps")
    args = p.parse_args(argv)
    if args.stop_after is not None and args.stop_after < 1:
        p.error("--stop-after must be at least 1")
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if f.name not in ("model", "prior") and getattr(args, f.name) is not None
    }
    try:
        if args.model_json:
            overrides["model"] = json.loads(args.model_json)
        if args.prior_json:
            overrides["prior"] = json.loads(args.prior_json)
        file_values = read_config_file(args.config) if args.config else {}
    except (OSError, ValueError) as e:  # tomllib and json errors are ValueErrors
        p.error(f"cannot read the settings: {e}")
    cfg = make_config(file_values, overrides)
    checkpoint = Path(cfg.out) / "checkpoint.pt"
    if checkpoint.exists():  # a resumed run keeps its settings unless told otherwise
        # Memory-mapped: only the config is read here; `Run` reads the weights once.
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["config"]
        known = {f.name for f in fields(TrainConfig)}
        cfg = make_config(file_values, overrides, {k: v for k, v in saved.items() if k in known})
    if not cfg.data:
        p.error("no data folder: set `data` in the config file or pass --data")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cluster = Cluster(cfg.device)
    try:
        run = Run(cfg, cluster)
        run.stop_after = args.stop_after
        command = "python -m hvqcodec.train " + shlex.join(argv)
        if cluster.main:
            entry = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": command,
                "config_file": args.config,
                "overrides": overrides,
                "world": cluster.world,
            }
            with open(run.out / "invocations.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
        finished = run.run()
    except BaseException:
        cluster.close(failed=True)
        raise
    # Rank 0 exports and evaluates alone, with no collective left open for others to wait on.
    cluster.close()
    if finished:
        run.finish(args.name, args.export, command, args.export_stages)


if __name__ == "__main__":
    main()
