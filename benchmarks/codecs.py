"""The codecs the RD benchmark compares, each with its settings sweep, behind one interface.

Conventional codecs go through Pillow (JPEG, WebP, AVIF and JPEG 2000 are built in; JPEG XL
comes from the optional pillow-jxl-plugin). Sweeps reach each codec's lowest setting, so every
curve covers hvqcodec's very low rates.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hvqcodec import Codec


@dataclass
class BenchCodec:
    name: str
    settings: list
    encode: Callable[[np.ndarray, object], bytes]
    decode: Callable[[bytes], np.ndarray]
    version: str = ""  # results of another version are stale (hvqcodec: the model id)


def pillow_codec(name: str, fmt: str, settings: list, options: Callable[[object], dict]):
    def encode(rgb: np.ndarray, setting) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, **options(setting))
        return buf.getvalue()

    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    return BenchCodec(name, settings, encode, decode)


def hvq_name(effort: int = 0) -> str:
    return "hvqcodec" if effort == 0 else f"hvqcodec -e {effort}"


def hvq_codec(codec: Codec, effort: int = 0, name: str | None = None) -> BenchCodec:
    """The model's own qualities (knots or trained rate points) and the midpoints between them, at
    an encoder effort (`hvqcodec.families.hyper.refinement`); named as hvqcodec unless `name`."""
    q = codec.qualities
    return BenchCodec(
        name or hvq_name(effort),
        sorted({*q, *((a + b) / 2 for a, b in zip(q, q[1:]))}),
        lambda rgb, q: codec.encode(rgb, quality=q, effort=effort),
        lambda data: np.asarray(codec.decode(data)),
        version=f"{codec.model.model_id:08x}",
    )


def all_codecs(
    codec: Codec,
    *,
    small: bool = False,
    efforts: tuple[int, ...] = (),
    others: tuple[Codec, ...] = (),
) -> dict[str, BenchCodec]:
    """Every available codec, hvqcodec also at each of `efforts` above 0, and `others` (earlier
    models, at effort 0, under their own names); `small` keeps two settings each (for the smoke
    test)."""
    codecs = [
        hvq_codec(codec),
        *(hvq_codec(codec, e) for e in efforts if e),
        *(hvq_codec(other, name=other.name) for other in others),
        pillow_codec(
            "JPEG",
            "JPEG",
            [2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75, 85, 95],
            lambda q: {"quality": q, "optimize": True},
        ),
        pillow_codec(
            "WebP",
            "WEBP",
            [0, 2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100],
            lambda q: {"quality": q, "method": 6},
        ),
        pillow_codec(
            "AVIF",
            "AVIF",
            [0, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90],
            lambda q: {"quality": q, "speed": 6},
        ),
        # Compression ratios: 24 / ratio bpp, from 0.03 to 2.4.
        pillow_codec(
            "JPEG 2000",
            "JPEG2000",
            [800, 500, 350, 250, 180, 120, 80, 50, 30, 20, 10],
            lambda r: {"quality_mode": "rates", "quality_layers": [r], "irreversible": True},
        ),
    ]
    try:
        import pillow_jxl  # noqa: F401  (registers JPEG XL with Pillow)

        codecs.append(
            pillow_codec(
                "JPEG XL",
                "JXL",
                [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
                lambda q: {"quality": q, "effort": 7},
            )
        )
    except ImportError:
        pass
    if small:
        for c in codecs:
            c.settings = list(dict.fromkeys([c.settings[0], c.settings[-1]]))
    return {c.name: c for c in codecs}
