"""A training campaign's validation curve, from the log its compact checkpoint carries
(or a run's log.jsonl): validation PSNR and bpp per trained quality against CPU-hours, and the
latest rate-distortion curve beside hvq-v2's on the same photos.

    python -m benchmarks.campaign --log checkpoints/hvq-v3-campaign.pt \
        --out checkpoints/campaign.png
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def validation_rows(log: Path) -> list[dict]:
    """The validation rows of a log.jsonl, or of the log a compact checkpoint carries."""
    if log.suffix == ".pt":
        text = torch.load(log, map_location="cpu", weights_only=True).get("log", "")
    else:
        text = log.read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = [r for r in rows if "val_psnr" in r]
    latest = {}  # a resumed run may log the same step twice: keep the last
    for r in rows:
        latest[r["step"]] = r
    return sorted(latest.values(), key=lambda r: r["step"])


def margins(row: dict, baseline: dict) -> list[tuple[float, float]]:
    """(bpp, PSNR over the baseline) for each of a validation row's qualities whose rate the
    baseline also reaches, the baseline interpolated linearly in log bpp."""
    curve = sorted(baseline["curve"], key=lambda c: c["bpp"])
    log_bpp = np.log([c["bpp"] for c in curve])
    psnrs = [c["psnr"] for c in curve]
    return [(b, p - float(np.interp(np.log(b), log_bpp, psnrs)))
            for b, p in zip(row["val_bpp"], row["val_psnr"])
            if log_bpp[0] <= np.log(b) <= log_bpp[-1]]  # fmt: skip


def margin_summary(m: list[tuple[float, float]]) -> str:
    """`margins` in words, and whether the row is ahead at every one of them."""
    each = ", ".join(f"{d:+.2f} dB at {b:.3f} bpp" for b, d in m)
    return f"{each}; ahead at every rate both reach: {bool(m) and all(d > 0 for _, d in m)}"


def plot(
    rows: list[dict],
    baseline: dict | None,
    out: Path,
    name: str = "hvq-v3",
    grown_at: float | None = None,
) -> None:
    """`grown_at`: the CPU-hour at which the log's model was grown from its predecessor, whose
    rows the log carries before it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for q in range(len(rows[-1]["val_psnr"])):
        have = [r for r in rows if len(r["val_psnr"]) > q]  # a grown model adds rate points
        hours = [r["cpu_hours"] for r in have]
        axes[0].plot(hours, [r["val_psnr"][q] for r in have], marker=".", label=f"level {q}")
        axes[1].plot(hours, [r["val_bpp"][q] for r in have], marker=".", label=f"level {q}")
    axes[0].set(xlabel="CPU-hours (2 cores)", ylabel="validation PSNR (dB)")
    axes[1].set(xlabel="CPU-hours (2 cores)", ylabel="validation bpp", yscale="log")
    if grown_at is not None:
        for ax in axes[:2]:
            ax.axvline(grown_at, color="k", linestyle=":", linewidth=1)
            ax.annotate(f"grown to {name}", (grown_at, 0.02), xycoords=("data", "axes fraction"),
                        fontsize=7, rotation=90, ha="right")  # fmt: skip
    for r in rows[-3:]:
        axes[2].plot(r["val_bpp"], r["val_psnr"], marker="o",
                     label=f"{name}, step {r['step']} ({r['cpu_hours']:.2f} h)")  # fmt: skip
    if baseline:
        curve = baseline["curve"]
        axes[2].plot([c["bpp"] for c in curve], [c["psnr"] for c in curve], "k--", marker="s",
                     label=f"{baseline['model']} (real files)")  # fmt: skip
    axes[2].set(xlabel="bpp", ylabel="PSNR (dB)", title="validation photos")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def write_card(args: argparse.Namespace, rows: list[dict]) -> None:
    from hvqcodec.model_card import campaign_card, card_markdown, cpu_model
    from hvqcodec.training.data import split_photos

    ck = torch.load(args.log, map_location="cpu", weights_only=True)
    data = Path(ck["config"]["data"])
    images = len(split_photos(data)[0]) if data.exists() else 0
    hardware = f"1 x {cpu_model()}, 2 torch threads"
    card = campaign_card(ck, rows[-1] if rows else None, args.command, hardware, images)
    card.update(name=args.name, notes=args.note)
    if args.evaluation:
        card["evaluation"] = {"folder": str(args.evaluation_folder),
                              **json.loads(args.evaluation.read_text())}  # fmt: skip
    args.card.write_text(json.dumps(card, indent=1))
    args.card.with_suffix(".md").write_text(card_markdown(card))
    print(f"wrote {args.card} and {args.card.with_suffix('.md')}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--log", required=True, type=Path, help="compact checkpoint or log.jsonl")
    p.add_argument("--baseline", type=Path,
                   default=Path("benchmarks/results/training/validation-hvq-v2.json"))  # fmt: skip
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--card", type=Path, metavar="CARD.json",
                   help="also write the model card of the checkpoint (--log, a .pt) here, and "
                   "beside it as .md")  # fmt: skip
    p.add_argument("--name", default="hvq-v3", help="the model's name, on the plot and card")
    p.add_argument(
        "--grown-at",
        type=float,
        metavar="HOURS",
        help="mark the CPU-hour at which the model was grown from its predecessor",
    )
    p.add_argument("--evaluation", type=Path, help="the card's evaluation (benchmarks.kodak's "
                   "hvq.json)")  # fmt: skip
    p.add_argument("--evaluation-folder", default="../shared/data/kodak",
                   help="the images it measured (for the card's heading)")  # fmt: skip
    p.add_argument("--command", default="", help="the card's training command")
    p.add_argument("--note", action="append", default=[], help="a note for the card")
    args = p.parse_args(argv)
    rows = validation_rows(args.log)
    if args.card:
        write_card(args, rows)
    baseline = json.loads(args.baseline.read_text()) if args.baseline.exists() else None
    plot(rows, baseline, args.out, args.name, args.grown_at)
    for r in rows:
        print(f"step {r['step']:>6}  {r['cpu_hours']:.2f} h  bpp {r['val_bpp']}  "
              f"PSNR {r['val_psnr']}")  # fmt: skip
    if baseline:
        print(f"latest against {baseline['model']}: {margin_summary(margins(rows[-1], baseline))}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
