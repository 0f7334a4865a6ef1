"""Pixels in and out: whatever the user hands over becomes an (H, W, 3) uint8 array."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hvqcodec.errors import HvqError

ImageInput = Image.Image | np.ndarray | str | Path
ORIENTATION = 0x0112  # EXIF tag


def open_image(path: str | Path) -> Image.Image:
    """Open any image Pillow reads, fully loaded; unreadable input raises HvqError."""
    path = Path(path)
    if path.is_dir():
        raise HvqError(f"{path}: is a directory, not an image")
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except FileNotFoundError:
        raise HvqError(f"{path}: no such file") from None
    except PermissionError:
        raise HvqError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise HvqError(f"{path}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or damaged image data
        raise HvqError(f"{path}: cannot decode image ({e})") from None


@dataclass
class Pixels:
    rgb: np.ndarray  # (H, W, 3) uint8
    notes: list[str] = field(default_factory=list)  # what was converted, for the user
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation reset to 1 once applied to the pixels


def to_rgb(im: Image.Image) -> Pixels:
    """Apply the EXIF orientation and convert to 8-bit RGB, keeping ICC profile and EXIF."""
    notes = []
    exif = _exif(im)
    orientation = exif.get(ORIENTATION) if exif is not None else None
    if orientation not in (None, 1):
        try:
            im = ImageOps.exif_transpose(im)
            notes.append(f"applied EXIF orientation {orientation}")
        except Exception:  # a damaged EXIF block should not stop compression
            notes.append("EXIF orientation unreadable, ignored")
        exif[ORIENTATION] = 1
    meta = {
        "icc_profile": im.info.get("icc_profile") or None,
        "exif": exif.tobytes() if exif else None,
    }
    if im.mode == "RGB":
        return Pixels(np.asarray(im), notes, **meta)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        scale = 255 / 65535 if a.max(initial=0) > 255 else 1.0
        gray = np.clip(np.round(a * scale), 0, 255).astype(np.uint8)
        notes.append(f"converted {im.mode} (16-bit grayscale) to 8-bit RGB")
        return Pixels(np.repeat(gray[..., None], 3, axis=2), notes, **meta)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"converted {im.mode} to RGB (transparency composited on white)")
        return Pixels(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")), notes, **meta)
    notes.append(f"converted {im.mode} to RGB")
    return Pixels(np.asarray(im.convert("RGB")), notes, **meta)


def _exif(im: Image.Image) -> Image.Exif | None:
    try:
        exif = im.getexif()
    except Exception:  # unreadable EXIF is dropped, not fatal
        return None
    return exif if len(exif) else None


def load_rgb(image: ImageInput) -> Pixels:
    """A PIL image, an (H, W, 3) uint8 array or a path -> RGB pixels and metadata."""
    if isinstance(image, (str, Path)):
        image = open_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise HvqError(
                f"array input must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}"
            )
        if 0 in image.shape:
            raise HvqError(f"empty image: shape {image.shape}")
        return Pixels(np.ascontiguousarray(image))
    raise HvqError(f"cannot encode a {type(image).__name__}: pass a PIL image, array or path")
