"""Measure the shipped model on a folder of images (the Kodak set) at each of its qualities.

    python -m benchmarks.kodak --images ../shared/data/kodak --out benchmarks/results/kodak

For each quality, writes the .hvq files to OUT/files-qQ/ and OUT/hvq-qQ.json with per-image
rows (bpp from the real file size, RGB PSNR, MS-SSIM, encode and decode seconds, code
exactness, the preview's PSNR and time) and their means; OUT/hvq.json repeats the default
quality's. `python -m benchmarks.readme` turns the results into the README's tables. The
measurements themselves live in `hvqcodec.evaluate`, which the training run's model card uses.
"""

import argparse
import json
import shutil
from pathlib import Path

from hvqcodec import Codec
from hvqcodec.evaluate import evaluate
from hvqcodec.shipped import DEFAULT_MODEL


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--quality", type=float, action="append", help="only these (repeatable)")
    p.add_argument("--label", default="hvq", help="results file prefix (default: hvq)")
    args = p.parse_args(argv)
    codec = Codec(args.model)
    # The scale's knots, and the default quality where it falls between two.
    for q in args.quality or sorted({*codec.qualities, codec.default_quality}):
        result = evaluate(codec, args.images, args.out / f"files-q{q:g}", quality=q)
        out = args.out / f"{args.label}-q{q:g}.json"
        out.write_text(json.dumps(result, indent=1))
        print(f"quality {q}: " + json.dumps(result["mean"]))
        print(f"wrote {out}")
        if q == codec.default_quality:
            shutil.copyfile(out, args.out / f"{args.label}.json")


if __name__ == "__main__":
    main()
