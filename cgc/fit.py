"""The optimisation loop, written once for every backend.

Loss: sum of squared errors of the image clipped to [0, 1] (what a decoder shows), so the
gradient is masked where a pixel is clipped. Adam with one learning rate per parameter group,
cosine-decayed, and the covariance eigenvalues clamped after every step."""
import logging
import math
import sys
import time

import numpy as np

from cgc.backends import get_backend
from cgc.gaussians import COLUMNS, Gaussians
from cgc.init import initialise
from cgc.progress import ProgressBar

log = logging.getLogger("cgc.fit")

DEFAULT_ITERATIONS = 600
# Learning rates in parameter units per step: pixels for position and Cholesky factor,
# linear RGB for colour. Chosen by sweeps on Kodak crops and full images (kodim05, N=5000,
# 600 iterations: 25.65 dB against 25.54 dB at half these position and Cholesky rates and
# about 23 dB at a tenth).
DEFAULT_LR = {"position": 2.0, "cholesky": 0.6, "colour": 0.01}
# Covariance eigenvalue bounds in squared pixels: below ~0.1 a Gaussian falls between pixel
# centres and stops receiving gradient; the upper bound keeps footprints within reason.
MIN_VARIANCE = 0.09
FINAL_LR_FRACTION = 0.05


class FitDiagnosticError(RuntimeError):
    """The optimisation produced a non-finite value."""


def _lr_per_column(lr):
    unknown = set(lr) - set(DEFAULT_LR)
    if unknown:
        raise ValueError(f"unknown learning-rate groups {sorted(unknown)}")
    rates = {**DEFAULT_LR, **lr}
    return np.array([rates["position"]] * 2 + [rates["cholesky"]] * 3
                    + [rates["colour"]] * 3, dtype=np.float64)


def _check_finite(xp, array, what):
    finite = xp.isfinite(array)
    if bool(finite.all()):
        return
    bad = np.argwhere(~np.asarray(finite.get() if hasattr(finite, "get") else finite))
    g, k = (int(v) for v in bad[0])
    raise FitDiagnosticError(
        f"non-finite {what} for Gaussian {g}, parameter {COLUMNS[k]} "
        f"({len(bad)} non-finite entries in all)")


def psnr(mse):
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def as_float_image(image):
    """Validate an (H, W, 3) image: uint8 is scaled from [0, 255], floats must be in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("image is empty")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image, dtype=np.float32) / np.float32(255)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image dtype must be uint8 or floating, got {image.dtype}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError("float images must be finite and within [0, 1]")
    return image


def fit(image, n_gaussians, iterations=DEFAULT_ITERATIONS, seed=0, init="slic", lr=None,
        device="cpu", progress=None, log_every=100, max_variance=None):
    """Fit ``n_gaussians`` Gaussians to ``image`` and return a :class:`cgc.Gaussians`.

    ``image`` is (H, W, 3), uint8 or float in [0, 1]. The result is bit-for-bit
    deterministic for a seed on a given device (the CPU, or one GPU model with CUDA); CPU
    and CUDA fits round differently, so they do not match each other bit for bit.
    ``progress`` shows a bar on a terminal (default: when stderr is a TTY); every
    ``log_every`` iterations loss, PSNR, coverage and collapsed scales go to the
    ``cgc.fit`` logger."""
    target_np = as_float_image(image)
    height, width = target_np.shape[:2]
    n_gaussians = int(n_gaussians)
    if n_gaussians < 1:
        raise ValueError("n_gaussians must be at least 1")
    if n_gaussians > height * width:
        raise ValueError(f"n_gaussians ({n_gaussians}) exceeds the pixel count "
                         f"({height * width})")
    if iterations < 0:
        raise ValueError("iterations must be non-negative")
    backend = get_backend(device)
    xp = backend.xp
    max_var = float(max_variance or (max(height, width) / 3.0) ** 2)
    bounds = (MIN_VARIANCE, max_var)
    lr_cols = _lr_per_column(lr or {})

    params_np = initialise(target_np, n_gaussians, init, seed)
    params = backend.from_numpy(params_np)
    backend.clamp_scales(params, bounds)
    target = backend.from_numpy(target_np)
    m = xp.zeros_like(params)
    v = xp.zeros_like(params)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = ProgressBar(iterations, enabled=show)
    start = time.perf_counter()
    for step in range(1, iterations + 1):
        bins = backend.bin(params, height, width)
        want_diag = log_every and (step % log_every == 0 or step == iterations)
        rendered = backend.render_forward(params, height, width, bins, weight=bool(want_diag))
        if want_diag:
            rendered, coverage = rendered
        clipped = xp.clip(rendered, 0.0, 1.0)
        diff = clipped - target
        inside = (rendered >= 0.0) & (rendered <= 1.0)
        grad_image = xp.ascontiguousarray((2.0 * diff * inside).astype(params.dtype))
        grads = backend.render_backward(params, height, width, grad_image, bins)
        _check_finite(xp, grads, "gradient")
        decay = FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (
            1 + math.cos(math.pi * (step - 1) / max(iterations, 1)))
        backend.adam_step(params, grads, m, v, step, lr_cols * decay, var_bounds=bounds)
        _check_finite(xp, params, "parameter")
        mse = float((diff * diff).mean())
        bar.update(step, f"PSNR {psnr(mse):5.2f} dB")
        if want_diag:
            _log_diagnostics(backend, step, mse, coverage, params, bounds,
                             time.perf_counter() - start)
    bar.close()
    return Gaussians(backend.to_numpy(params), height, width)


def _log_diagnostics(backend, step, mse, coverage, params, bounds, elapsed):
    """Loss, PSNR, share of pixels with little total weight, collapsed Gaussians."""
    cov = backend.to_numpy(coverage)
    gaussians = Gaussians(backend.to_numpy(params), *cov.shape)
    eig_min = np.linalg.eigvalsh(gaussians.covariance())[:, 0]
    collapsed = int(np.count_nonzero(eig_min <= bounds[0] * 1.001))
    uncovered = float(np.mean(cov < 0.05))
    log.info("step %d  loss %.6g  PSNR %.2f dB  uncovered %.2f%%  collapsed %d/%d  %.1f s",
             step, mse, psnr(mse), 100 * uncovered, collapsed, len(gaussians), elapsed)
