"""Command line: `hvqcodec compress`, `decompress`, `info`, `models`, `demo`, `train`.

Conventions after cwebp/cjxl/avifenc: output beside the input with the new extension unless
-o is given, never overwrite without --force, one-line errors on stderr and a non-zero exit.
Outputs are written to a temporary file and renamed, so an error leaves no partial file.
"""

import math
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
from PIL import Image

from hvqcodec import __version__
from hvqcodec.batch import CLUSTER_EXTRA, Failure, Job, atomic_output, run_jobs, summary
from hvqcodec.errors import HvqError
from hvqcodec.family import MAX_EFFORT
from hvqcodec.metrics import psnr
from hvqcodec.shipped import DEFAULT_MODEL, SHIPPED

if TYPE_CHECKING:  # the codec, and torch, load with the first command that codes
    from hvqcodec.codec import Codec

SAMPLE = "robin.png"  # bundled with the package, used by `hvqcodec demo`


def quality_help(name: str) -> str:
    return f"0-100, default {SHIPPED[name].default_quality:g}"


def fail(msg: str) -> None:
    click.echo(f"hvqcodec: error: {msg}", err=True)


def load_codec(model: str) -> "Codec":
    from hvqcodec.codec import Codec

    try:
        return Codec(model)
    except HvqError as e:
        fail(str(e))
        sys.exit(1)


def expand(inputs: tuple[Path, ...], want, what: str) -> tuple[list[Path], list[Path]]:
    """(files, skipped): directories stand for the files in them that `want(path)` accepts, in
    name order; the others in them are skipped, and the batch says so."""
    out, skipped = [], []
    for p in inputs:
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.is_file())
            found = [q for q in files if want(q)]
            skipped += [q for q in files if not want(q)]
            if not found:
                fail(f"{p}: a directory with no {what} in it")
            out += found
        else:
            out.append(p)
    if not out:
        sys.exit(1)
    return out, skipped


SKIP_REASONS = {"compress": "not an image suffix", "decompress": "not a .hvq file",
                "info": "not a .hvq file"}  # fmt: skip


def report_skipped(kind: str, skipped: list[Path], verbose: bool) -> None:
    if skipped:
        files = f"{len(skipped)} file{'s' if len(skipped) > 1 else ''}"
        more = "" if verbose else "; -v names them"
        click.echo(f"{kind}: skipped {files} in the folders given ({SKIP_REASONS[kind]}){more}",
                   err=True)  # fmt: skip
        for path in skipped if verbose else ():
            click.echo(f"  skipped {path}", err=True)


def is_image(p: Path) -> bool:
    return p.suffix.lower() in Image.registered_extensions() and p.suffix.lower() != ".hvq"


def is_hvq(p: Path) -> bool:
    return p.suffix.lower() == ".hvq"


def output_for(src: Path, output: Path | None, suffix: str, many: bool) -> Path:
    """Beside the input by default; inside `output` if it is a directory; else `output`."""
    if output is None:
        return src.with_suffix(suffix)
    if output.is_dir():
        return output / src.with_suffix(suffix).name
    if many:
        raise click.UsageError("-o must be an existing directory when there are several inputs")
    return output


def run(
    kind: str,
    jobs: list[Job],
    model: str | None,
    workers: int,
    verbose: bool,
    cluster: str | None = None,
    skipped: list[Path] = (),
) -> None:
    outputs = [j.dst for j in jobs if j.dst is not None]
    clashes = sorted({str(d) for d in outputs if outputs.count(d) > 1})
    if clashes:
        raise click.UsageError(f"several inputs would write {', '.join(clashes)}")
    codec = load_codec(model) if model else None
    try:
        outcomes = run_jobs(jobs, codec, model, workers, verbose, cluster)
    except HvqError as e:  # the batch as a whole could not run (--cluster)
        fail(str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        fail("interrupted; no partial output was left")
        sys.exit(130)
    if len(jobs) > 1:
        for line in summary(outcomes, kind):
            click.echo(line, err=True)
    report_skipped(kind, skipped, verbose)
    if any(o.error for o in outcomes):
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hvqcodec")
def main() -> None:
    """hvqcodec: a learned image codec. Compress images to .hvq and back."""


model_option = click.option(
    "-m", "--model",
    help=f"Shipped model name, or path to a weights file. Default: {DEFAULT_MODEL} to compress; "
    "to decode, the model each file names.",
)  # fmt: skip
force_option = click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="A line per file.")
jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
    help="Worker processes, each loading the model once.",
)  # fmt: skip
cluster_option = click.option(
    "--cluster", metavar="ADDRESS",
    help="Run the batch on the Dask distributed scheduler at ADDRESS (tcp://host:8786) instead "
    "of local processes (-j). Its workers read the inputs and write the outputs at the paths "
    f"given, made absolute, so those must be on storage they all share. Needs {CLUSTER_EXTRA}.",
)  # fmt: skip
inputs_argument = click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))


