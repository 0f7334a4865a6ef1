"""Regenerate the README's result tables from the result files; never type numbers by hand.

    python -m benchmarks.readme [--results benchmarks/results/kodak] [--readme README.md]

Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->` markers.
"""

import argparse
import json
import re
from pathlib import Path

import numpy as np

from hvqcodec.model_card import card_markdown
from hvqcodec.shipped import DEFAULT_MODEL

# Mean Kodak PSNR (dB) at these bpp that hvq-v4 was set to reach: a little under AVIF's curve.
KODAK_PSNR_TARGETS = {0.1: 26.3, 0.2: 28.6, 0.4: 31.3, 0.8: 34.7, 1.5: 38.5}


def _met(value: float, op: str, target: float) -> str:
    return "yes" if (value <= target if op == "<=" else value >= target) else "**no**"


def results_table(r: dict) -> str:
    m = r["mean"]
    lines = [
        f"Model `{r['model']}` (id `{r['model_id']}`) at its default quality "
        f"{r.get('quality', 1):g}, {r['images']} images, {r['torch_threads']} torch threads, "
        f"CPU `{r['cpu']}`.",
        "",
        "| measure (mean over images) | value | target | met |",
        "|---|---|---|---|",
        f"| bits per pixel (whole .hvq file) | {m['bpp']:.4f} | | |",
        f"| RGB PSNR (dB) | {m['psnr']:.2f} | | |",
        f"| MS-SSIM (RGB) | {m['ms_ssim']:.4f} | | |",
    ]
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
    ]
    fixed = m["fixed_length_bpp"]
    if fixed is not None:  # VQ models only: a scalar level has no fixed-length code
        lines += [
            f"| fixed-length cost of the same codes (bpp) | {fixed:.4f} | | |",
            f"| saving of the priors over fixed-length codes | {100 * (1 - m['bpp'] / fixed):.1f}%"
            f" | >= 20% | {_met(1 - m['bpp'] / fixed, '>=', 0.20)} |",
        ]
    lines += [
        f"| median encode / decode time (s) | {m['median_encode_s']:.2f} / "
        f"{m['median_decode_s']:.2f} | <= 1.0 / <= 1.0 | "
        f"{_met(max(m['median_encode_s'], m['median_decode_s']), '<=', 1.0)} |",
        "",
        "Bits per symbol by stream: "
        + ", ".join(f"{k} {v:.2f}" for k, v in m["bits_per_level"].items())
        + (" (fixed-length: 9, 8, 7, then 8 per later bottom stage)." if fixed else "."),
    ]
    return "\n".join(lines)


