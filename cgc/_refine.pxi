# refine_codes: coordinate descent on quantised Gaussians against the image.
#
# Read me first
# -------------
# * Rounding each attribute to its nearest code is not the best choice of codes: every
#   Gaussian's error can be partly undone by its own other attributes, and by its
#   neighbours.  This pass visits the Gaussians in order and, for each, moves codes to the
#   choice that lowers the squared error of the clipped image the decoder will show, with
#   every other Gaussian held: first the colour (the best of the 2 x 2 x 2 YCoCg codes
#   around the least-squares colour, or the current one), then x, y, l11, l21 and l22 in
#   turn (one code down, one up, or unchanged).  A move is taken only when it lowers the
#   error, so the error never rises and the loop ends after ``sweeps`` passes.
# * Codes only ever take values in [0, levels[k]], and a code's value is read from
#   ``values[k, code]``, the table cgc/refine.py builds with the decoder's own dequantiser:
#   the parameters kept here are bit for bit those a decoder will see.  RGB comes from
#   YCoCg with the decoder's float32 arithmetic (cgc.quantize.ycocg_to_rgb).
# * ``render`` holds the unclipped image of all Gaussians in float64, updated by each move.
#   Weights are exp(-q / 2) computed directly in float64, where the renderer evaluates q in
#   float32: the two can differ on pixels at the q = 9 edge, where the weight is 0.011, so
#   the error seen here is the decoder's to about 1e-6; cgc/refine.py keeps the result only
#   if the renderer agrees that the error fell.
# * Work is bounded: each visit costs a few passes over the Gaussian's box (the image at
#   most), and there are N x sweeps visits.

cdef inline double _refine_weight(double x, double y, double l11, double l21, double l22,
                                  int i, int j) noexcept nogil:
    """exp(-q / 2) of pixel (row i, column j) for one Gaussian, 0 outside q <= CUTOFF_Q."""
    cdef double u = (j + 0.5 - x) / l11
    cdef double v = ((i + 0.5 - y) - l21 * u) / l22
    cdef double q = u * u + v * v
    return exp(-0.5 * q) if q <= CUTOFF_Q else 0.0


cdef inline double _clip01(double v) noexcept nogil:
    return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


cdef inline double _squared(double v) noexcept nogil:
    return v * v


cdef inline void _ycocg_to_rgb(float yy, float co, float cg, float *rgb) noexcept nogil:
    """The decoder's float32 arithmetic (cgc.quantize.ycocg_to_rgb)."""
    rgb[0] = (yy + co) - cg
    rgb[1] = yy + cg
    rgb[2] = (yy - co) - cg


cdef void _fill_weights(double[:, ::1] weights, float[::1] g, bint clear, int height,
                        int width) noexcept nogil:
    """Write Gaussian g's weights over its box into ``weights`` (or zeros, with ``clear``).

    Invariant kept by refine_codes: ``weights`` is zero outside the box of the Gaussian
    being visited, and holds that Gaussian's weights inside it."""
    cdef int j0, j1, i0, i1, i, j
    if not _gaussian_box(g[0], g[1], g[2], g[3], g[4], width, height, &j0, &j1, &i0, &i1):
        return
    for i in range(i0, i1 + 1):
        for j in range(j0, j1 + 1):
            weights[i, j] = 0.0 if clear else _refine_weight(g[0], g[1], g[2], g[3], g[4],
                                                              i, j)


cdef void _splat(double[:, :, ::1] render, double[:, ::1] weights, float[::1] g,
                 double sign, int height, int width) noexcept nogil:
    """render += sign * colour * weight over Gaussian g's box (its weights in ``weights``)."""
    cdef int j0, j1, i0, i1, i, j, ch
    cdef double w
    if not _gaussian_box(g[0], g[1], g[2], g[3], g[4], width, height, &j0, &j1, &i0, &i1):
        return
    for i in range(i0, i1 + 1):
        for j in range(j0, j1 + 1):
            w = weights[i, j]
            if w != 0.0:
                for ch in range(3):
                    render[i, j, ch] += sign * g[5 + ch] * w


