"""Run a local network on overlapping tiles, so large images fit in bounded memory; pad an
image to the stride a network needs.

The full-resolution layers (the encoder's first downsampling convolutions, the decoder's last
transposed convolutions) hold the largest activations: 64 channels at half resolution is 1 GB
of float32 for a 4096x4096 photo. They are local, so each output pixel depends only on a small
window of input; running them tile by tile with a halo at least that window's reach gives the
same numbers as one pass over the whole image, while only one tile's activations exist at a
time. Layers with a global view (CBAM's channel attention pools over the whole map) stay
untiled: they run at stride 8 and above, where maps are small.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F


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
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            ly, lx = max(0, y0 - halo), max(0, x0 - halo)
            part = fn(x[..., ly : min(height, y1 + halo), lx : min(width, x1 + halo)])
            if out is None:
                size = (round(height * scale), round(width * scale))
                out = part.new_empty(*part.shape[:-2], *size)
            oy, ox = round(y0 * scale), round(x0 * scale)
            oh, ow = round((y1 - y0) * scale), round((x1 - x0) * scale)
            sy, sx = round((y0 - ly) * scale), round((x0 - lx) * scale)
            out[..., oy : oy + oh, ox : ox + ow] = part[..., sy : sy + oh, sx : sx + ow]
    return out


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the bottom and right to a multiple of `stride`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x