def qualities_table(runs: list[dict]) -> str:
    """One row per quality, from the hvq-qQ.json files, and the range and monotonicity."""
    lines = [
        "| quality | streams | bpp | PSNR (dB) | MS-SSIM | median encode (s) | median decode (s) "
        "| preview PSNR (dB) | median preview (s) | preview reads |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        m, row = r["mean"], r["rows"][0]
        share = np.mean([x["preview_bytes"] / x["bytes"] for x in r["rows"]])
        lines.append(
            f"| {r['quality']:g} | {len(row['bits'])} | {m['bpp']:.4f} | {m['psnr']:.2f} | "
            f"{m['ms_ssim']:.4f} | {m['median_encode_s']:.2f} | {m['median_decode_s']:.2f} | "
            f"{m['preview_psnr']:.2f} | "
            f"{np.median([x['preview_decode_s'] for x in r['rows']]):.2f} | "
            f"{100 * share:.0f}% of the file |"
        )
    means = [r["mean"] for r in runs]
    rising = all(
        all(a[k] < b[k] for a, b in zip(means, means[1:])) for k in ("bpp", "psnr", "ms_ssim")
    )
    lines += [
        "",
        f"Range: {means[0]['bpp']:.4f} to {means[-1]['bpp']:.4f} bpp (targets: at most 0.05 "
        f"at the low end: {_met(means[0]['bpp'], '<=', 0.05)}; at least 2.0 at the high end: "
        f"{_met(means[-1]['bpp'], '>=', 2.0)}). bpp, PSNR and MS-SSIM all rise with the "
        f"quality: {'yes' if rising else '**no**'}.",
    ]
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
        "| codec | settings | bpp range | PSNR range compared (dB) | BD-rate, PSNR "
        "| BD-rate, MS-SSIM (dB) |",
        "|---|---|---|---|---|---|",
    ]
    ours = [p["psnr"] for p in summary["curves"]["hvqcodec"]]

    def fmt(v):
        return f"{v:+.1f}%" if isinstance(v, float) else v

    for name, points in summary["curves"].items():
        bd = summary["bd_rate_vs"].get(name)
        lo, hi = points[0]["bpp"], points[-1]["bpp"]
        cells = ("(ours)", "(ours)") if bd is None else (fmt(bd["psnr"]), fmt(bd["ms_ssim"]))
        if name.startswith("hvqcodec -e"):  # a higher effort has its own table (*Effort*)
            cells = ("see *Effort*", "see *Effort*")
        psnr = [p["psnr"] for p in points]
        low, high = max(min(psnr), min(ours)), min(max(psnr), max(ours))
        compared = f"{low:.1f} to {high:.1f}" if high > low else "none"
        lines.append(
            f"| {name} | {len(points)} | {lo:.3f} to {hi:.3f} | {compared} | {cells[0]} "
            f"| {cells[1]} |"
        )
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
    at = summary.get("at_rates")
    if at:
        rates = sorted({r for v in at.values() for r in v}, key=float)
        ours = sorted(n for n in at if n.startswith("hvqcodec"))  # every effort measured
        earlier = [n for n in summary.get("earlier_models", []) if n in at]  # rd's --also
        names = ours + earlier + [n for n in ("JPEG", "WebP", "AVIF", "JPEG XL") if n in at]
        lines += [
            "",
            "PSNR (dB) / MS-SSIM of the mean curves at these rates (pchip in log bpp; -: "
            "outside the codec's measured range), and the PSNR hvq-v4 was set to reach:",
            "",
            "| bpp | " + " | ".join(names) + " | PSNR target (dB) |",
            "|---" * (len(names) + 2) + "|",
        ]
        for r in rates:
            cells = [f"{at[n][r]['psnr']:.2f} / {at[n][r]['ms_ssim']:.3f}" if r in at[n] else "-"
                     for n in names]  # fmt: skip
            target = KODAK_PSNR_TARGETS.get(float(r))
            cells.append("" if target is None else f"{target:g}")
            lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "hvqcodec's points:",
        "",
        "| quality | bpp | PSNR (dB) | MS-SSIM | encode (s) | decode (s) |",
        "|---|---|---|---|---|---|",
    ]
    for p in summary["curves"]["hvqcodec"]:
        lines.append(
            f"| {p['setting']:g} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} "
            f"| {p['encode_s']:.2f} | {p['decode_s']:.2f} |"
        )
    return "\n".join(lines)


def effort_table(summary: dict) -> str:
    """hvqcodec at each higher effort measured: BD-rates against effort 0 and each codec,
    and the encode time, both over the same settings."""
    lines = []
    if not summary.get("effort_bd_rate_vs"):
        return (
            f"Not yet measured with {summary.get('model', 'this model')}: `benchmarks.rd` with "
            "`--effort 1 --effort 2` adds it to the results (it resumes from `rd.jsonl`)."
        )
    for name, bd in sorted(summary["effort_bd_rate_vs"].items()):
        points, plain = summary["curves"][name], summary["curves"]["hvqcodec"]
        lines += [
            f"`{name}`, {len(points)} qualities, {summary['images']} images: BD-rate against "
            "each codec (negative: fewer bits for the same quality; pchip, overlapping range).",
            "",
            "| against | BD-rate, PSNR | BD-rate, MS-SSIM (dB) |",
            "|---|---|---|",
        ]
        for other, v in bd.items():
            label = "hvqcodec at effort 0" if other == "hvqcodec" else other
            cells = [f"{x:+.1f}%" if isinstance(x, float) else x for x in v.values()]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
        encode, decode = (np.mean([p[k] for p in points]) for k in ("encode_s", "decode_s"))
        plain_encode, plain_decode = (
            np.mean([p[k] for p in plain]) for k in ("encode_s", "decode_s")
        )
        lines += [
            "",
            f"Mean time per image: encode {encode:.1f} s (effort 0: {plain_encode:.2f} s), "
            f"decode {decode:.2f} s (effort 0: {plain_decode:.2f} s; the decoder is the same).",
            "",
        ]
    return "\n".join(lines).strip()


