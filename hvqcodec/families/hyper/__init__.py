"""The hvq-v3 family: VQ levels as side information for a fine level of integer symbols.

transforms.py  analysis, synthesis, hyper analysis and hyper synthesis
model.py       VQHyperprior: the float model as trained
integer.py     IntegerHyperSynthesis, the fine symbols' tables and gains, integer-exact
pipeline.py    HyperModel: one image to streams and back
tiles.py       its networks tile by tile, in bounded memory
context.py     a context model for the fine level (channel groups)
integer_context.py  its integer twin
refinement.py  encoder effort: the fine symbols refined per image
growth.py      a trained model grown into a larger configuration
weights.py     the weights file (hvqcodec-weights/2)
"""

from hvqcodec.families.hyper.pipeline import HyperModel
from hvqcodec.families.hyper.weights import WEIGHTS_FORMAT, build

__all__ = ["WEIGHTS_FORMAT", "HyperModel", "build"]
