"""Speed and memory of hvqcodec: encode and decode time by stage, per image and per megapixel,
and the peak memory of each.

    python -m benchmarks.speed --image ../shared/data/kodak/kodim01.png \
        --out benchmarks/results/speed.json

Sizes: 512x512 (a crop), the image itself (Kodak: 768x512, 0.4 MP), and the image upscaled to
about 4 MP, 12 MP (4000x3000, a phone photo), 4096x4096 and 48 MP (8000x6000, a current
phone's full resolution), all at the model's default quality, then the image itself at the
highest quality. It also counts the float analysis' and synthesis' multiply-accumulates per
pixel on a Kodak-sized image (the networks' cost, apart from coding and tiling). Encoding and
decoding each run in a process of their own, so that each peak
RSS is that step's alone, as `hvqcodec compress` and `decompress` would see it. Times are
medians of --runs runs through the real file path: read image, encode, write .hvq; read,
decode, write PNG. Sizes above LARGE_MP megapixels run once.
"""

import argparse
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
    "48MP": (8000, 6000),
}
LARGE_MP = 5
KMAC_SIZE = (512, 768)  # height, width: a Kodak image


def kmac_per_pixel(model: str) -> dict[str, float] | None:
    """Thousands of multiply-accumulates per pixel of the analysis and the synthesis, by torch's
    FLOP counter (two FLOPs a MAC) on a KMAC_SIZE image; None for a family without them (VQ-VAE)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hvqcodec import Codec

    net = getattr(Codec(model).model, "net", None)
    if net is None:
        return None
    x = torch.zeros(1, 3, *KMAC_SIZE)
    with torch.no_grad():
        with FlopCounterMode(display=False) as analysis:
            y = net.analysis(x)
        with FlopCounterMode(display=False) as synthesis:
            net.synthesis(y)
    pixels = KMAC_SIZE[0] * KMAC_SIZE[1]
    return {name: round(c.get_total_flops() / 2 / pixels / 1000, 1)
            for name, c in (("analysis", analysis), ("synthesis", synthesis))}  # fmt: skip


def source_image(image: Path, size: str, png: Path) -> None:
    """The benchmark's input at `size`, written as a PNG for the steps to read."""
    from PIL import Image

    src = Image.open(image).convert("RGB")
    if SIZES[size] == (512, 512):
        src = src.crop((0, 0, 512, 512))
    elif SIZES[size]:
        src = src.resize(SIZES[size], Image.LANCZOS)
    src.save(png, compress_level=1)


def one_step(step: str, png: Path, hvq: Path, runs: int, model: str, quality: float | None):
    """Encode `png` to `hvq`, or decode `hvq`, `runs` times in this process; timings by stage
    and this process's peak RSS."""
    import torch

    from hvqcodec import Codec

    codec = Codec(model)
    quality = codec.default_quality if quality is None else quality
    codec.encode(np.zeros((64, 64, 3), np.uint8))  # warm-up
    megapixels = 0.0
    timings = []
    for _ in range(runs):
        t0 = time.perf_counter()
        if step == "encode":
            out = codec.encode_detailed(png, quality)
            t1 = time.perf_counter()
            hvq.write_bytes(out.data)
            width, height, size = out.width, out.height, len(out.data)
            io = time.perf_counter() - t1
        else:
            data = hvq.read_bytes()
            t1 = time.perf_counter()
            out = codec.decode_detailed(data)
            t2 = time.perf_counter()
            out.image.save(hvq.with_suffix(".out.png"))
            width, height, size = *out.image.size, len(data)
            io = (t1 - t0) + time.perf_counter() - t2
        timings.append({**out.timings, "io": out.timings["io"] + io,
                        "total": time.perf_counter() - t0})  # fmt: skip
        megapixels = width * height / 1e6
    medians = {k: float(np.median([t[k] for t in timings])) for k in timings[0]}
    return {
        "quality": quality,
        "width": width,
        "height": height,
        "megapixels": megapixels,
        "bpp": 8 * size / (width * height),
        "seconds": medians,
        "s_per_mp": medians["total"] / megapixels,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }


def one_size(args, size: str, quality: list[str]) -> dict:
    """Both steps at one size, each in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        png, hvq = Path(tmp) / "in.png", Path(tmp) / "in.hvq"
        source_image(args.image, size, png)
        from PIL import Image

        with Image.open(png) as im:
            runs = 1 if im.width * im.height > LARGE_MP * 1e6 else args.runs
        row = {"size": size}
        for step in ("encode", "decode"):
            cmd = [sys.executable, "-m", "benchmarks.speed", "--image", str(args.image),
                   "--out", str(args.out), "--runs", str(runs), "--model", args.model,
                   "--step", step, "--png", str(png), "--hvq", str(hvq),
                   *(["--quality", *quality] if quality else [])]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
            add_step(row, step, json.loads(res.stdout.strip().splitlines()[-1]))
        return row


def add_step(row: dict, step: str, measured: dict) -> None:
    """One step's measurements (`one_step`) into a size's row."""
    for k in ("quality", "width", "height", "megapixels", "bpp", "torch_threads"):
        row[k] = measured[k]
    row[f"{step}_s"] = measured["seconds"]
    row[f"{step}_s_per_mp"] = measured["s_per_mp"]
    row[f"{step}_peak_rss_mb"] = measured["peak_rss_mb"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--step", choices=("encode", "decode"), help=argparse.SUPPRESS)  # child
    p.add_argument("--png", type=Path, help=argparse.SUPPRESS)  # child process
    p.add_argument("--hvq", type=Path, help=argparse.SUPPRESS)  # child process
    p.add_argument("--quality", type=float, help=argparse.SUPPRESS)  # child process
    args = p.parse_args(argv)
    if args.step:
        row = one_step(args.step, args.png, args.hvq, args.runs, args.model, args.quality)
        print(json.dumps(row))
        return
    rows = []
    highest = ["100"] if args.model in SHIPPED else []
    extra = [("kodak", highest)] if highest else []
    for size, quality in [*[(s, []) for s in SIZES], *extra]:
        rows.append(one_size(args, size, quality))
        r = rows[-1]
        print(
            f"{size:9} {r['width']}x{r['height']} q{r['quality']:g}: "
            f"encode {r['encode_s']['total']:.2f} s, {r['encode_peak_rss_mb']:.0f} MB; "
            f"decode {r['decode_s']['total']:.2f} s, {r['decode_peak_rss_mb']:.0f} MB",
            flush=True,
        )
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "model": args.model,
              "kmac_per_pixel": kmac_per_pixel(args.model), "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
