"""The hvq-v3 model: VQ levels as side information for a scalar fine level.

    pixels --analysis--> fine latent y (stride 16)
           --hyper analysis--> VQ codes: top (stride 64), middle (stride 32)
    top, middle --PixelCNN priors (`hvqcodec.priors`)--> their own probabilities
    top, middle --hyper synthesis--> mean and scale of every fine symbol
    y * gain(rate index) - mean * gain --round--> fine symbols (Gaussian tables)
    (symbols + mean * gain) * inverse gain --synthesis (optionally modulated per rate)--> pixels

The two VQ levels play the part of a hyperprior (Balle et al. 2018), coded by the same
wavefront PixelCNN priors as every VQ level of hvqcodec; the fine level is coded with the
discretized Gaussians of `hvqcodec.entropy_models`. Rate is set by gain vectors
(`hvqcodec.layers.gain`): one set of weights covers every quality, and the VQ levels do not
depend on it, so a file's first two streams are the same at every quality and decode alone as
a preview (the synthesis of the predicted mean).

Training minimises lambda(r) * 255^2 * MSE + bits per pixel, with a random rate index r (one of
the trained rate points, `lambdas`) per sample; the priors' cross-entropy of the VQ codes is
part of the rate.
"""

import math
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from hvqcodec import entropy_models
from hvqcodec.families.hyper.context import ChannelContext
from hvqcodec.families.hyper.transforms import HyperAnalysis, HyperSynthesis, analysis, synthesis
from hvqcodec.layers import VectorQuantizer
from hvqcodec.layers.gain import GainUnits
from hvqcodec.layers.modulation import RateModulation
from hvqcodec.priors import LevelPrior, PriorConfig
from hvqcodec.rate_control import FULL

VQ_LEVELS = ("top", "middle")
STREAMS = VQ_LEVELS + ("fine",)
STRIDES = {"top": 64, "middle": 32, "fine": 16}  # pixels per position of each stream
PAD_STRIDE = STRIDES["top"]  # image sides are padded to a multiple of the coarsest stride
# How far, in fine-latent positions, a fine symbol's pixels reach, and so the halo of tiles of
# the synthesis: four 5x5 stride-2 layers reach under 2 (`synthesis_reach` adds its blocks').
SYNTHESIS_REACH = 4


def _lambdas(low: float = 1e-4, high: float = 0.3, n: int = 6) -> tuple[float, ...]:
    return tuple(low * (high / low) ** (i / (n - 1)) for i in range(n))


