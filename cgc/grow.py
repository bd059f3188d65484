"""Growing a fit: more Gaussians where the error is, then a short continued fit; and
pruning one: the Gaussians that carry most of the image kept, then a short continued fit.

cgc.encode sets the Gaussian count of a byte budget before fitting, from a typical cost per
Gaussian.  Smooth images cost less (their widths are as fine as pays at fewer bits), and
their files can come out short of the budget; what is left buys nothing without more
Gaussians.  Growing adds them at pixels drawn by squared error (as cgc.relocate places
moved ones) and continues the fit of all of them.

Measured on kodim15 / kodim23 at 0.5 bpp (4,169 Gaussians, 600 iterations, refined codes,
before cgc.allocate widened widths to spend a budget): 32.92 / 36.81 dB at 0.449 / 0.447
bpp; grown to 4,521 / 4,537 Gaussians with 200 more iterations at 0.3 of the learning
rates, 33.29 / 37.28 dB at 0.496 / 0.492 bpp (at the full rates 33.35 / 37.14 dB), 35 and
28 s more on 2 cores.  Now that the allocation spends what still pays, the widths alone
fill those two files (33.16 / 37.26 dB at 0.494 / 0.498 bpp, bench/results/fit_bpp.json)
and they do not grow: growth is left to files that finer widths cannot fill.  (Full files
that decode badly, of textured images, are made again from a new fit with more Gaussians
instead: cgc.codec.DETAIL_COUNT_SHARE.)

Pruning: a fit of more Gaussians than a file can hold, cut down to the count and fitted on
for a while, beats a fit of the count itself (cgc.codec.OVERFIT_SHARE has the figures);
the extra Gaussians let the fit explore, and the ones that end up carrying the least are
the ones to drop.
"""
import logging

import numpy as np

from cgc.backends import get_backend
from cgc.fit import default_lr, fit
from cgc.relocate import RELOCATE_SIGMA_FACTOR, place_at_errors

log = logging.getLogger("cgc.fit")

# The continued fit: this share of the first fit's full-resolution iterations (133 at
# cgc.fit's defaults; the docstring's figures were measured with 200 of 600, before the
# coarse stage), at this share of the learning rates, at full resolution only and without
# relocation (the new Gaussians are already where the error is).
GROW_ITERATION_SHARE = 1 / 3
GROW_LR_SHARE = 0.3
# The continued fit after pruning: at this share of the learning rates (kodim15 with 8,889
# of 9,778 Gaussians, 200 steps at 0.3 / 1.0 of the rates 37.37 / 37.36 dB, 300 steps at
# 0.5 37.40; no pruning 37.02).
PRUNE_LR_SHARE = 0.5


def _scaled_rates(height, width, n_gaussians, share):
    """cgc.fit's learning rates for this density, times ``share``: a continued fit's."""
    return {group: share * rate for group, rate in default_lr(height, width, n_gaussians).items()}


def grow(gaussians, image, n_gaussians, iterations, seed=0, device="cpu", progress=None):
    """``gaussians`` fitted to ``image`` (float32 (H, W, 3) in [0, 1]) plus new ones up to
    ``n_gaussians``, all fitted for ``iterations`` more steps; None if there is nothing to
    add (no more Gaussians asked for, or too few pixels with any error to place them)."""
    height, width = gaussians.height, gaussians.width
    extra = int(n_gaussians) - len(gaussians)
    if extra < 1 or n_gaussians > height * width:
        return None
    backend = get_backend(device)
    rendered = backend.to_numpy(backend.render_forward(
        backend.from_numpy(gaussians.params), height, width))
    residual = image - np.clip(rendered, 0.0, 1.0)
    error = np.square(residual, dtype=np.float64).sum(axis=2).ravel()
    if np.count_nonzero(error) < extra or not np.isfinite(error.sum()):
        return None
    rng = np.random.default_rng(None if seed is None else [seed, 2])
    side = RELOCATE_SIGMA_FACTOR * np.sqrt(height * width / n_gaussians)
    start = np.concatenate([gaussians.params,
                            place_at_errors(residual, error, extra, side, rng)])
    log.info("growing from %d to %d Gaussians", len(gaussians), n_gaussians)
    lr = _scaled_rates(height, width, n_gaussians, GROW_LR_SHARE)
    return fit(image, n_gaussians, iterations=iterations, seed=seed, init=start, lr=lr,
               device=device, progress=progress, relocation=False)


def energy(params):
    """What each Gaussian carries, for pruning: its squared colour times the square root of
    its area (|l11 l22|, the square root of its covariance's determinant).  Pruned from 1.2
    N, 300 steps, unquantised, kodim15 / 23 / 01 / 05 at 8,889 / 4,432 / 11,125 / 5,540
    Gaussians: 37.54 / 38.86 / 30.24 / 28.10 dB; times the area (the Gaussian's squared L2
    norm) 37.49 / 38.73 / 30.22 / 28.05; squared colour alone 37.51 / 38.97 / 30.16 /
    28.01; L1 colour times the area 37.27 / 38.52 / 30.05 / 27.81."""
    params = np.asarray(params, dtype=np.float64)
    return np.sum(params[:, 5:8] ** 2, axis=1) * np.sqrt(np.abs(params[:, 2] * params[:, 4]))


def prune(gaussians, image, n_gaussians, iterations, seed=0, device="cpu", progress=None):
    """The ``n_gaussians`` of ``gaussians`` with the most energy (ties to the lower index),
    in their order, fitted to ``image`` for ``iterations`` more steps at PRUNE_LR_SHARE of
    the learning rates, without relocation."""
    n_gaussians = int(n_gaussians)
    if not 1 <= n_gaussians <= len(gaussians):
        raise ValueError(f"cannot prune {len(gaussians)} Gaussians to {n_gaussians}")
    keep = np.sort(np.argsort(-energy(gaussians.params), kind="stable")[:n_gaussians])
    log.info("pruning from %d to %d Gaussians", len(gaussians), n_gaussians)
    lr = _scaled_rates(gaussians.height, gaussians.width, n_gaussians, PRUNE_LR_SHARE)
    return fit(image, n_gaussians, iterations=iterations, seed=seed,
               init=gaussians.params[keep].copy(), lr=lr, device=device, progress=progress,
               relocation=False)
