"""The photos a trainer learns from and is validated on."""

from pathlib import Path

import torch
import torch.nn.functional as F

from hvqcodec.image_io import image_paths
from hvqcodec.metrics import psnr_from_mse

# Held-out photos of the training folder, by name: never trained on, and every design decision
# is made on them.
VALIDATION_LIST = Path(__file__).resolve().parents[2] / "configs" / "validation.txt"


def validation_names(path: Path = VALIDATION_LIST) -> list[str]:
    return [s for s in path.read_text().split() if not s.startswith("#")] if path.exists() else []


def split_photos(folder: str | Path, listing: Path = VALIDATION_LIST) -> tuple[list, list]:
    """(training photos, validation photos) of a folder; those `listing` names are held out."""
    paths, held = image_paths(folder), set(validation_names(listing))
    return [p for p in paths if p.name not in held], [p for p in paths if p.name in held]


def area_repeats(images: list[torch.Tensor]) -> list[int]:
    """How often each photo is drawn per epoch to sample crops in proportion to area: its
    pixels over the smallest photo's, rounded, at least once."""
    least = min(i.shape[1] * i.shape[2] for i in images)
    return [max(1, round(i.shape[1] * i.shape[2] / least)) for i in images]


def centre_crop(img: torch.Tensor, side: int, stride: int) -> torch.Tensor:
    """The centre of (C, H, W), at most `side` a side, cut to a multiple of `stride`."""
    h, w = (min(side, s) // stride * stride for s in img.shape[1:])
    y, x = (img.shape[1] - h) // 2, (img.shape[2] - w) // 2
    return img[:, y : y + h, x : x + w]


def reconstruction_psnr(reconstruction: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR in dB of a reconstruction in [0, 1] (clamped, as the codec's pixels are) against x."""
    return psnr_from_mse(F.mse_loss(reconstruction.clamp(0, 1), x).item(), 1.0)
