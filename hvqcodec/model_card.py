"""The model card of a finished training run (what it trained on, for how long, on what
hardware, and how well), as JSON and as Markdown, and the plot of its log."""

import json
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name, for model cards and benchmark reports."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device, world: int) -> str:
    """What a job of `world` ranks on `device` ran on."""
    if device.type == "cuda":
        return f"{world} x {torch.cuda.get_device_name(device)}"
    return f"{world} x {cpu_model()}, {torch.get_num_threads()} torch threads"


def _phases(log_path: Path) -> tuple[list[dict], list[dict]]:
    """The training log's autoencoder rows and prior rows."""
    with open(log_path) as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if r["phase"] == "vqvae"], [r for r in rows if r["phase"] == "priors"]


def model_card(config: dict, log_path: Path, images: int, command: str, hardware: str) -> dict:
    """What a model card needs to know about a finished run: its config (as the run holds it),
    its log, the number of training images, the command and the hardware."""
    vq, pr = _phases(log_path)
    vq_seconds = vq[-1]["elapsed"] if vq else 0.0
    return {
        "command": command,
        "data": config["data"],
        "images": images,
        "config": config,
        "vq_steps": vq[-1]["step"] if vq else 0,
        "prior_steps": pr[-1]["step"] if pr else 0,
        "vq_train_seconds": vq_seconds,
        "prior_train_seconds": (pr[-1]["elapsed"] - vq_seconds) if pr else 0.0,
        "final_train_psnr_mean_last_10": sum(r["psnr"] for r in vq[-10:]) / max(1, len(vq[-10:])),
        "final_prior_bpp_mean_last_10": sum(r["bpp"] for r in pr[-10:]) / max(1, len(pr[-10:])),
        "hardware": hardware,
        "torch": torch.__version__,
    }


def campaign_card(
    checkpoint: dict, validation: dict | None, command: str, hardware: str, images: int
) -> dict:
    """What a model card needs to know about a rate-distortion campaign (`hvqcodec.training.hyper`):
    config, steps and CPU time from its compact checkpoint, and its last validation row."""
    return {
        "command": command,
        "data": checkpoint["config"]["data"],
        "images": images,
        "config": checkpoint["config"],
        "steps": checkpoint["step"],
        "cpu_hours": checkpoint["cpu_seconds"] / 3600,
        "validation": validation,
        "hardware": hardware,
        "torch": torch.__version__,
    }


def _campaign_lines(card: dict) -> list[str]:
    cfg, lines = card["config"], []
    lambdas = ", ".join(f"{x:.3g}" for x in cfg["model"]["lambdas"])
    lines += [
        f"- Command (latest session): `{card['command']}`",
        f"- Data: `{card['data']}`, {card['images']} photos (the held-out validation photos of "
        f"`configs/validation.txt` excluded); random {cfg['crop']}x{cfg['crop']} crops.",
        f"- Steps: {card['steps']} (batch {cfg['batch_size']}), {card['cpu_hours']:.2f} "
        "CPU-hours of optimisation steps in all sessions.",
        f"- Loss: lambda * 255^2 * MSE + bpp (priors' cross-entropy and the fine level's noisy "
        f"rate), one lambda per trained quality: {lambdas}.",
        f"- Hardware: {card['hardware']}; torch {card['torch']}.",
    ]
    v = card.get("validation")
    if v:
        bpp = " ".join(f"{x:.3f}" for x in v["val_bpp"])
        psnr = " ".join(f"{x:.2f}" for x in v["val_psnr"])
        lines.append(f"- Validation at step {v['step']} (bpp / PSNR per trained quality): "
                     f"{bpp} / {psnr} dB.")  # fmt: skip
    return lines


def card_markdown(card: dict, level: int = 1) -> str:
    """The model card as Markdown, from `model_card`'s or `campaign_card`'s dict (plus
    `evaluation`, `notes`), its title a heading of `level` (0: no title, as where the README
    embeds it)."""
    cfg = card["config"]
    lines = [f"{'#' * level} Model card: {card.get('name', '?')}", ""] if level else []
    lines += _campaign_lines(card) if "cpu_hours" in card else [
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
    ]  # fmt: skip
    for note in card.get("notes", []):
        lines.append(f"- Note: {note}")
    ev = card.get("evaluation")
    if ev:
        m = ev["mean"]
        # hvq-v2's card predates the 0-100 scale: its quality field is of the old one.
        at = f" at quality {ev['quality']:g}" if "cpu_hours" in card else ""
        lines += [
            "",
            f"{'#' * (level + 1) if level else '###'} Evaluation on `{ev['folder']}` "
            f"({ev['images']} images{at}; `hvqcodec.evaluate`, real file sizes)",
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
    vq, pr = _phases(log_path)
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
