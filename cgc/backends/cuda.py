"""CUDA backend: the kernels of ``cgc/kernels`` launched through CuPy, float32 throughout.

The kernel modules and the array module are injectable: ``CUDABackend(load_module=...,
xp=numpy)`` drives this same code with a CPU emulation of CUDA, which is how it is tested
on machines without a GPU."""
import numpy as np

from cgc.backends.bins import Bins
from cgc.backends.cpu import centre_limits, check_image_size

TILE = 16
# Threads per block of the one-thread-per-item kernels
# (docs/tuning.md, "kernels/common.cuh: GPU tile and exp").
BLOCK = 256
# Threads per block of refine_round (cgc/kernels/refine.cu's REFINE_THREADS).
REFINE_THREADS = 128


def _blocks(count):
    return ((count + BLOCK - 1) // BLOCK,)


class CUDABackend:
    """Tiled renderer, Adam and clamping as CUDA kernels; arrays live in ``xp``.

    ``load_module(name)`` returns an object with ``get_function(kernel)`` for the kernel
    modules "render" and "adam" (default: ``cgc.kernels.load_module``, which uses CuPy);
    ``xp`` is the array module holding the data (default: ``cupy``)."""

    name = "cuda"

    def __init__(self, load_module=None, xp=None):
        if xp is None:
            try:
                import cupy as xp
            except ImportError as error:
                raise ImportError("the CUDA backend needs CuPy: pip install 'cgc[cuda]'") \
                    from error
        if load_module is None:
            from cgc.kernels import load_module
        self.xp = xp
        self._load_module = load_module
        self._refine = None  # refine.cu, loaded when first used
        render = load_module("render")
        adam = load_module("adam")
        self._prepare = render.get_function("prepare_gaussians")
        self._expand = render.get_function("expand_pairs")
        self._ranges = render.get_function("tile_ranges")
        self._forward = render.get_function("render_forward")
        self._backward = render.get_function("render_backward")
        self._reduce = render.get_function("reduce_pair_gradients")
        self._adam = adam.get_function("adam_step")
        self._clamp = adam.get_function("clamp_scales")

    def _params(self, params):
        xp = self.xp
        params = xp.ascontiguousarray(xp.asarray(params, dtype=xp.float32))
        if params.ndim != 2 or params.shape[1] != 8:
            raise ValueError(f"params must have shape (N, 8), got {params.shape}")
        return params

    def _in_place(self, name, array, shape):
        if not (isinstance(array, self.xp.ndarray) and array.dtype == self.xp.float32
                and array.flags.c_contiguous and array.shape == shape):
            raise ValueError(f"{name} must be a C-contiguous float32 {self.xp.__name__} "
                             f"array of shape {shape}")

    def _bins(self, params, height, width, bins):
        if bins is None:
            return self.bin(params, height, width)
        if not isinstance(bins, Bins) or bins.tile != TILE:
            raise ValueError(f"the CUDA kernels draw {TILE}-pixel tiles: bin with this "
                             f"backend, or the CPU's bin(..., tile={TILE})")
        xp = self.xp
        return Bins(xp.ascontiguousarray(xp.asarray(bins.tile_start, dtype=xp.int64)),
                    xp.ascontiguousarray(xp.asarray(bins.pair_gaussian, dtype=xp.int32)),
                    TILE)

    def bin(self, params, height, width):
        """Tile binning of ``params`` (:class:`Bins` of TILE), as ``CPUBackend.bin``."""
        xp = self.xp
        params = self._params(params)
        check_image_size(height, width)
        n = params.shape[0]
        tiles_x = (width + TILE - 1) // TILE
        n_tiles = tiles_x * ((height + TILE - 1) // TILE)
        if n == 0:
            return Bins(xp.zeros(n_tiles + 1, dtype=xp.int64), xp.zeros(0, dtype=xp.int32),
                        TILE)
        tile_rect = xp.empty((n, 4), dtype=xp.int32)
        tile_count = xp.empty(n, dtype=xp.int32)
        self._prepare(_blocks(n), (BLOCK,), (params, np.int32(n), np.int32(height),
                                             np.int32(width), tile_rect, tile_count))
        pair_end = xp.cumsum(tile_count, dtype=xp.int64)
        # The one device-to-host copy of binning: the pair count sizes the arrays below.
        n_pairs = int(pair_end[-1])
        if n_pairs == 0:
            return Bins(xp.zeros(n_tiles + 1, dtype=xp.int64), xp.zeros(0, dtype=xp.int32),
                        TILE)
        keys = xp.empty(n_pairs, dtype=xp.int64)
        self._expand(_blocks(n), (BLOCK,), (tile_rect, pair_end, np.int32(n),
                                            np.int32(tiles_x), keys))
        # Keys are tile * n + gaussian and unique, so any sort gives the reference's order.
        keys = xp.sort(keys)
        tile_start = xp.empty(n_tiles + 1, dtype=xp.int64)
        pair_gaussian = xp.empty(n_pairs, dtype=xp.int32)
        self._ranges(_blocks(n_pairs), (BLOCK,), (keys, np.int64(n_pairs), np.int32(n),
                                                  np.int32(n_tiles), tile_start,
                                                  pair_gaussian))
        return Bins(tile_start, pair_gaussian, TILE)

    def render_forward(self, params, height, width, bins=None, weight=False):
        """Render (H, W, 3) unclipped; with ``weight=True`` also return the (H, W) coverage."""
        xp = self.xp
        params = self._params(params)
        check_image_size(height, width)
        tile_start, pair_gaussian, _ = self._bins(params, height, width, bins)
        out = xp.empty((height, width, 3), dtype=xp.float32)
        # The kernel takes a pointer either way; a 1-element placeholder stands in for "none".
        coverage = xp.empty((height, width) if weight else (1,), dtype=xp.float32)
        grid = ((width + TILE - 1) // TILE, (height + TILE - 1) // TILE)
        self._forward(grid, (TILE, TILE), (params, np.int32(height), np.int32(width),
                                           tile_start, pair_gaussian, out, coverage,
                                           np.int32(bool(weight))))
        return (out, coverage) if weight else out

    def render_backward(self, params, height, width, grad_image, bins=None):
        """dL/dparams (N, 8) given dL/dimage (H, W, 3)."""
        xp = self.xp
        params = self._params(params)
        check_image_size(height, width)
        grad_image = xp.ascontiguousarray(xp.asarray(grad_image, dtype=xp.float32))
        if grad_image.shape != (height, width, 3):
            raise ValueError(f"grad_image must have shape {(height, width, 3)}")
        tile_start, pair_gaussian, _ = self._bins(params, height, width, bins)
        n_pairs = pair_gaussian.shape[0]
        if n_pairs == 0:
            return xp.zeros(params.shape, dtype=xp.float32)
        # One float32 row per (tile, Gaussian) pair, then each Gaussian's rows summed in tile
        # order: fixed summation orders and no atomics, so gradients repeat bit for bit.
        # Both kernels write every row of their output.
        pair_grad = xp.empty((n_pairs, 8), dtype=xp.float32)
        grid = ((width + TILE - 1) // TILE, (height + TILE - 1) // TILE)
        self._backward(grid, (TILE, TILE), (params, np.int32(height), np.int32(width),
                                            tile_start, pair_gaussian, grad_image, pair_grad))
        n = params.shape[0]
        grad = xp.empty(params.shape, dtype=xp.float32)
        self._reduce(_blocks(n), (BLOCK,), (params, np.int32(n), np.int32(height),
                                            np.int32(width), tile_start, pair_gaussian,
                                            pair_grad, grad))
        return grad

    def adam_step(self, params, grads, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8,
                  var_bounds=(0.25, 1e4), centre_box=None):
        """In-place Adam step (``lr`` has one rate per column) followed by clamping of the
        scales into ``var_bounds`` and, given ``centre_box`` = (width, height), of the centres
        into [0, width] x [0, height]."""
        xp = self.xp
        if step < 1:
            raise ValueError("step counts from 1")
        lr = xp.ascontiguousarray(xp.asarray(lr, dtype=xp.float64))
        if lr.shape != (8,):
            raise ValueError("lr must hold one learning rate per column (8)")
        shape = params.shape
        if len(shape) != 2 or shape[1] != 8:
            raise ValueError(f"params must have shape (N, 8), got {shape}")
        for name, arr in (("params", params), ("grads", grads), ("m", m), ("v", v)):
            self._in_place(name, arr, shape)
        n = shape[0]
        if n == 0:
            return
        beta1, beta2 = float(betas[0]), float(betas[1])
        # Bias corrections in double on the host, as the reference computes them.
        corr1 = 1.0 - beta1 ** int(step)
        corr2 = 1.0 - beta2 ** int(step)
        self._adam(_blocks(n), (BLOCK,), (params, grads, m, v, lr, np.int32(n),
                                          np.float64(beta1), np.float64(beta2),
                                          np.float64(eps), np.float64(corr1),
                                          np.float64(corr2), np.float64(var_bounds[0]),
                                          np.float64(var_bounds[1]),
                                          *map(np.float64, centre_limits(centre_box))))

    def clamp_scales(self, params, var_bounds):
        """Clamp every covariance's eigenvalues into ``var_bounds``, in place."""
        shape = params.shape
        if len(shape) != 2 or shape[1] != 8:
            raise ValueError(f"params must have shape (N, 8), got {shape}")
        self._in_place("params", params, shape)
        if shape[0] > 0:
            self._clamp(_blocks(shape[0]), (BLOCK,), (params, np.int32(shape[0]),
                                                      np.float64(var_bounds[0]),
                                                      np.float64(var_bounds[1])))

    def refine_round(self, params, codes, values, levels, lo, step, render, target, order):
        """One round of the refinement's descent (cgc/kernels/refine.cu), in place on
        ``params`` (N, 8) float32, ``codes`` (N, 8) uint32 and ``render`` (3, H, W) float64;
        ``order``: the round's Gaussians (int32), whose reaches must not meet
        (cgc.image._refine_cy.refine_rounds).  ``values`` (8, V) float32, ``levels`` int64,
        ``lo`` and ``step`` float64 per attribute, ``target`` (3, H, W) float32: the
        tables of cgc/image/refine.py, on the device."""
        count = int(order.shape[0])
        if count == 0:
            return
        if self._refine is None:
            self._refine = self._load_module("refine").get_function("refine_round")
        height, width = render.shape[1:]
        self._refine((count,), (REFINE_THREADS,), (
            params, codes, values, np.int32(values.shape[1]), levels, lo, step, render, target,
            order, np.int32(height), np.int32(width)))

    def to_numpy(self, array):
        asnumpy = getattr(self.xp, "asnumpy", np.asarray)
        return asnumpy(array)

    def from_numpy(self, array):
        return self.xp.ascontiguousarray(self.xp.asarray(array))
