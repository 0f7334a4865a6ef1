"""Sub-pixel convolution: a convolution to r^2 times the channels, then a pixel shuffle.

Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR 2016. Upsampling without the checkerboard overlap of a
transposed convolution, at about its cost; it is also a plain convolution, which is what the
integer-exact networks know how to run.
"""

from torch import nn


def subpixel_conv(cin: int, cout: int, factor: int = 2, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout * factor**2, kernel, padding=kernel // 2), nn.PixelShuffle(factor)
    )
