"""Pruning a fit: the Gaussians that carry most of the image kept, then a short continued
fit.

A fit of more Gaussians than a file can hold, cut down to the count and fitted on for a
while, beats a fit of the count itself (cgc.image.codec.OVERFIT_SHARE): the extra Gaussians
let the fit explore, and the ones that end up carrying the least are the ones to drop.
Measurements: docs/tuning.md.
"""
import logging

import numpy as np

from cgc.image.fit import fit, scaled_rates

log = logging.getLogger("cgc.fit")

# The continued fit after pruning runs at this share of the learning rates
# (measurements: docs/tuning.md, "image/prune.py: energy and continued fit").
PRUNE_LR_SHARE = 0.5


def energy(params):
    """What each Gaussian carries, for pruning: its squared colour times the square root of
    its area (|l11 l22|, the square root of its covariance's determinant); the other
    measures tried are in docs/tuning.md."""
    params = np.asarray(params, dtype=np.float64)
    return np.sum(params[:, 5:8] ** 2, axis=1) * np.sqrt(np.abs(params[:, 2] * params[:, 4]))


def prune(gaussians, image, n_gaussians, iterations, seed=0, device="cpu", progress=None,
          loss="psnr", layers=None):
    """The ``n_gaussians`` of ``gaussians`` with the most energy (ties to the lower index),
    in their order, fitted to ``image`` for ``iterations`` more steps at PRUNE_LR_SHARE of
    the learning rates, without relocation, minimising ``loss`` over ``layers`` (as
    cgc.fit)."""
    n_gaussians = int(n_gaussians)
    if not 1 <= n_gaussians <= len(gaussians):
        raise ValueError(f"cannot prune {len(gaussians)} Gaussians to {n_gaussians}")
    keep = np.sort(np.argsort(-energy(gaussians.params), kind="stable")[:n_gaussians])
    log.info("pruning from %d to %d Gaussians", len(gaussians), n_gaussians)
    lr = scaled_rates(gaussians.height, gaussians.width, n_gaussians, PRUNE_LR_SHARE)
    return fit(image, n_gaussians, iterations=iterations, seed=seed,
               init=gaussians.params[keep].copy(), lr=lr, device=device, progress=progress,
               relocation=False, loss=loss, layers=layers)
