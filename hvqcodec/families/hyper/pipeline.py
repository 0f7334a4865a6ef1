"""The hvq-v3 family's pipeline, one image through it and back (`hvqcodec.codec.Codec` runs it
through `HyperModel`, this family's `hvqcodec.family.FamilyModel`):

    pixels --analysis--> fine latent --hyper analysis--> top, middle VQ codes
           --integer priors (wavefront)--> top and middle streams
    top, middle --integer hyper synthesis--> mean, scale index per fine symbol
    round(latent * gain - mean * gain) --Gaussian tables--> fine stream

and back: the two VQ streams, the same integer network, the fine symbols, then
`(symbols + mean * gain) * inverse gain` through the synthesis. With the VQ streams alone (a
preview) the synthesis gets the predicted mean.
"""

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hvqcodec import entropy_models
from hvqcodec.container import HvqFile
from hvqcodec.errors import HvqError
from hvqcodec.families.hyper import refinement, tiles
from hvqcodec.families.hyper.context import anchors as context_anchors
from hvqcodec.families.hyper.integer import (
    ONE,
    IntegerHyperSynthesis,
    integer_log_gain,
    scale_indices,
)
from hvqcodec.families.hyper.integer_context import ExactGains, IntegerChannelContext
from hvqcodec.families.hyper.model import (
    STREAMS,
    STRIDES,
    VQ_LEVELS,
    VQHyperprior,
)
from hvqcodec.family import (
    Coded,
    DecodedStreams,
    Trial,
    check_stream_count,
)
from hvqcodec.integer_prior import IntegerLevelPrior
from hvqcodec.layers.tiling import Tile
from hvqcodec.metrics import psnr
from hvqcodec.range_coder import TableDecoder, TableEncoder, WavefrontDecoder, WavefrontEncoder
from hvqcodec.rate_control import DEFAULT_QUALITY, FULL


@dataclass
class HyperModel:
    """A loaded hvq-v3.x model (`hvqcodec.family.FamilyModel`): the float networks and the
    integer-exact twins that coding runs."""

    name: str
    model_id: int
    net: VQHyperprior
    priors: dict[str, IntegerLevelPrior]  # the VQ levels' priors, integer-exact
    hyper: IntegerHyperSynthesis  # mean and log-scale of the fine symbols, integer-exact
    tables: np.ndarray  # (T, width) int64 probability tables of the fine symbols
    radii: np.ndarray  # (T,) each table spans -radius..radius
    default_quality: float = DEFAULT_QUALITY  # quality 0..100 spans the rate points evenly
    context: IntegerChannelContext | None = None  # the fine level's context model, if any

    def __post_init__(self) -> None:
        # The synthesis at a quality (`VQHyperprior.synthesis_at`), kept: folding a rate
        # modulation copies three upsamplings, an encoder runs the synthesis several times per
        # quality, and a loaded model's weights never change.
        self.synthesis_at = functools.lru_cache(maxsize=8)(self.net.synthesis_at)
        # Each table's cost in bits of each value it spans (`Encoder.estimate`): inf outside.
        with np.errstate(divide="ignore"):
            self.symbol_bits = np.log2(self.tables.sum(1, keepdims=True) / self.tables)

    @property
    def qualities(self) -> tuple[float, ...]:
        """Its trained rate points on the 0-100 scale."""
        n = len(self.net.config.lambdas)
        return tuple(round(100 * i / max(1, n - 1), 2) for i in range(n))

    @property
    def max_streams(self) -> int:
        return len(STREAMS)

    def encoder(self, rgb: np.ndarray, effort: int = 0) -> "Encoder":
        return Encoder(self, rgb, refinement.iterations(effort))

    def decode_streams(
        self, width: int, height: int, hundredths: int, streams: list[bytes]
    ) -> DecodedStreams:
        return decode_streams(self, width, height, hundredths, streams)

    def check_header(self, header: HvqFile) -> None:
        if header.version == 1:
            raise HvqError(
                "unsupported file: format version 1 with an hvq-v3 model (only the "
                "development releases wrote these; re-encode from the original)"
            )
        check_stream_count(header, self.max_streams)

    def float_bits(self, codes: dict[str, np.ndarray], hundredths: int) -> dict[str, float]:
        return float_bits(self, codes, hundredths)

    def codebook_sizes(self) -> dict[str, int]:
        return {k: q.num_codes for k, q in self.net.quantizers.items()}


