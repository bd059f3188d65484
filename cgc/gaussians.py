"""The model: N 2D Gaussians over an image of a given size."""
import numpy as np

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

    def render(self, device="cpu", clip=True):
        """Render to a float32 (H, W, 3) NumPy image, clipped to [0, 1] unless ``clip=False``."""
        from cgc.backends import get_backend

        backend = get_backend(device)
        image = backend.to_numpy(backend.render_forward(
            backend.from_numpy(self.params), self.height, self.width))
        return np.clip(image, 0.0, 1.0) if clip else image

    def copy(self):
        return Gaussians(self.params.copy(), self.height, self.width)
