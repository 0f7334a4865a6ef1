"""Regenerate the README's result tables from the result files; never type numbers by hand.

    python -m benchmarks.readme [--results benchmarks/results/kodak] [--readme README.md]

Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->` markers.
"""

import argparse
import json
import re
from pathlib import Path

from hvqcodec.train import card_markdown

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
        f"| integer-exact prior against the float prior (ideal bits) | "
        f"{100 * m['integer_prior_cost']:+.3f}% | <= 1% | "
        f"{_met(m['integer_prior_cost'], '<=', 0.01)} |",
        f"| files against the float prior's cross-entropy | "
        f"{100 * m['file_bits_vs_float_prior']:+.3f}% | | |",
        f"| fixed-length cost of the same codes (bpp) | {m['fixed_length_bpp']:.4f} | | |",
        f"| saving of the priors over fixed-length codes | "
        f"{100 * (1 - m['bpp'] / m['fixed_length_bpp']):.1f}% | >= 20% | "
        f"{_met(1 - m['bpp'] / m['fixed_length_bpp'], '>=', 0.20)} |",
        f"| median encode / decode time (s) | {m['median_encode_s']:.2f} / "
        f"{m['median_decode_s']:.2f} | <= 1.0 / <= 1.0 | "
        f"{_met(max(m['median_encode_s'], m['median_decode_s']), '<=', 1.0)} |",
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


def rd_table(summary: dict) -> str:
    """Mean RD points per codec and hvqcodec's BD-rates against each."""
    lines = [
        f"{summary['images']} images. BD-rate of hvqcodec against each codec (negative: "
        "hvqcodec needs fewer bits for the same quality), over the overlapping quality range "
        "only, pchip interpolation.",
        "",
        "| codec | settings | bpp range | BD-rate, PSNR | BD-rate, MS-SSIM (dB) |",
        "|---|---|---|---|---|",
    ]

    def fmt(v):
        return f"{v:+.1f}%" if isinstance(v, float) else v

    for name, points in summary["curves"].items():
        bd = summary["bd_rate_vs"].get(name)
        lo, hi = points[0]["bpp"], points[-1]["bpp"]
        cells = ("(ours)", "(ours)") if bd is None else (fmt(bd["psnr"]), fmt(bd["ms_ssim"]))
        lines.append(f"| {name} | {len(points)} | {lo:.3f} to {hi:.3f} | {cells[0]} | {cells[1]} |")
    agreement = summary.get("reference_agreement", {})
    if agreement:
        lines += [
            "",
            "Our JPEG and WebP against CompressAI's published points (PSNR, ours minus theirs, "
            "at their bit rates inside our range):",
            "",
            "| codec | points | bpp range | mean difference (dB) | largest difference (dB) |",
            "|---|---|---|---|---|",
        ]
        for name, a in agreement.items():
            if isinstance(a, str):
                lines.append(f"| {name} | 0 | {a} | | |")
                continue
            lo, hi = a["bpp_range"]
            lines.append(
                f"| {name} | {a['points']} | {lo:.3f} to {hi:.3f} | {a['mean_diff_db']:+.2f} "
                f"| {a['max_abs_diff_db']:.2f} |"
            )
    lines += [
        "",
        "hvqcodec's points:",
        "",
        "| quality | bpp | PSNR (dB) | MS-SSIM | encode (s) | decode (s) |",
        "|---|---|---|---|---|---|",
    ]
    for p in summary["curves"]["hvqcodec"]:
        lines.append(
            f"| {p['setting']} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} "
            f"| {p['encode_s']:.2f} | {p['decode_s']:.2f} |"
        )
    return "\n".join(lines)


def speed_table(result: dict) -> str:
    lines = [
        f"CPU `{result['cpu']}`, {result['cores']} cores; medians of repeated runs through "
        "files on disk. Stages: I/O (image and file reading and writing), network (the "
        "autoencoder), priors (their networks), entropy coding (the range coder).",
        "",
        "| size | encode (s) | decode (s) | decode s/MP | encode: I/O, network, priors, coding "
        "| decode: I/O, network, priors, coding | peak RSS (MB) | threads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:

        def split(t):
            return ", ".join(f"{t[k]:.2f}" for k in ("io", "network", "priors", "entropy_coding"))

        lines.append(
            f"| {r['width']}x{r['height']} | {r['encode_s']['total']:.2f} | "
            f"{r['decode_s']['total']:.2f} | {r['decode_s_per_mp']:.2f} | {split(r['encode_s'])} "
            f"| {split(r['decode_s'])} | {r['peak_rss_mb']:.0f} | {r['torch_threads']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/kodak"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--card", type=Path, default=Path("docs/model-card-hvq-v1.json"))
    args = p.parse_args(argv)
    text = args.readme.read_text()

    def load(path: Path):
        return json.loads(path.read_text()) if path.exists() else None

    blocks = {
        "kodak": (load(args.results / "hvq.json"), results_table),
        "rd": (load(args.results / "rd_summary.json"), rd_table),
        "speed": (load(args.results.parent / "speed.json"), speed_table),
        "model-card": (load(args.card), lambda card: card_markdown(card, level=0)),
    }
    for name, (data, render) in blocks.items():
        if data is not None:
            text = replace_block(text, name, render(data))
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
