"""Pixels in and out: whatever the user hands over becomes an (H, W, 3) uint8 array. Also the
folders of photos that training, evaluation and the benchmarks read, through the same loader."""

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hvqcodec.container import PNG_XMP_KEY
from hvqcodec.errors import HvqError
from hvqcodec.layers.tiling import pad_to_stride

ImageInput = Image.Image | np.ndarray | str | Path
ORIENTATION = 0x0112  # EXIF tag
# What counts as a photo where a folder stands for its images.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")


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
    except Image.DecompressionBombError as e:
        raise HvqError(f"{path}: {e}") from e
    except Exception as e:  # damaged data surfaces from Pillow's decoders in many types
        raise HvqError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e


@dataclass
class Pixels:
    rgb: np.ndarray  # (H, W, 3) uint8
    notes: list[str] = field(default_factory=list)  # what was converted, for the user
    icc_profile: bytes | None = None  # kept only when it describes RGB data
    exif: bytes | None = None  # orientation reset to 1 once applied to the pixels
    xmp: bytes | None = None  # the XMP packet, UTF-8, as the input held it


def to_rgb(im: Image.Image) -> Pixels:
    """Apply the EXIF orientation and convert to 8-bit RGB, keeping ICC profile and EXIF."""
    if 0 in im.size:
        raise HvqError(f"empty image: {im.width}x{im.height}")
    notes = []
    exif = _exif(im)
    orientation = exif.get(ORIENTATION) if exif is not None else None
    if orientation in range(2, 9):
        try:
            im = ImageOps.exif_transpose(im)
            exif[ORIENTATION] = 1
            notes.append(f"applied EXIF orientation {orientation}")
        except Exception as e:  # a damaged EXIF block should not stop compression
            notes.append(f"EXIF orientation unreadable ({_why(e)}), left the image as stored")
    elif orientation not in (None, 1):
        notes.append(f"invalid EXIF orientation {orientation!r}, left the image as stored")
    meta = {"icc_profile": _icc(im, notes), "exif": _exif_bytes(exif, notes), "xmp": _xmp(im)}
    if im.mode == "RGB":
        return Pixels(np.asarray(im), notes, **meta)
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.float64)
        # 16-bit data is scaled down; 32-bit "I" images are often 8-bit values, kept as they are.
        scale = 255 / 65535 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 1.0
        gray = np.clip(np.round(a * scale), 0, 255).astype(np.uint8)
        notes.append(f"converted {im.mode} (grayscale) to 8-bit RGB")
        return Pixels(np.repeat(gray[..., None], 3, axis=2), notes, **meta)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"converted {im.mode} to RGB (transparency composited on white)")
        return Pixels(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")), notes, **meta)
    notes.append(f"converted {im.mode} to RGB")
    return Pixels(np.asarray(im.convert("RGB")), notes, **meta)


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def _icc(im: Image.Image, notes: list[str]) -> bytes | None:
    """The ICC profile, if it is whole and for RGB data; otherwise None, with a note."""
    icc = im.info.get("icc_profile") or None
    if icc is None:
        return None
    # The header's first 4 bytes are the profile's size; its data colour space sits at bytes
    # 16-19, and a grey or CMYK profile would be wrong on the converted RGB pixels.
    if len(icc) < 128 or int.from_bytes(icc[:4], "big") != len(icc):
        notes.append(f"dropped the ICC profile, which is truncated or damaged ({len(icc)} bytes)")
        return None
    if icc[16:20] != b"RGB ":
        notes.append("dropped the ICC profile, which is not for RGB data")
        return None
    return icc


def _exif_bytes(exif: Image.Exif | None, notes: list[str]) -> bytes | None:
    """The EXIF block re-serialized, or None with a note when Pillow cannot write it back
    (malformed tags, such as a resolution that is a string)."""
    if not exif:
        return None
    try:
        return exif.tobytes()
    except Exception as e:
        notes.append(f"dropped the EXIF metadata, which cannot be re-serialized ({_why(e)})")
        return None


# Where Pillow's readers leave an XMP packet: JPEG, WebP and AVIF under "xmp" (bytes), PNG
# under its iTXt keyword (str, `container.PNG_XMP_KEY`), TIFF in tag 700.
TIFF_XMP_TAG = 700


def _xmp(im: Image.Image) -> bytes | None:
    xmp = im.info.get("xmp") or im.info.get(PNG_XMP_KEY)
    if xmp is None and hasattr(im, "tag_v2"):
        xmp = im.tag_v2.get(TIFF_XMP_TAG)
    if isinstance(xmp, str):
        xmp = xmp.encode()
    return bytes(xmp) if xmp else None


def _exif(im: Image.Image) -> Image.Exif | None:
    try:
        exif = im.getexif()
    except Exception:  # unreadable EXIF is dropped, not fatal
        return None
    return exif if len(exif) else None


def load_rgb(image: ImageInput) -> Pixels:
    """A PIL image, an (H, W, 3) uint8 array or a path -> RGB pixels and metadata. Pillow's
    warnings about the input (corrupt EXIF, odd sizes) become notes, not warning text."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = _load_rgb(image)
    for w in caught:
        note = f"Pillow: {w.message}"
        if note not in pixels.notes:
            pixels.notes.append(note)
    return pixels


def _load_rgb(image: ImageInput) -> Pixels:
    if isinstance(image, (str, Path)):
        image = open_image(image)
    if isinstance(image, Image.Image):
        try:
            return to_rgb(image)
        except HvqError:
            raise
        except Exception as e:  # Pillow's conversions fail in many types on damaged data
            raise HvqError(f"cannot convert the image ({type(e).__name__}: {e})") from e
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise HvqError(
                f"array input must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}"
            )
        if 0 in image.shape:
            raise HvqError(f"empty image: shape {image.shape}")
        return Pixels(np.ascontiguousarray(image))
    raise HvqError(f"cannot encode a {type(image).__name__}: pass a PIL image, array or path")


def image_paths(folder: str | Path) -> list[Path]:
    """The photos in a folder (by suffix, not in subfolders), in name order. None is a
    SystemExit: the callers are scripts, for which that is the whole answer."""
    paths = sorted(
        p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not paths:
        raise SystemExit(f"no images ({' '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def load_photos(paths: Iterable[str | Path]) -> list[torch.Tensor]:
    """Photos as (3, H, W) uint8 tensors, decoded once into memory for training; the pixels are
    those the codec would encode (`load_rgb`)."""
    # The copy: torch wants a writable array, and Pillow's are read-only.
    return [torch.from_numpy(load_rgb(p).rgb.copy()).permute(2, 0, 1) for p in paths]


def random_crops(
    images: Sequence[torch.Tensor], indices: list[int], size: int, gen: torch.Generator
) -> torch.Tensor:
    """A random size x size crop of each chosen image with random horizontal flips, in [0, 1]."""
    out = []
    for i in indices:
        img = images[i]
        if min(img.shape[1:]) < size:
            img = pad_to_stride(img[None].float(), size)[0]
        y = int(torch.randint(img.shape[1] - size + 1, (1,), generator=gen))
        x = int(torch.randint(img.shape[2] - size + 1, (1,), generator=gen))
        crop = img[:, y : y + size, x : x + size]
        if bool(torch.rand(1, generator=gen) < 0.5):
            crop = crop.flip(-1)
        out.append(crop)
    return torch.stack(out).float() / 255
