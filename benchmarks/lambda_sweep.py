"""Sweep the encoder's rate-distortion weight on training photos (never on the test set).

    python -m benchmarks.lambda_sweep --images ../shared/data/train --count 24 \
        --lambdas 0 0.05 0.1 0.2 0.4 --out benchmarks/results/lambda_sweep.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from hvqcodec import Codec
from hvqcodec.metrics import psnr
from hvqcodec.models import DEFAULT_MODEL


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--count", type=int, default=24, help="images, evenly spaced in name order")
    p.add_argument("--lambdas", type=float, nargs="+", required=True)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    codec = Codec(args.model)
    paths = sorted(args.images.glob("*.*"))
    paths = [q for q in paths if q.suffix.lower() in (".png", ".jpg", ".webp")]
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.count).astype(int)]
    images = [np.asarray(Image.open(q).convert("RGB")) for q in paths]
    rows = []
    for lam in args.lambdas:
        bpp, quality = [], []
        for img in images:
            enc = codec.encode_detailed(img, rd_lambda=lam)
            bpp.append(enc.bpp)
            quality.append(psnr(img, np.asarray(codec.decode(enc.data))))
        rows.append({"lambda": lam, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(quality))})
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"images": [q.name for q in paths], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
