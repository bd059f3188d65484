# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled refinement of quantised codes (cgc/image/refine.py validates and calls in).

refine_codes: coordinate descent on quantised Gaussians against the image.

Read me first
-------------
* Rounding each attribute to its nearest code is not the best choice of codes: every
  Gaussian's error can be partly undone by its own other attributes, and by its
  neighbours.  This pass visits the Gaussians in order and, for each, moves codes to the
  choice that lowers the squared error of the clipped image the decoder will show, with
  every other Gaussian held: first the colour (the best of the 2 x 2 x 2 YCoCg codes
  around the least-squares colour, or the current one), then x, y, l11, l21 and l22 in
  turn (one code down, one up, or unchanged).  A move is taken only when it lowers the
  error, so the error never rises and the loop ends after ``sweeps`` passes.
* Codes only ever take values in [0, levels[k]], and a code's value is read from
  ``values[k, code]``, the table cgc/image/refine.py builds with the decoder's own
  dequantiser: the parameters kept here are bit for bit those a decoder will see.  RGB
  comes from YCoCg with the decoder's float32 arithmetic (cgc.image.quantize.ycocg_to_rgb).
* ``render`` holds the unclipped image of all Gaussians in float64, updated by each move,
  as three planes (3, H, W) like the copy of the target, so that rows of each channel are
  contiguous for the vectorised loops.
* Weights are the renderer's float64 exp(-q / 2) of q computed in float64, where the
  decoder evaluates q in float32: they can differ at the q = 9 edge, so the error seen here
  is the decoder's to about 1e-6, and cgc/image/refine.py keeps the result only if the
  renderer agrees that the error fell
  (docs/tuning.md, "image/_refine_cy.pyx: weights of the descent").
* The weights and the cost of a move are C (_refine_cost.h), vectorised like the
  renderer's loops; the buffers they read carry slack past the image's end for that.
* Work is bounded: each visit costs a few passes over the Gaussian's box (the image at
  most), and there are N x sweeps visits.
"""

from libc.math cimport ceil, floor, sqrt
import numpy as np
cimport numpy as np

from cgc.native.render_tile cimport _gaussian_box, _render_init

np.import_array()

cdef extern from "_refine_cost.h" nogil:
    int LANES "CGC_LANES"
    double _refine_weight "cgc_refine_weight"(double x, double y, double inv_l11,
                                              double l21, double inv_l22, int i, int j)
    double _move_cost "cgc_move_cost"(const double *render, const float *target,
                                      const double *weights, const float *old,
                                      const float *new, int height, int width)

# The cost loops pick AVX2 where the CPU has it, as the renderer does (render_tile.h).
_render_init(1)

# Side of the cells in which refine_rounds marks a round's reaches: finer cells fit more
# Gaussians in a round, coarser ones mark a reach in fewer steps.
cdef enum:
    ROUND_CELL = 8


def _with_slack(shape, dtype, values=None):
    """A C-contiguous array of ``shape``, zeroed or a copy of ``values``, whose buffer runs
    LANES values past its end (the slack cgc_move_cost reads into)."""
    size = int(np.prod(shape))
    flat = np.zeros(size + LANES, dtype=dtype)
    if values is not None:
        flat[:size] = np.asarray(values, dtype=dtype).ravel()
    return flat[:size].reshape(shape)


cdef inline double _clip01(double v) noexcept nogil:
    return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


cdef inline double _squared(double v) noexcept nogil:
    return v * v


cdef inline void _ycocg_to_rgb(float yy, float co, float cg, float *rgb) noexcept nogil:
    """The decoder's float32 arithmetic (cgc.image.quantize.ycocg_to_rgb)."""
    rgb[0] = (yy + co) - cg
    rgb[1] = yy + cg
    rgb[2] = (yy - co) - cg


cdef void _fill_weights(double[:, ::1] weights, float[::1] g, bint clear, int height,
                        int width) noexcept nogil:
    """Write Gaussian g's weights over its box into ``weights`` (or zeros, with ``clear``).

    Invariant kept by refine_codes: ``weights`` is zero outside the box of the Gaussian
    being visited, and holds that Gaussian's weights inside it."""
    cdef int j0, j1, i0, i1, i, j
    cdef double inv_l11 = 1.0 / g[2], inv_l22 = 1.0 / g[4]
    if not _gaussian_box(g[0], g[1], g[2], g[3], g[4], width, height, &j0, &j1, &i0, &i1):
        return
    for i in range(i0, i1 + 1):
        for j in range(j0, j1 + 1):
            weights[i, j] = 0.0 if clear else _refine_weight(g[0], g[1], inv_l11, g[3],
                                                              inv_l22, i, j)


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
                    render[ch, i, j] += sign * g[5 + ch] * w


