"""The codec: one image through the whole pipeline and back.

    pixels --image_io--> (H, W, 3) uint8 --encoder--> code maps --priors (wavefront)-->
           probability tables --range_coder--> streams --container--> .hvq

and the reverse for decoding. The steps between pixels and streams are the model family's
(`hvqcodec.families`), which the codec runs through the contract of `hvqcodec.family`; the
registry (`hvqcodec.models`) builds the right family from a weights file. `Codec` loads a model
once and can be reused.

A quality is a number from 0 to 100 that each family maps onto its rate parameters, or the
result of a search for a target size or PSNR (`rate_control`). Any prefix of at least two of a
file's streams decodes (`preview`).
"""

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hvqcodec import alpha, container
from hvqcodec.container import PREVIEW_STREAMS, QUALITY_SCALE, metadata_info
from hvqcodec.errors import HvqError
from hvqcodec.family import FamilyModel, Trial, check_effort
from hvqcodec.image_io import ImageInput, load_rgb, output_image
from hvqcodec.metrics import psnr
from hvqcodec.models import load_shipped, load_weights
from hvqcodec.range_coder import StreamStats
from hvqcodec.rate_control import Target, corrected_search, search, to_hundredths
from hvqcodec.shipped import DEFAULT_MODEL, SHIPPED, model_label

# Default limit on decoded pixels (Pillow's MAX_IMAGE_PIXELS): larger headers are refused
# before anything is allocated, as Pillow does against decompression bombs.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS


@dataclass
class Encoded:
    data: bytes
    width: int
    height: int
    codes: dict[str, np.ndarray]
    stats: dict[str, StreamStats]
    quality: float  # on the 0-100 scale, as stored in the header (to 0.01)
    notes: list[str] = field(default_factory=list)  # input conversions, missed targets
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    psnr: float | None = None  # of the reconstruction, when a PSNR target measured it

    @property
    def hundredths(self) -> int:
        """The quality as the header stores it."""
        return round(self.quality * QUALITY_SCALE)

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.width * self.height)


@dataclass
class Decoded:
    image: Image.Image
    header: container.HvqFile
    codes: dict[str, np.ndarray]
    stats: dict[str, StreamStats]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def stage_timings(total: float, io: float, in_priors: float, coders) -> dict[str, float]:
    """Split wall time into I/O, the autoencoder, the priors and the range coder."""
    coding = sum(c.seconds for c in coders.values())
    return {
        "io": io,
        "network": total - io - in_priors,
        "priors": in_priors - coding,
        "entropy_coding": coding,
    }


