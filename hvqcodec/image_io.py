"""Pixels in and out: whatever the user hands over becomes an (H, W, 3) uint8 array. Also the
folders of photos that training, evaluation and the benchmarks read, through the same loader."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hvqcodec.errors import HvqError
from hvqcodec.vqvae import pad_to_stride

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
        raise HvqError(f"{path}: {e}") from None
    except Exception as e:  # damaged data surfaces from Pillow's decoders in many types
        raise HvqError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None


@dataclass
class Pixels:
    rgb: np.ndarray  # (H, W, 3) uint8
    notes: list[str] = field(default_factory=list)  # what was converted, for the user
    icc_profile: bytes | None = None  # kept only when it describes RGB data
    exif: bytes | None = None  # orientation reset to 1 once applied to the pixels


def to_rgb(im: Image.Image) -> Pixels:
    """Apply the EXIF orientation and convert to 8-bit RGB, keeping ICC profile and EXIF."""
    if 0 in im.size:
        raise HvqError(f"empty image: {im.width}x{im.height}")
    notes = []
    exif = _exif(im)
    orientation = exif.get(ORIENTATION) if exif is not None else None
    if orientation not in (None, 1):
        try:
            im = ImageOps.exif_transpose(im)
            exif[ORIENTATION] = 1
            notes.append(f"applied EXIF orientation {orientation}")
        except Exception:  # a damaged EXIF block should not stop compression
            notes.append("EXIF orientation unreadable, ignored")
    icc = im.info.get("icc_profile") or None
    # An ICC profile's data colour space sits at bytes 16-19; a grey or CMYK profile would
    # be wrong on the converted RGB pixels.
    if icc is not None and icc[16:20] != b"RGB ":
        icc = None
        notes.append("dropped the ICC profile, which is not for RGB data")
    meta = {"icc_profile": icc, "exif": exif.tobytes() if exif else None}
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
