# Encoder statistics of cgc.lossless (included by _lossless_cy.pyx): the predictor search,
# the plane-0 context input, and the byte-plane histograms cgc.lossless.model chooses its
# tables from.  Compiled because the NumPy versions (int64 keys per element, bincounts)
# cost more than coding the tiles.


cdef inline double plane_cost(const uint32_t *hist, Py_ssize_t n) noexcept nogil:
    """Bits to code n symbols with the tile's own order-0 statistics."""
    cdef double bits = n * log2(<double>n) if n > 0 else 0.0
    cdef int s
    for s in range(256):
        if hist[s]:
            bits -= hist[s] * log2(<double>hist[s])
    return bits


cdef enum:
    SEARCH_ROW_STEP = 4


def choose_residuals(const uint32_t[:, ::1] values, int tile_h, int tile_w, int nbytes,
                     const uint8_t[::1] candidates, uint32_t[:, ::1] resid,
                     uint8_t[::1] preds):
    """Pick each tile's predictor by the smallest estimated coded size and store residuals.

    The estimate is the tile-local order-0 entropy summed over the residual's byte planes:
    unlike libpng's sum of absolute residuals it stays meaningful for float bit patterns,
    where NONE must win against differences of random mantissas.  Tiles of 32 rows or more
    are estimated from every SEARCH_ROW_STEP-th row (a residual needs only the values, so
    any row stands alone): the search was a fifth of the encode time, and sizes barely move
    (measurements: docs/tuning.md, "lossless/_lossless_stats.pxi: predictor search")."""
    cdef Py_ssize_t rows = values.shape[0], cols = values.shape[1]
    cdef Py_ssize_t tiles_x = (cols + tile_w - 1) // tile_w
    cdef Py_ssize_t ntiles = ((rows + tile_h - 1) // tile_h) * tiles_x
    cdef Py_ssize_t k, y0, x0, h, w, y, x, n, step, sampled
    cdef int wbits = 8 * nbytes, ci, pred, best, p, s
    cdef uint32_t mask = 0xFFFFFFFF if nbytes == 4 else ((<uint32_t>1 << wbits) - 1)
    cdef uint32_t r
    cdef uint32_t *hist
    cdef double cost, best_cost
    cdef Py_ssize_t ncand = candidates.shape[0], bad = 0
    if ntiles == 0:
        return
    with nogil, parallel(num_threads=team_size()):
        hist = <uint32_t *>malloc(4 * 256 * sizeof(uint32_t))
        for k in prange(ntiles, schedule="dynamic"):
            if hist == NULL:
                bad += 1
                continue
            y0 = (k // tiles_x) * tile_h
            x0 = (k % tiles_x) * tile_w
            h = min(tile_h, rows - y0)
            w = min(tile_w, cols - x0)
            step = SEARCH_ROW_STEP if h >= 32 else 1
            n = ((h + step - 1) // step) * w
            best = candidates[0]
            best_cost = 1e300
            for ci in range(ncand):
                pred = candidates[ci]
                for s in range(4 * 256):
                    hist[s] = 0
                for sampled in range((h + step - 1) // step):
                    y = sampled * step
                    for x in range(w):
                        r = residual(pred, &values[y0, x0], cols, y, x, wbits, mask)
                        for p in range(nbytes):
                            hist[p * 256 + ((r >> (8 * p)) & 0xFF)] += 1
                cost = 0.0
                for p in range(nbytes):
                    cost = cost + plane_cost(&hist[p * 256], n)
                if cost < best_cost:
                    best_cost = cost
                    best = pred
            preds[k] = <uint8_t>best
            for y in range(h):
                for x in range(w):
                    resid[y0 + y, x0 + x] = residual(best, &values[y0, x0], cols, y, x,
                                                     wbits, mask)
        free(hist)
    if bad:
        raise MemoryError("no scratch memory for the predictor search")


def activity_map(const uint8_t[:, ::1] sym0, int tile_h, int tile_w, uint8_t[:, ::1] out):
    """out[y, x] = the activity (plane-0 context input) of every element, from the plane-0
    symbols sym0 of the whole matrix cut into tile_h x tile_w tiles."""
    cdef Py_ssize_t rows = sym0.shape[0], cols = sym0.shape[1], y, x, y0, x0
    if rows == 0 or cols == 0:
        return
    for y in prange(rows, nogil=True, schedule="static", num_threads=team_size()):
        y0 = y - y % tile_h
        for x in range(cols):
            x0 = x - x % tile_w
            out[y, x] = activity(&sym0[y0, x0], cols, min(tile_w, cols - x0), y - y0, x - x0)


def byte_plane(const uint32_t[:, ::1] resid, int nbytes, int p, uint8_t[:, ::1] out):
    """out = byte p (0: most significant) of every residual."""
    cdef Py_ssize_t rows = resid.shape[0], cols = resid.shape[1], y, x
    cdef int shift = 8 * (nbytes - 1 - p)
    for y in prange(rows, nogil=True, schedule="static", num_threads=team_size()):
        for x in range(cols):
            out[y, x] = <uint8_t>(resid[y, x] >> shift)


def joint_histogram(const uint8_t[:, ::1] ctx_in, const uint8_t[:, ::1] sym,
                    int64_t[::1] out):
    """out[256 * c + s] = number of elements with context input c and symbol s."""
    cdef Py_ssize_t rows = sym.shape[0], cols = sym.shape[1], y, x
    memset(&out[0], 0, 65536 * sizeof(int64_t))
    with nogil:
        for y in range(rows):
            for x in range(cols):
                out[256 * ctx_in[y, x] + sym[y, x]] += 1


def tile_histograms(const uint8_t[:, ::1] ctx_in, const uint8_t[:, ::1] sym,
                    const uint8_t[::1] ctxmap, int nctx, int tile_h, int tile_w,
                    double[:, ::1] out):
    """out[k, 256 * ctxmap[c] + s] = count of (context input c, symbol s) in tile k."""
    cdef Py_ssize_t rows = sym.shape[0], cols = sym.shape[1]
    cdef Py_ssize_t tiles_x = (cols + tile_w - 1) // tile_w
    cdef Py_ssize_t k, y0, x0, y, x, h, w
    cdef double *row
    for k in prange(out.shape[0], nogil=True, schedule="dynamic",
                   num_threads=team_size()):
        row = &out[k, 0]
        memset(row, 0, nctx * 256 * sizeof(double))
        y0 = (k // tiles_x) * tile_h
        x0 = (k % tiles_x) * tile_w
        h = min(tile_h, rows - y0)
        w = min(tile_w, cols - x0)
        for y in range(y0, y0 + h):
            for x in range(x0, x0 + w):
                row[256 * ctxmap[ctx_in[y, x]] + sym[y, x]] += 1
