# Tiled CPU reference renderer: binning, render_forward, render_backward.
#
# The loops are C (_render_tile.h, whose "read me first" note states the model and the
# invariants); this file bins Gaussians to tiles and hands validated arrays to them.  The
# callers (cgc/backends/cpu.py) check shapes, dtypes and bins before calling in.

cdef extern from "_render_tile.h" nogil:
    double CUTOFF_Q "CGC_CUTOFF_Q"
    bint _gaussian_box "cgc_gaussian_box"(double x, double y, double l11, double l21,
                                          double l22, int width, int height, int *j0,
                                          int *j1, int *i0, int *i1)
    double _weight "cgc_weight_d"(double q)
    float _weight_f "cgc_weight_f"(float q)
    int _render_init "cgc_render_init"(int use_avx2)
    int _forward_f "cgc_render_forward_f"(const float *params, int height, int width,
                                          int tile, const np.int64_t *tile_start,
                                          np.int64_t n_tiles, const np.int32_t *pairs,
                                          float *out, float *weight)
    int _forward_d "cgc_render_forward_d"(const double *params, int height, int width,
                                          int tile, const np.int64_t *tile_start,
                                          np.int64_t n_tiles, const np.int32_t *pairs,
                                          double *out, double *weight)
    int _backward_f "cgc_render_backward_f"(const float *params, int height, int width,
                                            int tile, const np.int64_t *tile_start,
                                            np.int64_t n_tiles, const np.int32_t *pairs,
                                            const float *grad_image, double *pair_grad)
    int _backward_d "cgc_render_backward_d"(const double *params, int height, int width,
                                            int tile, const np.int64_t *tile_start,
                                            np.int64_t n_tiles, const np.int32_t *pairs,
                                            const double *grad_image, double *pair_grad)

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
                                &out[0, 0, 0], &weight[0, 0] if want_weight else NULL)
        else:
            status = _forward_d(&params[0, 0], height, width, tile_size, &tile_start[0],
                                n_tiles, &pair_gaussian[0] if pair_gaussian.shape[0] else NULL,
                                &out[0, 0, 0], &weight[0, 0] if want_weight else NULL)
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
                                 &grad_image[0, 0, 0], &pair_grad[0, 0])
        else:
            status = _backward_d(&params[0, 0], height, width, tile_size, &tile_start[0],
                                 n_tiles, &pair_gaussian[0] if n_pairs else NULL,
                                 &grad_image[0, 0, 0], &pair_grad[0, 0])
    if status != 0:
        raise MemoryError("no memory for the renderer's tile buffers")
    grad_params[:, :] = 0
    with nogil:
        for p in range(n_pairs):
            g = pair_gaussian[p]
            for k in range(8):
                grad_params[g, k] += <floating>pair_grad[p, k]