def speed_table(result: dict) -> str:
    lines = [
        f"CPU `{result['cpu']}`, {result['cores']} cores; medians of repeated runs through "
        "files on disk, encoding and decoding each in a process of its own (peak RSS: that "
        "process's). Stages: I/O (image and file reading and writing), network (the "
        "autoencoder), priors (their networks), entropy coding (the range coder).",
        "",
        "| size | MP | quality | encode (s) | encode s/MP | encode peak RSS (MB) "
        "| decode (s) | decode s/MP | decode peak RSS (MB) "
        "| encode: I/O, network, priors, coding | decode: I/O, network, priors, coding "
        "| threads |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:

        def split(t):
            return ", ".join(f"{t[k]:.2f}" for k in ("io", "network", "priors", "entropy_coding"))

        lines.append(
            f"| {r['width']}x{r['height']} | {r['megapixels']:.1f} | {r['quality']:g} | "
            f"{r['encode_s']['total']:.2f} | {r['encode_s_per_mp']:.2f} | "
            f"{r['encode_peak_rss_mb']:.0f} | {r['decode_s']['total']:.2f} | "
            f"{r['decode_s_per_mp']:.2f} | {r['decode_peak_rss_mb']:.0f} | "
            f"{split(r['encode_s'])} | {split(r['decode_s'])} | {r['torch_threads']} |"
        )
    kmac = result.get("kmac_per_pixel")
    if kmac:
        cost = f"analysis {kmac['analysis']:.1f}, synthesis {kmac['synthesis']:.1f}"
        lines += ["", f"Networks (`torch.utils.flop_counter`, 768x512): {cost} kMAC per pixel."]
    return "\n".join(lines)


def targets_table(result: dict) -> str:
    """benchmarks/targets.py's summary: where each target's files land, and what it costs."""
    s = result["summary"]
    lines = [
        f"{result['model']}, {result['torch_threads']} threads; a plain encode at the default "
        f"quality takes {s['plain_median_s']:.2f} s (median). Misses are counted by why: "
        "unreachable (over the budget even at quality 0, or short of the PSNR even at 100), "
        "scale end (quality 100 under the budget, or quality 0 over the PSNR), rate jump (one "
        "step of quality jumps across the window).",
        "",
        "| target | met | unreachable | scale end | rate jump | mean | time vs plain (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in s.items():
        if not isinstance(t, dict):
            continue
        kind, value = name.split()
        flag = f"--{kind} {value}" + (" bpp of bytes" if kind == "size" else "")
        mean = (f"{t['mean_psnr']:.2f} dB" if "mean_psnr" in t
                else f"{100 * t['mean_share']:.1f}% of budget")  # fmt: skip
        lines.append(
            f"| `{flag}` | {t['met']}/{t['images']} | {t['unreachable']} | "
            f"{t['scale_end']} | {t['rate_jump']} | {mean} | {t['median_vs_plain']:.2f}x |"
        )
    ratio = s["median_target_vs_plain"]
    lines += ["", f"Median time of a target encode: {ratio:.2f}x a plain encode (target: at most "
              f"3x): {_met(ratio, '<=', 3.0)}."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/kodak"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--card", type=Path, default=Path(f"docs/model-card-{DEFAULT_MODEL}.json"))
    args = p.parse_args(argv)
    text = args.readme.read_text()

    def load(path: Path):
        return json.loads(path.read_text()) if path.exists() else None

    rd_summary = load(args.results / "rd_summary.json")
    blocks = {
        "kodak": (load(args.results / "hvq.json"), results_table),
        "rd": (rd_summary, rd_table),
        "effort": (rd_summary, effort_table),
        "speed": (load(args.results.parent / "speed.json"), speed_table),
        "targets": (load(args.results / "targets.json"), targets_table),
        "model-card": (load(args.card), lambda card: card_markdown(card, level=0)),
    }
    for name, (data, render) in blocks.items():
        if data is not None:
            text = replace_block(text, name, render(data))
    quality_files = sorted(
        args.results.glob("hvq-q*.json"), key=lambda f: float(f.stem.removeprefix("hvq-q"))
    )
    if quality_files:
        runs = [json.loads(f.read_text()) for f in quality_files]
        text = replace_block(text, "qualities", qualities_table(runs))
    args.readme.write_text(text)
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