cdef void _splat_all(double[:, :, ::1] render, double[:, ::1] weights, float[:, ::1] params,
                     int height, int width) noexcept nogil:
    """render += every Gaussian of ``params``; ``weights`` is left zero, as it came."""
    cdef Py_ssize_t g
    for g in range(params.shape[0]):
        _fill_weights(weights, params[g], False, height, width)
        _splat(render, weights, params[g], 1.0, height, width)
        _fill_weights(weights, params[g], True, height, width)


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
                s = render[ch, i, j]
                if 0.0 <= s <= 1.0:
                    grad[ch] += (s - target[ch, i, j]) * w
    if norm <= 0.0:
        return False
    for ch in range(3):
        target_rgb[ch] = g[5 + ch] - grad[ch] / norm
    # The least-squares colour in YCoCg (cgc.image.quantize.RGB_TO_YCOCG), then its code cell.
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
                s = render[ch, i, j]
                t = target[ch, i, j]
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
        cost = _move_cost(&render[0, 0, 0], &target[0, 0, 0], &weights[0, 0], &g[0],
                          &trial[0], height, width)
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
    the caller (cgc/image/refine.py) guarantees the rest: values holds each attribute's
    dequantised value per code (colour columns in YCoCg), params the decoder's parameters
    for codes, lo and step the quantisers' ends and steps."""
    cdef Py_ssize_t n = codes.shape[0], g
    cdef int height = target.shape[0], width = target.shape[1], sweep, k
    cdef long long moves = 0
    cdef double[:, :, ::1] render = _with_slack((3, height, width), np.float64)
    cdef double[:, ::1] weights = _with_slack((height, width), np.float64)
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
    target = _with_slack((3, height, width), np.float32,
                         np.moveaxis(np.asarray(target), 2, 0))
    with nogil:
        _splat_all(render, weights, params, height, width)
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


def render_planes(float[:, ::1] params, int height, int width):
    """The refinement's render of ``params``: (3, H, W) float64 planes, each pixel's terms
    added in Gaussian order, as refine_codes starts from."""
    render = _with_slack((3, height, width), np.float64)
    weights = _with_slack((height, width), np.float64)
    cdef double[:, :, ::1] r = render
    cdef double[:, ::1] w = weights
    with nogil:
        _splat_all(r, w, params, height, width)
    return render


cdef inline double _code_value(float[:, ::1] values, int k, long long code,
                               long long levels) noexcept nogil:
    if code < 0:
        code = 0
    if code > levels:
        code = levels
    return values[k, code]


cdef bint _reach(float[::1] g, const np.uint32_t[::1] code, float[:, ::1] values,
                 const np.int64_t[::1] levels, int height, int width, int *box) noexcept nogil:
    """Pixel box (j0, j1, i0, i1 in ``box``) that holds every box a visit of this Gaussian
    can read or write: its own and those of each geometry code one step either way, taken
    together (the visit moves x, y, l11, l21, l22 one step each at most).  The box grows
    with |l11|, |l21|, |l22| and spans the centre's range, so the box of the largest of
    each holds them all.  False when it holds no pixel."""
    cdef double lo_v[5]
    cdef double hi_v[5]
    cdef double big[5]
    cdef double a, half_w, half_h
    cdef int k, d
    for k in range(5):
        lo_v[k] = hi_v[k] = g[k]
        big[k] = abs(<double>g[k])
        for d in range(-1, 2, 2):
            a = _code_value(values, k, <long long>code[k] + d, levels[k])
            lo_v[k] = min(lo_v[k], a)
            hi_v[k] = max(hi_v[k], a)
            big[k] = max(big[k], abs(a))
    half_w = sqrt(9.0 * big[2] * big[2])
    half_h = sqrt(9.0 * (big[3] * big[3] + big[4] * big[4]))
    if not (half_w < 1e9 and half_h < 1e9 and abs(lo_v[0]) < 1e9 and abs(hi_v[0]) < 1e9
            and abs(lo_v[1]) < 1e9 and abs(hi_v[1]) < 1e9):
        box[0], box[1], box[2], box[3] = 0, width - 1, 0, height - 1  # all, to be safe
        return True
    # One pixel of margin beyond the reference's box rule (cgc_gaussian_box), for rounding.
    box[0] = max(<int>ceil(lo_v[0] - half_w - 0.5) - 1, 0)
    box[1] = min(<int>floor(hi_v[0] + half_w - 0.5) + 1, width - 1)
    box[2] = max(<int>ceil(lo_v[1] - half_h - 0.5) - 1, 0)
    box[3] = min(<int>floor(hi_v[1] + half_h - 0.5) + 1, height - 1)
    return box[0] <= box[1] and box[2] <= box[3]


