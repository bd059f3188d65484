# Tiled CPU reference renderer: binning, render_forward, render_backward.
#
# Read me first
# -------------
# * A Gaussian is a row of the packed (N, 8) array: x, y, l11, l21, l22, r, g, b, all in
#   pixels. L = [[l11, 0], [l21, l22]] is the Cholesky factor of the covariance, so
#   q = d^T (L L^T)^-1 d = u^2 + v^2 with u = dx / l11, v = (dy - l21 u) / l22.
# * Pixel (row i, column j) has its centre at (j + 0.5, i + 0.5).
# * A Gaussian contributes colour * exp(-q / 2) to a pixel exactly when q <= CUTOFF_Q (the
#   3-sigma ellipse).  Everything else (bounding box, tile range, per-row spans) is only a
#   conservative way of finding those pixels, so the pixels drawn do not depend on the tiling.
# * The bounding box of the ellipse q <= 9 is |dx| <= 3 sqrt(Sxx), |dy| <= 3 sqrt(Syy): tighter
#   than GaussianImage's square of 3 sqrt(lambda_max) and still exact.
# * Tiles are tile x tile pixels in row-major order, the size the caller's binning chose (the
#   CPU backend's 32, the CUDA kernels' 16). The pair list holds, for each tile, the indices
#   of the Gaussians whose box touches it, in increasing Gaussian index, with no cap on its
#   length.  Backward writes one gradient row per (tile, Gaussian) pair and reduces the
#   rows in pair order afterwards, so results do not depend on the thread count.
# * Per-pixel u, v, q are computed in the precision of the parameters, one correctly rounded
#   operation at a time and in the order of the CUDA helpers (common.cuh), so float32 renders
#   agree with the kernels on which pixels pass q <= 9.  The weight exp(-q/2) itself comes
#   from a float64 recurrence along each row (_row_weight_anchor): exp dominated the cost.

cdef enum:
    ANCHOR_EVERY = 16
cdef double CUTOFF_Q = 9.0
# Rows of Gaussians thinner than 1 / sqrt(RECURRENCE_MAX_A) pixels (far below the fit's
# minimum scale) are evaluated pixel by pixel: their recurrence ratio spans so many orders of
# magnitude per pixel that float64 would underflow or overflow.
cdef double RECURRENCE_MAX_A = 50.0
# Gaussians thinner than this (in pixels) are skipped rather than divided by.
cdef double MIN_CHOLESKY = 1e-12

cdef inline bint _gaussian_box(double x, double y, double l11, double l21, double l22,
                               int width, int height,
                               int *j0, int *j1, int *i0, int *i1) noexcept nogil:
    """Pixel box (inclusive) of the ellipse q <= CUTOFF_Q, clipped to the image.

    Returns False when the Gaussian is degenerate or its box misses the image."""
    cdef double half_w, half_h
    if not (fabs(l11) > MIN_CHOLESKY and fabs(l22) > MIN_CHOLESKY):
        return False
    half_w = sqrt(CUTOFF_Q * l11 * l11)
    half_h = sqrt(CUTOFF_Q * (l21 * l21 + l22 * l22))
    if not (half_w < 1e9 and half_h < 1e9 and fabs(x) < 1e9 and fabs(y) < 1e9):
        return False
    # Centre of column j is j + 0.5: it lies in [x - half_w, x + half_w] when
    # ceil(x - half_w - 0.5) <= j <= floor(x + half_w - 0.5).
    j0[0] = <int>ceil(x - half_w - 0.5)
    j1[0] = <int>floor(x + half_w - 0.5)
    i0[0] = <int>ceil(y - half_h - 0.5)
    i1[0] = <int>floor(y + half_h - 0.5)
    if j0[0] < 0: j0[0] = 0
    if i0[0] < 0: i0[0] = 0
    if j1[0] > width - 1: j1[0] = width - 1
    if i1[0] > height - 1: i1[0] = height - 1
    return j0[0] <= j1[0] and i0[0] <= i1[0]


