"""Command line: `hvqcodec compress`, `decompress`, `info`, `train`.

Conventions after cwebp/cjxl/avifenc: output beside the input with the new extension unless
-o is given, never overwrite without --force, one-line errors on stderr and a non-zero exit.
Outputs are written to a temporary file and renamed, so an error leaves no partial file.
"""

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import click

from hvqcodec import __version__
from hvqcodec.codec import DEFAULT_QUALITY, QUALITIES, Codec, model_label
from hvqcodec.container import unpack
from hvqcodec.errors import HvqError
from hvqcodec.image_io import open_image
from hvqcodec.models import DEFAULT_MODEL, SHIPPED
from hvqcodec.vqvae import LEVELS

SAMPLE = "robin.png"  # bundled with the package, used by `hvqcodec demo`


class Failure(Exception):
    """A per-file failure with a message fit for one line."""


def fail(msg: str) -> None:
    click.echo(f"hvqcodec: error: {msg}", err=True)


@contextlib.contextmanager
def atomic_output(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    if path.is_dir():
        raise Failure(f"cannot write {path}: it is a directory")
    if path.exists() and not force:
        raise Failure(f"{path} exists (use --force to overwrite)")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except FileNotFoundError:
        raise Failure(f"cannot write {path}: directory {path.parent} does not exist") from None
    except PermissionError:
        raise Failure(f"cannot write {path}: permission denied") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def output_for(src: Path, output: Path | None, suffix: str, many: bool) -> Path:
    """Beside the input by default; inside `output` if it is a directory; else `output`."""
    if output is None:
        return src.with_suffix(suffix)
    if output.is_dir():
        return output / src.with_suffix(suffix).name
    if many:
        raise Failure("-o must be an existing directory when there are several inputs")
    return output


def run_batch(inputs: tuple[Path, ...], job: Callable[[Path], str], verbose: bool) -> None:
    """Run `job` on every input; one failure does not stop the rest. Exit 1 if any failed."""
    failed = []
    for src in inputs:
        try:
            line = job(src)
        except (Failure, HvqError) as e:
            fail(str(e))
            failed.append(src)
        except OSError as e:
            fail(f"{e.filename or src}: {e.strerror or e}")
            failed.append(src)
        except KeyboardInterrupt:
            fail("interrupted; no partial output was left")
            sys.exit(130)
        else:
            if verbose or len(inputs) == 1:
                click.echo(line)
    if len(inputs) > 1:
        click.echo(f"{len(inputs) - len(failed)} of {len(inputs)} files done", err=True)
        if failed:
            click.echo("failed: " + ", ".join(str(p) for p in failed), err=True)
    if failed:
        sys.exit(1)


def load_codec(model: str) -> Codec:
    try:
        return Codec(model)
    except HvqError as e:
        fail(str(e))
        sys.exit(1)


def read_hvq(src: Path) -> bytes:
    if src.is_dir():
        raise Failure(f"{src}: is a directory")
    try:
        return src.read_bytes()
    except FileNotFoundError:
        raise Failure(f"{src}: no such file") from None
    except PermissionError:
        raise Failure(f"{src}: permission denied") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hvqcodec")
def main() -> None:
    """hvqcodec: a learned image codec. Compress images to .hvq and back."""


model_option = click.option(
    "-m",
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Shipped model name, or path to a weights file.",
)
force_option = click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="A line per file.")
inputs_argument = click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))


def output_option(help: str):
    return click.option("-o", "--output", type=click.Path(path_type=Path), help=help)


@main.command()
@inputs_argument
@output_option("Output file, or directory for several inputs. Default: beside the input.")
@click.option(
    "-q",
    "--quality",
    type=click.IntRange(min(QUALITIES), max(QUALITIES)),
    default=DEFAULT_QUALITY,
    show_default=True,
    help="Quality; higher is better.",
)
@click.option("--strip", is_flag=True, help="Drop the ICC profile and EXIF metadata.")
@force_option
@verbose_option
@model_option
def compress(inputs, output, quality, strip, force, verbose, model) -> None:
    """Compress images (any format Pillow reads) to .hvq."""
    codec = load_codec(model)

    def job(src: Path) -> str:
        dst = output_for(src, output, ".hvq", len(inputs) > 1)
        enc = codec.encode_detailed(src, quality, metadata=not strip)
        for note in enc.notes:
            click.echo(f"hvqcodec: note: {src}: {note}", err=True)
        with atomic_output(dst, force) as tmp:
            tmp.write_bytes(enc.data)
        return f"{src} -> {dst}: {enc.width}x{enc.height}, {len(enc.data)} bytes, {enc.bpp:.4f} bpp"

    run_batch(inputs, job, verbose)


