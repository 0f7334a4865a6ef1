"""What a training checkpoint's context model saves: the fine level's bits on the validation
photos with each group's mean and scale refined by the context, and with the hyper synthesis'
alone (the context switched off, everything else the same), at every trained rate point.

    python -m benchmarks.context_gain --images ../shared/data/train \
        --checkpoint checkpoints/hvq-v4-campaign.pt \
        --out benchmarks/results/training/context_gain-hvq-v4.json

With a checkerboard inside the groups, `checkerboard_saving` is what its second pass saves: the
fine bits against those with every position under its group's anchors' tables (the channel
context alone).

The bits are the float model's ideal cost of the rounded symbols, as the trainer's validation
counts them; photos are centre-cropped as there. Published channel-group contexts save 10 to 20%
of the rate (ELIC; Minnen and Singh 2020), which is what this is to be held against. Several
checkpoints (repeat --checkpoint) give the saving's course over a campaign.
"""

import argparse
import copy
import json
from pathlib import Path

import torch

from hvqcodec.families.hyper.context import ChannelContext
from hvqcodec.families.hyper.model import PAD_STRIDE
from hvqcodec.image_io import load_photos
from hvqcodec.training.data import centre_crop, split_photos
from hvqcodec.training.hyper import EVAL_SIDE, checkpoint_model


def channels_only(context: ChannelContext) -> ChannelContext:
    """A checkerboard context with its second pass skipped: the anchors' tables everywhere."""
    plain = copy.copy(context)  # shares the networks
    plain.group = lambda k, decoded, mean, log_scale, decode: context.refine(
        k, decoded, mean, log_scale
    )
    return plain


@torch.no_grad()
def saving(checkpoint: Path, images: list[torch.Tensor]) -> dict:
    """Per rate point: fine bits per pixel with and without the context, and the saving."""
    model, ck = checkpoint_model(checkpoint)
    model.eval()
    if model.context is None:
        raise SystemExit(f"{checkpoint}: the model has no context")
    context, rows = model.context, []
    variants = {"with": context, "without": None}
    if context.checkerboard:
        variants["channels"] = channels_only(context)
    pixels = sum(x.shape[2] * x.shape[3] for x in images)
    for r in range(len(model.config.lambdas)):
        bits = dict.fromkeys([*variants, "file"], 0.0)
        for x in images:
            for key, ctx in variants.items():
                model.context = ctx
                out = model(x, torch.tensor([r]))
                bits[key] += out.bits["fine"].item()
                if key == "with":
                    bits["file"] += sum(b.item() for b in out.bits.values())
        model.context = context
        rows.append({
            "rate_point": r,
            "fine_bpp_with": round(bits["with"] / pixels, 5),
            "fine_bpp_without": round(bits["without"] / pixels, 5),
            "saving_of_fine": round(1 - bits["with"] / bits["without"], 5),
            "saving_of_all": round((bits["without"] - bits["with"]) / (
                bits["file"] - bits["with"] + bits["without"]), 5),
        })  # fmt: skip
        if "channels" in bits:
            rows[-1]["checkerboard_saving"] = round(1 - bits["with"] / bits["channels"], 5)
    counters = ck.get("counters", ck)  # a full checkpoint's, or a compact one's own
    return {"checkpoint": str(checkpoint), "step": counters["step"],
            "cpu_hours": round(counters["cpu_seconds"] / 3600, 3), "rate_points": rows}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", required=True, type=Path, help="the training folder")
    p.add_argument("--checkpoint", required=True, type=Path, action="append",
                   help="a compact or full checkpoint of a context model (repeatable)")  # fmt: skip
    p.add_argument("--count", type=int, default=10, help="validation photos to use")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    _, held_out = split_photos(args.images)
    images = [(centre_crop(img, EVAL_SIDE, PAD_STRIDE).float() / 255)[None]
              for img in load_photos(held_out[: args.count])]  # fmt: skip
    results = []
    for checkpoint in args.checkpoint:
        results.append(saving(checkpoint, images))
        rows = results[-1]["rate_points"]
        savings = ", ".join(f"{100 * r['saving_of_all']:.1f}%" for r in rows)
        print(f"{checkpoint} ({results[-1]['cpu_hours']} CPU-hours): the context saves {savings}"
              " of the rate at each rate point", flush=True)  # fmt: skip
        if "checkerboard_saving" in rows[0]:
            board = ", ".join(f"{100 * r['checkerboard_saving']:.1f}%" for r in rows)
            print(f"  its checkerboard's second pass saves {board} of the fine bits", flush=True)
    result = {"photos": [p.name for p in held_out[: args.count]], "checkpoints": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
