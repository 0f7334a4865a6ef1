"""PSNR, which needs nothing beyond numpy. MS-SSIM, which needs pytorch-msssim (the bench
extra), is in `hvqcodec.evaluate`."""

import math

import numpy as np


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; capped at 100 dB for identical images."""
    return 100.0 if mse <= 0 else min(100.0, 10 * math.log10(peak**2 / mse))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB between two uint8 images of the same shape."""
    return psnr_from_mse(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))