@main.command()
@inputs_argument
@output_option("Output image (format from its extension), or directory. Default: IN.png.")
@force_option
@verbose_option
@model_option
def decompress(inputs, output, force, verbose, model) -> None:
    """Decompress .hvq files to PNG (or another format, from -o's extension)."""
    codec = load_codec(model)

    def job(src: Path) -> str:
        dst = output_for(src, output, ".png", len(inputs) > 1)
        fmt = _format_for(dst)
        image = codec.decode(read_hvq(src))
        with atomic_output(dst, force) as tmp:
            # Metadata carried in the file goes into the output, where its format holds it.
            meta = {k: image.info[k] for k in ("icc_profile", "exif") if k in image.info}
            try:
                image.save(tmp, format=fmt, **meta)
            except (KeyError, ValueError) as e:
                raise Failure(f"cannot write {dst}: {e}") from None
        return f"{src} -> {dst}: {image.width}x{image.height}"

    run_batch(inputs, job, verbose)


def _format_for(path: Path) -> str:
    from PIL import Image

    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise Failure(f"cannot write {path}: unknown image extension {ext!r}")
    return fmt


@main.command()
@inputs_argument
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Decode and show, per level, symbols, actual bits and ideal bits.",
)
@model_option
def info(inputs, verbose, model) -> None:
    """Describe .hvq files."""
    codec = load_codec(model) if verbose else None

    def job(src: Path) -> str:
        data = read_hvq(src)
        h = unpack(data)
        bpp = 8 * len(data) / (h.width * h.height)
        lines = [
            f"{src}: {h.width}x{h.height}, model {model_label(h.model_id)}, quality {h.quality}, "
            f"{len(data)} bytes, {bpp:.4f} bpp"
        ]
        if codec is not None:
            stats = codec.decode_detailed(data).stats
            lines.append(
                f"  {'level':<8}{'symbols':>9}{'bits':>10}{'ideal bits':>12}{'overhead':>10}"
            )
            for name in LEVELS:
                s = stats[name]
                over = 100 * (s.bits / s.ideal_bits - 1) if s.ideal_bits else 0.0
                lines.append(
                    f"  {name:<8}{s.symbols:>9}{s.bits:>10}{s.ideal_bits:>12.1f}{over:>9.2f}%"
                )
            total = sum(s.bits for s in stats.values())
            ideal = sum(s.ideal_bits for s in stats.values())
            lines.append(
                f"  {'total':<8}{'':>9}{total:>10}{ideal:>12.1f}{100 * (total / ideal - 1):>9.2f}%"
            )
            lines.append(f"  header and CRC: {8 * len(data) - total} bits")
        return "\n".join(lines)

    run_batch(inputs, job, verbose=True)


@main.command()
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path),
    default="hvqcodec-demo",
    show_default=True,
    help="Directory for the demo's files (created; its files replaced).",
)
@model_option
def demo(output_dir, model) -> None:
    """Compress and decompress the bundled sample photo, and report size, quality and time."""
    import time

    import numpy as np

    codec = load_codec(model)
    src = Path(str(resources.files("hvqcodec") / "samples" / SAMPLE))
    output_dir.mkdir(parents=True, exist_ok=True)
    hvq, png = output_dir / Path(SAMPLE).with_suffix(".hvq"), output_dir / SAMPLE
    t0 = time.perf_counter()
    enc = codec.encode_detailed(src)
    t1 = time.perf_counter()
    image = codec.decode(enc.data)
    t2 = time.perf_counter()
    for path, write in (
        (hvq, lambda p: p.write_bytes(enc.data)),
        (png, lambda p: image.save(p, format="PNG")),
    ):
        with atomic_output(path, force=True) as tmp:
            write(tmp)
    original = np.asarray(open_image(src).convert("RGB"), dtype=np.float64)
    mse = np.mean((original - np.asarray(image, dtype=np.float64)) ** 2)
    click.echo(f"model {codec.name}: {src.name} {enc.width}x{enc.height}")
    click.echo(
        f"  compressed  {hvq}: {len(enc.data)} bytes, {enc.bpp:.4f} bpp, "
        f"{src.stat().st_size / len(enc.data):.0f}x smaller than the PNG, {t1 - t0:.2f} s"
    )
    click.echo(f"  decompressed {png}: PSNR {10 * np.log10(255**2 / mse):.2f} dB, {t2 - t1:.2f} s")


@main.command()
def models() -> None:
    """List the shipped models (name, id, file); the default is marked."""
    for name, (filename, model_id) in SHIPPED.items():
        default = "  (default)" if name == DEFAULT_MODEL else ""
        click.echo(f"{name}  {model_id:08x}  {filename}{default}")


@main.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    }
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args) -> None:
    """Train a model (see `hvqcodec train --help`)."""
    from hvqcodec.train import main as train_main

    train_main(list(args))


if __name__ == "__main__":
    main()
