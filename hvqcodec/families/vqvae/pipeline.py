"""The VQ-VAE family (hvq-v1, hvq-v2), one image through it and back (`hvqcodec.codec.Codec`
runs it through `VQVAEModel`, this family's `hvqcodec.family.FamilyModel`):

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

from hvqcodec.container import PREVIEW_STREAMS, QUALITY_SCALE, HvqFile
from hvqcodec.errors import HvqError
from hvqcodec.families.vqvae.integer import IntegerPrior
from hvqcodec.families.vqvae.model import LEVELS, PAD_STRIDE, HierarchicalVQVAE, code_shapes
from hvqcodec.families.vqvae.prior import HierarchicalPrior
from hvqcodec.family import (
    Coded,
    DecodedStreams,
    Trial,
    check_stream_count,
    to_pixels,
)
from hvqcodec.layers.tiling import pad_to_stride
from hvqcodec.range_coder import WavefrontDecoder, WavefrontEncoder
from hvqcodec.rate_control import DEFAULT_QUALITY, StageScale


@dataclass
class VQVAEModel:
    """A loaded hvq-v1 or hvq-v2 model (`hvqcodec.family.FamilyModel`)."""

    name: str
    model_id: int
    vqvae: HierarchicalVQVAE
    prior: HierarchicalPrior  # float, as trained
    integer_prior: IntegerPrior  # its integer-exact twin, which gives the coder probabilities
    scale: StageScale | None = None  # None: `StageScale.even` over its bottom stages
    default_quality: float = DEFAULT_QUALITY

    def __post_init__(self) -> None:
        if self.scale is None:
            self.scale = StageScale.even(self.vqvae.config.bottom_stages)

    @property
    def qualities(self) -> tuple[float, ...]:
        """The knots of its scale, each a whole number of bottom stages."""
        return tuple(q / QUALITY_SCALE for q in self.scale.qualities)

    @property
    def max_streams(self) -> int:
        return len(self.vqvae.streams)

    def encoder(self, rgb: np.ndarray, effort: int = 0) -> "Encoder":
        if effort:
            raise HvqError(f"effort above 0 needs an hvq-v3 model; {self.name} has no fine "
                           "symbols to refine")  # fmt: skip
        return Encoder(self, rgb)

    def decode_streams(self, width: int, height: int, hundredths: int, streams: list[bytes]):
        """The quality is in the streams themselves: as many bottom stages as it coded."""
        return decode_streams(self, width, height, streams)

    def check_header(self, header: HvqFile) -> None:
        check_stream_count(header, self.max_streams)

    def float_bits(self, codes: dict[str, np.ndarray], hundredths: int) -> dict[str, float]:
        """Under the float priors; the codes alone fix the cost, whatever the quality."""
        return float_bits(self, codes)

    def codebook_sizes(self) -> dict[str, int]:
        return {k: q.num_codes for k, q in self.vqvae.quantizers.items()}


class Encoder:
    """One image's analysis, kept so that several qualities can be tried (`streams`): the
    top and middle levels and the nearest-code stages are coded once, and a trial recodes
    only its last, rate-distortion weighted, stage."""

    estimate = None  # a trial is already cheap, and rate jumps where a stage comes in

    @torch.no_grad()
    def __init__(self, model: VQVAEModel, rgb: np.ndarray) -> None:
        self.model, self.vqvae = model, model.vqvae
        self.height, self.width = rgb.shape[:2]
        self.shapes = code_shapes(self.height, self.width, self.vqvae.streams)
        x = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255
        self.feats = self.vqvae.features(pad_to_stride(x, PAD_STRIDE))
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
        coder = WavefrontEncoder(quantizer.map_distances(self._target(name)).numpy(), lam)
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
    def streams(self, hundredths: int) -> Trial:
        """The coded streams of one quality, in file order."""
        stages, lam = self.model.scale.point(hundredths)
        names = self.vqvae.streams[: PREVIEW_STREAMS + stages]
        out = {name: self._nearest(name) for name in names[:-1]}
        last = names[-1]
        out[last] = self._nearest(last) if lam == 0 or last in LEVELS[:2] else self._code(last, lam)
        return Trial(hundredths, out)

    @torch.no_grad()
    def reconstruct(self, trial: Trial) -> np.ndarray:
        return decode_pixels(self.model, {n: c.codes for n, c in trial.coded.items()},
                             self.height, self.width)  # fmt: skip


def _code_level(model: VQVAEModel, name: str, upper: dict[str, np.ndarray], shape, coder):
    """Stream `name`'s integer prior over its map, conditioned on the streams before it,
    driving `coder` (encoder or decoder): the codes."""
    return model.integer_prior.levels[name].code(model.prior.upper_of(name, upper), shape, coder)


def decode_pixels(model: VQVAEModel, codes: dict[str, np.ndarray], height: int, width: int):
    """Code maps -> (H, W, 3) uint8 through the VQ-VAE decoder."""
    maps = {name: torch.from_numpy(c)[None] for name, c in codes.items()}
    return to_pixels(model.vqvae.decode(maps)[0, :, :height, :width])


def decode_streams(
    model: VQVAEModel, width: int, height: int, streams: list[bytes]
) -> DecodedStreams:
    """A file's streams (a prefix of at least two)."""
    start = time.perf_counter()
    names = model.vqvae.streams[: len(streams)]
    shapes = code_shapes(height, width, names)
    codes: dict[str, np.ndarray] = {}
    coders = {}
    for name, stream in zip(names, streams):
        coders[name] = WavefrontDecoder(stream)
        codes[name] = _code_level(model, name, codes, shapes[name], coders[name])
    in_priors = time.perf_counter() - start
    return DecodedStreams(decode_pixels(model, codes, height, width), codes, coders, in_priors)


@torch.no_grad()
def float_bits(model: VQVAEModel, codes: dict[str, np.ndarray]) -> dict[str, float]:
    """What a file's code maps would cost under the float priors as trained (not what the
    coder sees): the measure of what integer-exact coding costs."""
    maps = {k: torch.from_numpy(v)[None] for k, v in codes.items()}
    return {k: float(b) * codes[k].size for k, b in model.prior(maps).items()}
