"""Train the hierarchical VQ-VAE, then its priors, on a folder of photos.

    hvqcodec train --family vqvae --config configs/hvq-v1.toml
    hvqcodec train --family vqvae --config configs/hvq-v1.toml --vq-steps 500 --out runs/short
    torchrun --nproc_per_node=4 -m hvqcodec.training.vqvae --config configs/hvq-v1.toml \
        --device cuda

Phase 1 trains the autoencoder on random crops (MSE + commitment). Phase 2 freezes it, codes
every training image once, and trains the three priors on aligned random crops of those code
maps (cross-entropy). A config file (TOML or JSON) holds every hyperparameter; flags override
it, and each invocation's overrides are logged to OUT/invocations.jsonl.

The run resumes exactly from `OUT/checkpoint.pt` whenever it is started again: the checkpoint
holds its own config, weights, optimizer, step, every rank's RNG state and data position (after
nanoGPT), so 2N steps equal N steps, a stop, and N more; the file and flags may change any
setting except those the checkpoint fixes (`vqvae_config.CHECKPOINT_FIXES`: architecture, seed,
starting weights), whose overrides are dropped with a warning. Under torchrun, training runs with
DistributedDataParallel (gloo on CPU, NCCL on GPU); each rank reads its shard of the data
through a DistributedSampler, and the quantizers all-reduce their codebook statistics so that
every rank holds identical codebooks (checked at the end). At the end rank 0 writes
OUT/MODEL_CARD.md, evaluated on `eval_images` with the benchmark code; `--export` writes the
weights file the codec ships.

This module is the loop; around it are `vqvae_config` (settings and resume rules),
`checkpoint` (atomic saves), `distributed` (Cluster, Sampler), `hvqcodec.image_io` (the photos
and their crops) and `hvqcodec.model_card`.
"""

import hashlib
import json
import math
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from hvqcodec.families.vqvae.model import (
    PAD_STRIDE,
    HierarchicalVQVAE,
    VQVAEConfig,
    stream_stride,
)
from hvqcodec.families.vqvae.prior import HierarchicalPrior
from hvqcodec.families.vqvae.weights import build, keep_stages, pack_weights
from hvqcodec.image_io import image_paths, load_photos, random_crops
from hvqcodec.layers.residual_quantize import dropout_stages
from hvqcodec.layers.tiling import pad_to_stride
from hvqcodec.metrics import psnr_from_mse
from hvqcodec.model_card import card_markdown, hardware, model_card, plot_log
from hvqcodec.priors import PriorConfig
from hvqcodec.storage import hash_state
from hvqcodec.training.checkpoint import atomic_save, float32, load
from hvqcodec.training.distributed import Cluster, Sampler
from hvqcodec.training.options import add_flags, given
from hvqcodec.training.vqvae_config import (
    TABLES,
    TrainConfig,
    flag,
    read_config_file,
    resolve_config,
)

PROG = "hvqcodec train --family vqvae"  # as the CLI runs it


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
        # `cfg` comes from `resolve_config`: it already has the architecture of the checkpoint
        # resumed from, or of the autoencoder reused from another run.
        ck = reused = None
        if self.ckpt_path.exists():
            ck = load(self.ckpt_path)
        elif cfg.vqvae_from:
            reused = load(cfg.vqvae_from)
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
        ck = load(path)
        for part, module in (("vqvae", self.vqvae), ("prior", self.prior)):
            missing, unexpected = module.load_state_dict(float32(ck[part]), strict=False)
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
        atomic_save(ck, self.ckpt_path)

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
            x = pad_to_stride(img[None].float() / 255, PAD_STRIDE).to(self.cluster.device)
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
        images = load_photos(image_paths(self.cfg.data))
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
            atomic_save(weights, export)
            print(f"wrote {export}", flush=True)
        plot_log(self.log_path, self.out / "training.png")
        machine = hardware(self.cluster.device, self.cluster.world)
        card = model_card(asdict(self.cfg), self.log_path, self.n_images, command, machine)
        card["name"] = name
        if self.cfg.eval_images:
            from hvqcodec.codec import Codec
            from hvqcodec.evaluate import evaluate

            result = evaluate(Codec(build(weights)), Path(self.cfg.eval_images))
            card["evaluation"] = {"folder": self.cfg.eval_images, **result}
        (self.out / "model_card.json").write_text(json.dumps(card, indent=1))
        (self.out / "MODEL_CARD.md").write_text(card_markdown(card))
        print(f"wrote {self.out / 'MODEL_CARD.md'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    import argparse

    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--config", help="TOML or JSON file of settings; flags override it")
    add_flags(p, TrainConfig, tables=TABLES, unset=True)
    p.add_argument(flag("model"), dest="model", help="JSON overrides for the autoencoder config")
    p.add_argument(flag("prior"), dest="prior", help="JSON overrides for the prior config")
    p.add_argument("--export", help="after training, write the shipped weights file here")
    p.add_argument("--name", default="hvq-custom", help="model name stored in the weights file")
    p.add_argument(
        "--export-stages", type=int, help="export only the first N bottom stages (lower rates)"
    )
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps")
    args = p.parse_args(argv)
    if args.stop_after is not None and args.stop_after < 1:
        p.error("--stop-after must be at least 1")
    overrides = given(args, TrainConfig, TABLES)
    try:
        for name in TABLES:
            if getattr(args, name):
                overrides[name] = json.loads(getattr(args, name))
        file_values = read_config_file(args.config) if args.config else {}
    except (OSError, ValueError) as e:  # tomllib and json errors are ValueErrors
        p.error(f"cannot read the settings: {e}")
    cfg, dropped = resolve_config(file_values, overrides, args.config)
    if not cfg.data:
        p.error("no data folder: set `data` in the config file or pass --data")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cluster = Cluster(cfg.device)
    if cluster.main:
        for warning in dropped:
            print(warning, file=sys.stderr, flush=True)
    try:
        run = Run(cfg, cluster)
        run.stop_after = args.stop_after
        command = f"{PROG} " + shlex.join(argv)
        if cluster.main:
            entry = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": command,
                "config_file": args.config,
                "overrides": overrides,
                "world": cluster.world,
            }
            if dropped:
                entry["dropped"] = dropped
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
