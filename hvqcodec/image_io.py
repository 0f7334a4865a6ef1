"""Pixels in and out: whatever the user hands over becomes an (H, W, 3) uint8 array, with its
alpha plane and whether it is grayscale; decoded pixels become an image of the mode the file
names. Also the folders of photos that training, evaluation and the benchmarks read, through
the same loader."""

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hvqcodec.alpha import composite
from hvqcodec.container import PNG_XMP_KEY
from hvqcodec.errors import HvqError
from hvqcodec.layers.tiling import pad_to_stride

ImageInput = Image.Image | np.ndarray | str | Path
ORIENTATION = 0x0112  # EXIF tag
# What counts as a photo where a folder stands for its images.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")
# Modes that decode to L (LA): their gray is coded replicated into RGB.
GRAY_MODES = ("1", "L", "LA", "La", "I", "F")


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
    rgb: np.ndarray  # (H, W, 3) uint8; under the alpha, unpremultiplied
    notes: list[str] = field(default_factory=list)  # what was converted, for the user
    icc_profile: bytes | None = None  # kept only when it describes RGB data
    exif: bytes | None = None  # orientation reset to 1 once applied to the pixels
    xmp: bytes | None = None  # the XMP packet, UTF-8, as the input held it
    alpha: np.ndarray | None = None  # (H, W) uint8, None for an opaque image
    gray: bool = False  # a grayscale source, its gray in all three channels of `rgb`


def to_rgb(im: Image.Image, background: tuple[int, int, int] | None = None) -> Pixels:
    """Apply the EXIF orientation and convert to 8-bit RGB and an alpha plane (None where the
    image is opaque throughout), keeping ICC profile and EXIF. `background`: composite any
    transparency onto this colour instead, leaving no alpha."""
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
    rgb, alpha = _planes(im)
    gray = im.mode in GRAY_MODES or im.mode.startswith("I;16")
    why, composited = "", alpha is not None and background is not None
    if composited:
        rgb, alpha = composite(rgb, alpha, background), None
        gray = gray and len(set(background)) == 1
        why = f" (transparency composited onto #{bytes(background).hex()})"
    elif alpha is not None and (alpha == 255).all():
        alpha = None  # as WebP does: an opaque alpha costs bytes and says nothing
        why = " (its alpha is opaque throughout)"
    mode = ("L" if gray else "RGB") + ("A" if alpha is not None else "")
    if im.mode != mode or composited:
        notes.append(f"converted {im.mode} to {mode}{why}")
    return Pixels(rgb, notes, **meta, alpha=alpha, gray=gray)


def _planes(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 colour and the (H, W) alpha of an image with any transparency, from an
    alpha band or a transparent colour or palette entry (`info["transparency"]`)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        values = np.asarray(im)
        a = values.astype(np.float64)
        # 16-bit data is scaled down; 32-bit "I" images are often 8-bit values, kept as they are.
        scale = 255 / 65535 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 1.0
        gray = np.clip(np.round(a * scale), 0, 255).astype(np.uint8)
        key = im.info.get("transparency")  # Pillow's conversions ignore it for these modes
        alpha = None if key is None else np.where(values == key, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), alpha
    if {"A", "a"} & set(im.getbands()) or "transparency" in im.info:
        # La (premultiplied) converts to RGBA only through LA.
        rgba = np.asarray((im.convert("LA") if im.mode == "La" else im).convert("RGBA"))
        return rgba[..., :3], rgba[..., 3]
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB")), None


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


def load_rgb(image: ImageInput, background: tuple[int, int, int] | None = None) -> Pixels:
    """A PIL image, a uint8 array (H x W, or H x W x 1 to 4 read as L, LA, RGB or RGBA) or a
    path -> RGB pixels, alpha and metadata (`background`: as `to_rgb`). Pillow's warnings about
    the input (corrupt EXIF, odd sizes) become notes, not warning text."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = _load_rgb(image, background)
    for w in caught:
        note = f"Pillow: {w.message}"
        if note not in pixels.notes:
            pixels.notes.append(note)
    return pixels


def _load_rgb(image: ImageInput, background: tuple[int, int, int] | None) -> Pixels:
    if isinstance(image, (str, Path)):
        image = open_image(image)
    if isinstance(image, Image.Image):
        try:
            return to_rgb(image, background)
        except HvqError:
            raise
        except Exception as e:  # Pillow's conversions fail in many types on damaged data
            raise HvqError(f"cannot convert the image ({type(e).__name__}: {e})") from e
    if isinstance(image, np.ndarray):
        bands = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
        if image.dtype != np.uint8 or bands not in (1, 2, 3, 4):
            raise HvqError(
                "array input must be uint8, HxW or HxWx1 (gray), HxWx2 (gray, alpha), HxWx3 "
                f"(RGB) or HxWx4 (RGBA); got shape {image.shape} dtype {image.dtype}"
            )
        if 0 in image.shape:
            raise HvqError(f"empty image: shape {image.shape}")
        if bands == 3:
            return Pixels(np.ascontiguousarray(image))
        return to_rgb(
            Image.fromarray(image.reshape(image.shape[:2]) if bands == 1 else image), background
        )
    raise HvqError(f"cannot encode a {type(image).__name__}: pass a PIL image, array or path")


def output_image(rgb: np.ndarray, gray: bool, alpha: np.ndarray | None) -> Image.Image:
    """Decoded (H, W, 3) uint8 pixels as the image a file's flags name: RGB, or L by the
    rounded mean of the three channels ((R + G + B + 1) // 3, exact in integers), and the
    alpha plane, if any, as a fourth (second) band."""
    planes = rgb
    if gray:
        planes = ((rgb.astype(np.uint16).sum(axis=2, keepdims=True) + 1) // 3).astype(np.uint8)
    if alpha is not None:
        planes = np.concatenate([planes, alpha[..., None]], axis=2)
    return Image.fromarray(planes[..., 0] if planes.shape[2] == 1 else planes)


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
