"""Image quality measures: PSNR, written once for the CLI, the fit and the encoder."""
import math

import numpy as np


def psnr_of_mse(mse, data_range=1.0):
    """PSNR in dB of a mean squared error on a scale whose peak is ``data_range``; infinite
    for a zero error."""
    mse = float(mse)
    return float("inf") if mse <= 0 else 10.0 * math.log10(data_range ** 2 / mse)


def psnr(a, b, data_range=None):
    """PSNR in dB between two images of the same shape; ``data_range`` defaults to 255 for
    uint8 inputs and 1.0 otherwise."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    if data_range is None:
        data_range = 255.0 if a.dtype == np.uint8 else 1.0
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return psnr_of_mse(mse, data_range)
