"""Regenerate the README's result tables from the result files; never type numbers by hand.

    python -m benchmarks.readme [--results benchmarks/results/kodak] [--readme README.md]

Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->` markers.
"""

import argparse
import json
import re
from pathlib import Path

TARGETS = {"bpp": ("<=", 0.12), "psnr": (">=", 25.0), "ms_ssim": (">=", 0.89)}


def _met(value: float, op: str, target: float) -> str:
    return "yes" if (value <= target if op == "<=" else value >= target) else "**no**"


def results_table(r: dict) -> str:
    m = r["mean"]
    lines = [
        f"Model `{r['model']}` (id `{r['model_id']}`), {r['images']} images, "
        f"{r['torch_threads']} torch threads, CPU `{r['cpu']}`.",
        "",
        "| measure (mean over images) | value | target | met |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("bpp", "bits per pixel (whole .hvq file)"),
        ("psnr", "RGB PSNR (dB)"),
        ("ms_ssim", "MS-SSIM (RGB)"),
    ):
        op, target = TARGETS[key]
        lines.append(f"| {label} | {m[key]:.4f} | {op} {target} | {_met(m[key], op, target)} |")
    lines += [
        f"| codes decoded exactly as encoded | {m['all_codes_exact']} | all | "
        f"{'yes' if m['all_codes_exact'] else '**no**'} |",
        f"| stream size over cross-entropy | {100 * m['stream_overhead']:+.3f}% | <= 1% | "
        f"{_met(m['stream_overhead'], '<=', 0.01)} |",
        f"| fixed-length cost of the same codes (bpp) | {m['fixed_length_bpp']:.4f} | | |",
        f"| saving of the priors over fixed-length codes | "
        f"{100 * (1 - m['bpp'] / m['fixed_length_bpp']):.1f}% | >= 20% | "
        f"{_met(1 - m['bpp'] / m['fixed_length_bpp'], '>=', 0.20)} |",
        f"| median encode / decode time (s) | {m['median_encode_s']:.2f} / "
        f"{m['median_decode_s']:.2f} | | |",
        "",
        "Bits per code by level: "
        + ", ".join(f"{k} {v:.2f}" for k, v in m["bits_per_level"].items())
        + " (fixed-length: 9, 8, 7).",
    ]
    return "\n".join(lines)


def depth_table(runs: list[dict]) -> str:
    lines = [
        "| prior (non-causal depth) | mean bpp | median decode (s) | median encode (s) |",
        "|---|---|---|---|",
    ]
    for r in runs:
        m = r["mean"]
        lines.append(
            f"| {r['label']} | {m['bpp']:.4f} | {m['median_decode_s']:.2f} | "
            f"{m['median_encode_s']:.2f} |"
        )
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README has no {name} markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/kodak"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    args = p.parse_args(argv)
    text = args.readme.read_text()
    text = replace_block(
        text, "kodak", results_table(json.loads((args.results / "hvq.json").read_text()))
    )
    depth_files = sorted(args.results.glob("depth-*.json"))
    if depth_files:
        runs = []
        for f in depth_files:
            r = json.loads(f.read_text())
            r["label"] = f.stem.removeprefix("depth-")
            runs.append(r)
        text = replace_block(text, "prior-depth", depth_table(runs))
    args.readme.write_text(text)
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
