"""Relocation: part-way through a fit, the Gaussians doing least move to where the error is.

Read me first
-------------
* A Gaussian's activity is the sum over steps of |dL/dx| + |dL/dy| since the last
  relocation.  A Gaussian whose position gradient stays small is either settled where the
  image is flat (and covered by its neighbours) or contributes little at all; moving it
  costs little.
* At each of ``relocation_steps(iterations)``, the ``RELOCATE_FRACTION`` least active
  Gaussians (ties broken by index) are re-placed at pixels drawn without replacement with
  probability proportional to the current squared error, as round Gaussians of side
  ``RELOCATE_SIGMA_FACTOR`` times the mean spacing, coloured with the residual there (so
  the new Gaussian corrects the pixel it lands on), and their Adam moments are zeroed.
* The draws come from the fit's seed, and everything is decided on the host from arrays
  copied off the device, so CPU and CUDA fits relocate by the same rule.

Measurements: docs/tuning.md, "image/relocate.py: relocation schedule and size".
"""
import numpy as np

# Fractions of the fit's iterations after which relocation happens: early enough that the
# moved Gaussians have most of the schedule left to settle, at a still-high learning rate.
RELOCATE_AT = (1 / 6, 2 / 6, 3 / 6)
# Fits at least this sparse relocate by default: it gained at 39 to 197 pixels per Gaussian
# and lost at 5.6 (measurements: docs/tuning.md, "image/relocate.py: density threshold").
MIN_PIXELS_PER_GAUSSIAN = 16
# Share of the Gaussians moved at each relocation, and their side in mean spacings
# (measurements: docs/tuning.md, "image/relocate.py: relocation schedule and size").
RELOCATE_FRACTION = 0.05
RELOCATE_SIGMA_FACTOR = 0.3


def relocates_by_default(height, width, n_gaussians):
    """Whether a fit of this density relocates when not told (MIN_PIXELS_PER_GAUSSIAN)."""
    return height * width >= MIN_PIXELS_PER_GAUSSIAN * n_gaussians


def relocation_steps(iterations):
    """The steps (1-based) after whose gradient a fit of ``iterations`` steps relocates."""
    return sorted({int(round(f * iterations)) for f in RELOCATE_AT} - {0})


def relocate(params, residual, activity, rng, fraction=RELOCATE_FRACTION):
    """Choose the Gaussians to move and their new rows.

    params: (N, 8) float32 numpy array of the current parameters; residual: (H, W, 3)
    target minus rendered image (as shown, clipped), numpy; activity: (N,) accumulated
    position-gradient magnitude.  Returns (indices, rows): the rows to overwrite and their
    new float32 values; both are empty when nothing is worth moving (no error left, or
    fewer than one Gaussian's share) or the residual is not finite."""
    n = len(params)
    height, width = residual.shape[:2]
    error = np.square(residual, dtype=np.float64).sum(axis=2).ravel()
    count = min(int(fraction * n), int(np.count_nonzero(error)))
    # A non-finite render is the fit's finite-value checks' to report, not a draw's to fail.
    if count < 1 or not np.isfinite(error.sum()):
        return np.zeros(0, np.int64), np.zeros((0, 8), np.float32)
    indices = np.argsort(activity, kind="stable")[:count]
    side = RELOCATE_SIGMA_FACTOR * np.sqrt(height * width / n)
    return indices, place_at_errors(residual, error, count, side, rng)


def place_at_errors(residual, error, count, side, rng):
    """``count`` new float32 (count, 8) rows: round Gaussians of side ``side`` at pixels
    drawn without replacement with probability proportional to ``error`` (the flattened
    per-pixel squared error, at least ``count`` of them non-zero), each coloured with the
    ``residual`` (H, W, 3) at its pixel so that it corrects the pixel it lands on."""
    width = residual.shape[1]
    pixels = rng.choice(error.size, size=count, replace=False, p=error / error.sum())
    rows_, cols = np.divmod(pixels, width)
    new = np.zeros((count, 8), np.float32)
    new[:, 0] = cols + rng.uniform(0.0, 1.0, count)
    new[:, 1] = rows_ + rng.uniform(0.0, 1.0, count)
    new[:, 2] = new[:, 4] = side
    new[:, 5:] = residual.reshape(-1, 3)[pixels]
    return new
