"""The codec: one image through the whole pipeline and back.

    pixels --image_io--> (H, W, 3) uint8 --vqvae.encode--> code maps (top, middle, bottom
           stages) --priors (wavefront)--> probability tables --range_coder--> streams
           --container--> .hvq

and the reverse for decoding. `Codec` loads a model once and can be reused.

A quality is a number of bottom stages to code and a rate-distortion weight for choosing codes
(`Model.qualities`); the decoder needs neither, only the streams the file holds, so any prefix
of a file's streams decodes (`preview`).
"""

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hvqcodec import container, hyper_codec
from hvqcodec.errors import HvqError
from hvqcodec.image_io import ImageInput, load_rgb
from hvqcodec.models import (
    DEFAULT_MODEL,
    SHIPPED,
    HyperModel,
    Model,
    load_shipped,
    load_weights,
)
from hvqcodec.range_coder import LevelDecoder, LevelEncoder, LevelStats
from hvqcodec.vqvae import LEVELS, code_shapes, pad_to_stride

# Default limit on decoded pixels (Pillow's MAX_IMAGE_PIXELS): larger headers are refused
# before anything is allocated, as Pillow does against decompression bombs.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# A preview decodes the top and middle streams only.
PREVIEW_STREAMS = 2


@dataclass
class Encoded:
    data: bytes
    width: int
    height: int
    codes: dict[str, np.ndarray]
    stats: dict[str, LevelStats]
    notes: list[str] = field(default_factory=list)  # input conversions, e.g. RGBA -> RGB
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.width * self.height)


@dataclass
class Decoded:
    image: Image.Image
    header: container.HvqFile
    codes: dict[str, np.ndarray]
    stats: dict[str, LevelStats]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def metadata_info(header: container.HvqFile) -> dict[str, bytes]:
    """The file's metadata chunks as Pillow `Image.info` entries."""
    return {k: header.chunks[c] for k, c in container.METADATA_CHUNKS.items() if c in header.chunks}


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
    """A loaded model. `model` is a shipped model's name, a weights file path, or a `Model`."""

    def __init__(
        self,
        model: str | Path | Model | HyperModel = DEFAULT_MODEL,
        *,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        """`max_pixels`: files claiming more pixels are refused before decoding (None: no limit)."""
        self.max_pixels = max_pixels
        if isinstance(model, (Model, HyperModel)):
            self.model = model
        elif isinstance(model, str) and model in SHIPPED:
            self.model = load_shipped(model)
        else:
            self.model = load_weights(model)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.model.qualities) + 1))

    @property
    def default_quality(self) -> int:
        return self.model.default_quality

    def encode(self, image: ImageInput, quality: int | None = None) -> bytes:
        return self.encode_detailed(image, quality).data

    def decode(self, data: bytes, *, preview: bool = False) -> Image.Image:
        return self.decode_detailed(data, preview=preview).image

    @torch.no_grad()
    def encode_detailed(
        self,
        image: ImageInput,
        quality: int | None = None,
        *,
        metadata: bool = True,
        rd_lambda: float | None = None,
        stages: int | None = None,
    ) -> Encoded:
        """Encode, returning the bytes with the code maps and per-stream statistics.

        `metadata=False` drops the input's ICC profile and EXIF instead of storing them.
        `rd_lambda` and `stages` override the quality's rate-distortion weight and number of
        bottom stages (for tuning a quality table; see benchmarks/quality_sweep.py).
        """
        quality = self.default_quality if quality is None else quality
        if quality not in self.qualities:
            q = self.qualities
            raise HvqError(f"quality {quality} not supported; {self.name} has {q[0]}..{q[-1]}")
        start = time.perf_counter()
        pixels = load_rgb(image)
        io = time.perf_counter() - start
        height, width = pixels.rgb.shape[:2]
        if isinstance(self.model, HyperModel):
            stored = self.model.qualities[quality - 1]  # where along the gains; decoding needs it
            lam = 0.0 if rd_lambda is None else rd_lambda
            payload, codes, coders, in_priors = hyper_codec.encode_streams(
                self.model, pixels.rgb, stored, lam
            )
        else:
            stored = quality
            payload, codes, coders, in_priors = self._encode_vq(
                pixels.rgb, *self.model.qualities[quality - 1], rd_lambda, stages
            )
        chunks = {}
        if metadata:
            for key, kind in container.METADATA_CHUNKS.items():
                if getattr(pixels, key):
                    chunks[kind] = getattr(pixels, key)
        data = container.pack(
            container.HvqFile(width, height, self.model.model_id, stored, payload, chunks)
        )
        stats = {n: c.stats for n, c in coders.items()}
        timings = stage_timings(time.perf_counter() - start, io, in_priors, coders)
        return Encoded(data, width, height, codes, stats, pixels.notes, timings)

    def _encode_vq(self, rgb: np.ndarray, default_stages: int, default_lam: float,
                   rd_lambda: float | None, stages: int | None):  # fmt: skip
        """The VQ-VAE family's streams: (payload, codes, coders, seconds in the priors)."""
        lam = default_lam if rd_lambda is None else rd_lambda
        stages = default_stages if stages is None else stages
        if not 0 <= stages <= self.model.vqvae.config.bottom_stages:
            raise HvqError(f"{self.name} has {self.model.vqvae.config.bottom_stages} bottom stages")
        streams = self.model.vqvae.streams[: PREVIEW_STREAMS + stages]
        in_priors = 0.0
        shapes = code_shapes(*rgb.shape[:2], streams)
        x = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255
        vqvae = self.model.vqvae
        feats = vqvae.features(pad_to_stride(x))
        codes: dict[str, np.ndarray] = {}
        quantized: dict[str, torch.Tensor] = {}
        coders = {}
        # Stream by stream: each level's latent depends on the codes chosen above it, and each
        # bottom stage codes what the stages before it left of the bottom latent.
        target = previous = None
        for name in streams:
            if name in LEVELS:
                target = vqvae.latent(name, feats, quantized)
            else:
                target = target - quantized[previous]
            quantizer = vqvae.quantizers[name]
            coders[name] = LevelEncoder(quantizer.map_distances(target).numpy(), lam)
            t = time.perf_counter()
            codes[name] = self._code_level(name, codes, shapes[name], coders[name])
            in_priors += time.perf_counter() - t
            quantized[name] = quantizer.lookup(torch.from_numpy(codes[name])[None])
            previous = name
        return [coders[name].finish() for name in streams], codes, coders, in_priors

    @torch.no_grad()
    def decode_detailed(self, data: bytes, *, preview: bool = False) -> Decoded:
        """Decode a file; `preview` decodes its top and middle streams only, from a prefix of
        the file that holds them (a partial download will do; the CRC is then not checked)."""
        start = time.perf_counter()
        header = container.unpack(bytes(data), PREVIEW_STREAMS if preview else None)
        self._check_header(header)
        if isinstance(self.model, HyperModel):
            pixels, codes, coders, in_priors = hyper_codec.decode_streams(
                self.model, header.width, header.height, header.quality, header.streams
            )
        else:
            pixels, codes, coders, in_priors = self._decode_vq(header)
        image = Image.fromarray(pixels, "RGB")
        image.info.update(metadata_info(header))
        stats = {n: c.stats for n, c in coders.items()}
        timings = stage_timings(time.perf_counter() - start, 0.0, in_priors, coders)
        return Decoded(image, header, codes, stats, timings)

    def _decode_vq(self, header: container.HvqFile):
        """The VQ-VAE family's pixels: ((H, W, 3) uint8, codes, coders, seconds in the priors)."""
        start = time.perf_counter()
        names = self.model.vqvae.streams[: len(header.streams)]
        shapes = code_shapes(header.height, header.width, names)
        codes: dict[str, np.ndarray] = {}
        coders = {}
        for name, stream in zip(names, header.streams):
            coders[name] = LevelDecoder(stream)
            codes[name] = self._code_level(name, codes, shapes[name], coders[name])
        in_priors = time.perf_counter() - start
        maps = {name: torch.from_numpy(c)[None] for name, c in codes.items()}
        y = self.model.vqvae.decode(maps)[0, :, : header.height, : header.width]
        pixels = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(pixels), codes, coders, in_priors

    def _code_level(self, name: str, upper: dict[str, np.ndarray], shape, coder) -> np.ndarray:
        """Run stream `name`'s prior over its map, conditioned on the streams before it."""
        # Integer-exact: no thread pinning needed, any thread count gives the same tables.
        maps = self.model.prior.upper_of(name, upper)
        return self.model.coder.levels[name].code(maps, shape, coder)

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
        if isinstance(self.model, HyperModel):
            most = len(hyper_codec.STREAMS)
        else:
            most = len(self.model.vqvae.streams)
        if not PREVIEW_STREAMS <= len(header.streams) <= most:
            raise HvqError(
                f"corrupt header: {len(header.streams)} streams, "
                f"expected {PREVIEW_STREAMS} to {most}"
            )


