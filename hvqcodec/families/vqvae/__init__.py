"""The VQ-VAE family (hvq-v1, hvq-v2): hierarchical VQ-VAE levels, after VQ-VAE-2.

model.py     HierarchicalVQVAE: pixels -> top, middle, bottom code maps -> pixels
prior.py     HierarchicalPrior: a wavefront prior per stream
integer.py   IntegerPrior: the prior's integer-exact twin, which the coder runs
pipeline.py  VQVAEModel: one image to streams and back
weights.py   the weights file (hvqcodec-weights/1)
"""

from hvqcodec.families.vqvae.pipeline import VQVAEModel
from hvqcodec.families.vqvae.weights import WEIGHTS_FORMAT, build

__all__ = ["WEIGHTS_FORMAT", "VQVAEModel", "build"]