cdef inline void _row_quadratic(double dy, double inv_l11, double l21, double inv_l22,
                                double *a, double *b, double *c) noexcept nogil:
    """q along one pixel row as a quadratic in dx: q(dx) = a dx^2 + 2 b dx + c, a > 0."""
    a[0] = inv_l11 * inv_l11 * (1.0 + (l21 * inv_l22) * (l21 * inv_l22))
    b[0] = -l21 * inv_l11 * inv_l22 * inv_l22 * dy
    c[0] = dy * dy * inv_l22 * inv_l22


cdef inline void _row_span(double x, double a, double b, double c, int j_lo, int j_hi,
                           int *j0, int *j1) noexcept nogil:
    """Columns of one pixel row that may hold q <= CUTOFF_Q, intersected with [j_lo, j_hi].

    (a, b, c) is the row's quadratic (_row_quadratic) in dx = (j + 0.5) - x.  The span is
    widened by one pixel on each side; the caller still tests q per pixel, so rounding in
    the roots can never drop a pixel."""
    cdef double disc, root, lo, hi
    disc = b * b - a * (c - CUTOFF_Q)
    if disc < 0.0:
        j0[0] = 1
        j1[0] = 0
        return
    root = sqrt(disc)
    lo = (-b - root) / a + x - 0.5
    hi = (-b + root) / a + x - 0.5
    j0[0] = <int>floor(lo) if lo > j_lo else j_lo
    j1[0] = <int>ceil(hi) + 1 if hi < j_hi else j_hi
    if j0[0] < j_lo: j0[0] = j_lo
    if j1[0] > j_hi: j1[0] = j_hi


cdef inline floating _direct_weight(floating q) noexcept nogil:
    """exp(-q / 2) evaluated directly: the fallback when the row recurrence has left [0, 1].

    That happens only for degenerate Gaussians (footprints far below a pixel or with huge
    shear, as a corrupted file may hold), where the recurrence's ratio overflows; the true
    weight of a pixel with q <= 9 always lies in [exp(-4.5), 1]."""
    return <floating>exp(-0.5 * q)


cdef inline void _row_weight_anchor(double dx, double a, double b, double c,
                                    double *weight, double *ratio) noexcept nogil:
    """Start of the weight recurrence along a row, at offset dx.

    weight = exp(-q(dx) / 2) and ratio = weight(dx + 1) / weight(dx).  Stepping one pixel
    right is weight *= ratio, ratio *= exp(-a): two multiplications instead of an exp.
    Callers re-anchor every ANCHOR_EVERY pixels, which bounds the accumulated rounding to
    a few hundred ulps of float64 (~1e-13 relative)."""
    weight[0] = exp(-0.5 * ((a * dx + 2.0 * b) * dx + c))
    ratio[0] = exp(-0.5 * (a * (2.0 * dx + 1.0) + 2.0 * b))


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


