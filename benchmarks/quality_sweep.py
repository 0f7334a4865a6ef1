"""Sweep the 0-100 quality scale on training photos (never on the test set): the measurements
behind a model's scale (where its knots go), its default quality and its monotonicity.
`--validation` sweeps the held-out photos (configs/validation.txt) instead of `--count`
photos spread over the folder.

    python -m benchmarks.quality_sweep --images ../shared/data/train --count 12 --model hvq-v2 \
        --out benchmarks/results/quality_scale-hvq-v2.json
"""

import argparse
import json
from pathlib import Path

import numpy as np

from hvqcodec import Codec
from hvqcodec.evaluate import msssim
from hvqcodec.image_io import image_paths, load_rgb
from hvqcodec.metrics import psnr
from hvqcodec.shipped import DEFAULT_MODEL
from hvqcodec.training.data import split_photos

QUALITIES = [0, 25, 50, 62.5, 75, 82.5, 90, 95, 100]  # hvq-v2's knots and between them


def center_crop(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = min(height, rgb.shape[0]), min(width, rgb.shape[1])
    top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
    return rgb[top : top + h, left : left + w]


def knee(rows: list[dict]) -> float:
    """The quality at the knee of the bpp-PSNR curve, as Kneedle finds it (Satopaa et al.,
    "Finding a 'Kneedle' in a Haystack", 2011): with both axes scaled to [0, 1] over the sweep,
    the point farthest above the chord from its first point to its last."""
    bpp, psnr = (np.array([r[k] for r in rows]) for k in ("bpp", "psnr"))
    x, y = ((v - v[0]) / (v[-1] - v[0]) for v in (bpp, psnr))
    return float(rows[int(np.argmax(y - x))]["quality"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--count", type=int, default=16, help="images, evenly spaced in name order")
    p.add_argument("--validation", action="store_true",
                   help="the held-out validation photos, not --count spread ones")  # fmt: skip
    p.add_argument("--crop", type=int, nargs=2, default=(768, 512), metavar=("W", "H"),
                   help="centre crop of each photo, to keep the sweep fast")  # fmt: skip
    p.add_argument("--qualities", type=float, nargs="+", default=QUALITIES)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    codec = Codec(args.model)
    if args.validation:
        paths = split_photos(args.images)[1]
    else:
        paths = image_paths(args.images)
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.count).astype(int)]
    images = [center_crop(load_rgb(q).rgb, *args.crop) for q in paths]
    rows = []
    for q in args.qualities:
        bpp, quality, ssim = [], [], []
        for img in images:
            enc = codec.encode_detailed(img, q)
            out = np.asarray(codec.decode(enc.data))
            bpp.append(enc.bpp)
            quality.append(psnr(img, out))
            ssim.append(msssim(img, out))
        means = {k: float(np.mean(v)) for k, v in (("bpp", bpp), ("psnr", quality),
                                                     ("ms_ssim", ssim))}  # fmt: skip
        rows.append({"quality": q, **means})
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"model": codec.name, "images": [q.name for q in paths], "rows": rows,
              "knee": knee(rows)}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
