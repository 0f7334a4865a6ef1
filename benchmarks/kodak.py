"""Measure the shipped model on a folder of images (the Kodak set) against the issue's targets.

    python -m benchmarks.kodak --images ../shared/data/kodak --out benchmarks/results/kodak

Writes every .hvq file to OUT/files/ and OUT/hvq.json with per-image rows (bpp from the real
file size, RGB PSNR, MS-SSIM, encode and decode seconds, code exactness) and their means.
`python -m benchmarks.readme` turns the results into the README's tables. The measurements
themselves live in `hvqcodec.evaluate`, which the training run's model card uses too.
"""

import argparse
import json
from pathlib import Path

from hvqcodec import Codec
from hvqcodec.evaluate import evaluate
from hvqcodec.models import DEFAULT_MODEL


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--label", default=None, help="results file name (default: hvq)")
    args = p.parse_args(argv)
    result = evaluate(Codec(args.model), args.images, args.out / "files")
    out = args.out / f"{args.label or 'hvq'}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["mean"], indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