@dataclass
class VQHyperpriorConfig:
    channels: int = 128  # N of the analysis and synthesis transforms
    latent: int = 192  # M, channels of the fine latent
    hyper_channels: int = 192
    code_dim: int = 32
    codebook_sizes: tuple[int, int] = (512, 256)  # top, middle
    activation: str = "relu"  # relu, gdn or gdn1 (`.transforms`); relu won at equal CPU
    upsample: str = "deconv"  # deconv or subpixel
    attention: bool = True  # CBAM in the encoder at stride 8
    # The rate-distortion weight of each trained rate point, lowest rate first (CompressAI's
    # convention: lambda * 255^2 * MSE + bpp). One gain vector per entry.
    lambdas: tuple[float, ...] = field(default_factory=_lambdas)
    prior: dict = field(default_factory=lambda: PriorConfig().to_dict())
    # Capacity at stride 8 (`transforms.identity_blocks`) and a context model for the fine
    # level (`context.ChannelContext`: group sizes summing to `latent`; none when empty). The
    # defaults are hvq-v3's, whose files predate these settings.
    analysis_blocks: int = 0
    synthesis_blocks: int = 0
    context_groups: tuple[int, ...] = ()
    context_channels: int = 128
    context_checkerboard: bool = False  # each group in two spatial passes (`context`)
    # A scale and shift per rate point on each of the synthesis' first three upsamplings
    # (`hvqcodec.layers.modulation`), so that it decodes each rate's latent its own way.
    synthesis_modulation: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VQHyperpriorConfig":
        d = dict(d)
        for key in ("codebook_sizes", "lambdas", "context_groups"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @property
    def modulated_layers(self) -> tuple[int, ...]:
        """Indices in the synthesis of the upsamplings a rate modulation follows: the first
        three (the last one gives the pixels), the residual blocks after the first."""
        if not self.synthesis_modulation:
            return ()
        return (0, 2 + self.synthesis_blocks, 4 + self.synthesis_blocks)

    @property
    def synthesis_reach(self) -> int:
        """SYNTHESIS_REACH, plus a position for each residual block: its two 3x3 convolutions
        at stride 8 reach two pixels there."""
        return SYNTHESIS_REACH + self.synthesis_blocks


def _decoded(y: torch.Tensor, mean: torch.Tensor, gain: torch.Tensor, inverse: torch.Tensor):
    """The latent y as decoded at a mean and gain: rounded with a straight-through gradient."""
    return (entropy_models.round_through(y * gain - mean * gain) + mean * gain) * inverse


@dataclass
class RDOutput:
    reconstruction: torch.Tensor  # (B, 3, H, W), in [0, 1] before clamping
    bits: dict[str, torch.Tensor]  # per stream, per sample (B,)
    commit_loss: torch.Tensor
    indices: dict[str, torch.Tensor]
    perplexity: dict[str, torch.Tensor]


class VQHyperprior(nn.Module):
    def __init__(self, config: VQHyperpriorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or VQHyperpriorConfig()
        self.analysis = analysis(
            cfg.channels, cfg.latent, cfg.activation, cfg.attention, cfg.analysis_blocks
        )
        self.synthesis = synthesis(
            cfg.channels, cfg.latent, cfg.activation, cfg.upsample, cfg.synthesis_blocks
        )
        self.hyper_analysis = HyperAnalysis(cfg.latent, cfg.hyper_channels, cfg.code_dim)
        self.hyper_synthesis = HyperSynthesis(cfg.latent, cfg.hyper_channels, cfg.code_dim)
        self.quantizers = nn.ModuleDict(
            {n: VectorQuantizer(k, cfg.code_dim) for n, k in zip(VQ_LEVELS, cfg.codebook_sizes)}
        )
        prior_cfg = PriorConfig.from_dict(cfg.prior)
        top, middle = cfg.codebook_sizes
        self.priors = nn.ModuleDict(
            {
                "top": LevelPrior(top, (), prior_cfg),
                "middle": LevelPrior(middle, ((top, 2),), prior_cfg),
            }
        )
        self.gains = GainUnits(len(cfg.lambdas), cfg.latent)
        self.modulation = nn.ModuleList(
            RateModulation(len(cfg.lambdas), cfg.channels) for _ in cfg.modulated_layers
        )
        self.register_buffer("lambdas", torch.tensor(cfg.lambdas), persistent=False)
        self.context = None
        if cfg.context_groups:
            if sum(cfg.context_groups) != cfg.latent:
                raise ValueError(f"context groups {cfg.context_groups} do not sum to {cfg.latent}")
            self.context = ChannelContext(
                cfg.context_groups, cfg.context_channels, checkerboard=cfg.context_checkerboard
            )

    def side_information(self, y: torch.Tensor) -> tuple[dict, dict, torch.Tensor]:
        """Fine latent -> (VQ quantizer outputs, quantized vectors, commitment loss). The
        nearest-code search runs in float32 whatever the autocast."""
        feats = self.hyper_analysis.features(y)
        outs, quantized = {}, {}
        for name in VQ_LEVELS:
            z = self.hyper_analysis.latent(name, feats, quantized)
            with torch.autocast(z.device.type, enabled=False):
                outs[name] = self.quantizers[name](z.float())
            quantized[name] = outs[name].quantized
        commit = sum(o.commit_loss for o in outs.values())
        return outs, quantized, commit

    def prior_bits(self, indices: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cross-entropy of the VQ codes under their priors, in bits per sample (float32)."""
        out, upper = {}, []
        with torch.autocast(indices["top"].device.type, enabled=False):
            for name in VQ_LEVELS:
                prior = self.priors[name]
                logits = prior.logits(indices[name], upper)
                ce = F.cross_entropy(logits.permute(0, 3, 1, 2), indices[name], reduction="none")
                out[name] = ce.flatten(1).sum(1) / math.log(2)
                upper = upper + [indices[name]]
        return out

    def forward(self, x: torch.Tensor, rate_index: torch.Tensor) -> RDOutput:
        """Images in [0, 1], sides a multiple of 64; `rate_index` (B,) in 0..len(lambdas)-1,
        fractional allowed. In training the rate is the noisy proxy; in eval mode the rounded
        symbols' exact cost under the float model."""
        y = self.analysis(x * 2 - 1)
        outs, quantized, commit = self.side_information(y)
        indices = {n: o.indices for n, o in outs.items()}
        bits = self.prior_bits(indices)
        mean, log_scale = self.hyper_synthesis(quantized["top"], quantized["middle"])
        with torch.autocast(x.device.type, enabled=False):
            y_hat, bits["fine"] = self.fine_level(y.float(), mean.float(), log_scale.float(),
                                                  rate_index)  # fmt: skip
        reconstruction = (self.synthesize(y_hat, rate_index) + 1) / 2
        perplexity = {n: o.perplexity for n, o in outs.items()}
        return RDOutput(reconstruction, bits, commit, indices, perplexity)

    def fine_level(
        self, y: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, rate_index
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fine latent as decoded (rounded with a straight-through gradient) and its bits
        per sample, from the hyper synthesis' mean and log-scale; with a context model, group
        by group, each group's mean and log-scale refined from the groups decoded before it
        (and, with a checkerboard, from its own decoded anchors)."""
        gain, log_gain = self.gains.gain(rate_index), self.gains.log_gain(rate_index)
        inverse = self.gains.inverse(rate_index)
        context = self.context
        parts = [slice(None)] if context is None else context.slices()
        decoded, bits = [], 0
        for k, part in enumerate(parts):
            yk, m, s = y[:, part], mean[:, part], log_scale[:, part]
            g, inv = gain[:, part], inverse[:, part]
            if context is not None:
                before = torch.cat(decoded, 1) if k else None
                m, s = context.group(k, before, m, s, partial(_decoded, yk, gain=g, inverse=inv))
            centred = yk * g - m * g
            rate_in = entropy_models.noisy(centred) if self.training else torch.round(centred)
            bits = bits + entropy_models.bits(rate_in, s + log_gain[:, part]).flatten(1).sum(1)
            decoded.append(_decoded(yk, m, g, inv))
        return torch.cat(decoded, 1), bits

    def ceiling(self, x: torch.Tensor, rate_index: torch.Tensor) -> torch.Tensor:
        """The reconstruction at `rate_index` with the fine latent left unrounded: the transforms'
        own distortion floor, which no rate spent on the fine symbols can pass."""
        y = self.analysis(x * 2 - 1)
        scale = self.gains.gain(rate_index) * self.gains.inverse(rate_index)
        return (self.synthesize(y * scale, rate_index) + 1) / 2

    def preview(self, x: torch.Tensor, rate_index: torch.Tensor) -> torch.Tensor:
        """What the VQ levels alone decode to: the synthesis of the predicted mean (at the
        rate of the file's quality, where the synthesis is modulated)."""
        _, quantized, _ = self.side_information(self.analysis(x * 2 - 1))
        mean, _ = self.hyper_synthesis(quantized["top"], quantized["middle"])
        return (self.synthesize(mean, rate_index) + 1) / 2

    def synthesize(self, y_hat: torch.Tensor, rate_index: torch.Tensor) -> torch.Tensor:
        """The synthesis of a decoded latent at each sample's rate index (B,): with rate
        modulation, each modulated upsampling's output scaled and shifted as that rate's."""
        if not self.config.synthesis_modulation:
            return self.synthesis(y_hat)
        modulated = dict(zip(self.config.modulated_layers, self.modulation))
        x = y_hat
        for i, layer in enumerate(self.synthesis):
            x = layer(x)
            if i in modulated:
                x = modulated[i](x, rate_index)
        return x

    def synthesis_at(self, hundredths: int, steps: int = FULL) -> nn.Sequential:
        """The synthesis at one quality (`hundredths` of 0..`steps`, spanning the rate points
        evenly), each modulation folded into its upsampling: what a decoder runs. Without
        rate modulation, the synthesis itself."""
        if not self.config.synthesis_modulation:
            return self.synthesis
        layers = list(self.synthesis)
        for i, modulation in zip(self.config.modulated_layers, self.modulation):
            layers[i] = modulation.fold(layers[i], hundredths, steps)
        return nn.Sequential(*layers)
