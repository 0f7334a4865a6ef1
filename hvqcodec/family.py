"""What a model family supplies to the codec: the contract between `hvqcodec.codec` and
`hvqcodec.families`.

A family is a way of turning pixels into streams (hvq-v1 and hvq-v2: VQ-VAE levels; hvq-v3.x:
VQ side information over integer fine symbols). A loaded model of a family is a `FamilyModel`:
it says what its qualities are, starts an encoder for one image (`StreamEncoder`), decodes a
file's streams, in full or as a preview, and prices codes under its float model. The codec
never asks which family it holds; `hvqcodec.models` builds the right one from a weights file.

Names used throughout:
- *quality*: the user's 0-100 scale (a float); *hundredths*: the same as the header stores it,
  an int of 0..10000 (`rate_control.to_hundredths`).
- *stream*: one range-coded part of a file, in file order; a *level* is a level of a model's
  hierarchy (top, middle, ...), which may be coded as one stream or several.
- *coder*: a range coder (`hvqcodec.range_coder`); the networks that give its probabilities are
  *priors*, and their integer-exact twins are named `Integer*`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from hvqcodec.container import PREVIEW_STREAMS, HvqFile
from hvqcodec.errors import HvqError
from hvqcodec.range_coder import StreamStats


@dataclass
class Coded:
    """One stream, with its codes and its coder (for statistics and timings)."""

    stream: bytes
    codes: np.ndarray
    coder: object  # a range coder of `hvqcodec.range_coder`, with `stats` and `seconds`
    seconds: float  # in the prior and the coder

    @property
    def stats(self) -> StreamStats:
        return self.coder.stats


@dataclass
class Trial:
    """The streams of one quality, in file order, as an encoder coded them."""

    hundredths: int
    coded: dict[str, Coded]
    # What `reconstruct` starts from where coding the streams already made it (the hvq-v3
    # family's decoded latent, which takes the context model's passes), else None.
    latent: object = None


@dataclass
class DecodedStreams:
    pixels: np.ndarray  # (H, W, 3) uint8
    codes: dict[str, np.ndarray]
    coders: dict[str, object]  # the range decoders, with `stats` and `seconds`
    seconds_in_priors: float  # priors and range decoding, out of the whole decode


class StreamEncoder(Protocol):
    """One image's analysis, kept so that several qualities can be tried cheaply."""

    # Qualities (hundredths) where rate jumps, which a target search tries first.
    knots: tuple[int, ...]
    # A cheap stand-in for a trial, `estimate(hundredths, kind)`: the streams' bytes ("size")
    # or the PSNR ("psnr") a target search runs on before real trials correct it
    # (`rate_control.corrected_search`); None where every trial of the search is real.
    estimate: Callable[[int, str], float] | None

    def streams(self, hundredths: int) -> Trial:
        """The coded streams of one quality."""

    def reconstruct(self, trial: Trial) -> np.ndarray:
        """The (H, W, 3) uint8 pixels a decoder will make of a trial's streams."""


@runtime_checkable
class FamilyModel(Protocol):
    """A loaded model of one family: float networks and their integer-exact twins."""

    name: str
    model_id: int  # 32-bit fingerprint of configs and weights, written into every .hvq file
    default_quality: float  # on the 0-100 scale

    @property
    def qualities(self) -> tuple[float, ...]:
        """The 0-100 qualities the model's scale is built on, for sweeps."""

    @property
    def max_streams(self) -> int:
        """How many streams a file of this model holds at most."""

    def encoder(self, rgb: np.ndarray, effort: int = 0) -> StreamEncoder:
        """Analyse an (H, W, 3) uint8 image; `effort` 0..MAX_EFFORT (`check_effort`)."""

    def decode_streams(
        self, width: int, height: int, hundredths: int, streams: list[bytes]
    ) -> DecodedStreams:
        """A file's streams, all of them or a prefix of at least `PREVIEW_STREAMS`."""

    def check_header(self, header: HvqFile) -> None:
        """Refuse, with an HvqError, a header this model cannot decode."""

    def float_bits(self, codes: dict[str, np.ndarray], hundredths: int) -> dict[str, float]:
        """What codes would cost under the float model as trained, per stream."""

    def codebook_sizes(self) -> dict[str, int]:
        """Codes per codebook of each VQ level."""


def check_stream_count(header: HvqFile, most: int) -> None:
    """Refuse a header whose stream count no file of a model with `most` streams has."""
    if not PREVIEW_STREAMS <= len(header.streams) <= most:
        raise HvqError(
            f"corrupt header: {len(header.streams)} streams, expected {PREVIEW_STREAMS} to {most}"
        )


def to_pixels(y: "torch.Tensor") -> np.ndarray:  # noqa: F821 (torch: imported by the caller)
    """A (3, H, W) image in [0, 1] as (H, W, 3) uint8, as every decoder rounds it."""
    import torch

    pixels = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(pixels)


MAX_EFFORT = 3  # encoder effort runs 0..3, as cjxl's -e and cwebp's -m; 0 is plain analysis


def check_effort(effort: int) -> int:
    """`effort` itself, or a clear HvqError outside 0..MAX_EFFORT."""
    if isinstance(effort, bool) or not isinstance(effort, (int, np.integer)):
        raise HvqError(f"effort must be a whole number from 0 to {MAX_EFFORT}, not {effort!r}")
    if not 0 <= effort <= MAX_EFFORT:
        raise HvqError(f"effort {effort} is outside 0..{MAX_EFFORT}")
    return int(effort)
