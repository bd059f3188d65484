"""Initialisers: where the Gaussians start before optimisation.

Each returns a float32 (N, 8) parameter array for a float32 (H, W, 3) image in [0, 1].
Colours are set after placement so that the rendered image's brightness matches the
target: with additive splatting, overlapping Gaussians would otherwise over-expose."""
import numpy as np

from cgc.backends.cpu import CPUBackend

METHODS = ("gradient", "random")
# Share of the placement probability spread evenly over the image; the rest follows the
# gradient magnitude, as fits gain from starting with more Gaussians at the edges
# (measurements: docs/tuning.md, "image/init.py: placement").
UNIFORM_SHARE = 0.2
# Side of a Gaussian as a fraction of the spacing between samples at its local density
# (measurements: docs/tuning.md, "image/init.py: placement").
SIGMA_FACTOR = 0.6


def _mean_spacing(height, width, n):
    """Side of the square each Gaussian would own if they tiled the image evenly."""
    return float(np.sqrt(height * width / n))


def set_colours(params, image):
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


def least_squares_colours(params, image, steps):
    """Move the colours ``steps`` conjugate-gradient steps (CGLS) towards the least-squares
    colours for the Gaussians' shapes, from the colours ``params`` has; returns the
    (N, 3) float32 colours.

    A render is linear in the colours (render = A c, A the footprints), so the colours
    minimising the squared error solve A'A c = A'y: each step is one render (A p) and one
    backward pass (A' r).  A few steps, not the solution: solved further, neighbours get
    large opposite colours that a long fit fails to undo (docs/tuning.md, "image/svg.py:
    geometry start")."""
    height, width = image.shape[:2]
    backend = CPUBackend()
    probe = np.array(params, dtype=np.float32)
    bins = backend.bin(probe, height, width)
    target = np.asarray(image, dtype=np.float64)

    def render(colours):
        probe[:, 5:] = colours
        return backend.render_forward(probe, height, width, bins).astype(np.float64)

    def adjoint(residual):
        grad = backend.render_backward(probe, height, width, residual.astype(np.float32), bins)
        return grad[:, 5:].astype(np.float64)

    colours = probe[:, 5:].astype(np.float64)
    residual = target - render(colours)
    descent = adjoint(residual)
    direction, gamma = descent.copy(), (descent ** 2).sum(axis=0)
    for _ in range(steps):
        # Each channel is its own least-squares problem with the same footprints.
        moved = render(direction)
        curvature = (moved ** 2).sum(axis=(0, 1))
        alpha = np.divide(gamma, curvature, out=np.zeros(3), where=curvature > 0)
        colours += alpha * direction
        residual -= alpha * moved
        descent = adjoint(residual)
        new_gamma = (descent ** 2).sum(axis=0)
        direction = descent + np.divide(new_gamma, gamma, out=np.zeros(3),
                                        where=gamma > 0) * direction
        gamma = new_gamma
    return colours.astype(np.float32)


def init_random(image, n, rng):
    """Uniform random positions, round Gaussians sized to the mean spacing."""
    height, width = image.shape[:2]
    params = np.zeros((n, 8), dtype=np.float32)
    params[:, 0] = rng.uniform(0, width, n)
    params[:, 1] = rng.uniform(0, height, n)
    params[:, 2] = params[:, 4] = SIGMA_FACTOR * _mean_spacing(height, width, n)
    set_colours(params, image)
    return params


def _gradient_magnitude(image):
    """|grad| of the grey image; along a side of one pixel the gradient is taken as 0."""
    grey = image.mean(axis=2)
    gy, gx = (np.gradient(grey, axis=axis) if grey.shape[axis] > 1 else np.zeros_like(grey)
              for axis in (0, 1))
    return np.hypot(gx, gy)


def init_gradient(image, n, rng):
    """Positions sampled with probability growing with the image-gradient magnitude.

    ``UNIFORM_SHARE`` of the probability mass is uniform so flat regions are still covered
    (all of it on an image without gradient); each Gaussian's size follows the local sample
    density."""
    height, width = image.shape[:2]
    mag = _gradient_magnitude(image)
    total = mag.sum()
    if total > 0:
        prob = mag / total * (1 - UNIFORM_SHARE) + UNIFORM_SHARE / mag.size
    else:
        prob = np.full(mag.shape, 1.0 / mag.size)
    prob = prob.ravel() / prob.sum()
    idx = rng.choice(mag.size, size=n, replace=n > mag.size, p=prob)
    rows, cols = np.divmod(idx, width)
    params = np.zeros((n, 8), dtype=np.float32)
    params[:, 0] = cols + rng.uniform(0, 1, n)
    params[:, 1] = rows + rng.uniform(0, 1, n)
    # A Gaussian where samples are k times denser than average gets a sqrt(k) smaller side.
    density = prob[idx] * mag.size
    sigma = SIGMA_FACTOR * _mean_spacing(height, width, n) / np.sqrt(density)
    params[:, 2] = sigma
    params[:, 4] = sigma
    set_colours(params, image)
    return params


def initialise(image, n, method="gradient", seed=0):
    """Dispatch to ``init_<method>`` with a seeded generator."""
    if method not in METHODS:
        raise ValueError(f"init must be one of {METHODS}, not {method!r}")
    rng = np.random.default_rng(seed)
    return {"gradient": init_gradient, "random": init_random}[method](image, n, rng)
