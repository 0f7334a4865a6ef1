"""The VQ-VAE family (hvq-v1, hvq-v2), one image through it and back (`hvqcodec.codec.Codec`
runs it):

    pixels --vqvae features--> top, middle, bottom stage latents --nearest codes (or rate-
           distortion optimised ones)--> code maps --integer priors (wavefront)--> streams

and back: the streams, the same priors, the code maps, then the VQ-VAE decoder. Any prefix of
at least two streams decodes.

A quality of the 0-100 scale is a number of bottom stages and a rate-distortion weight for the
last one's codes (`StageScale`): between two knots the next stage comes in, first with its
codes chosen almost for rate alone, then more and more for distortion, so that rate and
quality rise continuously along the scale.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch

from hvqcodec.models import Model
from hvqcodec.range_coder import LevelDecoder, LevelEncoder
from hvqcodec.vqvae import LEVELS, code_shapes, pad_to_stride

PREVIEW_STREAMS = 2  # top and middle


@dataclass
class Coded:
    """One level's stream, with its codes and its coder (for statistics and timings)."""

    stream: bytes
    codes: np.ndarray
    coder: LevelEncoder
    seconds: float  # in the prior and the coder


class Encoder:
    """One image's analysis, kept so that several qualities can be tried (`streams`): the
    top and middle levels and the nearest-code stages are coded once, and a trial recodes
    only its last, rate-distortion weighted, stage."""

    @torch.no_grad()
    def __init__(self, model: Model, rgb: np.ndarray) -> None:
        self.model, self.vqvae = model, model.vqvae
        self.height, self.width = rgb.shape[:2]
        self.shapes = code_shapes(self.height, self.width, self.vqvae.streams)
        x = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255
        self.feats = self.vqvae.features(pad_to_stride(x))
        self.nearest: dict[str, Coded] = {}  # streams coded with nearest codes, in order
        self.quantized: dict[str, torch.Tensor] = {}
        self.targets: dict[str, torch.Tensor] = {}
        for name in LEVELS[:2]:
            self._nearest(name)

    @property
    def knots(self) -> tuple[int, ...]:
        return self.model.scale.qualities

    def _target(self, name: str) -> torch.Tensor:
        """What stream `name` quantizes: its level's latent, or for a later bottom stage what
        the nearest-code stages before it left of the bottom latent."""
        if name not in self.targets:
            streams = self.vqvae.streams
            if name in LEVELS:
                target = self.vqvae.latent(name, self.feats, self.quantized)
            else:
                before = streams[streams.index(name) - 1]
                self._nearest(before)
                target = self._target(before) - self.quantized[before]
            self.targets[name] = target
        return self.targets[name]

    def _code(self, name: str, lam: float) -> Coded:
        upper = {k: c.codes for k, c in self.nearest.items()}
        quantizer = self.vqvae.quantizers[name]
        coder = LevelEncoder(quantizer.map_distances(self._target(name)).numpy(), lam)
        t = time.perf_counter()
        codes = _code_level(self.model, name, upper, self.shapes[name], coder)
        return Coded(coder.finish(), codes, coder, time.perf_counter() - t)

    def _nearest(self, name: str) -> Coded:
        if name not in self.nearest:
            self._target(name)  # codes the stages before this one first
            self.nearest[name] = self._code(name, 0.0)
            codes = torch.from_numpy(self.nearest[name].codes)[None]
            self.quantized[name] = self.vqvae.quantizers[name].lookup(codes)
        return self.nearest[name]

    @torch.no_grad()
    def streams(self, quality: int) -> dict[str, Coded]:
        """The coded streams of quality `quality` (hundredths), in file order."""
        stages, lam = self.model.scale.point(quality)
        names = self.vqvae.streams[: PREVIEW_STREAMS + stages]
        out = {name: self._nearest(name) for name in names[:-1]}
        last = names[-1]
        out[last] = self._nearest(last) if lam == 0 or last in LEVELS[:2] else self._code(last, lam)
        return out

    @torch.no_grad()
    def reconstruct(self, coded: dict[str, Coded], quality: int) -> np.ndarray:
        """The pixels a decoder will make of these streams (of any quality)."""
        return decode_pixels(self.model, {n: c.codes for n, c in coded.items()},
                             self.height, self.width)  # fmt: skip


def _code_level(model: Model, name: str, upper: dict[str, np.ndarray], shape, coder):
    """Stream `name`'s integer prior over its map, conditioned on the streams before it,
    driving `coder` (encoder or decoder): the codes."""
    return model.coder.levels[name].code(model.prior.upper_of(name, upper), shape, coder)


def to_pixels(y: torch.Tensor) -> np.ndarray:
    """A (3, H, W) image in [0, 1] as (H, W, 3) uint8, as every decoder rounds it."""
    pixels = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(pixels)


def decode_pixels(model: Model, codes: dict[str, np.ndarray], height: int, width: int):
    """Code maps -> (H, W, 3) uint8 through the VQ-VAE decoder."""
    maps = {name: torch.from_numpy(c)[None] for name, c in codes.items()}
    return to_pixels(model.vqvae.decode(maps)[0, :, :height, :width])


def decode_streams(model: Model, width: int, height: int, streams: list[bytes]):
    """A file's streams (a prefix of at least two) -> ((H, W, 3) uint8, codes, coders,
    seconds in the priors)."""
    start = time.perf_counter()
    names = model.vqvae.streams[: len(streams)]
    shapes = code_shapes(height, width, names)
    codes: dict[str, np.ndarray] = {}
    coders = {}
    for name, stream in zip(names, streams):
        coders[name] = LevelDecoder(stream)
        codes[name] = _code_level(model, name, codes, shapes[name], coders[name])
    in_priors = time.perf_counter() - start
    return decode_pixels(model, codes, height, width), codes, coders, in_priors


@torch.no_grad()
def float_bits(model: Model, codes: dict[str, np.ndarray], quality: int) -> dict[str, float]:
    """What a file's code maps would cost under the float priors as trained (not what the
    coder sees): the measure of what integer-exact coding costs."""
    maps = {k: torch.from_numpy(v)[None] for k, v in codes.items()}
    return {k: float(b) * codes[k].size for k, b in model.prior(maps).items()}


def codebook_sizes(model: Model) -> dict[str, int]:
    """Codes per codebook of each VQ level (a scalar level has none)."""
    return {k: q.num_codes for k, q in model.vqvae.quantizers.items()}