def output_option(help: str):
    return click.option("-o", "--output", type=click.Path(path_type=Path), help=help)


def _colour(ctx, param, value: str | None) -> str | None:
    from hvqcodec.alpha import background_colour

    if value is not None:
        try:
            background_colour(value)
        except HvqError as e:
            raise click.BadParameter(str(e), ctx, param) from None
    return value


def _finite(ctx, param, value: float | None) -> float | None:
    # click's ranges let nan through (every comparison with it is false) and inf past open ends.
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx, param)
    return value


@main.command()
@inputs_argument
@output_option("Output file, or directory for several inputs. Default: beside the input.")
@click.option(
    "-q", "--quality", type=click.FloatRange(0, 100), metavar="Q", callback=_finite,
    help="Quality from 0 to 100, higher is better, fractions allowed (as cwebp's -q); default "
    f"{SHIPPED[DEFAULT_MODEL].default_quality:g} with {DEFAULT_MODEL}, the knee of its curve "
    "(`hvqcodec models` gives each model's).",
)  # fmt: skip
@click.option(
    "--size", "target_size", type=click.IntRange(min=1), metavar="BYTES",
    help="Target file size: the highest quality whose file fits (as cwebp's -size).",
)  # fmt: skip
@click.option(
    "--bpp", "target_bpp", type=click.FloatRange(min=0, min_open=True), metavar="X",
    callback=_finite,
    help="Target bits per pixel: the highest quality whose file fits.",
)  # fmt: skip
@click.option(
    "--psnr", "target_psnr", type=click.FloatRange(min=0, min_open=True), metavar="DB",
    callback=_finite,
    help="Target PSNR: the lowest quality that reaches it (as cwebp's -psnr).",
)  # fmt: skip
@click.option(
    "--strict", is_flag=True,
    help="Fail a file whose target no quality meets, instead of writing the nearest miss.",
)  # fmt: skip
@click.option(
    "-e", "--effort", type=click.IntRange(0, MAX_EFFORT), default=0, show_default=True,
    help="Encoder effort (as cjxl's -e): 1-3 refine each image for a better quality for its "
    "size, taking seconds to a minute a photo; 0 is the fast one-pass encoder.",
)  # fmt: skip
@click.option("--strip", is_flag=True, help="Drop the ICC profile, EXIF and XMP metadata.")
@click.option(
    "--background", metavar="COLOR", callback=_colour,
    help="Composite transparency onto this colour (a name such as white, or #rrggbb) and store "
    "no alpha. Default: keep the alpha, losslessly.",
)  # fmt: skip
@click.option(
    "--exact", is_flag=True,
    help="Keep the colour under fully transparent pixels (as cwebp's -exact). Default: replace "
    "it by a smooth fill from the visible pixels, which costs few bits and does not show.",
)  # fmt: skip
@force_option
@jobs_option
@cluster_option
@verbose_option
@model_option
def compress(inputs, output, quality, target_size, target_bpp, target_psnr, strict, effort, strip,
             background, exact, force, jobs, cluster, verbose, model) -> None:  # fmt: skip
    """Compress images (files or directories; any format Pillow reads) to .hvq.

    Each file gets the quality -q gives, or its own search for the one --size, --bpp or --psnr
    asks for (give at most one of these four)."""
    targets = {"target_size": target_size, "target_bpp": target_bpp, "target_psnr": target_psnr}
    aimed = [f"--{k.removeprefix('target_')}" for k, v in targets.items() if v is not None]
    given = (["-q"] if quality is not None else []) + aimed
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} are mutually exclusive: give one")
    if strict and not aimed:
        raise click.UsageError("--strict needs a target: --size, --bpp or --psnr")
    srcs, skipped = expand(inputs, is_image, "images")
    many = len(srcs) > 1
    work = [
        Job(
            "compress",
            s,
            output_for(s, output, ".hvq", many),
            force,
            quality,
            strip,
            verbose,
            targets=targets,
            strict=strict,
            effort=effort,
            background=background,
            exact=exact,
        )
        for s in srcs
    ]
    run("compress", work, model or DEFAULT_MODEL, jobs, verbose, cluster, skipped)