cdef double _move_cost(double[:, :, ::1] render, float[:, :, ::1] target,
                       double[:, ::1] weights, float[::1] old, float[::1] new, int height,
                       int width) noexcept nogil:
    """Change in the clipped squared error if Gaussian ``old`` (its weights in ``weights``)
    became ``new``."""
    cdef int a0, a1, b0, b1, c0, c1, d0, d1, i, j, ch
    cdef bint has_old, has_new
    cdef double w_old, w_new, s, t, delta, total = 0.0
    has_old = _gaussian_box(old[0], old[1], old[2], old[3], old[4], width, height,
                            &a0, &a1, &b0, &b1)
    has_new = _gaussian_box(new[0], new[1], new[2], new[3], new[4], width, height,
                            &c0, &c1, &d0, &d1)
    if not has_old:
        a0, a1, b0, b1 = c0, c1, d0, d1
    if not has_new:
        c0, c1, d0, d1 = a0, a1, b0, b1
    if not (has_old or has_new):
        return 0.0
    for i in range(min(b0, d0), max(b1, d1) + 1):
        for j in range(min(a0, c0), max(a1, c1) + 1):
            w_old = weights[i, j]
            w_new = _refine_weight(new[0], new[1], new[2], new[3], new[4], i, j) \
                if has_new else 0.0
            if w_old == 0.0 and w_new == 0.0:
                continue
            for ch in range(3):
                s = render[i, j, ch]
                t = target[i, j, ch]
                delta = new[5 + ch] * w_new - old[5 + ch] * w_old
                total += _squared(_clip01(s + delta) - t) - _squared(_clip01(s) - t)
    return total


cdef void _set_colour(float[::1] g, const np.uint32_t *code, float[:, ::1] values) noexcept nogil:
    cdef float rgb[3]
    _ycocg_to_rgb(values[5, code[0]], values[6, code[1]], values[7, code[2]], rgb)
    g[5] = rgb[0]
    g[6] = rgb[1]
    g[7] = rgb[2]


cdef bint _refine_colour(np.uint32_t[::1] codes, float[::1] g, float[::1] trial,
                         double[:, :, ::1] render, float[:, :, ::1] target,
                         double[:, ::1] weights,
                         float[:, ::1] values, const np.int64_t[::1] levels,
                         const double[::1] lo, const double[::1] step, int height,
                         int width) noexcept nogil:
    """Colour step of one Gaussian (see the top of the file); True if it moved."""
    cdef int j0, j1, i0, i1, i, j, ch, k, combo
    cdef double w, s, t, base, cell, norm = 0.0, best_cost = 0.0
    cdef double grad[3]
    cdef double costs[8]
    cdef double shift[8][3]
    cdef double ycocg[3]
    cdef double target_rgb[3]
    cdef np.uint32_t low[3]
    cdef np.uint32_t high[3]
    cdef np.uint32_t candidate[3]
    cdef np.uint32_t best[3]
    cdef long long c
    if not _gaussian_box(g[0], g[1], g[2], g[3], g[4], width, height, &j0, &j1, &i0, &i1):
        return False
    grad[0] = grad[1] = grad[2] = 0.0
    for i in range(i0, i1 + 1):
        for j in range(j0, j1 + 1):
            w = weights[i, j]
            if w == 0.0:
                continue
            norm += w * w
            for ch in range(3):
                s = render[i, j, ch]
                if 0.0 <= s <= 1.0:
                    grad[ch] += (s - target[i, j, ch]) * w
    if norm <= 0.0:
        return False
    for ch in range(3):
        target_rgb[ch] = g[5 + ch] - grad[ch] / norm
    # The least-squares colour in YCoCg (cgc.quantize.RGB_TO_YCOCG), then its code cell.
    ycocg[0] = 0.25 * target_rgb[0] + 0.5 * target_rgb[1] + 0.25 * target_rgb[2]
    ycocg[1] = 0.5 * target_rgb[0] - 0.5 * target_rgb[2]
    ycocg[2] = -0.25 * target_rgb[0] + 0.5 * target_rgb[1] - 0.25 * target_rgb[2]
    for k in range(3):
        # Clamped as a double first: the cast of an out-of-range double is undefined.
        cell = (ycocg[k] - lo[5 + k]) / step[5 + k] if step[5 + k] > 0.0 else 0.0
        if not cell >= 0.0:
            cell = 0.0
        if cell > levels[5 + k]:
            cell = levels[5 + k]
        c = <long long>floor(cell)
        low[k] = <np.uint32_t>c
        high[k] = <np.uint32_t>(c + 1 if c < levels[5 + k] else c)
    # Every candidate's cost in one pass over the box: the weights do not change.
    for k in range(8):
        trial[k] = g[k]
    for combo in range(8):
        for k in range(3):
            candidate[k] = high[k] if (combo >> k) & 1 else low[k]
        _set_colour(trial, candidate, values)
        for ch in range(3):
            shift[combo][ch] = trial[5 + ch] - g[5 + ch]
        costs[combo] = 0.0
    for i in range(i0, i1 + 1):
        for j in range(j0, j1 + 1):
            w = weights[i, j]
            if w == 0.0:
                continue
            for ch in range(3):
                s = render[i, j, ch]
                t = target[i, j, ch]
                base = _squared(_clip01(s) - t)
                for combo in range(8):
                    costs[combo] += _squared(_clip01(s + shift[combo][ch] * w) - t) - base
    best[0], best[1], best[2] = codes[5], codes[6], codes[7]
    for combo in range(8):
        if costs[combo] < best_cost:
            best_cost = costs[combo]
            for k in range(3):
                best[k] = high[k] if (combo >> k) & 1 else low[k]
    if best_cost >= 0.0:
        return False
    _set_colour(trial, best, values)
    _splat(render, weights, g, -1.0, height, width)
    _splat(render, weights, trial, 1.0, height, width)
    codes[5], codes[6], codes[7] = best[0], best[1], best[2]
    for k in range(5, 8):
        g[k] = trial[k]
    return True


