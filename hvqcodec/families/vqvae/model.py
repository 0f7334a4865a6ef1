"""The hierarchical VQ-VAE: pixels -> three code maps -> pixels.

After Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity Images with VQ-VAE-2",
NeurIPS 2019, with a third level. Strides 8, 16 and 32: a 512x512 image gives code maps of
64x64 (bottom), 32x32 (middle) and 16x16 (top). The middle encoder sees the quantized top map,
the bottom encoder the quantized top and middle maps, so each level only codes what the coarser
ones missed. The decoder brings all three quantized maps back up with transposed convolutions.

For variable rate the bottom level can be a residual VQ of several stages trained with quantizer
dropout (`hvqcodec.layers.residual_quantize`): each stage is one more code map (stream) of the
bottom's size, and any prefix of the streams decodes, down to top and middle alone.
"""

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from hvqcodec.layers import ResBlock, VectorQuantizer
from hvqcodec.layers.residual_quantize import residual_quantize
from hvqcodec.layers.tiling import tiled

# The coarsest level has stride 32: image sides are padded to a multiple of this.
PAD_STRIDE = 32
LEVELS = ("top", "middle", "bottom")
LEVEL_STRIDES = {"top": 32, "middle": 16, "bottom": 8}


def stream_names(bottom_stages: int = 1) -> tuple[str, ...]:
    """Code maps in coding order: top, middle, then the bottom stages (bottom, bottom2, ...)."""
    return LEVELS + tuple(f"bottom{s}" for s in range(2, bottom_stages + 1))


def stream_stride(stream: str) -> int:
    """Pixels per code of a stream: its level's stride (every bottom stage is at stride 8)."""
    return LEVEL_STRIDES["bottom" if stream.startswith("bottom") else stream]


@dataclass
class VQVAEConfig:
    codebook_sizes: tuple[int, int, int] = (512, 256, 128)  # top, middle, bottom
    code_dim: int = 64
    channels: int = 128  # width at strides 8..32
    decoder_channels: tuple[int, int] = (96, 64)  # widths at strides 4 and 2
    res_blocks: int = 1
    bottom_stages: int = 1  # residual VQ stages on the bottom level; 1 is plain VQ
    stage_codebook_size: int = 256  # codes in each bottom stage after the first

    def to_dict(self) -> dict:
        return asdict(self)

    def codebook_size(self, stream: str) -> int:
        """Codes in a stream's codebook (`stream_names` gives the streams)."""
        if stream in LEVELS:
            return self.codebook_sizes[LEVELS.index(stream)]
        return self.stage_codebook_size

    @classmethod
    def from_dict(cls, d: dict) -> "VQVAEConfig":
        d = dict(d)
        d["codebook_sizes"] = tuple(d["codebook_sizes"])
        d["decoder_channels"] = tuple(d["decoder_channels"])
        return cls(**d)


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Conv2d(cin, cout, 4, stride=2, padding=1)


def _up(cin: int, cout: int) -> nn.Module:
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)


def _stage(channels: int, blocks: int) -> nn.Sequential:
    """Residual blocks with CBAM attention, the body of every encoder stage."""
    return nn.Sequential(*[ResBlock(channels, attention=True) for _ in range(blocks)])


# Images larger than this on a side run their full-resolution layers in tiles (see
# `hvqcodec.layers.tiling`); a Kodak image is one tile.
TILE_PIXELS = 1024
# The decoder's last modules (ReLU and transposed convolution, three times) run tiled.
DECODER_TAIL = 6


@dataclass
class VQVAEOutput:
    reconstruction: torch.Tensor
    indices: dict[str, torch.Tensor]
    commit_loss: torch.Tensor
    perplexity: dict[str, torch.Tensor] = field(default_factory=dict)
    usage: dict[str, torch.Tensor] = field(default_factory=dict)


class HierarchicalVQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or VQVAEConfig()
        self.tile_pixels = TILE_PIXELS  # side of the tiles the full-resolution layers run on
        c, d = cfg.channels, cfg.code_dim
        c4, c2 = cfg.decoder_channels
        # Encoder trunk: pixels -> features at strides 8, 16, 32.
        self.enc8 = nn.Sequential(
            _down(3, c2),
            nn.ReLU(inplace=True),
            _down(c2, c4),
            nn.ReLU(inplace=True),
            _down(c4, c),
            _stage(c, cfg.res_blocks),
        )
        self.enc16 = nn.Sequential(_down(c, c), _stage(c, cfg.res_blocks))
        self.enc32 = nn.Sequential(_down(c, c), _stage(c, cfg.res_blocks))
        # Pre-quantization heads; middle and bottom also see the quantized coarser levels.
        self.pre_top = nn.Conv2d(c, d, 1)
        self.top_to16 = _up(d, d)
        self.pre_middle = nn.Sequential(
            nn.Conv2d(c + d, c, 3, padding=1), _stage(c, cfg.res_blocks), nn.Conv2d(c, d, 1)
        )
        self.upper_to8 = _up(2 * d, d)
        self.pre_bottom = nn.Sequential(
            nn.Conv2d(c + d, c, 3, padding=1), _stage(c, cfg.res_blocks), nn.Conv2d(c, d, 1)
        )
        self.streams = stream_names(cfg.bottom_stages)
        self.bottom_streams = self.streams[2:]
        self.quantizers = nn.ModuleDict(
            {n: VectorQuantizer(cfg.codebook_size(n), d) for n in self.streams}
        )
        # Decoder: top -> stride 16, joined with middle -> stride 8, joined with bottom -> pixels.
        self.dec_top = nn.Sequential(nn.Conv2d(d, c, 3, padding=1), ResBlock(c), _up(c, c))
        self.dec_middle = nn.Sequential(nn.Conv2d(c + d, c, 3, padding=1), ResBlock(c), _up(c, c))
        self.dec_bottom = nn.Sequential(
            nn.Conv2d(c + d, c, 3, padding=1),
            *[ResBlock(c) for _ in range(cfg.res_blocks + 1)],
            nn.ReLU(),
            _up(c, c4),
            nn.ReLU(inplace=True),
            _up(c4, c2),
            nn.ReLU(inplace=True),
            _up(c2, 3),
        )

    # The two halves, each usable alone by the codec.
    # The encoder in its steps, so the codec can choose each level's codes (rate-distortion
    # optimised) before the next level's latent is computed from them.
    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images in [0, 1], sides a multiple of 32 -> trunk features of each level."""
        # The three strided convolutions reach 7 input pixels past their own 8x8 block; a halo
        # of 16 covers that and keeps every tile on the stride-8 grid.
        head = self.enc8[:-1]
        h8 = tiled(lambda t: head(t * 2 - 1), x, scale=1 / 8, tile=self.tile_pixels, halo=16)
        h8 = self.enc8[-1](h8)
        h16 = self.enc16(h8)
        return {"bottom": h8, "middle": h16, "top": self.enc32(h16)}

    def latent(
        self, name: str, feats: dict[str, torch.Tensor], quantized: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Pre-quantization latent of level `name`, given the quantized coarser levels."""
        if name == "top":
            return self.pre_top(feats["top"])
        top16 = self.top_to16(quantized["top"])
        if name == "middle":
            return self.pre_middle(torch.cat([feats["middle"], top16], 1))
        upper8 = self.upper_to8(torch.cat([top16, quantized["middle"]], 1))
        return self.pre_bottom(torch.cat([feats["bottom"], upper8], 1))

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images in [0, 1], sides a multiple of 32 -> nearest-code maps {stream: (B, H, W)}."""
        return self._encode(x)[0]

    def decode(self, indices: dict[str, torch.Tensor]) -> torch.Tensor:
        """Code maps -> images in [0, 1] (unclamped). Top and middle are required; the bottom
        sums the stages present, so a prefix of the streams decodes (none: a zero bottom)."""
        q = {name: self.quantizers[name].lookup(indices[name]) for name in LEVELS[:2]}
        b, _, h, w = q["middle"].shape
        q["bottom"] = q["middle"].new_zeros(b, self.config.code_dim, 2 * h, 2 * w)
        for name in self.bottom_streams:
            if name in indices:
                q["bottom"] = q["bottom"] + self.quantizers[name].lookup(indices[name])
        return self._decode(q)

    def _encode(self, x: torch.Tensor, keep: torch.Tensor | None = None):
        """-> (indices, outputs of every stream's quantizer, decoder inputs of the 3 levels,
        commitment loss). `keep`: bottom stages kept per sample (quantizer dropout; None: all)."""
        feats = self.features(x)
        outs, quantized = {}, {}
        for name in LEVELS[:2]:
            outs[name] = self.quantizers[name](self.latent(name, feats, quantized))
            quantized[name] = outs[name].quantized
        stages = [self.quantizers[name] for name in self.bottom_streams]
        z = self.latent("bottom", feats, quantized)
        quantized["bottom"], bottom_outs, bottom_commit = residual_quantize(stages, z, keep)
        commit = outs["top"].commit_loss + outs["middle"].commit_loss + bottom_commit
        outs.update(zip(self.bottom_streams, bottom_outs))
        return {name: o.indices for name, o in outs.items()}, outs, quantized, commit

    def _decode(self, q: dict[str, torch.Tensor]) -> torch.Tensor:
        y = self.dec_top(q["top"])
        y = self.dec_middle(torch.cat([y, q["middle"]], 1))
        y = self.dec_bottom[:-DECODER_TAIL](torch.cat([y, q["bottom"]], 1))
        # Three 4x4 stride-2 transposed convolutions reach under 2 input positions sideways.
        tail, tile = self.dec_bottom[-DECODER_TAIL:], self.tile_pixels // 8
        y = tiled(tail, y, scale=8, tile=tile, halo=2)
        return (y + 1) / 2

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> VQVAEOutput:
        indices, outs, quantized, commit = self._encode(x, keep)
        recon = self._decode(quantized)
        return VQVAEOutput(
            reconstruction=recon,
            indices=indices,
            commit_loss=commit,
            perplexity={name: o.perplexity for name, o in outs.items()},
            usage={name: o.usage for name, o in outs.items()},
        )


def code_shapes(
    height: int, width: int, streams: tuple[str, ...] = LEVELS
) -> dict[str, tuple[int, int]]:
    """Code-map shape of each stream for an image of the given size."""
    hp, wp = -(-height // PAD_STRIDE) * PAD_STRIDE, -(-width // PAD_STRIDE) * PAD_STRIDE
    return {name: (hp // stream_stride(name), wp // stream_stride(name)) for name in streams}