def refine_rounds(const np.uint32_t[:, ::1] codes, float[:, ::1] params, float[:, ::1] values,
                  const np.int64_t[::1] levels, int height, int width):
    """The Gaussians in rounds for visiting a round at once: (order, int32 (N,), the
    Gaussians round by round, each round in increasing index; starts, int64, round r is
    order[starts[r]:starts[r + 1]]).

    A visit of refine_codes reads and writes the render only inside its Gaussian's reach
    (``_reach``).  Each Gaussian goes to the round after the last one that holds an
    earlier Gaussian whose reach shares a cell of ROUND_CELL x ROUND_CELL pixels with its
    own (the first round if none), so the reaches in a round never meet, and any two
    Gaussians that might touch the same pixel are visited in index order.  Visiting the
    rounds one after another, each round's Gaussians at once (the CUDA kernel
    refine_round), is then visiting every Gaussian in index order, as the CPU does."""
    cdef Py_ssize_t n = codes.shape[0], g
    cdef int cells_x = (width + ROUND_CELL - 1) // ROUND_CELL
    cdef int cells_y = (height + ROUND_CELL - 1) // ROUND_CELL
    cdef int box[4]
    cdef int r, ci, cj, k, rounds = 0
    if not (codes.shape[1] == 8 and params.shape[0] == n and params.shape[1] == 8
            and values.shape[0] == 8 and levels.shape[0] == 8):
        raise ValueError("refine_rounds: inconsistent array shapes")
    for k in range(8):
        if not 0 <= levels[k] < values.shape[1]:
            raise ValueError("refine_rounds: levels outside the value table")
    round_of = np.zeros(n, dtype=np.int64)
    cdef np.int64_t[::1] assigned = round_of
    # Per cell, one more than the last round that reaches it (0: none yet).
    after_array = np.zeros((cells_y, cells_x), dtype=np.int32)
    cdef np.int32_t[:, ::1] after = after_array
    with nogil:
        for g in range(n):
            r = 0
            if _reach(params[g], codes[g], values, levels, height, width, box):
                for ci in range(box[2] // ROUND_CELL, box[3] // ROUND_CELL + 1):
                    for cj in range(box[0] // ROUND_CELL, box[1] // ROUND_CELL + 1):
                        r = max(r, after[ci, cj])
                for ci in range(box[2] // ROUND_CELL, box[3] // ROUND_CELL + 1):
                    for cj in range(box[0] // ROUND_CELL, box[1] // ROUND_CELL + 1):
                        after[ci, cj] = r + 1
            assigned[g] = r
            rounds = max(rounds, r + 1)
    order = np.argsort(round_of, kind="stable").astype(np.int32)
    starts = np.zeros(rounds + 1, dtype=np.int64)
    starts[1:] = np.cumsum(np.bincount(round_of, minlength=rounds))
    return order, starts


def revert_updates(float[:, ::1] params, const np.int64_t[::1] candidates,
                   float[:, ::1] old, const double[::1] saved, double price,
                   float[:, :, ::1] target):
    """The rate-distortion pass of a video P-frame (cgc/video/encoder.py): visiting the
    ``candidates`` (rows of ``params``, the frame's Gaussians with their updates) in turn,
    take back an update, the row becoming ``old[c]``, where that raises the squared error
    of the clipped render by less than ``price`` times ``saved[c]``, the bits the update
    costs.  ``params`` change in place; returns the uint8 mask of the updates taken back.
    Work: one splat of every Gaussian, then a few passes over each candidate's box."""
    cdef Py_ssize_t n = params.shape[0], m = candidates.shape[0], g, c
    cdef int height = target.shape[0], width = target.shape[1], k
    cdef double cost
    if not (params.shape[1] == 8 and old.shape[0] == m and old.shape[1] == 8
            and saved.shape[0] == m and target.shape[2] == 3):
        raise ValueError("revert_updates: inconsistent array shapes")
    for c in range(m):
        if not 0 <= candidates[c] < n:
            raise ValueError("revert_updates: candidate outside the Gaussians")
    reverted = np.zeros(m, dtype=np.uint8)
    cdef np.uint8_t[::1] taken = reverted
    cdef double[:, :, ::1] render = _with_slack((3, height, width), np.float64)
    cdef double[:, ::1] weights = _with_slack((height, width), np.float64)
    target = _with_slack((3, height, width), np.float32,
                         np.moveaxis(np.asarray(target), 2, 0))
    with nogil:
        _splat_all(render, weights, params, height, width)
        for c in range(m):
            g = candidates[c]
            _fill_weights(weights, params[g], False, height, width)
            cost = _move_cost(&render[0, 0, 0], &target[0, 0, 0], &weights[0, 0],
                              &params[g, 0], &old[c, 0], height, width)
            if cost < price * saved[c]:
                _splat(render, weights, params[g], -1.0, height, width)
                _fill_weights(weights, params[g], True, height, width)
                _fill_weights(weights, old[c], False, height, width)
                _splat(render, weights, old[c], 1.0, height, width)
                for k in range(8):
                    params[g, k] = old[c, k]
                taken[c] = 1
            _fill_weights(weights, params[g], True, height, width)
    return reverted
