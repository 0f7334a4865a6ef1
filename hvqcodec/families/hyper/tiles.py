"""The hvq-v3 family's networks run tile by tile, so that memory follows the tile, not the photo.

Only the 8-bit image and the stride-16 maps (the fine latent, the integer means, log-scales and
symbols, the table indices) exist whole; every full-resolution and stride-8 activation exists
one tile at a time (`hvqcodec.layers.tiling`). A 48-megapixel photo's stride-8 map of 128
channels alone is 384 MB of float32, and the float image 576 MB.

- `analysis`: 8-bit pixels to the fine latent. The head (stride 2 to 8) is local and tiles with
  a halo, its first two layers in sub-tiles of each tile. The CBAM block after it is not
  local: its channel attention pools the whole stride-8 map.
  So the tail runs twice over the stored stride-8 map: once to pool the attention's
  statistics, once to apply them. The mean is pooled as an exact integer sum (of values
  rounded to 2**-24), which any tiling adds up to the same total, so tiles give the numbers of
  one pass, and the result does not depend on the tile size.
- `hyper_synthesis`: the integer hyper synthesis in tiles; integer arithmetic is exact, so
  tiles agree with one pass trivially.
- `synthesis`: a latent, built tile by tile by the caller, to 8-bit pixels; its last two
  upsamplings in sub-tiles of each tile's stride-4 map.

The tiles themselves are a fixed grid (`TILE_PIXELS`), never sized by free memory, so a file's
pixels do not depend on the machine.
"""

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from hvqcodec.families.hyper.integer import IntegerHyperSynthesis
from hvqcodec.families.hyper.model import PAD_STRIDE, VQHyperprior
from hvqcodec.family import to_pixels
from hvqcodec.layers import ResBlock
from hvqcodec.layers.tiling import Tile, tile_grid

TILE_PIXELS = 1024  # a tile's side in pixels: 64 fine-latent positions
# The layers between pixels and stride 4 hold the largest activations (a 1024-pixel tile's
# stride-2 map of 128 channels is 140 MB): they run on sub-tiles of each tile.
SUBTILE = 128  # stride-4 positions: 512 pixels
SUM_BITS = 24  # the attention's mean adds up its values rounded to 2**-SUM_BITS, exactly
HEAD_HALO = 2  # pixels of halo per unit of the head's stride: four 5x5 stride-2 layers reach 30
FIRST_HALO = 8  # pixels: the first two reach 6
TAIL_HALO = 16  # stride-8 positions: the block (2), its spatial attention (3), blocks (2 each)


