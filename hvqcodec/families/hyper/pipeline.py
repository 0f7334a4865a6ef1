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

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hvqcodec import entropy_models
from hvqcodec.container import HvqFile
from hvqcodec.errors import HvqError
from hvqcodec.families.hyper import refinement
from hvqcodec.families.hyper.integer import (
    ONE,
    IntegerHyperSynthesis,
    integer_log_gain,
    scale_indices,
)
from hvqcodec.families.hyper.model import (
    PAD_STRIDE,
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
    to_pixels,
)
from hvqcodec.integer_prior import IntegerLevelPrior
from hvqcodec.layers import ResBlock
from hvqcodec.layers.tiling import pad_to_stride, tiled
from hvqcodec.range_coder import TableDecoder, TableEncoder, WavefrontDecoder, WavefrontEncoder
from hvqcodec.rate_control import DEFAULT_QUALITY, FULL

# Images larger than this on a side run their local layers in tiles (`hvqcodec.layers.tiling`).
TILE_PIXELS = 1024


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
    hp, wp = -(-height // PAD_STRIDE) * PAD_STRIDE, -(-width // PAD_STRIDE) * PAD_STRIDE
    return {name: (hp // STRIDES[name], wp // STRIDES[name]) for name in STREAMS}


def _analysis(net, x: torch.Tensor) -> torch.Tensor:
    """The analysis, its local layers (all before a CBAM block) in tiles."""
    layers = list(net.analysis)
    cut = next((i for i, m in enumerate(layers) if isinstance(m, ResBlock)), len(layers))
    head, tail = torch.nn.Sequential(*layers[:cut]), torch.nn.Sequential(*layers[cut:])
    # Three (or four) 5x5 stride-2 convolutions reach 14 (30) pixels past their own block.
    scale, halo = (1 / 8, 16) if cut < len(layers) else (1 / 16, 32)
    return tail(tiled(lambda t: head(t * 2 - 1), x, scale=scale, tile=TILE_PIXELS, halo=halo))


def _synthesis(net, y: torch.Tensor) -> torch.Tensor:
    halo = net.config.synthesis_reach
    out = tiled(net.synthesis, y, scale=16, tile=TILE_PIXELS // 16, halo=halo)
    return (out + 1) / 2


def _gains(model: HyperModel, hundredths: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer log-gain, gain and inverse gain per channel at quality `hundredths`."""
    log_gain = integer_log_gain(model.net.gains.log_gains, hundredths)
    inverse = integer_log_gain(model.net.gains.log_inverses, hundredths)
    return log_gain, torch.exp(log_gain / ONE), torch.exp(inverse / ONE)


def fine_model(model: HyperModel, mean: torch.Tensor, log_scale: torch.Tensor, hundredths: int):
    """From the integer hyper synthesis' mean and log-scale: gain and inverse gain (C, 1, 1),
    mean times gain (C, H, W) and table indices at quality `hundredths`. Encoder, trial
    reconstruction and decoder all go through here and `symbols_to_latent`, so they agree bit
    for bit."""
    log_gain, gain, inverse = _gains(model, hundredths)
    indices = scale_indices(log_scale, log_gain).numpy()
    gain, inverse = gain[:, None, None], inverse[:, None, None]
    return gain, inverse, mean / ONE * gain, indices


def symbols_to_latent(
    symbols: np.ndarray, mean_g: torch.Tensor, inverse: torch.Tensor
) -> torch.Tensor:
    """Fine symbols back to the latent the synthesis takes."""
    return (torch.from_numpy(symbols).double() + mean_g) * inverse


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
        self.height, self.width = rgb.shape[:2]
        self.shapes = code_shapes(self.height, self.width)
        x = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255
        self.image, self.iterations = x[0], iterations
        self.y = _analysis(net, pad_to_stride(x, PAD_STRIDE))[0].double()
        feats = net.hyper_analysis.features(self.y[None].float())
        codes, quantized, self.vq = {}, {}, {}
        for name in VQ_LEVELS:
            quantizer = net.quantizers[name]
            z = net.hyper_analysis.latent(name, feats, quantized)
            coder = WavefrontEncoder(quantizer.map_distances(z).numpy())
            t = time.perf_counter()
            codes[name] = _code_level(model, name, codes, self.shapes[name], coder)
            self.vq[name] = Coded(coder.finish(), codes[name], coder, time.perf_counter() - t)
            quantized[name] = quantizer.lookup(torch.from_numpy(codes[name])[None])
        t = time.perf_counter()
        self.mean, self.log_scale = model.hyper(codes["top"], codes["middle"])
        self.hyper_seconds = time.perf_counter() - t

    @torch.no_grad()
    def streams(self, hundredths: int) -> Trial:
        """The coded streams of one quality, in file order."""
        model = self.model
        gain, inverse, mean_g, indices = fine_model(model, self.mean, self.log_scale, hundredths)
        centred = self.y * gain - mean_g
        symbols = torch.round(centred).long().numpy()
        if self.iterations:
            symbols = self._refined(symbols, centred, hundredths, mean_g, inverse, indices)
        coder = TableEncoder(self.model.tables, self.model.radii)
        t = time.perf_counter()
        codes = coder.encode(symbols, indices)
        fine = Coded(coder.finish(), codes, coder, time.perf_counter() - t + self.hyper_seconds)
        return Trial(hundredths, {**self.vq, "fine": fine})

    def _refined(self, symbols: np.ndarray, centred, hundredths: int, mean_g, inverse, indices):
        """The refined symbols (`refinement`), or the analysis' own `symbols` where
        refinement did not lower the loss it minimises, measured on the rounded symbols."""
        net = self.model.net
        lam = refinement.lambda_at(net.lambdas, hundredths * (len(net.lambdas) - 1) / FULL)
        log_scale = refinement.table_log_scales(torch.from_numpy(indices))
        with torch.enable_grad():
            refined = refinement.refine(net.synthesis, self.image, centred, mean_g, inverse,
                                        log_scale, lam, self.iterations,
                                        reach=net.config.synthesis_reach)  # fmt: skip
        radii = self.model.radii[indices]  # the coder clamps to these; judge what it codes
        refined = np.clip(torch.round(refined).long().numpy(), -radii, radii)
        symbols = np.clip(symbols, -radii, radii)

        def loss(s: np.ndarray) -> float:
            pixels = _synthesis(self.model.net, symbols_to_latent(s, mean_g, inverse).float()[None])
            pixels = pixels[0, :, : self.height, : self.width].clamp(0, 1)
            bits = entropy_models.bits(torch.from_numpy(s), log_scale).sum()
            return lam * float(F.mse_loss(pixels, self.image)) + float(bits) / pixels[0].numel()

        return min((refined, symbols), key=loss)

    @torch.no_grad()
    def reconstruct(self, trial: Trial) -> np.ndarray:
        _, inverse, mean_g, _ = fine_model(self.model, self.mean, self.log_scale, trial.hundredths)
        fine = trial.coded["fine"].codes
        return synthesize(
            self.model, symbols_to_latent(fine, mean_g, inverse), self.height, self.width
        )


def synthesize(model: HyperModel, y: torch.Tensor, height: int, width: int) -> np.ndarray:
    return to_pixels(_synthesis(model.net, y.float()[None])[0, :, :height, :width])


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
    mean, log_scale = model.hyper(codes["top"], codes["middle"])
    _, inverse, mean_g, indices = fine_model(model, mean, log_scale, hundredths)
    if len(streams) > len(VQ_LEVELS):
        coders["fine"] = TableDecoder(streams[2], model.tables, model.radii)
        codes["fine"] = coders["fine"].decode(indices)
        y = symbols_to_latent(codes["fine"], mean_g, inverse)
    else:
        y = mean / ONE
    in_priors = time.perf_counter() - t
    return DecodedStreams(synthesize(model, y, height, width), codes, coders, in_priors)


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
    log_gain, gain, _ = _gains(model, hundredths)  # the gains the coder used
    gain = gain[:, None, None]
    # The coded value (symbol plus the integer mean), centred on the float mean instead.
    coded_mean = model.hyper(codes["top"], codes["middle"])[0] / ONE
    centred = torch.from_numpy(codes["fine"]) + (coded_mean - mean[0].double()) * gain
    log_scale = log_scale[0].double() + (log_gain / ONE)[:, None, None]
    bits["fine"] = float(entropy_models.bits(centred, log_scale).sum())
    return bits