cdef bint _refine_attribute(int k, np.uint32_t[::1] codes, float[::1] g, float[::1] trial,
                            double[:, :, ::1] render, float[:, :, ::1] target,
                            double[:, ::1] weights,
                            float[:, ::1] values, const np.int64_t[::1] levels, int height,
                            int width) noexcept nogil:
    """Geometry step of one Gaussian's attribute k (0..4): one code down or up, or none."""
    cdef int direction, m
    cdef long long candidate
    cdef double cost, best_cost = 0.0
    cdef long long best = -1
    for m in range(8):
        trial[m] = g[m]
    for direction in range(-1, 2, 2):
        candidate = <long long>codes[k] + direction
        if candidate < 0 or candidate > levels[k]:
            continue
        trial[k] = values[k, candidate]
        cost = _move_cost(render, target, weights, g, trial, height, width)
        if cost < best_cost:
            best_cost = cost
            best = candidate
    if best < 0:
        return False
    trial[k] = values[k, best]
    _splat(render, weights, g, -1.0, height, width)
    _fill_weights(weights, g, True, height, width)
    _fill_weights(weights, trial, False, height, width)
    _splat(render, weights, trial, 1.0, height, width)
    codes[k] = <np.uint32_t>best
    g[k] = trial[k]
    return True


def refine_codes(np.uint32_t[:, ::1] codes, float[:, ::1] params, float[:, ::1] values,
                 const np.int64_t[::1] levels, const double[::1] lo, const double[::1] step,
                 float[:, :, ::1] target, int sweeps):
    """Coordinate descent on ``codes`` (N, 8) in place; ``params`` (N, 8) are their
    dequantised values, kept in step.  Returns the number of moves made.

    Shapes and code ranges are checked here (codes[:, k] <= levels[k] < values.shape[1]);
    the caller (cgc/refine.py) guarantees the rest: values holds each attribute's
    dequantised value per code (colour columns in YCoCg), params the decoder's parameters
    for codes, lo and step the quantisers' ends and steps."""
    cdef Py_ssize_t n = codes.shape[0], g
    cdef int height = target.shape[0], width = target.shape[1], sweep, k
    cdef long long moves = 0
    cdef np.ndarray[np.float64_t, ndim=3] render_arr = np.zeros((height, width, 3))
    cdef double[:, :, ::1] render = render_arr
    cdef double[:, ::1] weights = np.zeros((height, width))
    cdef float[::1] trial = np.empty(8, dtype=np.float32)
    if not (codes.shape[1] == 8 and params.shape[0] == n and params.shape[1] == 8
            and values.shape[0] == 8 and levels.shape[0] == 8 and lo.shape[0] == 8
            and step.shape[0] == 8 and target.shape[2] == 3):
        raise ValueError("refine_codes: inconsistent array shapes")
    for k in range(8):
        if not 0 <= levels[k] < values.shape[1]:
            raise ValueError("refine_codes: levels outside the value table")
        for g in range(n):
            if codes[g, k] > levels[k]:
                raise ValueError("refine_codes: code outside its quantiser's levels")
    with nogil:
        for g in range(n):
            _fill_weights(weights, params[g], False, height, width)
            _splat(render, weights, params[g], 1.0, height, width)
            _fill_weights(weights, params[g], True, height, width)
        for sweep in range(sweeps):
            for g in range(n):
                _fill_weights(weights, params[g], False, height, width)
                moves += _refine_colour(codes[g], params[g], trial, render, target, weights,
                                        values, levels, lo, step, height, width)
                for k in range(5):
                    moves += _refine_attribute(k, codes[g], params[g], trial, render,
                                               target, weights, values, levels, height,
                                               width)
                _fill_weights(weights, params[g], True, height, width)
    return moves
