"""Initialisers: where the Gaussians start before optimisation.

Each returns a float32 (N, 8) parameter array for a float32 (H, W, 3) image in [0, 1].
Colours are set after placement so that the rendered image's brightness matches the
target: with additive splatting, overlapping Gaussians would otherwise over-expose."""
import numpy as np

from cgc.backends.cpu import CPUBackend

METHODS = ("slic", "gradient", "random")
# k-means iterations of SLIC (scikit-image's default is 10).  The initialisation runs on the
# CPU before a GPU fit of a second or so, and 5 halve its time (kodim05, N=70,000: SLIC
# 0.91 -> 0.39 s on 2 cores) for no measurable loss after the fit (8-bit PSNR, kodim05 / 23
# / 20, 256x256 crops with N=11,700 and 1,000 iterations: 44.18 / 42.60 / 39.25 dB with 10,
# 44.35 / 42.43 / 39.03 with 5, 44.38 / 42.27 / 39.07 with 3; 384x256 crops with N=1,250 and
# 600 iterations: 24.55 / 30.03 / 29.29 with 10, 24.62 / 29.89 / 29.29 with 5, 24.68 / 29.57
# / 29.09 with 3).
SLIC_ITERATIONS = 5


def _mean_spacing(height, width, n):
    """Side of the square each Gaussian would own if they tiled the image evenly."""
    return float(np.sqrt(height * width / n))


def _set_colours(params, image):
    """Colour each Gaussian with the target at its footprint, divided by the coverage there.

    Renders once with unit colours to get the coverage W(p) = sum_g w_g(p), then gives every
    Gaussian the w-weighted mean of target / W over its footprint (one backward pass)."""
    height, width = image.shape[:2]
    backend = CPUBackend()
    params[:, 5:] = 1.0
    bins = backend.bin(params, height, width)
    _, coverage = backend.render_forward(params, height, width, bins, weight=True)
    ratio = image / np.maximum(coverage, 1e-3)[..., None]
    probe = params.copy()
    # d/dcolour of <ratio, render> is sum_p w_g(p) ratio(p): the weighted sum we need.
    weighted = backend.render_backward(probe, height, width, ratio.astype(np.float32), bins)
    mass = backend.render_backward(
        probe, height, width, np.ones_like(image, dtype=np.float32), bins)
    params[:, 5:] = weighted[:, 5:] / np.maximum(mass[:, 5:], 1e-6)


def init_random(image, n, rng):
    """Uniform random positions, round Gaussians sized to the mean spacing."""
    height, width = image.shape[:2]
    params = np.zeros((n, 8), dtype=np.float32)
    params[:, 0] = rng.uniform(0, width, n)
    params[:, 1] = rng.uniform(0, height, n)
    params[:, 2] = params[:, 4] = 0.6 * _mean_spacing(height, width, n)
    _set_colours(params, image)
    return params


def _gradient_magnitude(image):
    grey = image.mean(axis=2)
    gy, gx = np.gradient(grey)
    return np.hypot(gx, gy)


def init_gradient(image, n, rng):
    """Positions sampled with probability growing with the image-gradient magnitude.

    Half of the probability mass is uniform so flat regions are still covered; each
    Gaussian's size follows the local sample density."""
    height, width = image.shape[:2]
    mag = _gradient_magnitude(image)
    prob = mag / max(mag.sum(), 1e-12) * 0.5 + 0.5 / mag.size
    idx = rng.choice(mag.size, size=n, replace=n > mag.size, p=prob.ravel())
    rows, cols = np.divmod(idx, width)
    params = np.zeros((n, 8), dtype=np.float32)
    params[:, 0] = cols + rng.uniform(0, 1, n)
    params[:, 1] = rows + rng.uniform(0, 1, n)
    # A Gaussian where samples are k times denser than average gets a sqrt(k) smaller side.
    density = prob.ravel()[idx] * mag.size
    sigma = 0.6 * _mean_spacing(height, width, n) / np.sqrt(density)
    params[:, 2] = sigma
    params[:, 4] = sigma
    _set_colours(params, image)
    return params


def init_slic(image, n, rng):
    """One Gaussian per SLIC superpixel: its centroid, pixel covariance and mean colour.

    SLIC may return fewer segments than asked for; the rest are placed by the gradient
    initialiser so that exactly n Gaussians come back."""
    from skimage.segmentation import slic

    height, width = image.shape[:2]
    labels = slic(image, n_segments=n, compactness=10, max_num_iter=SLIC_ITERATIONS,
                  start_label=0, enforce_connectivity=True, channel_axis=-1).ravel()
    count = np.bincount(labels).astype(np.float64)
    keep = np.flatnonzero(count > 0)
    if keep.size > n:
        keep = keep[np.argsort(-count[keep], kind="stable")[:n]]
    rows, cols = np.divmod(np.arange(labels.size), width)
    xs, ys = cols + 0.5, rows + 0.5

    def seg_mean(values):
        return np.bincount(labels, weights=values, minlength=count.size)[keep] / count[keep]

    mx, my = seg_mean(xs), seg_mean(ys)
    # A pixel is a unit square: its own variance 1/12 per axis keeps one-pixel segments valid.
    sxx = seg_mean(xs * xs) - mx * mx + 1.0 / 12
    syy = seg_mean(ys * ys) - my * my + 1.0 / 12
    sxy = seg_mean(xs * ys) - mx * my
    l11 = np.sqrt(sxx)
    l21 = sxy / l11
    l22 = np.sqrt(np.maximum(syy - l21 * l21, 1.0 / 12))
    m = keep.size
    params = np.zeros((n, 8), dtype=np.float32)
    params[:m, 0], params[:m, 1] = mx, my
    params[:m, 2], params[:m, 3], params[:m, 4] = l11, l21, l22
    if m < n:
        params[m:] = init_gradient(image, n - m, rng)
    _set_colours(params, image)
    return params


def initialise(image, n, method="slic", seed=0):
    """Dispatch to ``init_<method>`` with a seeded generator."""
    if method not in METHODS:
        raise ValueError(f"init must be one of {METHODS}, not {method!r}")
    rng = np.random.default_rng(seed)
    return {"slic": init_slic, "gradient": init_gradient, "random": init_random}[method](
        image, n, rng)
