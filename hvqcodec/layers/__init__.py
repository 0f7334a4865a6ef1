"""Building blocks shared by the autoencoder and the priors, one technique per file."""

from hvqcodec.layers.blocks import ResBlock
from hvqcodec.layers.cbam import CBAM
from hvqcodec.layers.vector_quantize import VectorQuantizer

__all__ = ["CBAM", "ResBlock", "VectorQuantizer"]
