"""Encoding to a target: how close each file lands, and what the search costs.

    python -m benchmarks.targets --images ../shared/data/kodak \
        --out benchmarks/results/kodak/targets.json

For every image: a plain encode at the default quality (the time reference), then `--size` at
0.25, 0.5 and 1 bpp worth of bytes, the same as `--bpp`, and `--psnr` 30 and 33, each through
the real codec in memory (2 torch threads). A size target is met by a file of 97% to 100% of
its budget; a PSNR target by a file within 0.3 dB above it. Every other file is counted by
why it misses: `unreachable` (over the budget even at quality 0, or short of the PSNR even at
100), `scale_end` (on the safe side at the end of the scale: quality 100 under the budget,
quality 0 over the PSNR) or `rate_jump` (on the safe side inside the scale, where one step of
quality jumps across the window).
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hvqcodec import Codec
from hvqcodec.image_io import image_paths, load_rgb
from hvqcodec.metrics import psnr
from hvqcodec.rate_control import PSNR_BAND, SIZE_BAND, Target
from hvqcodec.shipped import DEFAULT_MODEL

BPPS = (0.25, 0.5, 1.0)
PSNRS = (30.0, 33.0)
OUTCOMES = ("met", "unreachable", "scale_end", "rate_jump")


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def one_image(codec: Codec, rgb: np.ndarray) -> list[dict]:
    pixels = rgb.shape[0] * rgb.shape[1]
    plain, plain_s = timed(codec.encode_detailed, rgb)
    rows = [{"target": "plain", "quality": plain.quality, "bytes": len(plain.data),
             "seconds": plain_s}]  # fmt: skip
    asks = [("size", b, {"target_size": int(b * pixels / 8)}) for b in BPPS]
    asks += [("bpp", b, {"target_bpp": b}) for b in BPPS]
    asks += [("psnr", p, {"target_psnr": p}) for p in PSNRS]
    for kind, value, kwargs in asks:
        enc, seconds = timed(codec.encode_detailed, rgb, **kwargs)
        row = {"target": kind, "value": value, "quality": enc.quality, "bytes": len(enc.data),
               "bpp": enc.bpp, "seconds": seconds, "vs_plain": seconds / plain_s,
               "note": None}  # fmt: skip
        if kind == "psnr":
            row["psnr"] = psnr(rgb, np.asarray(codec.decode(enc.data)))
            unsafe, safe = row["psnr"] < value, row["psnr"] > value + PSNR_BAND
            end = enc.quality == 0
        else:
            budget = Target.choose(rgb.shape[1], rgb.shape[0], size=kwargs.get("target_size"),
                                   bpp=kwargs.get("target_bpp")).value  # fmt: skip
            row["budget"], row["share"] = budget, len(enc.data) / budget
            unsafe, safe = row["share"] > 1.0, row["share"] < SIZE_BAND
            end = enc.quality == 100
        row["outcome"] = ("unreachable" if unsafe else "met" if not safe
                          else "scale_end" if end else "rate_jump")  # fmt: skip
        if row["outcome"] != "met":
            row["note"] = enc.notes[-1]  # the target's note comes last
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    out = {"plain_median_s": statistics.median(r["seconds"] for r in rows
                                                if r["target"] == "plain")}  # fmt: skip
    for kind, values in (("size", BPPS), ("bpp", BPPS), ("psnr", PSNRS)):
        for v in values:
            sel = [r for r in rows if r["target"] == kind and r["value"] == v]
            s = {"images": len(sel), **{o: sum(r["outcome"] == o for r in sel) for o in OUTCOMES},
                 "median_vs_plain": statistics.median(r["vs_plain"] for r in sel)}  # fmt: skip
            if kind == "psnr":
                s["mean_psnr"] = statistics.mean(r["psnr"] for r in sel)
            else:
                s["mean_share"] = statistics.mean(r["share"] for r in sel)
            out[f"{kind} {v:g}"] = s
    every = [r["vs_plain"] for r in rows if r["target"] != "plain"]
    out["median_target_vs_plain"] = statistics.median(every)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = Codec(args.model)
    codec.encode(np.zeros((64, 64, 3), np.uint8))  # warm-up
    rows, paths = [], image_paths(args.images)
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    for path in paths:
        for r in one_image(codec, load_rgb(path).rgb):
            rows.append({"image": path.name, **r})
        print(path.name, json.dumps(rows[-1]), flush=True)
    result = {"model": codec.name, "model_id": f"{codec.model.model_id:08x}",
              "torch_threads": args.threads, "summary": summarize(rows), "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
