"""Measure the shipped model on a folder of images (the Kodak set) against the issue's targets.

    python -m benchmarks.kodak --images ../shared/data/kodak --out benchmarks/results/kodak

Writes every .hvq file to OUT/files/ and OUT/hvq.json with per-image rows (bpp from the real
file size, RGB PSNR, MS-SSIM, encode and decode seconds, code exactness) and their means.
`python -m benchmarks.readme` turns the results into the README's tables.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_msssim import ms_ssim

from hvqcodec import Codec
from hvqcodec.metrics import psnr
from hvqcodec.models import DEFAULT_MODEL
from hvqcodec.train import cpu_model


def msssim(a: np.ndarray, b: np.ndarray) -> float:
    def t(x):
        return torch.tensor(x, dtype=torch.float64).permute(2, 0, 1)[None]

    return float(ms_ssim(t(a), t(b), data_range=255))


def measure(codec: Codec, path: Path, files: Path) -> dict:
    original = np.asarray(Image.open(path).convert("RGB"))
    t0 = time.perf_counter()
    enc = codec.encode_detailed(original)
    t1 = time.perf_counter()
    dec = codec.decode_detailed(enc.data)
    t2 = time.perf_counter()
    (files / path.with_suffix(".hvq").name).write_bytes(enc.data)
    out = np.asarray(dec.image)
    size = (files / path.with_suffix(".hvq").name).stat().st_size
    return {
        "image": path.name,
        "width": enc.width,
        "height": enc.height,
        "bytes": size,
        "bpp": 8 * size / (enc.width * enc.height),
        "psnr": psnr(original, out),
        "ms_ssim": msssim(original, out),
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
        "codes_exact": all(np.array_equal(enc.codes[k], dec.codes[k]) for k in enc.codes),
        "bits": {k: s.bits for k, s in enc.stats.items()},
        "ideal_bits": {k: s.ideal_bits for k, s in enc.stats.items()},
        "symbols": {k: s.symbols for k, s in enc.stats.items()},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--label", default=None, help="results file name (default: hvq)")
    args = p.parse_args(argv)
    codec = Codec(args.model)
    files = args.out / "files"
    files.mkdir(parents=True, exist_ok=True)
    paths = sorted(q for q in args.images.iterdir() if q.suffix.lower() in (".png", ".ppm"))
    if not paths:
        raise SystemExit(f"no .png or .ppm images in {args.images}")
    codec.encode(np.zeros((64, 64, 3), np.uint8))  # warm-up, so the first image is timed fairly
    rows = []
    for path in paths:
        rows.append(measure(codec, path, files))
        r = rows[-1]
        print(
            f"{r['image']}: {r['bpp']:.4f} bpp  {r['psnr']:.2f} dB  MS-SSIM {r['ms_ssim']:.4f}"
            f"  enc {r['encode_s']:.2f} s  dec {r['decode_s']:.2f} s",
            flush=True,
        )
    keys = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")
    bits = sum(sum(r["bits"].values()) for r in rows)
    ideal = sum(sum(r["ideal_bits"].values()) for r in rows)
    symbols = {k: sum(r["symbols"][k] for r in rows) for k in rows[0]["symbols"]}
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    mean.update(
        median_encode_s=float(np.median([r["encode_s"] for r in rows])),
        median_decode_s=float(np.median([r["decode_s"] for r in rows])),
        all_codes_exact=all(r["codes_exact"] for r in rows),
        stream_overhead=bits / ideal - 1,
        # What the same code maps would cost at a fixed log2(K) bits per code.
        fixed_length_bpp=float(
            np.mean(
                [
                    sum(
                        r["symbols"][k] * np.log2(s)
                        for k, s in zip(
                            ("top", "middle", "bottom"), codec.model.vqvae.config.codebook_sizes
                        )
                    )
                    / (r["width"] * r["height"])
                    for r in rows
                ]
            )
        ),
        bits_per_level={k: sum(r["bits"][k] for r in rows) / symbols[k] for k in symbols},
    )
    result = {
        "model": codec.name,
        "model_id": f"{codec.model.model_id:08x}",
        "images": len(rows),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "mean": mean,
        "rows": rows,
    }
    out = args.out / f"{args.label or 'hvq'}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(mean, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
