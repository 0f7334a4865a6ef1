"""Speed and memory of hvqcodec: encode and decode time by stage, per image and per megapixel.

    python -m benchmarks.speed --image ../shared/data/kodak/kodim01.png \
        --out benchmarks/results/speed.json

Each size runs in its own process so that its peak RSS is its own: 512x512 (a crop), the
image itself (Kodak: 768x512), and the image upscaled to about 4 MP, 12 MP (4000x3000, a phone
photo) and 4096x4096 (the bounded-memory target), all at the model's default quality, then
the image itself at the highest quality. Times are medians of --runs runs through the real
file path: read image, encode, write .hvq, read, decode, write PNG; sizes above LARGE_MP
megapixels run once.
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hvqcodec.model_card import cpu_model
from hvqcodec.shipped import DEFAULT_MODEL, SHIPPED

SIZES = {
    "512x512": (512, 512),
    "kodak": None,
    "4MP": (2448, 1632),
    "12MP": (4000, 3000),
    "4096x4096": (4096, 4096),
}
LARGE_MP = 5


def one_size(image: Path, size: str, runs: int, model: str, quality: float | None) -> dict:
    with contextlib.ExitStack() as stack:
        return _one_size(stack, image, size, runs, model, quality)


def _one_size(stack, image: Path, size: str, runs: int, model: str, quality: float | None) -> dict:
    import torch
    from PIL import Image

    from hvqcodec import Codec

    codec = Codec(model)
    quality = codec.default_quality if quality is None else quality
    src = Image.open(image).convert("RGB")
    if SIZES[size] == (512, 512):
        src = src.crop((0, 0, 512, 512))
    elif SIZES[size]:
        src = src.resize(SIZES[size], Image.LANCZOS)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    png, hvq, out = tmp / "in.png", tmp / "in.hvq", tmp / "out.png"
    src.save(png)
    codec.encode(np.zeros((64, 64, 3), np.uint8))  # warm-up
    if src.width * src.height > LARGE_MP * 1e6:
        runs = 1
    enc_runs, dec_runs = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        enc = codec.encode_detailed(png, quality)
        t1 = time.perf_counter()
        hvq.write_bytes(enc.data)
        enc_runs.append(
            {
                **enc.timings,
                "io": enc.timings["io"] + time.perf_counter() - t1,
                "total": time.perf_counter() - t0,
            }
        )
        t0 = time.perf_counter()
        data = hvq.read_bytes()
        t1 = time.perf_counter()
        dec = codec.decode_detailed(data)
        t2 = time.perf_counter()
        dec.image.save(out)
        dec_runs.append(
            {
                **dec.timings,
                "io": (t1 - t0) + time.perf_counter() - t2,
                "total": time.perf_counter() - t0,
            }
        )
    megapixels = src.width * src.height / 1e6

    def medians(rs):
        return {k: float(np.median([r[k] for r in rs])) for k in rs[0]}

    return {
        "size": size,
        "quality": quality,
        "width": src.width,
        "height": src.height,
        "megapixels": megapixels,
        "bpp": 8 * len(enc.data) / (src.width * src.height),
        "encode_s": medians(enc_runs),
        "decode_s": medians(dec_runs),
        "encode_s_per_mp": float(np.median([r["total"] for r in enc_runs])) / megapixels,
        "decode_s_per_mp": float(np.median([r["total"] for r in dec_runs])) / megapixels,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--size", choices=SIZES, help=argparse.SUPPRESS)  # child process
    p.add_argument("--quality", type=float, help=argparse.SUPPRESS)  # child process
    args = p.parse_args(argv)
    if args.size:
        print(json.dumps(one_size(args.image, args.size, args.runs, args.model, args.quality)))
        return
    rows = []
    highest = ["100"] if args.model in SHIPPED else []
    extra = [("kodak", highest)] if highest else []
    for size, quality in [*[(s, []) for s in SIZES], *extra]:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.speed",
            "--image",
            str(args.image),
            "--out",
            str(args.out),
            "--runs",
            str(args.runs),
            "--model",
            args.model,
            "--size",
            size,
            *(["--quality", *quality] if quality else []),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"{size:8} {r['width']}x{r['height']} q{r['quality']}: "
            f"encode {r['encode_s']['total']:.2f} s, decode {r['decode_s']['total']:.2f} s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "model": args.model, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
