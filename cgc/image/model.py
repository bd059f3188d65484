"""The model: N 2D Gaussians over an image of a given size."""
import numbers

import numpy as np

# A render is held to the size limits of a .cgc file's own image.
from cgc.image.container import MAX_PIXELS, MAX_SIDE

# Column order of the packed (N, 8) parameter array, the only one in the code base.
COLUMNS = ("x", "y", "l11", "l21", "l22", "r", "g", "b")
POSITION = slice(0, 2)
CHOLESKY = slice(2, 5)
COLOUR = slice(5, 8)


class Gaussians:
    """N Gaussians in pixel units: position (x, y), Cholesky factor (l11, l21, l22) of the
    covariance, and an RGB colour with opacity folded in.

    ``params`` is one C-contiguous float32 array of shape (N, 8) in ``COLUMNS`` order; the
    properties are views into it."""

    def __init__(self, params, height, width):
        params = np.ascontiguousarray(params, dtype=np.float32)
        if params.ndim != 2 or params.shape[1] != 8:
            raise ValueError(f"params must have shape (N, 8), got {params.shape}")
        if int(height) < 1 or int(width) < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        self.params = params
        self.height = int(height)
        self.width = int(width)

    def __len__(self):
        return self.params.shape[0]

    def __repr__(self):
        return f"Gaussians(n={len(self)}, height={self.height}, width={self.width})"

    @property
    def xy(self):
        return self.params[:, POSITION]

    @property
    def cholesky(self):
        return self.params[:, CHOLESKY]

    @property
    def colour(self):
        return self.params[:, COLOUR]

    def covariance(self):
        """(N, 2, 2) covariance matrices L L^T in float64."""
        l11, l21, l22 = (self.params[:, k].astype(np.float64) for k in (2, 3, 4))
        cov = np.empty((len(self), 2, 2))
        cov[:, 0, 0] = l11 * l11
        cov[:, 0, 1] = cov[:, 1, 0] = l11 * l21
        cov[:, 1, 1] = l21 * l21 + l22 * l22
        return cov

    def render_work(self):
        """Pixels inside the Gaussians' 3-sigma boxes, summed: what a render evaluates at
        most, and a bound on its (tile, Gaussian) pairs (cgc.limits.check_render)."""
        from cgc import _core

        return int(_core.render_work(self.params, self.height, self.width))

    def render(self, device="cpu", clip=True, to_host=True):
        """Render to a float32 (H, W, 3) NumPy image, clipped to [0, 1] unless ``clip=False``;
        with ``to_host=False`` an array of the device's module (CuPy for "cuda"), left
        there."""
        from cgc.backends import get_backend

        backend = get_backend(device)
        image = backend.render_forward(backend.from_numpy(self.params), self.height,
                                       self.width)
        if clip:
            image = backend.xp.clip(image, 0.0, 1.0)
        return backend.to_numpy(image) if to_host else image

    def resized(self, height, width):
        """The same image at another size: these Gaussians mapped onto a (height, width) grid.

        Positions and covariances scale by width / self.width across and height / self.height
        down, so an enlargement is the model sampled more finely (the fit's smooth function,
        not blown-up pixels).  Along an axis that shrinks, every Gaussian is also widened by
        the variance (1 - s**2) / 12 output pixels**2 (s the scale factor) and its colour
        lowered to keep its sum: a pixel of the reduced image is then close to the mean of
        the 1 / s x 1 / s block of pixels it covers rather than one sample of them (which
        aliases, and drops Gaussians smaller than the new pixels).  The variance is that of
        the mean of 1 / s points spaced one input pixel apart, (1 / s**2 - 1) / 12 input
        pixels**2, in output pixels: a Gaussian of the box filter's variance in its place
        (measurements: docs/tuning.md, "image/model.py: widening on reduction")."""
        height, width = _output_size(height, width)
        if (height, width) == (self.height, self.width):
            return self.copy()
        sx, sy = width / self.width, height / self.height
        p = self.params.astype(np.float64)
        l11, l21, l22 = sx * p[:, 2], sy * p[:, 3], sy * p[:, 4]
        sxx = l11 * l11 + max(0.0, 1.0 - sx * sx) / 12.0
        sxy = l11 * l21
        syy = l21 * l21 + l22 * l22 + max(0.0, 1.0 - sy * sy) / 12.0
        out = np.empty_like(p)
        out[:, 0] = sx * p[:, 0]
        out[:, 1] = sy * p[:, 1]
        out[:, 2] = np.sqrt(sxx)
        out[:, 3] = sxy / out[:, 2]
        out[:, 4] = np.sqrt(np.maximum(syy - out[:, 3] ** 2, 0.0))
        # The integral of c exp(-q / 2) is 2 pi c sqrt(det), so widening keeps the colour
        # times the factors' diagonal product.  Degenerate factors (zero) stay unchanged.
        before = np.abs(l11 * l22)
        after = out[:, 2] * out[:, 4]
        keep = np.divide(before, after, out=np.ones_like(before), where=after > 0)
        out[:, 5:] = p[:, 5:] * keep[:, None]
        return Gaussians(out, height, width)

    def copy(self):
        return Gaussians(self.params.copy(), self.height, self.width)


def _output_size(height, width):
    """Validated (height, width) of a render: positive integers within the limits."""
    for value in (height, width):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"output size must be integers, got {height!r} x {width!r}")
    height, width = int(height), int(width)
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE
            and height * width <= MAX_PIXELS):
        raise ValueError(f"output size {width}x{height} out of range (at most "
                         f"{MAX_SIDE} a side and {MAX_PIXELS} pixels)")
    return height, width


def scaled_size(height, width, scale):
    """(height, width) of an image of this size scaled by ``scale``, rounded, at least 1."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (
            np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return _output_size(max(1, round(height * scale)), max(1, round(width * scale)))
