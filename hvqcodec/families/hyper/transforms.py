"""The learned transforms of the hvq-v3 family: pixels <-> fine latent, fine latent <-> VQ levels.

- `analysis` / `synthesis`: four stride-2 stages between pixels and the fine latent at
  stride 16, after Balle et al., "Variational Image Compression with a Scale Hyperprior",
  ICLR 2018 (5x5 convolutions, GDN). The activation is a choice: GDN, the simplified GDN1, or
  ReLU (`hvqcodec.layers.gdn`); CBAM attention can sit in the encoder at stride 8.
- `HyperAnalysis`: fine latent -> the VQ latents at strides 64 (top) and 32 (middle); the
  middle one sees the quantized top, as the levels of VQ-VAE-2 do.
- `HyperSynthesis`: quantized top and middle -> mean and log-scale of every fine symbol.
  It is built from the layers the integer-exact networks run (3x3 and 1x1 convolutions,
  pixel shuffles, ReLU), because its outputs are what the range coder's tables come from.
"""

import torch
from torch import nn

from hvqcodec.layers import ResBlock
from hvqcodec.layers.gdn import GDN
from hvqcodec.layers.subpixel import subpixel_conv

ACTIVATIONS = ("gdn", "gdn1", "relu")
UPSAMPLERS = ("deconv", "subpixel")


def _act(kind: str, channels: int, *, inverse: bool = False) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind not in ACTIVATIONS:
        raise ValueError(f"activation {kind!r}; known: {ACTIVATIONS}")
    return GDN(channels, inverse=inverse, simplified=kind == "gdn1")


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _up(cin: int, cout: int, kind: str) -> nn.Module:
    if kind == "deconv":
        return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)
    if kind == "subpixel":
        return subpixel_conv(cin, cout)
    raise ValueError(f"upsampler {kind!r}; known: {UPSAMPLERS}")


def identity_blocks(channels: int, count: int) -> list[nn.Module]:
    """Residual blocks that start as the identity (the last convolution of each zero), so that
    adding them to a trained transform leaves its function unchanged until training moves
    them: capacity at stride 8, where a 3x3 convolution of 128 channels costs 2.3 kMAC a pixel."""
    blocks = [ResBlock(channels) for _ in range(count)]
    for block in blocks:
        nn.init.zeros_(block.body[3].weight)
        nn.init.zeros_(block.body[3].bias)
    return blocks


def analysis(
    channels: int, latent: int, activation: str, attention: bool, blocks: int = 0
) -> nn.Sequential:
    """(B, 3, H, W) in [-1, 1] -> (B, latent, H/16, W/16); `blocks` residual blocks at stride
    8, after the attention."""
    n = channels
    layers = [_down(3, n), _act(activation, n), _down(n, n), _act(activation, n)]
    layers += [_down(n, n), _act(activation, n)]
    if attention:
        layers.append(ResBlock(n, attention=True))
    layers += identity_blocks(n, blocks)
    layers.append(_down(n, latent))
    return nn.Sequential(*layers)


def synthesis(
    channels: int, latent: int, activation: str, upsample: str, blocks: int = 0
) -> nn.Sequential:
    """(B, latent, h, w) -> (B, 3, 16h, 16w), in [-1, 1] before clamping; `blocks` residual
    blocks at stride 8."""
    n = channels
    layers = [_up(latent, n, upsample), _act(activation, n, inverse=True)]
    layers += identity_blocks(n, blocks)
    for _ in range(2):
        layers += [_up(n, n, upsample), _act(activation, n, inverse=True)]
    layers.append(_up(n, 3, upsample))
    return nn.Sequential(*layers)


class HyperAnalysis(nn.Module):
    def __init__(self, latent: int, channels: int, code_dim: int) -> None:
        super().__init__()
        n, d = channels, code_dim
        self.to32 = nn.Sequential(
            nn.Conv2d(latent, n, 3, padding=1), nn.ReLU(inplace=True), _down(n, n)
        )
        self.to64 = nn.Sequential(nn.ReLU(), _down(n, n))
        self.pre_top = nn.Conv2d(n, d, 1)
        self.top_up = subpixel_conv(d, d)
        self.pre_middle = nn.Sequential(
            nn.Conv2d(n + d, n, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(n, d, 1)
        )

    def features(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        h32 = self.to32(y)
        return {"middle": h32, "top": self.to64(h32)}

    def latent(self, name: str, feats: dict, quantized: dict) -> torch.Tensor:
        """VQ latent of level `name`, given the quantized coarser level."""
        if name == "top":
            return self.pre_top(feats["top"])
        return self.pre_middle(torch.cat([feats["middle"], self.top_up(quantized["top"])], 1))


class HyperSynthesis(nn.Module):
    def __init__(self, latent: int, channels: int, code_dim: int) -> None:
        super().__init__()
        n, d = channels, code_dim
        self.latent = latent
        self.top_up = subpixel_conv(d, n)
        self.at32 = nn.Sequential(nn.Conv2d(n + d, n, 3, padding=1), ResBlock(n), nn.ReLU())
        self.to16 = subpixel_conv(n, n)
        self.at16 = nn.Sequential(
            nn.ReLU(), nn.Conv2d(n, n, 3, padding=1), nn.ReLU(), nn.Conv2d(n, 2 * latent, 1)
        )

    def forward(self, top: torch.Tensor, middle: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Quantized VQ vectors -> (mean, log-scale) of the fine latent, each (B, latent, h, w)."""
        h = self.at32(torch.cat([self.top_up(top), middle], 1))
        out = self.at16(self.to16(h))
        return out[:, : self.latent], out[:, self.latent :]