cdef inline void _tile_rect(Py_ssize_t tile, int tiles_x, int size, int width, int height,
                            int *ti0, int *ti1, int *tj0, int *tj1) noexcept nogil:
    ti0[0] = <int>(tile // tiles_x) * size
    tj0[0] = <int>(tile % tiles_x) * size
    ti1[0] = min(ti0[0] + size, height) - 1
    tj1[0] = min(tj0[0] + size, width) - 1


def render_forward(floating[:, ::1] params, int height, int width, int tile_size,
                   np.int64_t[::1] tile_start, np.int32_t[::1] pair_gaussian,
                   floating[:, :, ::1] out, floating[:, ::1] weight):
    """Accumulate sum_g colour_g * exp(-q_g / 2) into out (H, W, 3), overwriting it.

    weight (H, W), when it has that shape, receives sum_g exp(-q_g / 2) (the coverage); pass
    a (0, 0) array to skip it.  Inputs must come from bin_gaussians on the same params and
    tile_size (the CPU backend checks them)."""
    cdef int tiles_x = (width + tile_size - 1) // tile_size
    cdef Py_ssize_t n_tiles = tile_start.shape[0] - 1, tile, p
    cdef int ti0, ti1, tj0, tj1, j0, j1, i0, i1, i, j, rj0, rj1, g
    cdef bint want_weight = weight.shape[0] == height and weight.shape[1] == width
    cdef floating x, y, l21, inv_l11, inv_l22, cr, cg, cb, dy, u, v, q, w
    cdef double qa, qb, qc, w_row, ratio, step
    out[:, :, :] = 0
    if want_weight:
        weight[:, :] = 0
    for tile in prange(n_tiles, nogil=True, schedule="dynamic"):
        # Variables written only through pointers must be assigned here once, or Cython
        # would share them between threads instead of making them private.
        ti0 = ti1 = tj0 = tj1 = j0 = j1 = i0 = i1 = rj0 = rj1 = 0
        qa = qb = qc = w_row = ratio = 0.0
        _tile_rect(tile, tiles_x, tile_size, width, height, &ti0, &ti1, &tj0, &tj1)
        for p in range(tile_start[tile], tile_start[tile + 1]):
            g = pair_gaussian[p]
            x = params[g, 0]
            y = params[g, 1]
            inv_l11 = <floating>1.0 / params[g, 2]
            l21 = params[g, 3]
            inv_l22 = <floating>1.0 / params[g, 4]
            cr = params[g, 5]
            cg = params[g, 6]
            cb = params[g, 7]
            _gaussian_box(x, y, params[g, 2], l21, params[g, 4], width, height,
                          &j0, &j1, &i0, &i1)
            _row_quadratic(0.0, inv_l11, l21, inv_l22, &qa, &qb, &qc)
            step = exp(-qa)
            for i in range(max(i0, ti0), min(i1, ti1) + 1):
                dy = <floating>(i + 0.5) - y
                _row_quadratic(dy, inv_l11, l21, inv_l22, &qa, &qb, &qc)
                _row_span(x, qa, qb, qc, max(j0, tj0), min(j1, tj1), &rj0, &rj1)
                for j in range(rj0, rj1 + 1):
                    if (j - rj0) % ANCHOR_EVERY == 0 or qa > RECURRENCE_MAX_A:
                        _row_weight_anchor(j + 0.5 - x, qa, qb, qc, &w_row, &ratio)
                    u = (<floating>(j + 0.5) - x) * inv_l11
                    v = (dy - l21 * u) * inv_l22
                    q = u * u + v * v
                    if q <= CUTOFF_Q:
                        w = <floating>w_row if 0.0 <= w_row <= 1.0 else _direct_weight(q)
                        out[i, j, 0] += cr * w
                        out[i, j, 1] += cg * w
                        out[i, j, 2] += cb * w
                        if want_weight:
                            weight[i, j] += w
                    w_row = w_row * ratio
                    ratio = ratio * step


def render_backward(floating[:, ::1] params, int height, int width, int tile_size,
                    np.int64_t[::1] tile_start, np.int32_t[::1] pair_gaussian,
                    floating[:, :, ::1] grad_image, floating[:, ::1] grad_params):
    """Write dL/dparams (N, 8) given dL/dimage (H, W, 3) for the image of render_forward."""
    cdef int tiles_x = (width + tile_size - 1) // tile_size
    cdef Py_ssize_t n_tiles = tile_start.shape[0] - 1, n_pairs = pair_gaussian.shape[0]
    cdef Py_ssize_t tile, p, k
    cdef int ti0, ti1, tj0, tj1, j0, j1, i0, i1, i, j, rj0, rj1, g
    cdef floating x, y, l21, inv_l11, inv_l22, cr, cg, cb, dy, u, v, q, w, gr, gg, gb
    cdef floating s, d_u
    cdef double qa, qb, qc, w_row, ratio, step
    cdef double acc_x, acc_y, acc_l11, acc_l21, acc_l22, acc_r, acc_g, acc_b
    cdef double[:, ::1] pair_grad = np.empty((n_pairs, 8), dtype=np.float64)
    for tile in prange(n_tiles, nogil=True, schedule="dynamic"):
        # Variables written only through pointers must be assigned here once, or Cython
        # would share them between threads instead of making them private.
        ti0 = ti1 = tj0 = tj1 = j0 = j1 = i0 = i1 = rj0 = rj1 = 0
        qa = qb = qc = w_row = ratio = 0.0
        _tile_rect(tile, tiles_x, tile_size, width, height, &ti0, &ti1, &tj0, &tj1)
        for p in range(tile_start[tile], tile_start[tile + 1]):
            g = pair_gaussian[p]
            x = params[g, 0]
            y = params[g, 1]
            inv_l11 = <floating>1.0 / params[g, 2]
            l21 = params[g, 3]
            inv_l22 = <floating>1.0 / params[g, 4]
            cr = params[g, 5]
            cg = params[g, 6]
            cb = params[g, 7]
            acc_x = 0.0
            acc_y = 0.0
            acc_l11 = 0.0
            acc_l21 = 0.0
            acc_l22 = 0.0
            acc_r = 0.0
            acc_g = 0.0
            acc_b = 0.0
            _gaussian_box(x, y, params[g, 2], l21, params[g, 4], width, height,
                          &j0, &j1, &i0, &i1)
            _row_quadratic(0.0, inv_l11, l21, inv_l22, &qa, &qb, &qc)
            step = exp(-qa)
            for i in range(max(i0, ti0), min(i1, ti1) + 1):
                dy = <floating>(i + 0.5) - y
                _row_quadratic(dy, inv_l11, l21, inv_l22, &qa, &qb, &qc)
                _row_span(x, qa, qb, qc, max(j0, tj0), min(j1, tj1), &rj0, &rj1)
                for j in range(rj0, rj1 + 1):
                    if (j - rj0) % ANCHOR_EVERY == 0 or qa > RECURRENCE_MAX_A:
                        _row_weight_anchor(j + 0.5 - x, qa, qb, qc, &w_row, &ratio)
                    u = (<floating>(j + 0.5) - x) * inv_l11
                    v = (dy - l21 * u) * inv_l22
                    q = u * u + v * v
                    if q <= CUTOFF_Q:
                        w = <floating>w_row if 0.0 <= w_row <= 1.0 else _direct_weight(q)
                        gr = grad_image[i, j, 0]
                        gg = grad_image[i, j, 1]
                        gb = grad_image[i, j, 2]
                        acc_r = acc_r + gr * w
                        acc_g = acc_g + gg * w
                        acc_b = acc_b + gb * w
                        # s = dL/dq = -(w / 2) * <dL/dpixel, colour>
                        s = <floating>(-0.5) * w * (gr * cr + gg * cg + gb * cb)
                        # dq/du through u directly and through v = (dy - l21 u) / l22
                        d_u = <floating>2.0 * s * (u - v * l21 * inv_l22)
                        acc_x = acc_x - d_u * inv_l11
                        acc_y = acc_y - 2.0 * s * v * inv_l22
                        acc_l11 = acc_l11 - d_u * u * inv_l11
                        acc_l21 = acc_l21 - 2.0 * s * v * u * inv_l22
                        acc_l22 = acc_l22 - 2.0 * s * v * v * inv_l22
                    w_row = w_row * ratio
                    ratio = ratio * step
            pair_grad[p, 0] = acc_x
            pair_grad[p, 1] = acc_y
            pair_grad[p, 2] = acc_l11
            pair_grad[p, 3] = acc_l21
            pair_grad[p, 4] = acc_l22
            pair_grad[p, 5] = acc_r
            pair_grad[p, 6] = acc_g
            pair_grad[p, 7] = acc_b
    grad_params[:, :] = 0
    with nogil:
        for p in range(n_pairs):
            g = pair_gaussian[p]
            for k in range(8):
                grad_params[g, k] += <floating>pair_grad[p, k]
