"""A model's rate-distortion curve on the validation photos, the held-out part of the training
folder (configs/validation.txt) that hvq-v3's design decisions are made on; never Kodak.

    python -m benchmarks.validation --images ../shared/data/train --model hvq-v2 \
        --out benchmarks/results/training/validation-hvq-v2.json

Each photo is centre-cropped as the trainer's validation does (`hvqcodec.training.hyper`), then
coded at every quality through the real codec: bpp from the file's size, RGB PSNR. With
`--against OTHER.json` (an earlier result) it also prints the PSNR margin over that curve at
each quality whose rate both reach, which is how a campaign's export is judged for shipping,
and the same margin on each source's photos apart (the name's prefix: `bsds500`, `sunhays80`, ...),
where both results keep their photos' own rows.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from hvqcodec import Codec
from hvqcodec.families.hyper.model import PAD_STRIDE
from hvqcodec.image_io import load_rgb
from hvqcodec.metrics import psnr
from hvqcodec.training.data import centre_crop, split_photos
from hvqcodec.training.hyper import EVAL_SIDE


def curve(codec: Codec, images: list[np.ndarray]) -> list[dict]:
    rows = []
    for q in codec.qualities:
        bpp, quality = [], []
        for rgb in images:
            data = codec.encode(rgb, q)
            bpp.append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
            quality.append(psnr(rgb, np.asarray(codec.decode(data))))
        rows.append({"quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(quality)),
                     "per_photo": [[b, p] for b, p in zip(bpp, quality)]})  # fmt: skip
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_photo"}), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", required=True, type=Path, help="the training folder")
    p.add_argument("--model", required=True, help="shipped name or weights file")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--against", type=Path, help="an earlier result to compare with")
    args = p.parse_args(argv)
    _, held_out = split_photos(args.images)
    images = [
        centre_crop(load_rgb(path).rgb.transpose(2, 0, 1), EVAL_SIDE, PAD_STRIDE).transpose(1, 2, 0)
        for path in held_out
    ]
    codec = Codec(args.model)
    result = {
        "model": codec.name,
        "photos": [p.name for p in held_out],
        "curve": curve(codec, images),
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    if args.against:
        other = json.loads(args.against.read_text())
        print(comparison(result, other))
        for line in by_source(result, other):
            print("  " + line)


def comparison(result: dict, other: dict) -> str:
    """One line: the PSNR margin of `result` over `other` at each of its qualities whose rate
    `other` also reaches, and whether it is ahead at all of them."""
    from benchmarks.campaign import margin_summary, margins

    m = margins(_row(result["curve"]), other)
    return f"{result['model']} against {other['model']}: {margin_summary(m)}"


def _row(curve: list[dict]) -> dict:
    """A result's curve as a trainer's validation row, which `campaign.margins` takes."""
    return {"val_bpp": [c["bpp"] for c in curve], "val_psnr": [c["psnr"] for c in curve]}


def by_source(result: dict, other: dict) -> list[str]:
    """`comparison`'s margin on each source's photos apart, one line per source; none where
    either result lacks its photos' rows or they hold different photos."""
    from benchmarks.campaign import margin_summary, margins

    photos = result.get("photos")
    curves = result["curve"] + other["curve"]
    if photos != other.get("photos") or not all("per_photo" in c for c in curves):
        return []
    lines = []
    for source in sorted({name.split("_")[0] for name in photos}):
        mine = [i for i, name in enumerate(photos) if name.split("_")[0] == source]
        ours, theirs = _subset(result["curve"], mine), _subset(other["curve"], mine)
        summary = margin_summary(margins(_row(ours), {"curve": theirs}))
        lines.append(f"{source}, {len(mine)} of {len(photos)} photos: {summary}")
    return lines


def _subset(curve: list[dict], photos: list[int]) -> list[dict]:
    """A curve's mean bpp and PSNR over some of its photos."""
    return [dict(zip(("bpp", "psnr"), np.mean([c["per_photo"][i] for i in photos], axis=0)))
            for c in curve]  # fmt: skip


if __name__ == "__main__":
    main()
