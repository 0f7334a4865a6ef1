"""The alpha plane's coding (`hvqcodec.alpha`): bytes of each candidate on realistic planes.

    python -m benchmarks.alpha --out benchmarks/results/alpha.json

The planes, made here so that the run needs no data: an antialiased logo and a small icon
(shapes and text drawn at 4x and downsampled by area), a soft vignette, a product-style matte
(the robin photo of `hvqcodec/samples` thresholded on its distance from the background colour,
then blurred), a sticker with a hard binary edge, and a noisy alpha (a gradient with Gaussian
noise). For each: an optimized 8-bit greyscale PNG (the baseline), every candidate the encoder
tries at effort 0 and at effort 2 (which adds libwebp's slow method 6), what the ALPH chunk
holds (the smallest), and the seconds the candidates took. No torch; a minute or so.
"""

import argparse
import json
import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from hvqcodec import alpha

SUPERSAMPLE = 4


def _drawn(size: tuple[int, int], draw, antialiased: bool = True) -> np.ndarray:
    """A plane drawn by `draw(ImageDraw, scale)` at 4x and averaged down (antialiased edges),
    or drawn at 1x (binary edges)."""
    scale = SUPERSAMPLE if antialiased else 1
    im = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    draw(ImageDraw.Draw(im), scale)
    return np.asarray(im.resize(size, Image.Resampling.BOX) if antialiased else im)


def _logo(d: ImageDraw.ImageDraw, s: int) -> None:
    d.rounded_rectangle((8 * s, 8 * s, 504 * s, 248 * s), radius=40 * s, fill=255)
    d.ellipse((24 * s, 40 * s, 200 * s, 216 * s), fill=0)
    d.ellipse((56 * s, 72 * s, 168 * s, 184 * s), fill=255)
    font = ImageFont.load_default(size=56 * s)
    d.text((216 * s, 92 * s), "hvqcodec", font=font, fill=0)


def _icon(d: ImageDraw.ImageDraw, s: int) -> None:
    d.ellipse((2 * s, 2 * s, 62 * s, 62 * s), fill=255)
    d.polygon([(20 * s, 16 * s), (48 * s, 32 * s), (20 * s, 48 * s)], fill=0)


def _sticker(d: ImageDraw.ImageDraw, s: int) -> None:
    points = []
    for i in range(10):
        radius = (240 if i % 2 == 0 else 110) * s
        angle = np.pi * i / 5 - np.pi / 2
        points.append((256 * s + radius * np.cos(angle), 256 * s + radius * np.sin(angle)))
    d.polygon(points, fill=255)
    d.ellipse((196 * s, 196 * s, 316 * s, 316 * s), fill=0)


def _vignette(width: int = 768, height: int = 512) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    r = np.hypot((x - width / 2) / (width / 2), (y - height / 2) / (height / 2))
    return np.round(255 * np.clip(1.4 - r, 0, 1) ** 1.5).astype(np.uint8)


def _matte() -> np.ndarray:
    """The robin cut out of its background: far from the border's mean colour is foreground."""
    rgb = np.asarray(Image.open(resources.files("hvqcodec") / "samples" / "robin.png"))
    rgb = rgb.astype(np.float64)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).mean(axis=0)
    mask = Image.fromarray(
        np.where(np.linalg.norm(rgb - border, axis=2) > 60, 255, 0).astype(np.uint8)
    )
    mask = mask.filter(ImageFilter.MedianFilter(9))  # fill specks, as a matting tool would
    return np.asarray(mask.filter(ImageFilter.GaussianBlur(2)))


def _noisy(width: int = 512, height: int = 512) -> np.ndarray:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width)[None, :].repeat(height, axis=0)
    return np.clip(np.round(ramp + rng.normal(0, 12, ramp.shape)), 0, 255).astype(np.uint8)


def planes() -> dict[str, np.ndarray]:
    return {
        "logo": _drawn((512, 256), _logo),
        "icon": _drawn((64, 64), _icon),
        "vignette": _vignette(),
        "matte": _matte(),
        "sticker": _drawn((512, 512), _sticker, antialiased=False),
        "noisy": _noisy(),
    }


def measure(name: str, plane: np.ndarray) -> dict:
    row = {
        "image": name,
        "width": plane.shape[1],
        "height": plane.shape[0],
        "levels": int(np.unique(plane).size),
        "transparent_fraction": round(float((plane < 255).mean()), 3),
    }
    for effort in (0, alpha.METHOD_6_EFFORT):
        t = time.perf_counter()
        tried = alpha.candidates(plane, effort)
        seconds = time.perf_counter() - t
        chunk = alpha.encode(plane, effort)
        assert np.array_equal(alpha.decode(chunk, plane.shape[1], plane.shape[0]), plane)
        row["png_l_bytes"] = len(tried["png"])
        row[f"effort_{effort}"] = {
            "candidates": {k: len(v) for k, v in tried.items()},
            "chunk_bytes": len(chunk),
            "chunk_coding": next(k for k, v in tried.items() if v == chunk),
            "candidates_seconds": round(seconds, 3),
        }
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    rows = [measure(name, plane) for name, plane in planes().items()]
    for r in rows:
        print(json.dumps(r))
    result = {
        "what": "bytes of the alpha plane: optimized 8-bit greyscale PNG, each candidate of "
        "hvqcodec.alpha, and the ALPH chunk (the smallest)",
        "pillow": Image.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