def padded(height: int, width: int) -> tuple[int, int]:
    return -(-height // PAD_STRIDE) * PAD_STRIDE, -(-width // PAD_STRIDE) * PAD_STRIDE


def _window(rgb: np.ndarray, t: Tile) -> torch.Tensor:
    """A tile's window of the image replicate-padded to `padded`, as (1, 3, h, w) in [0, 1]."""
    height, width = rgb.shape[:2]
    rows = np.minimum(np.arange(t.top, t.bottom), height - 1)
    cols = np.minimum(np.arange(t.left, t.right), width - 1)
    window = rgb.take(rows, axis=0).take(cols, axis=1)
    return torch.from_numpy(window).permute(2, 0, 1)[None].contiguous().float() / 255


def analysis(net: VQHyperprior, rgb: np.ndarray, tile: int | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 -> the fine latent (latent, H'/16, W'/16) float32 of the image
    replicate-padded to a multiple of PAD_STRIDE."""
    tile = tile or TILE_PIXELS
    layers = list(net.analysis)
    cut = next((i for i, m in enumerate(layers) if isinstance(m, ResBlock)), len(layers))
    # The first two downsamplings (pixels to stride 4) hold the largest activations: they run
    # on sub-tiles of each tile's window.
    first, rest = nn.Sequential(*layers[:4]), nn.Sequential(*layers[4:cut])
    stride = 8 if cut < len(layers) else 16
    height, width = padded(*rgb.shape[:2])
    out = None
    for t in tile_grid(height, width, tile, HEAD_HALO * stride):
        h4 = None
        window = (t.top, t.bottom, t.left, t.right)
        for u in tile_grid(height, width, 4 * SUBTILE, FIRST_HALO, window):
            part = u.crop(first(_window(rgb, u) * 2 - 1), 1 / 4)
            if h4 is None:
                h4 = part.new_empty(*part.shape[:2], (t.bottom - t.top) // 4,
                                    (t.right - t.left) // 4)  # fmt: skip
            y0, x0 = (u.y0 - t.top) // 4, (u.x0 - t.left) // 4
            h4[..., y0 : y0 + part.shape[-2], x0 : x0 + part.shape[-1]] = part
        part = t.crop(rest(h4), 1 / stride)
        if out is None:
            out = part.new_empty(*part.shape[:2], height // stride, width // stride)
        out[..., t.y0 // stride : t.y1 // stride, t.x0 // stride : t.x1 // stride] = part
    if cut < len(layers):
        out = _tail(layers[cut], nn.Sequential(*layers[cut + 1 :]), out, tile // 8)
    return out[0]


def _tail(block: ResBlock, rest: nn.Module, x: torch.Tensor, tile: int) -> torch.Tensor:
    """The CBAM block and what follows it, on the stride-8 map x (1, C, h, w), in two passes."""
    channel = block.attention.channel
    total = torch.zeros(x.shape[1], dtype=torch.int64)
    peak = torch.full((x.shape[1],), -torch.inf)
    for t in tile_grid(*x.shape[-2:], tile, 2):  # the block's two 3x3 convolutions
        body = t.crop(block.body(x[..., t.top : t.bottom, t.left : t.right]))[0]
        total += torch.round(body.double() * 2**SUM_BITS).long().sum((1, 2))
        peak = torch.maximum(peak, body.amax((1, 2)))
    mean = (total.double() / 2**SUM_BITS / (x.shape[-2] * x.shape[-1])).float()
    weights = torch.sigmoid(
        channel.mlp(mean[None, :, None, None]) + channel.mlp(peak[None, :, None, None])
    )
    out = None
    for t in tile_grid(*x.shape[-2:], tile, TAIL_HALO):
        window = x[..., t.top : t.bottom, t.left : t.right]
        part = t.crop(rest(window + block.attention.spatial(block.body(window) * weights)), 1 / 2)
        if out is None:
            out = part.new_empty(*part.shape[:2], x.shape[-2] // 2, x.shape[-1] // 2)
        out[..., t.y0 // 2 : t.y1 // 2, t.x0 // 2 : t.x1 // 2] = part
    return out


# The integer hyper synthesis reaches 13 stride-16 positions: 4 top-level ones are enough.
HYPER_HALO = 4


def hyper_synthesis(
    hyper: IntegerHyperSynthesis, top: np.ndarray, middle: np.ndarray, tile: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Code maps (h, w) and (2h, 2w) -> integer mean and log-scale, each (latent, 4h, 4w)
    int32 at scale 2**ACT_BITS (they are clamped to 2**24)."""
    # Twice the pixels of the other tiles: the halo is 16 of a tile's 128 positions a side.
    tile = 2 * (tile or TILE_PIXELS) // 64
    mean = log_scale = None
    for t in tile_grid(*top.shape, tile, HYPER_HALO):
        window = middle[2 * t.top : 2 * t.bottom, 2 * t.left : 2 * t.right]
        parts = hyper(top[t.top : t.bottom, t.left : t.right], window)
        if mean is None:
            shape = (parts[0].shape[0], 4 * top.shape[0], 4 * top.shape[1])
            mean, log_scale = (torch.empty(shape, dtype=torch.int32) for _ in range(2))
        for store, part in zip((mean, log_scale), parts):
            part = t.crop(part, 4)
            store[:, 4 * t.y0 : 4 * t.y0 + part.shape[1], 4 * t.x0 : 4 * t.x0 + part.shape[2]] = (
                part
            )
    return mean, log_scale


# The synthesis' last two upsamplings (stride 4 to 1) read `TAIL_REACH` stride-4 positions
# around their sub-tile.
TAIL_REACH = 2


def synthesis(
    synthesis: nn.Sequential,
    reach: int,
    latent: Callable[[Tile], torch.Tensor],
    shape: tuple[int, int],
    height: int,
    width: int,
) -> np.ndarray:
    """The (height, width, 3) uint8 image of a fine latent of `shape` positions, of which
    `latent(window)` gives a tile's window, (latent, h, w) float32, through `synthesis` (at
    a file's quality: `HyperModel.synthesis_at`), which reaches `reach` stride-16 positions."""
    layers = list(synthesis)
    head, tail = nn.Sequential(*layers[:-3]), nn.Sequential(*layers[-3:])
    out = np.empty((height, width, 3), dtype=np.uint8)
    for t in tile_grid(*shape, TILE_PIXELS // 16, reach):
        if 16 * t.y0 >= height or 16 * t.x0 >= width:
            continue  # padding alone
        h4 = head(latent(t)[None])  # the window at stride 4, exact over the tile and around it
        own = (4 * (t.y0 - t.top), 4 * (t.y1 - t.top), 4 * (t.x0 - t.left), 4 * (t.x1 - t.left))
        for u in tile_grid(*h4.shape[-2:], SUBTILE, TAIL_REACH, own):
            y0, x0 = 16 * t.top + 4 * u.y0, 16 * t.left + 4 * u.x0
            if y0 >= height or x0 >= width:
                continue
            part = u.crop(tail(h4[..., u.top : u.bottom, u.left : u.right]), 4)[0]
            h, w = min(part.shape[1], height - y0), min(part.shape[2], width - x0)
            out[y0 : y0 + h, x0 : x0 + w] = to_pixels((part[:, :h, :w] + 1) / 2)
    return out