class Codec:
    """A loaded model. `model` is a shipped model's name, a weights file path, or a loaded
    model (`hvqcodec.models.build_model`)."""

    def __init__(
        self,
        model: str | Path | FamilyModel = DEFAULT_MODEL,
        *,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        """`max_pixels`: files claiming more pixels are refused before decoding (None: no limit)."""
        self.max_pixels = max_pixels
        # What a pickle of this codec names: a shipped model, or a weights file's absolute path.
        self.source: str | None = None
        if isinstance(model, FamilyModel):
            self.model = model
        elif isinstance(model, str) and model in SHIPPED:
            self.model, self.source = load_shipped(model), model
        else:
            self.model = load_weights(model)
            self.source = str(Path(model).resolve())

    def __reduce__(self) -> tuple:
        """A codec pickles by reference, as Dask, Ray and Spark pickle what a task uses: its
        model's name or weights path, the model id and the options, a few hundred bytes.
        Unpickled, it loads the model once per process (`_unpickle`)."""
        if self.source is None:
            raise TypeError(
                f"a Codec of an in-memory model ({self.name}) cannot pickle by reference; save "
                "its weights to a file and open that with Codec(path)"
            )
        return _unpickle, (self.source, self.model.model_id, self.max_pixels)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def default_quality(self) -> float:
        return self.model.default_quality

    @property
    def qualities(self) -> tuple[float, ...]:
        """The qualities the model's scale is built on, for sweeps: a VQ-VAE model's knots
        (each a whole number of stages), an hvq-v3 model's trained rate points."""
        return self.model.qualities

    def encode(self, image: ImageInput, quality: float | None = None, **options) -> bytes:
        """The bytes of `encode_detailed` (`options`: its targets and `strict`)."""
        return self.encode_detailed(image, quality, **options).data

    def decode(self, data: bytes, *, preview: bool = False) -> Image.Image:
        return self.decode_detailed(data, preview=preview).image

    @torch.no_grad()
    def encode_detailed(
        self,
        image: ImageInput,
        quality: float | None = None,
        *,
        target_size: int | None = None,
        target_bpp: float | None = None,
        target_psnr: float | None = None,
        strict: bool = False,
        metadata: bool = True,
        effort: int = 0,
        background: str | None = None,
        exact: bool = False,
    ) -> Encoded:
        """Encode at `quality` (0-100, fractions allowed; default: the model's everyday
        setting), or at the quality a target picks: `target_size` (bytes) and `target_bpp` the
        highest whose file fits, `target_psnr` (dB) the lowest that reaches it. A target that
        no quality meets gives the nearest miss with a note, or with `strict` an HvqError.
        `metadata=False` drops the input's ICC profile, EXIF and XMP instead of storing them
        (never the alpha). An image with transparency keeps its alpha plane, losslessly, unless
        `background` names a colour ("white", "#rrggbb") to composite it onto; the colour under
        its fully transparent pixels becomes a smooth fill that costs few bits
        (`alpha.fill_hidden`) unless `exact` keeps it, as cwebp's -exact.
        `effort` 1 to 3 refines the fine symbols of an hvq-v3 model for a better rate-distortion
        trade-off, at many times the encoding time (`families.hyper.refinement`); 0 does not."""
        start = time.perf_counter()
        asked = None if quality is None else to_hundredths(quality)  # refused before any work
        check_effort(effort)
        backdrop = None if background is None else alpha.background_colour(background)
        pixels = load_rgb(image, backdrop)
        io = time.perf_counter() - start
        height, width = pixels.rgb.shape[:2]
        target = Target.choose(width, height, size=target_size, bpp=target_bpp, psnr=target_psnr)
        if target is not None and quality is not None:
            raise HvqError("give a quality or a target, not both")
        if strict and target is None:
            raise HvqError("strict needs a target: target_size, target_bpp or target_psnr")
        flags = container.FLAG_GRAY if pixels.gray else 0
        chunks = {}
        if pixels.alpha is not None:
            flags |= container.FLAG_ALPHA
            t = time.perf_counter()
            chunks[container.ALPHA_CHUNK] = alpha.encode(pixels.alpha, effort)
            if not exact:
                pixels.rgb = alpha.fill_hidden(pixels.rgb, pixels.alpha)
            io += time.perf_counter() - t  # image file coding, as reading the input is
        if metadata:
            for key, kind in container.METADATA_CHUNKS.items():
                if getattr(pixels, key):
                    chunks[kind] = getattr(pixels, key)
        encoder = self.model.encoder(pixels.rgb, effort)
        last: dict[int, tuple[bytes, Trial]] = {}  # the latest trial only: codes are large
        measured: dict[int, float] = {}  # PSNR of each trial's reconstruction

        def packed(q: int, payload: list[bytes]) -> bytes:
            header = container.HvqFile(width, height, self.model.model_id, q, payload, chunks,
                                       container.version_for(flags), flags)  # fmt: skip
            return container.pack(header)

        def pack(q: int) -> tuple[bytes, Trial]:
            if q not in last:
                trial = encoder.streams(q)
                last.clear()
                last[q] = packed(q, [c.stream for c in trial.coded.values()]), trial
            return last[q]

        def achieved(q: int) -> float:
            """What the target measures of quality q's file: bytes, or dB."""
            data, trial = pack(q)
            if target.kind == "size":
                return len(data)
            if q not in measured:
                measured[q] = psnr(pixels.rgb, encoder.reconstruct(trial))
            return measured[q]

        notes = list(pixels.notes)
        if target is None:
            q = to_hundredths(self.default_quality) if asked is None else asked
        else:
            score = lambda q: target.score(achieved(q))  # noqa: E731
            if encoder.estimate is None:
                q = search(score, target, encoder.knots)
            else:  # searched on the family's cheap estimate, which a few real trials correct
                around = len(packed(0, [b""] * self.model.max_streams))  # header and chunks
                extra = around if target.kind == "size" else 0.0
                guess = lambda q: target.score(encoder.estimate(q, target.kind) + extra)  # noqa: E731
                q = corrected_search(score, guess, target, encoder.knots)
            miss, fails = target.miss(achieved(q), q)
            if fails and strict:
                raise HvqError(miss)
            if miss:
                notes.append(miss)
        data, trial = pack(q)
        coded = trial.coded
        coders = {n: c.coder for n, c in coded.items()}
        in_priors = sum(c.seconds for c in coded.values())
        timings = stage_timings(time.perf_counter() - start, io, in_priors, coders)
        stats = {n: c.stats for n, c in coders.items()}
        return Encoded(data, width, height, {n: c.codes for n, c in coded.items()}, stats,
                       q / QUALITY_SCALE, notes, timings, measured.get(q))  # fmt: skip

    @torch.no_grad()
    def decode_detailed(
        self, data: bytes, *, preview: bool = False, streams: int | None = None
    ) -> Decoded:
        """Decode a file; `preview` decodes its top and middle streams only, from a prefix of
        the file that holds them (a partial download will do; the CRC is then not checked).
        `streams`: decode the first `streams` streams of such a prefix (a truncated file's
        complete ones, `container.complete_streams`). The image is RGB, RGBA, L or LA, as the
        header's flags say; a prefix without the alpha plane's chunk has an opaque alpha."""
        start = time.perf_counter()
        header = container.unpack(bytes(data), PREVIEW_STREAMS if preview else streams)
        self._check_header(header)
        t = time.perf_counter()
        plane = alpha.plane_of(header)  # before the streams: a damaged one fails fast
        io = time.perf_counter() - t
        out = self.model.decode_streams(header.width, header.height, header.quality,
                                        header.streams)  # fmt: skip
        image = output_image(out.pixels, header.gray, plane)
        image.info.update(metadata_info(header.chunks))
        stats = {n: c.stats for n, c in out.coders.items()}
        timings = stage_timings(time.perf_counter() - start, io, out.seconds_in_priors, out.coders)
        return Decoded(image, header, out.codes, stats, timings)

    def _check_header(self, header: container.HvqFile) -> None:
        if header.model_id != self.model.model_id:
            raise HvqError(
                f"this file needs model {model_label(header.model_id)}, "
                f"but the codec has {self.model.name} ({self.model.model_id:08x})"
            )
        if self.max_pixels is not None and header.width * header.height > self.max_pixels:
            raise HvqError(
                f"image size {header.width}x{header.height} exceeds the limit of {self.max_pixels} "
                "pixels (a damaged file or a decompression bomb)"
            )
        self.model.check_header(header)


@functools.cache
def shipped_codec(name: str = DEFAULT_MODEL) -> Codec:
    """A shipped model, loaded at most once per process and only when first asked for."""
    return Codec(name)


def _weights_at(path: str, model_id: int) -> FamilyModel:
    """The model of a weights file, loaded once per process while the file stays as it was."""
    try:
        stat = Path(path).stat()
    except OSError as e:
        raise HvqError(f"weights file {path}: {e.strerror}") from None
    return _weights_as_of(path, model_id, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _weights_as_of(path: str, model_id: int, mtime_ns: int, size: int) -> FamilyModel:
    model = load_weights(path)
    if model.model_id != model_id:
        raise HvqError(
            f"{path} holds model {model.model_id:08x}, not the {model_id:08x} this codec was "
            "pickled with: the file changed, or the path means another file on this machine"
        )
    return model


def _unpickle(source: str, model_id: int, max_pixels: int | None) -> Codec:
    """A pickled codec, its model shared with every codec of this process that names it."""
    if source in SHIPPED:
        shipped = shipped_codec(source)
        if shipped.max_pixels == max_pixels:
            return shipped
        codec = Codec(shipped.model, max_pixels=max_pixels)
    else:
        codec = Codec(_weights_at(source, model_id), max_pixels=max_pixels)
    codec.source = source
    return codec


def codec_for(data: bytes) -> Codec:
    """The shipped model that a file's header names (only the header is read)."""
    model_id = container.header_of(data).model_id
    for name, entry in SHIPPED.items():
        if entry.model_id == model_id:
            return shipped_codec(name)
    known = ", ".join(f"{n} ({e.model_id:08x})" for n, e in SHIPPED.items())
    raise HvqError(
        f"this file needs model {model_id:08x}, which this version of hvqcodec does not ship "
        f"(it knows {known})"
    )


def resolve(model: str | Path | FamilyModel | Codec | None, data: bytes | None = None) -> Codec:
    """The codec for an explicit model (a shipped name, a weights file, a loaded model or a
    `Codec`);
    with none, the model `data`'s header names, or the default model for encoding."""
    if isinstance(model, Codec):
        return model
    if model is None:
        return shipped_codec() if data is None else codec_for(data)
    if isinstance(model, str) and model in SHIPPED:
        return shipped_codec(model)
    return Codec(model)


def encode(
    image: ImageInput,
    quality: float | None = None,
    *,
    model: str | Path | FamilyModel | None = None,
    **options,
) -> bytes:
    """Compress an image (PIL image, path, or uint8 array: H x W gray, H x W x 3 RGB, x 2 or
    x 4 with alpha) to .hvq bytes, with the default model unless `model` names another, at
    `quality` (0-100) or at the quality that one target picks: `target_size`, `target_bpp` or
    `target_psnr`, with `strict` to fail rather than miss it, `effort` 0-3 (slower, smaller for
    the quality), and `metadata`, `background` and `exact` as `Codec.encode_detailed` takes
    them."""
    return resolve(model).encode(image, quality, **options)


def decode(
    data: bytes, *, preview: bool = False, model: str | Path | FamilyModel | None = None
) -> Image.Image:
    """Decompress .hvq bytes to a PIL image (RGB; RGBA, L or LA for a source with alpha or a
    grayscale one), with the shipped model the file names
    (`model` overrides it). `preview`: a fast coarse image from the top and middle streams
    alone (a prefix of the file that holds them is enough)."""
    return resolve(model, data).decode(data, preview=preview)
