"""Growing a fit: more Gaussians where the error is, then a short continued fit.

cgc.encode sets the Gaussian count of a byte budget before fitting, from a typical cost per
Gaussian.  Smooth images cost less (their widths are as fine as pays at fewer bits), and
their files can come out short of the budget; what is left buys nothing without more
Gaussians.  Growing adds them at pixels drawn by squared error (as cgc.image.relocate places
moved ones) and continues the fit of all of them.  Files that finer widths fill do not
grow; full files that decode badly (textured images) are made again from a new fit of more
Gaussians instead (cgc.image.codec.DETAIL_COUNT_SHARE).  Measurements: docs/tuning.md.
"""
import logging

import numpy as np

from cgc.backends import get_backend
from cgc.image.fit import fit, scaled_rates
from cgc.image.relocate import RELOCATE_SIGMA_FACTOR, place_at_errors

log = logging.getLogger("cgc.fit")

# The continued fit: this share of the first fit's full-resolution iterations, at this
# share of the learning rates, without relocation (the new Gaussians are already where
# the error is; measurements: docs/tuning.md, "image/grow.py: continued fit after growth").
GROW_ITERATION_SHARE = 1 / 3
GROW_LR_SHARE = 0.3


def grow(gaussians, image, n_gaussians, iterations, seed=0, device="cpu", progress=None,
         loss="psnr", layers=None):
    """``gaussians`` fitted to ``image`` (float32 (H, W, 3) in [0, 1]) plus new ones up to
    ``n_gaussians``, all fitted for ``iterations`` more steps; None if there is nothing to
    add (no more Gaussians asked for, or too few pixels with any error to place them).
    ``loss`` and ``layers`` as cgc.fit's; the new Gaussians go where the squared error
    is, after the others (in the last layers)."""
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
    lr = scaled_rates(height, width, n_gaussians, GROW_LR_SHARE)
    return fit(image, n_gaussians, iterations=iterations, seed=seed, init=start, lr=lr,
               device=device, progress=progress, relocation=False, loss=loss,
               layers=layers)
