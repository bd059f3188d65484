"""CPU backend: thin, validating wrappers around the Cython core."""
import numpy as np

from cgc import _core
from cgc.backends.bins import Bins

# The CPU renderer's tile side: row setup is paid per row piece inside a tile, so wider tiles
# cut that work, but 64 leaves too few tiles to balance across many cores; the image does
# not depend on it (measurements: docs/tuning.md, "backends/cpu.py: CPU tile size").
TILE = 32


def _as_params(params):
    params = np.ascontiguousarray(params)
    if params.dtype not in (np.float32, np.float64):
        params = params.astype(np.float32)
    if params.ndim != 2 or params.shape[1] != 8:
        raise ValueError(f"params must have shape (N, 8), got {params.shape}")
    return params


def check_image_size(height, width):
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")


def centre_limits(centre_box):
    """(min_x, max_x, min_y, max_y) for the Adam steps' centre clamp: [0, width] x
    [0, height] for ``centre_box`` = (width, height), unbounded for None."""
    if centre_box is None:
        return (-np.inf, np.inf, -np.inf, np.inf)
    width, height = (float(side) for side in centre_box)
    if not (width >= 0 and height >= 0):
        raise ValueError(f"centre_box must hold a width and height >= 0, got {centre_box}")
    return (0.0, width, 0.0, height)


class CPUBackend:
    """Tiled renderer, Adam and clamping from ``cgc._core``; arrays are NumPy."""

    name = "cpu"
    xp = np

    def bin(self, params, height, width, tile=TILE):
        """Tile binning of ``params`` (:class:`Bins`); ``tile`` other than TILE only to
        compare with another backend's binning."""
        params = _as_params(params)
        check_image_size(height, width)
        return Bins(*_core.bin_gaussians(params, height, width, int(tile)), int(tile))

    def _bins(self, params, height, width, bins):
        """Binning to render with: fresh, or checked so the unchecked loops stay in bounds."""
        if bins is None:
            return self.bin(params, height, width)
        if not isinstance(bins, Bins):
            raise ValueError("bins must come from a backend's bin()")
        tile_start = np.ascontiguousarray(bins.tile_start, dtype=np.int64)
        pair_gaussian = np.ascontiguousarray(bins.pair_gaussian, dtype=np.int32)
        n_tiles = -(-height // bins.tile) * -(-width // bins.tile) if bins.tile >= 1 else -1
        if not (tile_start.shape == (n_tiles + 1,) and tile_start[0] == 0
                and tile_start[-1] == pair_gaussian.shape[0]
                and np.all(np.diff(tile_start) >= 0)
                and np.all((pair_gaussian >= 0) & (pair_gaussian < params.shape[0]))):
            raise ValueError(f"bins do not fit {params.shape[0]} Gaussians on a "
                             f"{width}x{height} image in {bins.tile}-pixel tiles")
        return Bins(tile_start, pair_gaussian, bins.tile)

    def render_forward(self, params, height, width, bins=None, weight=False):
        """Render (H, W, 3) unclipped; with ``weight=True`` also return the (H, W) coverage."""
        params = _as_params(params)
        check_image_size(height, width)
        bins = self._bins(params, height, width, bins)
        out = np.empty((height, width, 3), dtype=params.dtype)
        coverage = np.empty((height, width) if weight else (0, 0), dtype=params.dtype)
        _core.render_forward(params, height, width, bins.tile, bins.tile_start,
                             bins.pair_gaussian, out, coverage)
        return (out, coverage) if weight else out

    def render_backward(self, params, height, width, grad_image, bins=None):
        """dL/dparams (N, 8) given dL/dimage (H, W, 3)."""
        params = _as_params(params)
        check_image_size(height, width)
        grad_image = np.ascontiguousarray(grad_image, dtype=params.dtype)
        if grad_image.shape != (height, width, 3):
            raise ValueError(f"grad_image must have shape {(height, width, 3)}")
        bins = self._bins(params, height, width, bins)
        grad = np.empty_like(params)
        _core.render_backward(params, height, width, bins.tile, bins.tile_start,
                              bins.pair_gaussian, grad_image, grad)
        return grad

    def adam_step(self, params, grads, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8,
                  var_bounds=(0.25, 1e4), centre_box=None):
        """In-place Adam step (``lr`` has one rate per column) followed by clamping of the
        scales into ``var_bounds`` and, given ``centre_box`` = (width, height), of the centres
        into [0, width] x [0, height]."""
        lr = np.ascontiguousarray(lr, dtype=np.float64)
        if lr.shape != (8,):
            raise ValueError("lr must hold one learning rate per column (8)")
        for name, arr in (("params", params), ("grads", grads), ("m", m), ("v", v)):
            if not (isinstance(arr, np.ndarray) and arr.flags.c_contiguous
                    and arr.dtype == params.dtype and arr.shape == params.shape):
                raise ValueError(f"{name} must be a C-contiguous {params.dtype} array "
                                 f"of shape {params.shape}")
        _core.adam_step(params, grads, m, v, int(step), lr, float(betas[0]), float(betas[1]),
                        float(eps), float(var_bounds[0]), float(var_bounds[1]),
                        *centre_limits(centre_box))

    def clamp_scales(self, params, var_bounds):
        """Clamp every covariance's eigenvalues into ``var_bounds``, in place."""
        if not (isinstance(params, np.ndarray) and params.flags.c_contiguous):
            raise ValueError("params must be a C-contiguous array")
        _core.clamp_scales(params, float(var_bounds[0]), float(var_bounds[1]))

    def to_numpy(self, array):
        return np.asarray(array)

    def from_numpy(self, array):
        return np.ascontiguousarray(array)
