"""Batch work behind the CLI: one job per file, atomic outputs, worker processes, a summary.

Each job runs in a worker that loads each model it needs once: a process of this machine's
pool, or a worker of a Dask distributed cluster (`--cluster`), which gets the codec pickled by
reference (`Codec.__reduce__`). A failing file becomes an `Outcome` with an error message and
never stops the others. Outputs go to a temporary file beside the destination and are renamed
into place only when complete.
"""

import contextlib
import functools
import glob
import io
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from tqdm import tqdm

from hvqcodec import alpha
from hvqcodec.container import ALPHA_CHUNK, PNG_XMP_KEY, PREVIEW_STREAMS, read_prefix, unpack
from hvqcodec.errors import HvqError
from hvqcodec.shipped import model_label

if TYPE_CHECKING:  # torch and the codec load with the first job that codes: `info` needs neither
    from hvqcodec.codec import Codec


class Failure(Exception):
    """A per-file failure with a message fit for one line."""


@dataclass
class Job:
    kind: str  # "compress", "decompress" or "info"
    src: Path
    dst: Path | None = None
    force: bool = False
    quality: float | None = None
    strip: bool = False
    verbose: bool = False
    preview: bool = False  # decompress the top and middle streams only
    targets: dict = field(default_factory=dict)  # target_size, target_bpp or target_psnr
    strict: bool = False  # a target no quality meets fails the file
    effort: int = 0  # refinement of the fine symbols, 0-3
    background: str | None = None  # composite transparency onto this colour, storing no alpha
    exact: bool = False  # keep the colour under fully transparent pixels


@dataclass
class Outcome:
    job: Job
    error: str | None = None
    line: str = ""
    notes: list[str] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    traceback: str = ""  # for bug reports, shown with -v or HVQ_DEBUG=1


def check_output(path: Path, force: bool) -> None:
    """Refuse an output that is a directory, or that exists without --force."""
    if path.is_dir():
        raise Failure(f"cannot write {path}: it is a directory")
    if path.exists() and not force:
        raise Failure(f"{path} exists (use --force to overwrite)")


def _file_mode() -> int:
    """Permissions a plain open() would give a new file (mkstemp's are owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temporary_affixes(path: Path) -> tuple[str, str]:
    """Prefix and suffix of `atomic_output`'s temporary files for `path`: hidden, beside it."""
    return f".{path.name}.", ".tmp"


