# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled CPU core of cgc: the tiled reference renderer (binning, render_forward,
render_backward), Adam with scale clamping, and the fit's SSIM gradient.

The CUDA kernels in cgc/kernels/ are checked against these functions.  Callers
(cgc/backends/cpu.py) validate shapes and dtypes (C-contiguous, float32 or float64) before
calling in: the loops here run without bounds checks."""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport sqrt
from libc.string cimport memcpy, memset
import numpy as np
cimport numpy as np

np.import_array()

# The renderer's loops are C (cgc/native/render_tile.h, whose "read me first" note states
# the model and the invariants); this file bins Gaussians to tiles and hands them over.

from cgc.native.threads cimport team_size
from cgc.native.render_tile cimport (CUTOFF_Q, _backward_d, _backward_f, _forward_d,
                                     _forward_f, _gaussian_box, _render_init, _weight,
                                     _weight_f)

cdef bint render_avx2 = _render_init(1)


def simd_renderer(enabled=None):
    """Whether the renderer's loops use AVX2 (x86-64 CPUs that have it, else the baseline
    loops); enabled=True/False switches it on (if present) or off, for tests and benches.
    Both give the same bits."""
    global render_avx2
    if enabled is not None:
        render_avx2 = _render_init(1 if enabled else 0)
    return bool(render_avx2)


def gaussian_weight(q):
    """exp(-q / 2) as the renderer computes it, for q in [0, 9]: float32 for float32 q (the
    parameters' precision sets the renderer's), else float64."""
    q = np.asarray(q)
    q = q.astype(np.float32 if q.dtype == np.float32 else np.float64)
    if not (np.all(q >= 0) and np.all(q <= CUTOFF_Q)):
        raise ValueError("q must lie in [0, 9]")
    flat = q.ravel()
    out = np.empty_like(flat)
    cdef Py_ssize_t k
    if q.dtype == np.float32:
        for k in range(flat.shape[0]):
            out[k] = _weight_f(flat[k])
    else:
        for k in range(flat.shape[0]):
            out[k] = _weight(flat[k])
    return out.reshape(q.shape)


def bin_gaussians(floating[:, ::1] params, int height, int width, int tile):
    """Bin Gaussians into tile x tile tiles.

    Returns (tile_start, pair_gaussian): the Gaussians of tile t are
    pair_gaussian[tile_start[t]:tile_start[t + 1]], in increasing index."""
    cdef Py_ssize_t n = params.shape[0], g
    if tile < 1 or height < 1 or width < 1:
        raise ValueError("tile and image size must be positive")
    cdef int tiles_x = (width + tile - 1) // tile
    cdef int tiles_y = (height + tile - 1) // tile
    cdef Py_ssize_t n_tiles = <Py_ssize_t>tiles_x * tiles_y
    cdef int j0, j1, i0, i1, tx, ty
    cdef np.ndarray[np.int64_t, ndim=1] start_arr = np.zeros(n_tiles + 1, dtype=np.int64)
    cdef np.int64_t[::1] start = start_arr
    cdef np.int64_t[::1] cursor
    cdef np.int32_t[::1] pairs
    cdef np.int64_t total = 0, count
    if params.shape[1] != 8:
        raise ValueError("params must have 8 columns")
    with nogil:
        for g in range(n):
            if _gaussian_box(params[g, 0], params[g, 1], params[g, 2], params[g, 3],
                             params[g, 4], width, height, &j0, &j1, &i0, &i1):
                for ty in range(i0 // tile, i1 // tile + 1):
                    for tx in range(j0 // tile, j1 // tile + 1):
                        start[ty * tiles_x + tx + 1] += 1
        for tx in range(n_tiles):
            count = start[tx + 1]
            start[tx + 1] = total + count
            total += count
    cursor_arr = start_arr[:n_tiles].copy()
    cursor = cursor_arr
    pairs_arr = np.empty(total, dtype=np.int32)
    pairs = pairs_arr
    with nogil:
        for g in range(n):
            if _gaussian_box(params[g, 0], params[g, 1], params[g, 2], params[g, 3],
                             params[g, 4], width, height, &j0, &j1, &i0, &i1):
                for ty in range(i0 // tile, i1 // tile + 1):
                    for tx in range(j0 // tile, j1 // tile + 1):
                        pairs[cursor[ty * tiles_x + tx]] = <np.int32_t>g
                        cursor[ty * tiles_x + tx] += 1
    return start_arr, pairs_arr


def render_work(floating[:, ::1] params, int height, int width):
    """Pixels inside the Gaussians' boxes (bin_gaussians's), summed over the Gaussians: the
    (pixel, Gaussian) pairs a render evaluates at most, and a bound on its (tile, Gaussian)
    pairs at any tile size, since every pair holds a pixel of its box.  Costs O(N), so a
    decoder can refuse absurd work before binning (cgc.limits)."""
    cdef Py_ssize_t n = params.shape[0], g
    cdef int j0, j1, i0, i1
    cdef np.int64_t total = 0
    if params.shape[1] != 8:
        raise ValueError("params must have 8 columns")
    with nogil:
        for g in range(n):
            if _gaussian_box(params[g, 0], params[g, 1], params[g, 2], params[g, 3],
                             params[g, 4], width, height, &j0, &j1, &i0, &i1):
                total += <np.int64_t>(j1 - j0 + 1) * (i1 - i0 + 1)
    return total


def render_forward(floating[:, ::1] params, int height, int width, int tile_size,
                   np.int64_t[::1] tile_start, np.int32_t[::1] pair_gaussian,
                   floating[:, :, ::1] out, floating[:, ::1] weight):
    """Write sum_g colour_g * exp(-q_g / 2) into out (H, W, 3).

    weight (H, W), when it has that shape, receives sum_g exp(-q_g / 2) (the coverage); pass
    a (0, 0) array to skip it.  Inputs must come from bin_gaussians on the same params and
    tile_size (the CPU backend checks them)."""
    cdef bint want_weight = weight.shape[0] == height and weight.shape[1] == width
    cdef np.int64_t n_tiles = tile_start.shape[0] - 1
    cdef int status
    with nogil:
        if floating is float:
            status = _forward_f(&params[0, 0], height, width, tile_size, &tile_start[0],
                                n_tiles, &pair_gaussian[0] if pair_gaussian.shape[0] else NULL,
                                &out[0, 0, 0], &weight[0, 0] if want_weight else NULL,
                                team_size())
        else:
            status = _forward_d(&params[0, 0], height, width, tile_size, &tile_start[0],
                                n_tiles, &pair_gaussian[0] if pair_gaussian.shape[0] else NULL,
                                &out[0, 0, 0], &weight[0, 0] if want_weight else NULL,
                                team_size())
    if status != 0:
        raise MemoryError("no memory for the renderer's tile buffers")


def render_backward(floating[:, ::1] params, int height, int width, int tile_size,
                    np.int64_t[::1] tile_start, np.int32_t[::1] pair_gaussian,
                    floating[:, :, ::1] grad_image, floating[:, ::1] grad_params):
    """Write dL/dparams (N, 8) given dL/dimage (H, W, 3) for the image of render_forward."""
    cdef np.int64_t n_tiles = tile_start.shape[0] - 1
    cdef Py_ssize_t n_pairs = pair_gaussian.shape[0], p, k
    cdef double[:, ::1] pair_grad = np.empty((max(n_pairs, 1), 8), dtype=np.float64)
    cdef int status, g
    with nogil:
        if floating is float:
            status = _backward_f(&params[0, 0], height, width, tile_size, &tile_start[0],
                                 n_tiles, &pair_gaussian[0] if n_pairs else NULL,
                                 &grad_image[0, 0, 0], &pair_grad[0, 0], team_size())
        else:
            status = _backward_d(&params[0, 0], height, width, tile_size, &tile_start[0],
                                 n_tiles, &pair_gaussian[0] if n_pairs else NULL,
                                 &grad_image[0, 0, 0], &pair_grad[0, 0], team_size())
    if status != 0:
        raise MemoryError("no memory for the renderer's tile buffers")
    grad_params[:, :] = 0
    with nogil:
        for p in range(n_pairs):
            g = pair_gaussian[p]
            for k in range(8):
                grad_params[g, k] += <floating>pair_grad[p, k]


# Adam step and covariance clamping for the packed (N, 8) Gaussian array.
#
# Invariants kept by both functions: after they return, both eigenvalues of every covariance
# L L^T lie in [min_var, max_var] (up to float rounding of the stored Cholesky factor).
# A covariance already inside the bounds is left bit-for-bit untouched, so clamping is the
# identity on valid Gaussians and Adam's trajectory is not perturbed by re-factorisation.
# adam_step also keeps every centre inside its box when given one (see _clamp_centre).


cdef inline floating _clamp_centre(floating value, double lo, double hi) noexcept nogil:
    """value clamped into [lo, hi].  Adam moves a centre by about its learning rate whatever
    the size of its gradient, and a Gaussian whose cut-off ellipse leaves the image has no
    gradient to bring it back (a 1x1 image's one Gaussian wandered off and decoded black).
    NaN compares false both ways and passes through, for the fit's finiteness check."""
    if value < lo:
        return <floating>lo
    if value > hi:
        return <floating>hi
    return value

cdef inline void _clamp_cholesky(floating *row, double min_var, double max_var) noexcept nogil:
    """Clamp the eigenvalues of L L^T, L = [[row[2], 0], [row[3], row[4]]], to the bounds.

    A clamped covariance is written back as its Cholesky factor with l11 > 0, l22 > 0."""
    cdef double l11 = row[2], l21 = row[3], l22 = row[4]
    cdef double a = l11 * l11, b = l11 * l21, c = l21 * l21 + l22 * l22
    cdef double half_diff = 0.5 * (a - c), mean = 0.5 * (a + c)
    cdef double spread = sqrt(half_diff * half_diff + b * b)
    cdef double big = mean + spread, small = mean - spread
    cdef double ex, ey, norm, ex2, ey2, new_a, new_b, new_c, new_l11
    if small >= min_var and big <= max_var:
        return
    # Unit eigenvector (ex, ey) of the larger eigenvalue; pick the better-conditioned of the
    # two equivalent expressions.  A round covariance has every direction as eigenvector.
    if half_diff >= 0.0:
        ex = big - c
        ey = b
    else:
        ex = b
        ey = big - a
    norm = sqrt(ex * ex + ey * ey)
    if norm > 0.0:
        ex = ex / norm
        ey = ey / norm
    else:
        ex = 1.0
        ey = 0.0
    big = min(max(big, min_var), max_var)
    small = min(max(small, min_var), max_var)
    ex2 = ex * ex
    ey2 = ey * ey
    new_a = big * ex2 + small * ey2
    new_b = (big - small) * ex * ey
    new_c = big * ey2 + small * ex2
    new_l11 = sqrt(new_a)
    row[2] = <floating>new_l11
    row[3] = <floating>(new_b / new_l11)
    row[4] = <floating>sqrt(big * small / new_a)


def clamp_scales(floating[:, ::1] params, double min_var, double max_var):
    """Clamp every covariance's eigenvalues into [min_var, max_var], in place."""
    cdef Py_ssize_t g
    with nogil:
        for g in range(params.shape[0]):
            _clamp_cholesky(&params[g, 0], min_var, max_var)


def adam_step(floating[:, ::1] params, floating[:, ::1] grads,
              floating[:, ::1] m, floating[:, ::1] v, long step,
              double[::1] lr, double beta1, double beta2, double eps,
              double min_var, double max_var,
              double min_x, double max_x, double min_y, double max_y):
    """One bias-corrected Adam step (step counts from 1) with a learning rate per column,
    followed by clamping of the centre into [min_x, max_x] x [min_y, max_y] and of the
    covariance; updates params, m and v in place."""
    cdef Py_ssize_t n = params.shape[0], g
    cdef int k
    cdef double corr1 = 1.0 - beta1 ** step, corr2 = 1.0 - beta2 ** step
    cdef double grad, m_new, v_new
    if step < 1:
        raise ValueError("step counts from 1")
    for g in prange(n, nogil=True, schedule="static", num_threads=team_size()):
        for k in range(8):
            grad = grads[g, k]
            m_new = beta1 * m[g, k] + (1.0 - beta1) * grad
            v_new = beta2 * v[g, k] + (1.0 - beta2) * grad * grad
            m[g, k] = <floating>m_new
            v[g, k] = <floating>v_new
            params[g, k] = <floating>(params[g, k]
                                      - lr[k] * (m_new / corr1) / (sqrt(v_new / corr2) + eps))
        params[g, 0] = _clamp_centre(params[g, 0], min_x, max_x)
        params[g, 1] = _clamp_centre(params[g, 1], min_y, max_y)
        _clamp_cholesky(&params[g, 0], min_var, max_var)



cdef inline void _fir(double *out, const double *src, Py_ssize_t n, const double *window,
                      Py_ssize_t nk) noexcept nogil:
    """out[j] = sum_k window[k] src[j + k] for j < n, the window symmetric (SSIM's Gaussian):
    its taps folded in pairs, half the multiplications."""
    cdef Py_ssize_t j, k, half = nk // 2
    cdef double wk = window[half]
    for j in range(n):
        out[j] = wk * src[j + half]
    for k in range(half):
        wk = window[k]
        for j in range(n):
            out[j] += wk * (src[j + k] + src[j + nk - 1 - k])


cdef inline void _fir_columns(double *b, Py_ssize_t w, floating *src, Py_ssize_t row,
                              Py_ssize_t plane, int maps, Py_ssize_t n, const double *window,
                              Py_ssize_t nk) noexcept nogil:
    """Row q < maps of ``b`` (stride w) = sum_k window[k] times row k of map q of ``src``
    (rows ``row`` apart, maps ``plane`` apart), the symmetric taps folded: one output row of
    a column filter."""
    cdef Py_ssize_t q, j, k, half = nk // 2
    cdef double wk
    cdef floating *lo
    cdef floating *hi
    for q in range(maps):
        wk = window[half]
        lo = src + q * plane + half * row
        for j in range(n):
            b[q * w + j] = wk * lo[j]
        for k in range(half):
            wk = window[k]
            lo = src + q * plane + k * row
            hi = src + q * plane + (nk - 1 - k) * row
            for j in range(n):
                b[q * w + j] += wk * (lo[j] + hi[j])


def ssim_gradient(floating[:, :, ::1] x, floating[:, :, ::1] y, double[::1] window,
                  double c1, double c2, floating[:, :, ::1] grad=None):
    """Mean SSIM of the (C, H, W) stack ``x`` against ``y`` over the windows wholly inside,
    and its gradient with respect to ``x``, written into ``grad`` unless it is None (the
    value alone skips the derivative maps and their filtering, about a third of the work):
    cgc.metrics.ssim_gradient on the CPU (its docstring has the maths).  ``window`` is the
    separable filter, symmetric, of odd length under each side.  Sums run in double, in a
    fixed order, one row per thread: the result does not depend on the thread count."""
    cdef Py_ssize_t nc = x.shape[0], h = x.shape[1], w = x.shape[2], nk = window.shape[0]
    cdef Py_ssize_t ho = h - nk + 1, wo = w - nk + 1, pad = nk - 1
    cdef int threads = team_size()
    cdef Py_ssize_t t, c, i, j, k, q, tid
    for k in range(nk):
        if nk % 2 == 0 or window[k] != window[nk - 1 - k]:
            raise ValueError("the window must be symmetric, of odd length")
    dtype = np.float32 if floating is float else np.float64
    # Moments filtered along rows (valid part), then the three SSIM derivative maps, then
    # those filtered back along columns and rows (the transposed filter over the maps
    # zero-padded), each row of a pass in a thread's own double buffers.
    cdef bint gradient = grad is not None
    cdef floating[:, :, :, ::1] rows = np.empty((5, nc, h, wo), dtype)
    cdef floating[:, :, :, ::1] deriv = np.empty((3, nc * gradient, ho, wo), dtype)
    # Per thread: five output rows, then five input rows with pad zeros either side.
    cdef Py_ssize_t span = w + 2 * pad
    cdef double[:, ::1] buf = np.zeros((threads, 10 * span))
    cdef double[::1] row_sums = np.zeros(nc * ho)
    cdef Py_ssize_t plane = nc * h * wo, dplane = nc * ho * wo
    cdef double mx, my, sa1, sa2, sb1, sb2, r, s, d_xx, d_xy, total, wk
    cdef double scale = 1.0 / (nc * ho * wo)
    cdef double *b
    cdef double *inp
    cdef const floating *xr
    cdef const floating *yr
    cdef floating *src
    cdef const double *wp = &window[0]
    with nogil, parallel(num_threads=threads):
        tid = threadid()
        for t in prange(nc * h, schedule="static"):
            c, i = t // h, t % h
            b, inp = &buf[tid, 0], &buf[tid, 5 * span]
            xr, yr = &x[c, i, 0], &y[c, i, 0]
            for j in range(w):
                inp[j] = xr[j]
                inp[span + j] = yr[j]
                inp[2 * span + j] = <double>xr[j] * xr[j]
                inp[3 * span + j] = <double>yr[j] * yr[j]
                inp[4 * span + j] = <double>xr[j] * yr[j]
            for q in range(5):
                _fir(b + q * span, inp + q * span, wo, wp, nk)
                src = &rows[q, c, i, 0]
                for j in range(wo):
                    src[j] = <floating>b[q * span + j]
    with nogil, parallel(num_threads=threads):
        tid = threadid()
        for t in prange(nc * ho, schedule="static"):
            c, i = t // ho, t % ho
            b = &buf[tid, 0]
            _fir_columns(b, span, &rows[0, c, i, 0], wo, plane, 5, wo, wp, nk)
            for j in range(wo):
                mx, my = b[j], b[span + j]
                sa1 = 2.0 * mx * my + c1
                sa2 = 2.0 * (b[4 * span + j] - mx * my) + c2
                sb1 = mx * mx + my * my + c1
                sb2 = (b[2 * span + j] - mx * mx) + (b[3 * span + j] - my * my) + c2
                # One division: every quotient below has sb1 sb2 under it.
                r = 1.0 / (sb1 * sb2)
                s = sa1 * sa2 * r
                row_sums[t] += s
                if gradient:
                    d_xx = -s * sb1 * r
                    d_xy = 2.0 * sa1 * r
                    deriv[0, c, i, j] = <floating>(2.0 * (my * sa2 - mx * s * sb2) * r
                                                   - 2.0 * mx * d_xx - my * d_xy)
                    deriv[1, c, i, j], deriv[2, c, i, j] = <floating>d_xx, <floating>d_xy
    if gradient:
        with nogil, parallel(num_threads=threads):
            tid = threadid()
            for t in prange(nc * h, schedule="static"):
                c, i = t // h, t % h
                b, inp = &buf[tid, 0], &buf[tid, 5 * span]
                for q in range(3):  # the first pass wrote over the left padding
                    memset(inp + q * span, 0, pad * sizeof(double))
                # Column pass: the derivative rows i - k that exist, zero past the maps.
                if pad <= i < ho:
                    _fir_columns(inp + pad, span, &deriv[0, c, i - pad, 0], wo, dplane, 3,
                                 wo, wp, nk)
                else:
                    for q in range(3):
                        memset(inp + q * span + pad, 0, wo * sizeof(double))
                    for k in range(max(0, i - ho + 1), min(nk, i + 1)):
                        wk = window[k]
                        for q in range(3):
                            src = &deriv[q, c, i - k, 0]
                            for j in range(wo):
                                inp[q * span + pad + j] += wk * src[j]
                # Row pass over the zero-padded row: out[j] = sum_k window[k] d[j - k].
                for q in range(3):
                    _fir(b + q * span, inp + q * span, w, wp, nk)
                xr, yr, src = &x[c, i, 0], &y[c, i, 0], &grad[c, i, 0]
                for j in range(w):
                    src[j] = <floating>((b[j] + 2.0 * xr[j] * b[span + j]
                                         + yr[j] * b[2 * span + j]) * scale)
    total = 0.0
    for t in range(nc * ho):  # serially, in order: the same sum on any thread count
        total += row_sums[t]
    return total * scale