def code_shapes(height: int, width: int) -> dict[str, tuple[int, int]]:
    hp, wp = tiles.padded(height, width)
    return {name: (hp // STRIDES[name], wp // STRIDES[name]) for name in STREAMS}


def symbols_to_latent(
    symbols: np.ndarray, mean_g: torch.Tensor, inverse: torch.Tensor
) -> torch.Tensor:
    """Fine symbols back to the latent the synthesis takes."""
    return (torch.from_numpy(symbols).double() + mean_g) * inverse


# (channels, table indices, integer mean, positions or None) -> the symbols of those channels
Step = Callable[[slice, np.ndarray, torch.Tensor, np.ndarray | None], np.ndarray]


class FineLevel:
    """The fine symbols' model at one quality: the integer mean and log-scale of every symbol
    (int32, whole) with the quality's gains. Everything derived from them is elementwise, so
    it is computed in pieces (channels, or a tile's window), never as whole float64 maps."""

    CHANNELS = 16  # channels at a time where whole maps are derived

    def __init__(
        self, model: HyperModel, mean: torch.Tensor, log_scale: torch.Tensor, hundredths: int
    ) -> None:
        self.mean, self.log_scale = mean, log_scale
        # Integer log-gains per channel (what the tables and the exact latent take), and the
        # gain and inverse gain as floats (what the centring and hvq-v3.1's latent take).
        self.log_gain = integer_log_gain(model.net.gains.log_gains, hundredths)
        log_inverse = integer_log_gain(model.net.gains.log_inverses, hundredths)
        self.gain = torch.exp(self.log_gain / ONE)[:, None, None]
        self.inverse = torch.exp(log_inverse / ONE)[:, None, None]
        self.context = model.context
        if self.context is not None:
            self.exact = ExactGains(self.log_gain, log_inverse)

    def _pieces(self, channels: int):
        for c in range(0, channels, self.CHANNELS):
            yield slice(c, c + self.CHANNELS)

    def mean_g(self, c: slice = slice(None), window: tuple = ()) -> torch.Tensor:
        """Mean times gain, float64, of channels `c` in a (rows, columns) window."""
        return self.mean[(c, *window)].double() / ONE * self.gain[c]

    def indices(self) -> np.ndarray:
        """The table index of every symbol, uint8 (C, H, W)."""
        out = np.empty(self.mean.shape, dtype=np.uint8)
        for c in self._pieces(len(self.mean)):
            out[c] = scale_indices(self.log_scale[c], self.log_gain[c]).numpy()
        return out

    def symbols(self, y: torch.Tensor, mean: torch.Tensor, part: slice = slice(None)):
        """The symbols (int32) of the latent y of channels `part`, centred on their integer
        `mean`, rounded, before any clamping to a table."""
        out = np.empty(mean.shape, dtype=np.int32)
        gain = self.gain[part]
        for c in self._pieces(len(mean)):
            out[c] = torch.round(y[c].double() * gain[c] - mean[c].double() / ONE * gain[c])
        return out

    def code(self, step: Step) -> Callable[[Tile], torch.Tensor]:
        """The fine symbols coded or decoded, group by group where the model has a context
        (each group's tables from the exact decoded latent of those before it, `integer_context`;
        with a checkerboard, its anchors first, then the other positions under tables that also
        take the anchors' exact decoded latent), else in one group: `step(part, indices, mean,
        where)` gives the symbols (int32) of channels `part`, whose tables are `indices` and
        integer mean `mean`, as the coder sees them, at the positions `where` (a boolean
        (H, W) mask; None: all). Returns the synthesis' latent, as `latent` does."""
        if self.context is None:
            return self.latent(step(slice(None), self.indices(), self.mean, None))
        exact = torch.empty(self.mean.shape, dtype=torch.int32)
        anchors = context_anchors(*self.mean.shape[1:])[0, 0].bool()
        where = anchors.numpy() if self.context.checkerboard else None
        for k, part in enumerate(self.context.slices):
            before = exact[: part.start] if k else None
            mu, ls = self.mean[part], self.log_scale[part]
            mean, log_scale = self.context.refine(k, before, mu, ls)
            symbols = self._step(step, part, mean, log_scale, where)
            if where is not None:  # the other positions, given the anchors decoded
                seen = self.exact.latent(symbols, mean, part, exact[part]) * anchors
                other, log_scale = self.context.refine(k, before, mu, ls, seen)
                symbols = self._step(step, part, other, log_scale, ~where)
                mean = torch.where(anchors, mean, other)
            self.exact.latent(symbols, mean, part, exact[part])
        return lambda t: (exact[:, t.top : t.bottom, t.left : t.right].double() / ONE).float()

    def _step(self, step: Step, part: slice, mean, log_scale, where) -> torch.Tensor:
        indices = scale_indices(log_scale, self.log_gain[part]).numpy().astype(np.uint8)
        return torch.from_numpy(step(part, indices, mean, where))

    def latent(self, symbols: np.ndarray | None) -> Callable[[Tile], torch.Tensor]:
        """A tile's window of the synthesis' latent (`tiles.synthesis`): from the symbols, or
        with none (a preview) the predicted mean."""

        def window(t: Tile) -> torch.Tensor:
            rows, cols = slice(t.top, t.bottom), slice(t.left, t.right)
            if symbols is None:
                return (self.mean[:, rows, cols].double() / ONE).float()
            mean_g = self.mean_g(slice(None), (rows, cols))
            return symbols_to_latent(symbols[:, rows, cols], mean_g, self.inverse).float()

        return window


# Latent positions decoded around `Encoder.estimate`'s crop: past 2, its PSNR no longer
# moves (kodim04, every quality), though the synthesis reaches further.
HALO = 2


def _middle(n: int) -> slice:
    """The middle half of n positions (all of them below 4)."""
    return slice(n // 4, n // 4 + n // 2) if n >= 4 else slice(0, n)


def _code_level(model: HyperModel, name: str, codes: dict, shape, coder) -> np.ndarray:
    upper = [codes[k] for k in VQ_LEVELS[: VQ_LEVELS.index(name)]]
    return model.priors[name].code(upper, shape, coder)


class Encoder:
    """One image's analysis, kept so that several qualities can be tried (`streams`): the
    analysis, the VQ levels and the integer hyper synthesis run once, and a trial only scales,
    rounds and codes the fine symbols, after refining them when `iterations` is above 0
    (`hvqcodec.refinement`)."""

    knots: tuple[int, ...] = ()  # the gain interpolation is smooth all along the scale

    @torch.no_grad()
    def __init__(self, model: HyperModel, rgb: np.ndarray, iterations: int = 0) -> None:
        self.model, net = model, model.net
        self.rgb, self.iterations = rgb, iterations
        self.height, self.width = rgb.shape[:2]
        self.shapes = code_shapes(self.height, self.width)
        self.y = tiles.analysis(net, rgb)
        feats = net.hyper_analysis.features(self.y[None])
        codes, quantized, self.vq = {}, {}, {}
        for name in VQ_LEVELS:
            quantizer = net.quantizers[name]
            z = net.hyper_analysis.latent(name, feats, quantized)
            coder = WavefrontEncoder(quantizer.map_distances(z).numpy())
            t = time.perf_counter()
            codes[name] = _code_level(model, name, codes, self.shapes[name], coder)
            self.vq[name] = Coded(coder.finish(), codes[name], coder, time.perf_counter() - t)
            quantized[name] = quantizer.lookup(torch.from_numpy(codes[name])[None])
        del feats, quantized
        t = time.perf_counter()
        self.mean, self.log_scale = tiles.hyper_synthesis(
            model.hyper, codes["top"], codes["middle"]
        )
        self.hyper_seconds = time.perf_counter() - t

    @property
    def image(self) -> torch.Tensor:
        """The image as (3, H, W) float in [0, 1], for refinement (whole: efforts above 0
        are not memory-bounded)."""
        return torch.tensor(self.rgb).permute(2, 0, 1).float() / 255

    @torch.no_grad()
    def streams(self, hundredths: int) -> Trial:
        """The coded streams of one quality, in file order."""
        level = FineLevel(self.model, self.mean, self.log_scale, hundredths)
        if self.iterations and self.model.context is not None:
            # Refined with the context's corrections left out, then coded under them: kept
            # where that lowers the loss of the real file.
            refined = self._refined_latent(level, hundredths)
            trials = [self._trial(level, hundredths, y) for y in (self.y, refined)]

            def loss(trial: Trial) -> float:
                return self._loss(hundredths, trial.latent, 8 * len(trial.coded["fine"].stream))

            return min(trials, key=loss)
        return self._trial(level, hundredths, self.y)

    def _trial(self, level: FineLevel, hundredths: int, y: torch.Tensor) -> Trial:
        """A quality's streams from the latent y, with the synthesis' latent of what they code
        (`FineLevel.code`)."""
        coder = TableEncoder(self.model.tables, self.model.radii)
        codes = np.zeros(self.mean.shape, dtype=np.int32)

        def step(part: slice, indices: np.ndarray, mean: torch.Tensor, where) -> np.ndarray:
            symbols = level.symbols(y[part], mean, part)
            if self.iterations and self.model.context is None:  # one group: every channel
                symbols = self._refined(symbols, level, hundredths, indices)
            if where is None:
                codes[part] = coder.encode(symbols, indices)
            else:
                codes[part][:, where] = coder.encode(symbols[:, where], indices[:, where])
            return codes[part]

        t = time.perf_counter()
        latent = level.code(step)
        fine = Coded(coder.finish(), codes, coder, time.perf_counter() - t + self.hyper_seconds)
        return Trial(hundredths, {**self.vq, "fine": fine}, latent)

    @torch.no_grad()
    def estimate(self, hundredths: int, kind: str) -> float:
        """A cheap stand-in for a trial (`rate_control.corrected_search`), from the analysis'
        symbols under the hyper synthesis' tables alone: no context passes, no refinement, no
        range coding. `kind` "size": the streams' bytes, the fine symbols at their ideal cost;
        "psnr": the PSNR of the middle quarter of the image decoded from those symbols."""
        if kind == "size":
            level, bits = FineLevel(self.model, self.mean, self.log_scale, hundredths), 0.0
            indices = level.indices()
            for c in level._pieces(len(self.mean)):
                radii = self.model.radii[indices[c]]
                symbols = np.clip(level.symbols(self.y[c], self.mean[c], c), -radii, radii)
                bits += float(self.model.symbol_bits[indices[c], symbols + radii].sum())
            return sum(len(c.stream) for c in self.vq.values()) + bits / 8
        # Decoded with a halo of latent around it, so that its edges are those of the image.
        stride, halo = STRIDES["fine"], HALO
        inner = [_middle(-(-n // stride)) for n in (self.height, self.width)]
        rows, cols = (slice(max(0, s.start - halo), min(len_, s.stop + halo))
                      for s, len_ in zip(inner, self.mean.shape[1:]))  # fmt: skip
        crop = (slice(None), rows, cols)
        level = FineLevel(self.model, self.mean[crop], self.log_scale[crop], hundredths)
        symbols = level.symbols(self.y[crop], level.mean)
        top, left = rows.start * stride, cols.start * stride
        height = min(self.height, rows.stop * stride) - top
        width = min(self.width, cols.stop * stride) - left
        pixels = synthesis(self.model, level.latent(symbols), tuple(level.mean.shape[1:]),
                           height, width, hundredths)  # fmt: skip
        (y0, y1), (x0, x1) = ((s.start * stride, min(n, s.stop * stride))
                              for s, n in zip(inner, (self.height, self.width)))  # fmt: skip
        return psnr(self.rgb[y0:y1, x0:x1], pixels[y0 - top : y1 - top, x0 - left : x1 - left])

    def _lambda(self, hundredths: int) -> float:
        net = self.model.net
        return refinement.lambda_at(net.lambdas, hundredths * (len(net.lambdas) - 1) / FULL)

    def _loss(self, hundredths: int, latent: Callable[[Tile], torch.Tensor], bits: float):
        """The trained loss: lambda * MSE of the pixels of `latent` + `bits` per pixel."""
        pixels = self._pixels(latent, hundredths).astype(np.float64) / 255
        mse = float(np.mean((pixels - self.rgb / 255) ** 2))
        return self._lambda(hundredths) * mse + bits / (self.height * self.width)

    def _refine(self, level: FineLevel, hundredths: int, indices: np.ndarray):
        """The centred symbols refined (`refinement`), unrounded, under the tables `indices`;
        and those tables' log-scales."""
        model = self.model
        log_scale = refinement.table_log_scales(torch.from_numpy(indices))
        mean_g = level.mean_g()
        centred = self.y.double() * level.gain - mean_g
        lam, reach = self._lambda(hundredths), model.net.config.synthesis_reach
        with torch.enable_grad():
            refined = refinement.refine(model.synthesis_at(hundredths), self.image, centred, mean_g,
                                        level.inverse, log_scale, lam, self.iterations,
                                        reach=reach)  # fmt: skip
        return refined, log_scale

    def _refined_latent(self, level: FineLevel, hundredths: int) -> torch.Tensor:
        """The latent whose symbols are the refined ones, under the hyper synthesis' means."""
        refined, _ = self._refine(level, hundredths, level.indices())
        return (refined.double() + level.mean_g()) / level.gain

    def _refined(self, symbols: np.ndarray, level: FineLevel, hundredths: int, indices):
        """The refined symbols, or the analysis' own `symbols` where refinement did not lower
        the loss it minimises, measured on the decoded pixels of the rounded symbols."""
        refined, log_scale = self._refine(level, hundredths, indices)
        radii = self.model.radii[indices]  # the coder clamps to these; judge what it codes
        refined = np.clip(torch.round(refined).numpy(), -radii, radii).astype(np.int32)
        symbols = np.clip(symbols, -radii, radii)

        def loss(s: np.ndarray) -> float:
            bits = float(entropy_models.bits(torch.from_numpy(s), log_scale).sum())
            return self._loss(hundredths, level.latent(s), bits)

        return min((refined, symbols), key=loss)

    def _pixels(self, latent: Callable[[Tile], torch.Tensor], hundredths: int) -> np.ndarray:
        return synthesis(self.model, latent, self.shapes["fine"], self.height, self.width,
                         hundredths)  # fmt: skip

    @torch.no_grad()
    def reconstruct(self, trial: Trial) -> np.ndarray:
        return self._pixels(trial.latent, trial.hundredths)  # every trial of `streams` has it


@torch.no_grad()
def decode_streams(
    model: HyperModel, width: int, height: int, hundredths: int, streams: list[bytes]
) -> DecodedStreams:
    """The streams of a file (two: a preview)."""
    shapes = code_shapes(height, width)
    codes, coders = {}, {}
    t = time.perf_counter()
    for name, stream in zip(VQ_LEVELS, streams):
        coders[name] = WavefrontDecoder(stream)
        codes[name] = _code_level(model, name, codes, shapes[name], coders[name])
    mean, log_scale = tiles.hyper_synthesis(model.hyper, codes["top"], codes["middle"])
    level = FineLevel(model, mean, log_scale, hundredths)
    latent = level.latent(None)
    if len(streams) > len(VQ_LEVELS):
        coders["fine"] = coder = TableDecoder(streams[2], model.tables, model.radii)
        codes["fine"] = symbols = np.zeros(mean.shape, dtype=np.int32)

        def step(part: slice, indices: np.ndarray, _mean, where) -> np.ndarray:
            if where is None:
                symbols[part] = coder.decode(indices)
            else:
                symbols[part][:, where] = coder.decode(indices[:, where])
            return symbols[part]

        latent = level.code(step)
    in_priors = time.perf_counter() - t
    pixels = synthesis(model, latent, shapes["fine"], height, width, hundredths)
    return DecodedStreams(pixels, codes, coders, in_priors)


def synthesis(
    model: HyperModel,
    latent: Callable[[Tile], torch.Tensor],
    shape: tuple[int, int],
    height: int,
    width: int,
    hundredths: int,
) -> np.ndarray:
    """The pixels of a fine latent (`tiles.synthesis`) through the synthesis at quality
    `hundredths`."""
    net = model.net
    return tiles.synthesis(model.synthesis_at(hundredths), net.config.synthesis_reach, latent,
                           shape, height, width)  # fmt: skip


@torch.no_grad()
def float_bits(
    model: HyperModel, codes: dict[str, np.ndarray], hundredths: int
) -> dict[str, float]:
    """What a file's codes would cost under the float model as trained (not what the coder
    sees): the measure of what integer-exact coding costs."""
    net = model.net
    maps = {k: torch.from_numpy(codes[k])[None] for k in VQ_LEVELS}
    bits = {k: float(b) for k, b in net.prior_bits(maps).items()}
    top, middle = (net.quantizers[k].lookup(maps[k]) for k in VQ_LEVELS)
    mean, log_scale = net.hyper_synthesis(top, middle)
    coded = model.hyper(codes["top"], codes["middle"])
    level = FineLevel(model, *(c.to(torch.int32) for c in coded), hundredths)  # the coder's
    symbols = torch.from_numpy(codes["fine"])
    if net.context is not None:
        bits["fine"] = _context_bits(net, level, symbols, mean, log_scale)
        return bits
    # The coded value (symbol plus the integer mean), centred on the float mean instead.
    centred = symbols + (coded[0] / ONE - mean[0].double()) * level.gain
    log_scale = log_scale[0].double() + (level.log_gain / ONE)[:, None, None]
    bits["fine"] = float(entropy_models.bits(centred, log_scale).sum())
    return bits


def _context_bits(net, level: FineLevel, symbols: torch.Tensor, mean, log_scale) -> float:
    """The fine symbols' cost under the float context model: each group's coded values (the
    exact decoded latent) centred on the float model's mean for that group, which it refines
    from the same decoded latent of the groups before (and of its anchors)."""
    latent = level.code(lambda part, indices, m, where: symbols[part].numpy())
    h, w = symbols.shape[1:]
    decoded = latent(Tile(0, h, 0, w, 0, h, 0, w)).double()
    bits, before = 0.0, []
    for k, part in enumerate(net.context.slices()):
        group = decoded[None, part]
        m, s = net.context.group(k, torch.cat(before, 1).float() if k else None,
                                 mean[:, part], log_scale[:, part],
                                 lambda _, group=group: group.float())  # fmt: skip
        centred = decoded[part] / level.inverse[part] - m[0].double() * level.gain[part]
        s = s[0].double() + (level.log_gain[part] / ONE)[:, None, None]
        bits += float(entropy_models.bits(centred, s).sum())
        before.append(group)
    return bits
