"""Rate-distortion benchmark of hvqcodec against JPEG, WebP, AVIF, JPEG 2000 and JPEG XL, and
against earlier hvqcodec models (`--also hvq-v3.1`).

    python -m benchmarks.rd --images ../shared/data/kodak --out benchmarks/results/kodak

Per image, codec and setting it records bpp (from the real encoded size; for .hvq the whole
file), RGB PSNR, MS-SSIM (pytorch-msssim) and encode/decode wall time, in OUT/rd.jsonl. A
second run skips what is already there, so an interrupted run resumes. It then writes
OUT/rd_summary.json (means per setting, BD-rates), OUT/rd.csv, the RD plots and a visual
comparison. `python -m benchmarks.readme` puts the tables into the README.
"""

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from benchmarks.codecs import BenchCodec, all_codecs, pillow_codec
from hvqcodec import Codec
from hvqcodec.evaluate import msssim
from hvqcodec.image_io import image_paths, load_rgb
from hvqcodec.metrics import psnr
from hvqcodec.shipped import DEFAULT_MODEL

REFERENCE = Path(__file__).parent / "reference" / "compressai_kodak.json"
OURS = "hvqcodec"


def measure(codec: BenchCodec, rgb: np.ndarray, setting) -> dict:
    t0 = time.perf_counter()
    data = codec.encode(rgb, setting)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    return {
        "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1]),
        "psnr": psnr(rgb, out),
        "ms_ssim": msssim(rgb, out),
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
    }


def run(images: list[Path], codecs: dict[str, BenchCodec], log: Path) -> list[dict]:
    """Measure every (image, codec, setting) not yet in the log, appending to it as it goes.
    Rows of another version of a codec (hvqcodec with other weights) are dropped."""
    rows = [json.loads(line) for line in log.open()] if log.exists() else []
    current = [
        r for r in rows
        if r["codec"] not in codecs or r.get("version", "") == codecs[r["codec"]].version
    ]  # fmt: skip
    if len(current) < len(rows):
        rows = current
        log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = {(r["codec"], str(r["setting"]), r["image"]) for r in rows}
    jobs = [
        (c, s, p)
        for p in images
        for c in codecs.values()
        for s in c.settings
        if (c.name, str(s), p.name) not in done
    ]
    cache: dict[Path, np.ndarray] = {}
    with log.open("a") as f:
        for codec, setting, path in tqdm(jobs, desc="rd", unit="encode"):
            if path not in cache:
                cache.clear()
                cache[path] = load_rgb(path).rgb
            row = {"codec": codec.name, "setting": setting, "image": path.name}
            if codec.version:
                row["version"] = codec.version
            row.update(measure(codec, cache[path], setting))
            f.write(json.dumps(row) + "\n")
            f.flush()
            rows.append(row)
    return rows


def ms_ssim_db(x) -> np.ndarray:
    return -10 * np.log10(1 - np.asarray(x))


