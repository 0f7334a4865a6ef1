"""Rate and quality of a codec on a folder of images: the numbers the benchmarks and the model
card report, computed by one piece of code.

MS-SSIM comes from pytorch-msssim (Wang, Simoncelli, Bovik, "Multiscale structural similarity
for image quality assessment", 2003), installed with the `bench` and `train` extras.
"""

import time
from pathlib import Path

import numpy as np
import torch

from hvqcodec.codec import Codec
from hvqcodec.image_io import image_paths, load_rgb
from hvqcodec.metrics import psnr
from hvqcodec.model_card import cpu_model


def msssim(a: np.ndarray, b: np.ndarray) -> float:
    from pytorch_msssim import ms_ssim

    def t(x):
        return torch.tensor(x, dtype=torch.float64).permute(2, 0, 1)[None]

    return float(ms_ssim(t(a), t(b), data_range=255))


def measure(
    codec: Codec, path: Path, files: Path | None = None, quality: float | None = None
) -> dict:
    """Encode and decode one image, and preview it; bpp from the real file size. Writes the
    .hvq to `files`."""
    original = load_rgb(path).rgb
    t0 = time.perf_counter()
    enc = codec.encode_detailed(original, quality)
    t1 = time.perf_counter()
    dec = codec.decode_detailed(enc.data)
    t2 = time.perf_counter()
    preview = codec.decode_detailed(enc.data, preview=True)
    t3 = time.perf_counter()
    if files is not None:
        (files / path.with_suffix(".hvq").name).write_bytes(enc.data)
    out = np.asarray(dec.image)
    float_bits = codec.model.float_bits(enc.codes, enc.hundredths)
    return {
        "image": path.name,
        "width": enc.width,
        "height": enc.height,
        "bytes": len(enc.data),
        "bpp": enc.bpp,
        "psnr": psnr(original, out),
        "ms_ssim": msssim(original, out),
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
        "codes_exact": all(np.array_equal(enc.codes[k], dec.codes[k]) for k in enc.codes),
        "preview_psnr": psnr(original, np.asarray(preview.image)),
        "preview_decode_s": t3 - t2,
        "preview_bytes": sum(len(s) for s in preview.header.streams),
        "bits": {k: s.bits for k, s in enc.stats.items()},
        "ideal_bits": {k: s.ideal_bits for k, s in enc.stats.items()},
        "symbols": {k: s.symbols for k, s in enc.stats.items()},
        "float_prior_bits": float_bits,
    }


def summarize(rows: list[dict], codebook_sizes: dict[str, int]) -> dict:
    """Means and medians over images, stream overhead, and the fixed-length comparison."""
    keys = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s", "preview_psnr", "preview_decode_s")
    bits = sum(sum(r["bits"].values()) for r in rows)
    ideal = sum(sum(r["ideal_bits"].values()) for r in rows)
    levels = list(rows[0]["symbols"])
    symbols = {k: sum(r["symbols"][k] for r in rows) for k in levels}
    # What the same code maps would cost at a fixed log2(K) bits per code (VQ models only:
    # a scalar level has no codebook).
    fixed = (
        [
            sum(r["symbols"][k] * np.log2(codebook_sizes[k]) for k in levels)
            / (r["width"] * r["height"])
            for r in rows
        ]
        if set(levels) <= set(codebook_sizes)
        else None
    )
    float_bits = sum(sum(r["float_prior_bits"].values()) for r in rows)
    return {
        **{k: float(np.mean([r[k] for r in rows])) for k in keys},
        "median_encode_s": float(np.median([r["encode_s"] for r in rows])),
        "median_decode_s": float(np.median([r["decode_s"] for r in rows])),
        "all_codes_exact": all(r["codes_exact"] for r in rows),
        "stream_overhead": bits / ideal - 1,
        # Integer tables against the float prior (ideal bits), and the files against it.
        "integer_prior_cost": ideal / float_bits - 1,
        "file_bits_vs_float_prior": bits / float_bits - 1,
        "fixed_length_bpp": None if fixed is None else float(np.mean(fixed)),
        "bits_per_level": {k: sum(r["bits"][k] for r in rows) / symbols[k] for k in levels},
    }


def evaluate(
    codec: Codec, folder: Path, files: Path | None = None, log=print, quality: float | None = None
) -> dict:
    """Every image of a folder through the codec at one quality (default: the codec's):
    per-image rows and their summary."""
    quality = codec.default_quality if quality is None else quality
    paths = image_paths(folder)
    if files is not None:
        files.mkdir(parents=True, exist_ok=True)
    codec.encode(np.zeros((64, 64, 3), np.uint8))  # warm-up, so the first image is timed fairly
    rows = []
    for path in paths:
        r = measure(codec, path, files, quality)
        rows.append(r)
        log(
            f"{r['image']}: {r['bpp']:.4f} bpp  {r['psnr']:.2f} dB  MS-SSIM {r['ms_ssim']:.4f}"
            f"  enc {r['encode_s']:.2f} s  dec {r['decode_s']:.2f} s"
        )
    return {
        "model": codec.name,
        "model_id": f"{codec.model.model_id:08x}",
        "quality": quality,
        "images": len(rows),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "mean": summarize(rows, codec.model.codebook_sizes()),
        "rows": rows,
    }
