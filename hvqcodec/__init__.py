"""hvqcodec: a learned lossy image codec (hierarchical VQ-VAE + autoregressive priors).

    import hvqcodec
    data = hvqcodec.encode("photo.jpg")     # bytes of a .hvq file
    image = hvqcodec.decode(data)           # PIL.Image: RGB, RGBA, L or LA, as the source

`hvqcodec.Codec` keeps a model loaded for repeated use. Every bad input raises `HvqError`.
Importing hvqcodec registers the .hvq format with Pillow: `Image.open("x.hvq")` works.
"""

from hvqcodec import pillow_plugin
from hvqcodec.errors import HvqError

pillow_plugin.register()

__version__ = "0.3.0"
__all__ = ["Codec", "HvqError", "__version__", "decode", "encode"]


def __getattr__(name: str):
    """`Codec`, `encode` and `decode` come from `hvqcodec.codec`, imported (with torch) when
    first asked for, so that header-only work (`Image.open(...).size`, `hvqcodec info`) never
    pays for torch (PEP 562)."""
    if name in ("Codec", "decode", "encode"):
        from hvqcodec import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'hvqcodec' has no attribute {name!r}")