def model_label(model_id: int) -> str:
    """A model id as a user reads it: the shipped model's name if it is one of ours."""
    for name, entry in SHIPPED.items():
        if entry.model_id == model_id:
            return f"{name} ({model_id:08x})"
    return f"{model_id:08x}, which this version of hvqcodec does not ship"


@functools.cache
def shipped_codec(name: str = DEFAULT_MODEL) -> Codec:
    """A shipped model, loaded at most once per process and only when first asked for."""
    return Codec(name)


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


def resolve(model: str | Path | Model | Codec | None, data: bytes | None = None) -> Codec:
    """The codec for an explicit model (a shipped name, a weights file, a `Model` or a `Codec`);
    with none, the model `data`'s header names, or the default model for encoding."""
    if isinstance(model, Codec):
        return model
    if model is None:
        return shipped_codec() if data is None else codec_for(data)
    if isinstance(model, str) and model in SHIPPED:
        return shipped_codec(model)
    return Codec(model)


def encode(
    image: ImageInput, quality: int | None = None, *, model: str | Path | Model | None = None
) -> bytes:
    """Compress an image (PIL image, HxWx3 uint8 array, or path) to .hvq bytes, with the
    default model unless `model` names another."""
    return resolve(model).encode(image, quality)


def decode(
    data: bytes, *, preview: bool = False, model: str | Path | Model | None = None
) -> Image.Image:
    """Decompress .hvq bytes to an RGB PIL image, with the shipped model the file names
    (`model` overrides it). `preview`: a fast coarse image from the top and middle streams
    alone (a prefix of the file that holds them is enough)."""
    return resolve(model, data).decode(data, preview=preview)