def curves(rows: list[dict], n_images: int) -> dict[str, list[dict]]:
    """Mean over images per codec and setting, for settings measured on every image."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["codec"], str(r["setting"])), []).append(r)
    out: dict[str, list[dict]] = {}
    for (name, _), rs in groups.items():
        if len(rs) != n_images:
            continue
        point = {"setting": rs[0]["setting"]}
        for k in ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s"):
            point[k] = float(np.mean([r[k] for r in rs]))
        out.setdefault(name, []).append(point)
    for points in out.values():
        points.sort(key=lambda p: p["bpp"])
    return out


RATES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.5, 2.0)  # bpp at which the curves are read off


def at_rates(points: list[dict], rates=RATES) -> dict[str, dict]:
    """PSNR and MS-SSIM of a mean curve at each bpp inside its range, pchip in log bpp."""
    from scipy.interpolate import PchipInterpolator

    if len(points) < 2:
        return {}
    bpp = np.log([p["bpp"] for p in points])
    curve = {m: PchipInterpolator(bpp, [p[m] for p in points]) for m in ("psnr", "ms_ssim")}
    return {f"{r:g}": {m: float(f(np.log(r))) for m, f in curve.items()}
            for r in rates if bpp[0] <= np.log(r) <= bpp[-1]}  # fmt: skip


def bd_rate(anchor: list[dict], test: list[dict], metric: str) -> float | str:
    """BD-rate (%) of `test` against `anchor` over their overlapping quality range only."""
    import bjontegaard

    def xy(points):
        d = np.array([p[metric] for p in points])
        d = ms_ssim_db(d) if metric == "ms_ssim" else d
        return np.array([p["bpp"] for p in points]), d

    (ra, da), (rt, dt) = xy(anchor), xy(test)
    if len(rt) < 2:
        return "needs 2+ rate points"
    lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
    if hi <= lo:
        return "no overlap"
    # Keep each curve monotonic in quality, as the interpolation requires.
    ia, it = np.argsort(da), np.argsort(dt)
    return float(
        bjontegaard.bd_rate(
            ra[ia],
            da[ia],
            rt[it],
            dt[it],
            method="pchip",
            require_matching_points=False,
            min_overlap=0.0,
        )
    )


def plot(curve: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = json.loads(REFERENCE.read_text())
    for metric, label, fname in (
        ("psnr", "RGB PSNR (dB)", "rd_psnr.png"),
        ("ms_ssim", "MS-SSIM (dB)", "rd_msssim.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 6))
        for name, points in curve.items():
            y = np.array([p[metric] for p in points])
            y = ms_ssim_db(y) if metric == "ms_ssim" else y
            style = dict(marker=".")
            if name.startswith(OURS):  # the default effort black, a higher one grey
                style = dict(marker="o", lw=2.5, color="k" if name == OURS else "0.55")
            ax.plot([p["bpp"] for p in points], y, label=name, **style)
        for name, ref in reference["codecs"].items():
            if metric in ref and name.split(" (")[0] not in ("JPEG", "WebP"):
                y = np.array(ref[metric])
                y = ms_ssim_db(y) if metric == "ms_ssim" else y
                ax.plot(ref["bpp"], y, "--", lw=1, label=f"{name} (published)")
        ax.set(
            xlabel="bits per pixel",
            ylabel=label,
            xlim=(0, 1.0),
            title=f"Kodak, {label.split(' (')[0]} (dashed: CompressAI's published results)",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=90)
        plt.close(fig)


def visual_comparison(
    codecs: dict[str, BenchCodec],
    image: Path,
    out: Path,
    box=(256, 128, 512, 384),
    rates: tuple[float | None, ...] = (None, 0.4),
) -> None:
    """The same crop from hvqcodec and JPEG, WebP, AVIF at the bpp closest to hvqcodec's, one
    row per rate: hvqcodec's highest quality (None), and its quality nearest each bpp given."""
    from PIL import ImageDraw

    rgb = load_rgb(image).rgb
    pixels = rgb.shape[0] * rgb.shape[1]
    coded = {n: {s: codecs[n].encode(rgb, s) for s in codecs[n].settings}
             for n in (OURS, "JPEG", "WebP", "AVIF")}  # fmt: skip

    def nearest(name: str, bpp: float):
        return min(coded[name], key=lambda s: abs(8 * len(coded[name][s]) / pixels - bpp))

    rows = []
    for rate in rates:
        ours = codecs[OURS].settings[-1] if rate is None else nearest(OURS, rate)
        target = 8 * len(coded[OURS][ours]) / pixels
        tiles = [("original", rgb)]
        for name in coded:
            data = coded[name][ours if name == OURS else nearest(name, target)]
            dec = codecs[name].decode(data)
            tiles.append((f"{name} {8 * len(data) / pixels:.3f} bpp {psnr(rgb, dec):.2f} dB", dec))
        rows.append(tiles)
    w, h = box[2] - box[0], box[3] - box[1]
    sheet = Image.new("RGB", (w * len(rows[0]), (h + 20) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, tiles in enumerate(rows):
        for i, (label, img) in enumerate(tiles):
            sheet.paste(Image.fromarray(img).crop(box), (i * w, j * (h + 20) + 20))
            draw.text((i * w + 4, j * (h + 20) + 4), label, fill="black")
    sheet.save(out / "visual_comparison.png")


# CompressAI's JPEG points come from Pillow with `quality` alone (its
# compressai/utils/bench/codecs.py); ours add optimize=True, Huffman tables fitted to each image,
# which shrinks the files most at low rates. A curve with their settings tells that difference
# apart from a measuring error.
COMPRESSAI_JPEG = "JPEG, CompressAI's settings (no optimize)"
AGREEMENT = {"JPEG": "JPEG (CompressAI)", "WebP": "WebP (CompressAI)",
             COMPRESSAI_JPEG: "JPEG (CompressAI)"}  # fmt: skip


def compressai_jpeg_curve(images: list[Path], settings: list) -> list[dict]:
    """Mean bpp and PSNR of Pillow JPEG at `quality` alone, as CompressAI measures it."""
    jpeg = pillow_codec("JPEG", "JPEG", settings, lambda q: {"quality": q})
    originals = [load_rgb(p).rgb for p in images]
    points = []
    for q in settings:
        coded = [(rgb, jpeg.encode(rgb, q)) for rgb in originals]
        points.append({
            "setting": q,
            "bpp": float(np.mean([8 * len(d) / (x.shape[0] * x.shape[1]) for x, d in coded])),
            "psnr": float(np.mean([psnr(x, jpeg.decode(d)) for x, d in coded])),
        })  # fmt: skip
    return sorted(points, key=lambda p: p["bpp"])


def reference_agreement(curve: dict[str, list[dict]]) -> dict[str, dict | str]:
    """Our curves against CompressAI's published points (`AGREEMENT`): PSNR difference (ours
    minus theirs, dB) at their bit rates inside our measured range, by linear interpolation."""
    reference = json.loads(REFERENCE.read_text())["codecs"]
    out: dict[str, dict | str] = {}
    for ours, theirs in AGREEMENT.items():
        ref = reference.get(theirs)
        if ref is None or ours not in curve:
            continue
        pts = sorted(curve[ours], key=lambda p: p["bpp"])
        bpp = np.array([p["bpp"] for p in pts])
        inside = [(b, q) for b, q in zip(ref["bpp"], ref["psnr"]) if bpp[0] <= b <= bpp[-1]]
        if not inside:
            out[ours] = "no overlap"
            continue
        diff = [float(np.interp(b, bpp, [p["psnr"] for p in pts])) - q for b, q in inside]
        out[ours] = {
            "points": len(diff),
            "bpp_range": [inside[0][0], inside[-1][0]],
            "mean_diff_db": float(np.mean(diff)),
            "max_abs_diff_db": float(np.max(np.abs(diff))),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--small", action="store_true", help="two settings per codec (smoke test)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--visual", default="kodim23.png", help="image for the visual comparison")
    p.add_argument("--effort", type=int, action="append", default=[],
                   help="also hvqcodec at this encoder effort, 1-3 (repeatable)")  # fmt: skip
    p.add_argument("--also", action="append", default=[], metavar="MODEL",
                   help="also this model (an earlier one) at effort 0, as a codec of its "
                   "own name (repeatable)")  # fmt: skip
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    images = image_paths(args.images)
    images = images[: args.limit] if args.limit else images
    codec = Codec(args.model)
    others = tuple(Codec(m) for m in args.also)
    codecs = all_codecs(codec, small=args.small, efforts=tuple(args.effort), others=others)
    rows = run(images, codecs, args.out / "rd.jsonl")
    rows = [r for r in rows if r["codec"] in codecs and r["image"] in {q.name for q in images}]
    with (args.out / "rd.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    curve = curves(rows, len(images))
    ours = [n for n in curve if n.startswith(OURS)]  # hvqcodec at each effort measured

    def bd_of(test: str) -> dict:
        return {name: {m: bd_rate(points, curve[test], m) for m in ("psnr", "ms_ssim")}
                for name, points in curve.items() if name not in ours}  # fmt: skip

    bd = bd_of(OURS)
    summary = {
        "model": codec.name,
        "earlier_models": [other.name for other in others],
        "images": len(images),
        "curves": curve,
        "bd_rate_vs": bd,
        # hvqcodec at a higher effort: its BD-rates, and against effort 0 (the default).
        "effort_bd_rate_vs": {
            n: {
                **bd_of(n),
                OURS: {m: bd_rate(curve[OURS], curve[n], m) for m in ("psnr", "ms_ssim")},
            }
            for n in ours
            if n != OURS
        },
        "at_rates": {name: at_rates(points) for name, points in curve.items()},
        "reference_agreement": reference_agreement(
            {**curve, COMPRESSAI_JPEG: compressai_jpeg_curve(images, codecs["JPEG"].settings)}
        ),
    }
    (args.out / "rd_summary.json").write_text(json.dumps(summary, indent=1))
    plot(curve, args.out)
    visual = args.images / args.visual
    visual_comparison(codecs, visual if visual.exists() else images[0], args.out)
    print(json.dumps(bd, indent=1))


if __name__ == "__main__":
    main()
