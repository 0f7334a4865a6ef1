"""Run a local network on overlapping tiles, so large images fit in bounded memory; pad an
image to the stride a network needs.

The full-resolution layers (the encoder's first downsampling convolutions, the decoder's last
transposed convolutions) hold the largest activations: 64 channels at half resolution is 1 GB
of float32 for a 4096x4096 photo. They are local, so each output pixel depends only on a small
window of input; running them tile by tile with a halo at least that window's reach gives the
same numbers as one pass over the whole image, while only one tile's activations exist at a
time. `tile_grid` gives the tiles and the windows they read, for callers that read their input
and write their output themselves (from 8-bit pixels, into 8-bit pixels); `tiled` runs a
network over a tensor that is there whole.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Tile:
    """A tile's own rows and columns `[y0, y1) x [x0, x1)` and the window it reads,
    `[top, bottom) x [left, right)`: the tile and up to a halo around it."""

    y0: int
    y1: int
    x0: int
    x1: int
    top: int
    bottom: int
    left: int
    right: int

    def crop(self, part: torch.Tensor, scale: float = 1) -> torch.Tensor:
        """The tile's own output from `part`, a network's output for the window, at `scale`
        output pixels per input pixel."""
        sy, sx = round((self.y0 - self.top) * scale), round((self.x0 - self.left) * scale)
        oh, ow = round((self.y1 - self.y0) * scale), round((self.x1 - self.x0) * scale)
        return part[..., sy : sy + oh, sx : sx + ow]


def tile_grid(
    height: int, width: int, tile: int, halo: int, region: tuple[int, int, int, int] | None = None
) -> Iterator[Tile]:
    """`tile` x `tile` tiles of a height x width map in raster order, each read with `halo`
    extra rows and columns on every side that has them. `region` (y0, y1, x0, x1): tile only
    that part of the map, reading halos from the rest."""
    ry0, ry1, rx0, rx1 = region or (0, height, 0, width)
    for y0 in range(ry0, ry1, tile):
        for x0 in range(rx0, rx1, tile):
            y1, x1 = min(y0 + tile, ry1), min(x0 + tile, rx1)
            yield Tile(y0, y1, x0, x1, max(0, y0 - halo), min(height, y1 + halo),
                       max(0, x0 - halo), min(width, x1 + halo))  # fmt: skip


def tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    scale: float,
    tile: int,
    halo: int,
) -> torch.Tensor:
    """`fn(x)` computed on `tile` x `tile` tiles of x (B, C, H, W), each read with `halo` extra
    rows and columns on every side that has them.

    `scale` is output pixels per input pixel (1/8 for a stride-8 encoder, 8 for a decoder);
    `tile * scale` and `halo * scale` must be whole numbers, and `halo` must cover how far an
    output pixel's receptive field reaches beyond its own input pixels.
    """
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return fn(x)
    out = None
    for t in tile_grid(height, width, tile, halo):
        part = t.crop(fn(x[..., t.top : t.bottom, t.left : t.right]), scale)
        if out is None:
            size = (round(height * scale), round(width * scale))
            out = part.new_empty(*part.shape[:-2], *size)
        oy, ox = round(t.y0 * scale), round(t.x0 * scale)
        out[..., oy : oy + part.shape[-2], ox : ox + part.shape[-1]] = part
    return out


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the bottom and right to a multiple of `stride`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x