@main.command()
@inputs_argument
@output_option("Output image (format from its extension), or directory. Default: IN.png.")
@force_option
@jobs_option
@cluster_option
@verbose_option
@model_option
@click.option(
    "--preview", is_flag=True,
    help="Fast coarse image from the top and middle levels alone; reads only their streams.",
)  # fmt: skip
def decompress(inputs, output, force, jobs, cluster, verbose, model, preview) -> None:
    """Decompress .hvq files (or directories of them) to PNG, or the format of -o's extension.

    A format without alpha (JPEG, PPM, BMP) gets transparency composited onto white, with a note."""
    srcs, skipped = expand(inputs, is_hvq, ".hvq files")
    many = len(srcs) > 1
    work = [
        Job(
            "decompress",
            s,
            output_for(s, output, ".png", many),
            force,
            verbose=verbose,
            preview=preview,
        )  # fmt: skip
        for s in srcs
    ]
    run("decompress", work, model, jobs, verbose, cluster, skipped)


@main.command()
@inputs_argument
@click.option(
    "-v", "--verbose", is_flag=True,
    help="Decode and show, per level, symbols, actual bits and ideal bits.",
)  # fmt: skip
@model_option
def info(inputs, verbose, model) -> None:
    """Describe .hvq files."""
    srcs, skipped = expand(inputs, is_hvq, ".hvq files")
    work = [Job("info", s, verbose=verbose) for s in srcs]
    run("info", work, model if verbose else None, 1, True, skipped=skipped)


@main.command()
def models() -> None:
    """List the shipped models (name, id, file, qualities); the default is marked."""
    for name, entry in SHIPPED.items():
        default = "  (default)" if name == DEFAULT_MODEL else ""
        qualities = f"qualities {quality_help(name)}"
        click.echo(f"{name}  {entry.model_id:08x}  {entry.file}  {qualities}{default}")


@main.command()
@click.option(
    "-o", "--output-dir", type=click.Path(path_type=Path), default="hvqcodec-demo",
    show_default=True, help="Directory for the demo's files (created; its files replaced).",
)  # fmt: skip
@model_option
def demo(output_dir, model) -> None:
    """Compress and decompress the bundled sample photo, and report size, quality and time."""
    codec = load_codec(model or DEFAULT_MODEL)
    src = Path(str(resources.files("hvqcodec") / "samples" / SAMPLE))
    hvq, png = output_dir / Path(SAMPLE).with_suffix(".hvq"), output_dir / SAMPLE
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        enc = codec.encode_detailed(src)
        t1 = time.perf_counter()
        image = codec.decode(enc.data)
        t2 = time.perf_counter()
        with atomic_output(hvq, force=True) as tmp:
            tmp.write_bytes(enc.data)
        with atomic_output(png, force=True) as tmp:
            image.save(tmp, format="PNG")
        from hvqcodec.image_io import open_image

        quality = psnr(np.asarray(open_image(src).convert("RGB")), np.asarray(image))
    except (Failure, HvqError) as e:
        fail(str(e))
        sys.exit(1)
    except OSError as e:
        fail(f"{e.filename or output_dir}: {e.strerror or e}")
        sys.exit(1)
    click.echo(f"model {codec.name}: {src.name} {enc.width}x{enc.height}")
    click.echo(
        f"  compressed   {hvq}: {len(enc.data)} bytes, {enc.bpp:.4f} bpp, "
        f"{src.stat().st_size / len(enc.data):.0f}x smaller than the PNG, {t1 - t0:.2f} s"
    )
    click.echo(f"  decompressed {png}: PSNR {quality:.2f} dB, {t2 - t1:.2f} s")


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                      "help_option_names": []}
)  # fmt: skip
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args) -> None:
    """Train a model of the default model's family, or --family vqvae (see --help)."""
    from hvqcodec.training import main as train_main

    train_main(list(args))


if __name__ == "__main__":
    main()
