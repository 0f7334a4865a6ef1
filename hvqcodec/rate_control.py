"""Rate control: the 0-100 quality scale, and encoding to a target size or PSNR.

A quality is a number from 0 to 100, as in cwebp, cjxl, avifenc and Pillow's savers; each
model family maps it, monotonically and continuously, onto its own rate parameters
(`vq_codec.operating_point`, `hyper_codec` gain interpolation). It travels in hundredths
(0..10000): the header stores that integer, so a fraction asked for is the fraction recorded.

A target (`--size`, `--bpp`, `--psnr`) is met by a search along that scale (`search`) whose
trials reuse one analysis of the image: each trial recodes only what the quality changes. Where
the family can estimate a trial cheaply, the search runs on the estimate and a few real trials
correct it (`corrected_search`).
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from hvqcodec.errors import HvqError

FULL = 10_000  # the highest quality, 100, in hundredths
# The quality a user gets without asking, on the 0-100 scale, where cwebp's default is 75 too.
DEFAULT_QUALITY = 75.0
SIZE_BAND = 0.97  # a size target is met by a file of 97% to 100% of the budget
PSNR_BAND = 0.3  # a PSNR target is met from the target to 0.3 dB above it


def to_hundredths(quality: float) -> int:
    """A 0-100 quality (fractions allowed) as the integer the header stores, rounding half up
    on the decimal value (62.125 is 6213, whatever its binary float)."""
    if isinstance(quality, bool):
        raise HvqError(f"quality must be a number from 0 to 100, not {quality!r}")
    try:
        q = Decimal(str(float(quality)))
    except (TypeError, ValueError, OverflowError):
        raise HvqError(f"quality must be a number from 0 to 100, not {quality!r}") from None
    if not q.is_finite() or not 0 <= q <= 100:
        raise HvqError(f"quality {quality} is outside 0..100")
    return int((q * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Target:
    """What to aim for instead of a quality: a file size in bytes or a PSNR in dB."""

    kind: str  # "size" or "psnr"
    value: float
    asked: str  # as the user put it, for notes: "--size 12000", "--bpp 0.5", "--psnr 30"

    @staticmethod
    def choose(
        width: int,
        height: int,
        *,
        size: int | None = None,
        bpp: float | None = None,
        psnr: float | None = None,
    ) -> "Target | None":
        """The one target given (none: None); several raise HvqError."""
        given = {k: v for k, v in (("size", size), ("bpp", bpp), ("psnr", psnr)) if v is not None}
        if len(given) > 1:
            names = " and ".join(f"target_{k}" for k in given)
            raise HvqError(f"{names} are mutually exclusive: give one target")
        if not given:
            return None
        ((kind, value),) = given.items()
        try:
            value = float(value)
            if kind == "bpp":
                value, bpp = value * width * height / 8, value
        except (TypeError, ValueError, OverflowError):
            raise HvqError(f"target_{kind} must be a number, not {given[kind]!r:.40}") from None
        if math.isnan(value) or value <= 0:
            raise HvqError(f"target_{kind} must be a positive number, not {given[kind]}")
        if math.isinf(value):
            raise HvqError(f"target_{kind} {given[kind]} is too large")
        if kind != "psnr":
            budget = math.floor(value)
            if budget < 1:
                raise HvqError(f"target_{kind} {given[kind]} is a budget of under one byte")
            asked = f"{bpp:g} bpp ({budget} bytes)" if kind == "bpp" else f"{budget} bytes"
            return Target("size", budget, f"a size of {asked}" if kind == "size" else asked)
        return Target("psnr", value, f"a PSNR of {value:g} dB")

    def miss(self, achieved: float, quality: int) -> tuple[str | None, bool]:
        """(a note when the file chosen at `quality` lands outside the target's window, None
        when it meets it; whether it fails the target: a file over the budget, or short of
        the PSNR). Landing on the safe side is only a note: the scale ends there, or (with a
        stage-prefix model) the rate jumps past the window."""
        if self.kind == "size":
            if achieved > self.value:
                over = 100 * (achieved / self.value - 1) if self.value else math.inf
                return f"even quality 0 gives {achieved:.0f} bytes, {over:.1f}% over " \
                       f"{self.asked}", True  # fmt: skip
            if achieved >= SIZE_BAND * self.value:
                return None, False
            under = f"{achieved:.0f} bytes, {100 * (1 - achieved / self.value):.1f}% under"
            why = "the highest" if quality == FULL else "the next quality tried is over"
            return f"quality {quality / 100:g} ({why}) gives {under} {self.asked}", False
        if achieved < self.value:
            return f"even quality 100 reaches only {achieved:.2f} dB, " \
                   f"{self.value - achieved:.2f} dB short of {self.asked}", True  # fmt: skip
        if achieved <= self.value + PSNR_BAND:
            return None, False
        why = "the lowest" if quality == 0 else "the next quality tried falls short"
        return f"quality {quality / 100:g} ({why}) gives {achieved:.2f} dB, " \
               f"{achieved - self.value:.2f} dB over {self.asked}", False  # fmt: skip

    def score(self, achieved: float) -> float:
        """Where a trial lies against the target, rising with the quality: in the window
        [low, high] it is met."""
        if self.kind == "size":
            return math.log(max(achieved, 1) / max(self.value, 1))
        return achieved - self.value

    @property
    def window(self) -> tuple[float, float]:
        return (math.log(SIZE_BAND), 0.0) if self.kind == "size" else (0.0, PSNR_BAND)


@dataclass(frozen=True)
class StageScale:
    """A VQ-VAE model's quality scale. `knots`: (quality in hundredths, bottom stages), where
    that many stages are coded with nearest codes, ascending. Between two knots the quality
    codes the upper knot's stages, the last with a rate-distortion weight
    (`range_coder.WavefrontEncoder`) falling from `ramp[1]` just above the lower knot to 0 at
    the upper one: geometrically towards `ramp[0]`, less a linear term that brings it to 0
    without a jump.

    Rate is continuous along each segment but jumps where a stage comes in: even with its
    codes chosen for rate alone, a stage costs what its prior cannot predict (on hvq-v2's
    stages 2 to 4, most of what the stage costs with nearest codes)."""

    knots: tuple[tuple[int, int], ...]
    ramp: tuple[float, float] = (0.1, 1.0)  # past 1, hvq-v2's stages 1 and 2 fall below the knot

    @staticmethod
    def even(stages: int) -> "StageScale":
        """Knots spread evenly over 0..100, from none to `stages` bottom stages."""
        return StageScale(tuple((round(FULL * s / stages), s) for s in range(stages + 1)))

    def point(self, quality: int) -> tuple[int, float]:
        """(bottom stages, rate-distortion weight of the last one) at `quality` (hundredths)."""
        for (q0, _), (q1, stages) in zip(self.knots, self.knots[1:]):
            if q0 < quality <= q1:
                t = (q1 - quality) / (q1 - q0)
                low, high = self.ramp  # minus low * (1 - t): 0 at the knot, no jump there
                return stages, low * ((high / low) ** t - (1 - t))
        return (self.knots[0] if quality <= self.knots[0][0] else self.knots[-1])[1], 0.0

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(q for q, _ in self.knots)


def search(
    score: Callable[[int], float],
    target: Target,
    knots: tuple[int, ...] = (),
    max_trials: int = 12,
    bracket: tuple[int, int] = (0, FULL),
) -> int:
    """The quality (hundredths) to encode at for `target`, where `score(q)` (`Target.score` of
    a trial at q) rises with q, searched within `bracket` (its ends: the whole scale, or
    qualities known to lie below and above the window).

    The ends are tried first: past them the target cannot be met, and the nearer end is
    returned. `knots` are qualities where the model's rate control changes gear (where `score`
    may bend, or jump just past them); they are bisected first, the point just past the
    bracket's lower knot is tried (a jump there settles the search), then the bracket is
    narrowed by interpolation, with a halving step whenever interpolation narrowed it too
    little. If the trials run out, the best
    one on the safe side is returned: the largest file that fits a size, the smallest that
    reaches a PSNR.
    """
    low, high = target.window
    size = target.kind == "size"  # a size must not be passed; a PSNR must be reached
    tried: dict[int, float] = {}

    def at(q: int) -> float:
        if q not in tried:
            tried[q] = score(q)
        return tried[q]

    lo, hi = bracket
    if size and at(hi) <= high or not size and at(lo) >= low:
        return hi if size else lo  # even the best fits, or even the least reaches
    if size and at(lo) > high or not size and at(hi) < low:
        return lo if size else hi  # nothing fits, or nothing reaches: the nearest miss
    for q in (lo, hi):
        if low <= at(q) <= high:
            return q
    inner = [k for k in sorted(set(knots)) if lo < k < hi]
    while inner:  # bisect the knots; lo stays below the window and hi above it
        k = inner[len(inner) // 2]
        s = at(k)
        if low <= s <= high:
            return k
        if s < low:
            lo, inner = k, [j for j in inner if j > k]
        else:
            hi, inner = k, [j for j in inner if j < k]
    if lo in knots and hi - lo > 1:  # where rate jumps, it jumps just past a knot: look there
        s = at(lo + 1)
        if s > high:
            return lo if size else lo + 1
        if s >= low:
            return lo + 1
        lo += 1
    halve = False
    while hi - lo > 1 and len(tried) < max_trials:
        s_lo, s_hi = tried[lo], tried[hi]
        if halve or not s_lo < s_hi:
            q = (lo + hi) // 2
        else:
            q = round(lo + ((low + high) / 2 - s_lo) / (s_hi - s_lo) * (hi - lo))
        q, width = min(max(q, lo + 1), hi - 1), hi - lo
        s = at(q)
        if low <= s <= high:
            return q
        lo, hi = (q, hi) if s < low else (lo, q)
        halve = not halve and hi - lo > width / 2
    if size:
        return max((q for q, s in tried.items() if s <= high), key=lambda q: (tried[q], q))
    return min((q for q, s in tried.items() if s >= low), key=lambda q: (tried[q], -q))


def corrected_search(
    score: Callable[[int], float],
    estimate: Callable[[int], float],
    target: Target,
    knots: tuple[int, ...] = (),
    real_trials: int = 4,
) -> int:
    """`search` run on `estimate(q)`, a cheap stand-in for `score(q)`, and corrected by real
    trials: the estimate is shifted by what it missed at each real trial (interpolated between
    them, held beyond), and searched again. Where that does not settle within `real_trials`,
    `search` runs on the real score inside the bracket the real trials made. Returns what
    `search(score, ...)` would accept."""
    low, high = target.window
    size = target.kind == "size"
    real: dict[int, float] = {}
    guess = functools.cache(estimate)

    def at(q: int) -> float:
        if q not in real:
            real[q] = score(q)
        return real[q]

    def corrected(q: int) -> float:
        if not real:
            return guess(q)
        qs = sorted(real)
        return guess(q) + float(np.interp(q, qs, [real[k] - guess(k) for k in qs]))

    def bracket() -> tuple[int, int]:
        """The qualities the real trials put below and above the window (the ends if none)."""
        lo = max((q for q, s in real.items() if s < low), default=0)
        hi = min((q for q, s in real.items() if s > high), default=FULL)
        return (lo, hi) if lo < hi else (0, FULL)

    for _ in range(real_trials):
        q = search(corrected, target, knots, bracket=bracket())
        if q in real:  # the corrected estimate points where a real trial already missed
            break
        s = at(q)
        if low <= s <= high:
            return q
        # At an end on the far side of the window, no quality can meet the target: as search.
        if q == FULL and (s <= high if size else s < low):
            return q
        if q == 0 and (s > high if size else s >= low):
            return q
    return search(at, target, knots, bracket=bracket())