@contextlib.contextmanager
def atomic_output(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    check_output(path, force)
    try:
        prefix, suffix = _temporary_affixes(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    except FileNotFoundError:
        raise Failure(f"cannot write {path}: directory {path.parent} does not exist") from None
    except PermissionError:
        raise Failure(f"cannot write {path}: permission denied") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_file(src: Path, preview: bool = False) -> bytes:
    """The file's bytes; for a preview only the header and the streams it decodes."""
    if src.is_dir():
        raise Failure(f"{src}: is a directory")
    try:
        if not preview:
            return src.read_bytes()
        with open(src, "rb") as f:
            return read_prefix(f, PREVIEW_STREAMS)
    except FileNotFoundError:
        raise Failure(f"{src}: no such file") from None
    except PermissionError:
        raise Failure(f"{src}: permission denied") from None


def output_metadata(info: dict, fmt: str) -> dict:
    """Save options that carry a decoded image's ICC profile, EXIF and XMP into format `fmt`:
    Pillow's JPEG, WebP and AVIF savers take `xmp`, its PNG saver an iTXt chunk."""
    meta = {k: info[k] for k in ("icc_profile", "exif") if k in info}
    if "xmp" in info:
        if fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            pnginfo = PngInfo()
            pnginfo.add_itxt(PNG_XMP_KEY, info["xmp"].decode("utf-8", "replace"))
            meta["pnginfo"] = pnginfo
        else:
            meta["xmp"] = info["xmp"]
    return meta


def image_format_for(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise Failure(f"cannot write {path}: unknown image extension {path.suffix!r}")
    return fmt


@functools.cache
def keeps_alpha(fmt: str, mode: str) -> bool:
    """Whether Pillow writes an image of `mode` (RGBA, LA) in format `fmt` with its alpha: a
    1x1 probe written and read back, once per process and format. Pillow refuses alpha in
    some formats (JPEG) and drops it without a word in others (PPM, BMP), and has no table of
    which."""
    buf = io.BytesIO()
    try:
        Image.new(mode, (1, 1)).save(buf, format=fmt)
        with Image.open(io.BytesIO(buf.getvalue())) as back:
            return "A" in back.getbands() or "transparency" in back.info
    except Exception:  # a format Pillow cannot write that way, or not read back
        return False


def _compress(codec: "Codec", job: Job) -> Outcome:
    check_output(job.dst, job.force)  # before the work, not after it
    enc = codec.encode_detailed(
        job.src,
        job.quality,
        metadata=not job.strip,
        strict=job.strict,
        effort=job.effort,
        background=job.background,
        exact=job.exact,
        **job.targets,
    )
    with atomic_output(job.dst, job.force) as tmp:
        tmp.write_bytes(enc.data)
    line = f"{job.src} -> {job.dst}: {enc.width}x{enc.height}, quality {enc.quality:g}, "
    line += f"{len(enc.data)} bytes, {enc.bpp:.4f} bpp"
    if enc.psnr is not None:
        line += f", PSNR {enc.psnr:.2f} dB"
    return Outcome(
        job,
        line=line,
        notes=enc.notes,
        bytes_in=job.src.stat().st_size,
        bytes_out=len(enc.data),
        pixels=enc.width * enc.height,
    )


def _decompress(codec: "Codec | None", job: Job) -> Outcome:
    from hvqcodec.codec import resolve

    fmt = image_format_for(job.dst)
    check_output(job.dst, job.force)
    data = read_file(job.src, job.preview)
    image = resolve(codec, data).decode(data, preview=job.preview)
    notes = []
    if image.mode in ("RGBA", "LA") and not keeps_alpha(fmt, image.mode):
        # As a viewer shows it on a white page, rather than the colour under the alpha.
        image = alpha.flatten(image)
        notes.append(f"{fmt} keeps no alpha: composited the transparency onto white")
    with atomic_output(job.dst, job.force) as tmp:
        # Metadata carried in the file goes into the output, where its format holds it.
        meta = output_metadata(image.info, fmt)
        try:
            image.save(tmp, format=fmt, **meta)
        except (KeyError, ValueError) as e:
            raise Failure(f"cannot write {job.dst}: {e}") from None
        size = tmp.stat().st_size
    return Outcome(
        job,
        line=f"{job.src} -> {job.dst}: {image.width}x{image.height} {image.mode}",
        notes=notes,
        bytes_in=len(data),
        bytes_out=size,
        pixels=image.width * image.height,
    )


def _info(codec: "Codec | None", job: Job) -> Outcome:
    data = read_file(job.src)
    h = unpack(data)
    bpp = 8 * len(data) / (h.width * h.height)
    line = (f"{job.src}: {h.width}x{h.height} {h.mode}, model {model_label(h.model_id)}, "
            f"quality {h.quality_label}, {len(data)} bytes, {bpp:.4f} bpp")  # fmt: skip
    if h.has_alpha:
        payload = h.chunks[ALPHA_CHUNK]
        line += f", alpha: {len(payload)} bytes ({alpha.coding(payload)})"
    metadata = [k.decode() for k in h.chunks if k != ALPHA_CHUNK]
    lines = [line + (f", metadata: {', '.join(metadata)}" if metadata else "")]
    if job.verbose:
        from hvqcodec.codec import resolve

        stats = resolve(codec, data).decode_detailed(data).stats
        lines.append(f"  {'stream':<8}{'symbols':>9}{'bits':>10}{'ideal bits':>12}{'overhead':>10}")
        for name in [*stats, "total"]:
            if name == "total":
                bits = sum(s.bits for s in stats.values())
                ideal = sum(s.ideal_bits for s in stats.values())
                symbols = sum(s.symbols for s in stats.values())
            else:
                bits, ideal, symbols = stats[name].bits, stats[name].ideal_bits, stats[name].symbols
            over = 100 * (bits / ideal - 1) if ideal else 0.0
            lines.append(f"  {name:<8}{symbols:>9}{bits:>10}{ideal:>12.1f}{over:>9.2f}%")
        total = sum(s.bits for s in stats.values())
        lines.append(f"  header, lengths, chunks and CRC: {8 * len(data) - total} bits")
    return Outcome(job, line="\n".join(lines), bytes_in=len(data), pixels=h.width * h.height)


_TASKS = {"compress": _compress, "decompress": _decompress, "info": _info}
_codec: "Codec | None" = None  # one per process, loaded once; None: the model each file names


def _init_worker(model: str | None, threads: int) -> None:
    import torch

    from hvqcodec.codec import Codec

    global _codec
    torch.set_num_threads(threads)
    _codec = Codec(model) if model else None


def _debug() -> bool:
    return os.environ.get("HVQ_DEBUG", "") not in ("", "0")


def run_job(job: Job, codec: "Codec | None" = None) -> Outcome:
    """One file's work, with `codec` or else this process's; whatever it raises becomes that
    file's one-line error. An unexpected one brings its traceback along with -v, and so does
    any with HVQ_DEBUG=1."""
    try:
        return _TASKS[job.kind](codec if codec is not None else _codec, job)
    except Exception as e:
        error, expected = _describe(job, e)
        outcome = Outcome(job, error=error)
        if _debug() or (job.verbose and not expected):
            outcome.traceback = traceback.format_exc()
        return outcome


def _describe(job: Job, e: Exception) -> tuple[str, bool]:
    """A one-line error for what a job raised, and whether it was a kind we expect."""
    if isinstance(e, (Failure, HvqError)):
        return str(e), True
    if isinstance(e, OSError):
        return f"{e.filename or job.src}: {e.strerror or e}", True
    if isinstance(e, MemoryError):
        return f"{job.src}: out of memory", True
    msg = f"{job.src}: {job.kind} failed unexpectedly ({type(e).__name__}: {e}); "
    return msg + "this is a bug, please report it with the file", False


DIED = "the worker process died (a crash in a decoder, or killed: out of memory?)"


def run_jobs(
    jobs: list[Job],
    codec: "Codec | None",
    model: str | None,
    workers: int,
    verbose: bool,
    cluster: str | None = None,
) -> list[Outcome]:
    """Run the jobs, `workers` at a time or on the Dask scheduler at address `cluster`, with a
    progress bar for batches; return outcomes."""
    global _codec
    outcomes: list[Outcome] = []
    bar = tqdm(total=len(jobs), unit="file", file=sys.stderr, disable=len(jobs) < 2 or None)

    def report(o: Outcome) -> None:
        outcomes.append(o)
        bar.update()
        for note in o.notes:
            bar.write(f"hvqcodec: note: {o.job.src}: {note}", file=sys.stderr)
        if o.error:
            bar.write(f"hvqcodec: error: {o.error}", file=sys.stderr)
            if o.traceback:
                bar.write(o.traceback.rstrip(), file=sys.stderr)
        elif verbose or len(jobs) == 1 or o.job.kind == "info":
            bar.write(o.line)

    try:
        if cluster is not None:
            _run_cluster(jobs, codec, cluster, report)
        elif workers <= 1 or len(jobs) < 2:
            _codec = codec
            for job in jobs:
                report(run_job(job))
        else:
            # A worker that dies (a segfault in an image decoder, the OOM killer) costs its
            # file, not the batch.
            threads = max(1, (os.cpu_count() or 1) // workers)
            existed = {j.dst for j in jobs if j.dst is not None and j.dst.exists()}
            left = _run_pool(jobs, workers, (model, threads), report)
            # The pool broke: which job killed it is unknown, so the rest run one at a time in
            # a single worker, rebuilt after each death, and a death names its own file. A job
            # whose worker wrote its output but died before reporting it may overwrite that
            # output, and only that: not a file that was there before the batch.
            left = [replace(j, force=True) if j.dst is not None and j.dst not in existed
                    and j.dst.exists() else j for j in left]  # fmt: skip
            while left:
                left = _run_pool(left, 1, (model, threads), report, one_at_a_time=True)
    finally:
        bar.close()
    return outcomes


def _remove_temporaries(jobs: list[Job]) -> None:
    """The temporary files (`atomic_output`) that jobs killed with their worker left behind:
    a broken pool also stops the workers that were still busy, wherever they were."""
    for job in jobs:
        if job.dst is not None:
            prefix, suffix = _temporary_affixes(job.dst)
            for tmp in job.dst.parent.glob(f"{glob.escape(prefix)}*{suffix}"):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def _run_pool(jobs, workers, initargs, report, *, one_at_a_time: bool = False) -> list[Job]:
    """Run jobs in a pool; return those not done when the pool broke (none if it did not),
    without the temporary files the pool's end cut short."""
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=initargs) as pool:
        if one_at_a_time:
            for i, job in enumerate(jobs):
                try:
                    report(pool.submit(run_job, job).result())
                except BrokenProcessPool:
                    _remove_temporaries([job])
                    report(Outcome(job, error=f"{job.src}: {DIED}"))
                    return jobs[i + 1 :]
            return []
        futures = {pool.submit(run_job, job): job for job in jobs}
        left = []
        try:
            for f in as_completed(futures):
                try:
                    report(f.result())
                except BrokenProcessPool:
                    left.append(futures[f])
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    left = [j for j in jobs if j in left]
    _remove_temporaries(left)  # the pool is down: no worker writes any more
    return left


CLUSTER_EXTRA = "pip install 'hvqcodec[cluster]'"


def _cluster_job(job: Job, codec: "Codec | None", threads_by_host: dict[str, int]) -> Outcome:
    """A job on a Dask worker: torch's threads shared out among the tasks its host runs."""
    import torch
    from distributed import get_worker

    host = get_worker().address.split("://")[-1].rsplit(":", 1)[0]
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // threads_by_host.get(host, 1)))
    return run_job(job, codec)


def _run_cluster(jobs: list[Job], codec: "Codec | None", address: str, report) -> None:
    """Run the jobs as tasks of the Dask scheduler at `address`. Its workers read and write the
    jobs' paths themselves, so those must be on storage every worker sees. A task whose worker
    died as often as Dask allows (`distributed.scheduler.allowed-failures`) costs its file."""
    try:
        from distributed import Client, KilledWorker, as_completed
    except ImportError:
        raise HvqError(f"--cluster needs Dask's distributed scheduler: {CLUSTER_EXTRA}") from None
    # Dask runs again a task whose result died with its worker, though the task may have
    # written its output: an output that did not exist when the batch began is this batch's
    # to overwrite (with the same bytes), as the local pool's recovery does.
    jobs = [replace(j, src=j.src.absolute(), dst=j.dst and j.dst.absolute(),
                    force=j.force or (j.dst is not None and not j.dst.exists()))
            for j in jobs]  # fmt: skip
    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as e:
        raise HvqError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    with client:
        threads_by_host: dict[str, int] = {}
        for worker in client.scheduler_info()["workers"].values():
            host = worker["host"]
            threads_by_host[host] = threads_by_host.get(host, 0) + worker["nthreads"]
        futures = {
            client.submit(_cluster_job, job, codec, threads_by_host, pure=False): job
            for job in jobs
        }
        try:
            for future in as_completed(futures):
                job = futures[future]
                try:
                    report(future.result())
                except KilledWorker:
                    _remove_temporaries([job])
                    report(Outcome(job, error=f"{job.src}: {DIED}"))
        except KeyboardInterrupt:
            client.cancel(list(futures))
            raise


def summary(outcomes: list[Outcome], kind: str) -> list[str]:
    done = [o for o in outcomes if not o.error]
    failed = [o for o in outcomes if o.error]
    lines = [f"{kind}: {len(done)} of {len(outcomes)} files done"]
    if done and kind != "info":
        bytes_in, bytes_out = sum(o.bytes_in for o in done), sum(o.bytes_out for o in done)
        lines[0] += f", {bytes_in} bytes in, {bytes_out} bytes out"
        hvq_bytes = [o.bytes_out if kind == "compress" else o.bytes_in for o in done]
        bpp = sum(8 * b / o.pixels for b, o in zip(hvq_bytes, done)) / len(done)
        lines[0] += f", mean {bpp:.4f} bpp"
    if failed:
        lines.append("failed: " + ", ".join(str(o.job.src) for o in failed))
    return lines
