# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled core of cgc.lossless: predictor choice, tile encoder and tile decoder.

Read me first (docs/lossless-format.md has the full layout)
------------------------------------------------------------
* Values arrive as uint32 holding the width-bit "transformed" integers (offset binary for
  signed ints, sign rotated to bit 0 for floats), so every predictor works unsigned.
* A tile of h x w elements is walked row-major; element e goes to lane e % 32 at step
  e // 32.  Each residual has P = width / 8 byte planes, most significant first.
* All coded symbols of a tile share ONE byte stream.  The decoder visits symbols in the
  order (step, plane, lane) and each lane reads its refill bytes from the shared stream at
  that moment; the encoder visits the exact reverse order, so a GPU warp can decode a step
  of a plane in parallel (each lane finds its bytes by a prefix sum of the refill counts).
* The table of a symbol is tbase[p] + group * nctx[p] + ctxmap[p, symbol of plane p - 1]
  (context 0 for plane 0); group GROUP_RAW stores the plane's bytes verbatim after the
  stream instead.
* Callers (cgc.lossless) validate every size and index before calling in; the loops here
  only check the byte reads that depend on stream content."""

from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from libc.math cimport log2
from libc.stdint cimport int32_t, int64_t, uint16_t
import numpy as np
cimport numpy as np

np.import_array()

include "_rans_core.pxi"

cdef enum:
    LANES = 32
    PRED_NONE = 0
    PRED_LEFT = 1
    PRED_TOP = 2
    PRED_AVG = 3
    PRED_PLANAR = 4
    PRED_MED = 5
    GROUP_RAW = 255
    KIND_UNSIGNED = 0
    KIND_SIGNED = 1
    KIND_FLOAT = 2

PREDICTORS = {"none": PRED_NONE, "left": PRED_LEFT, "top": PRED_TOP, "avg": PRED_AVG,
              "planar": PRED_PLANAR, "med": PRED_MED}
RAW_GROUP = GROUP_RAW
NUM_LANES = LANES


cdef inline uint32_t predict(int pred, const uint32_t *v, Py_ssize_t stride, Py_ssize_t y,
                             Py_ssize_t x, uint32_t mask) noexcept nogil:
    """Prediction of v[y, x] from its reconstructed causal neighbours inside the tile.

    Edges (all predictors but NONE): row 0 uses the left neighbour, column 0 the top one,
    the corner predicts 0, so every tile decodes without its neighbours."""
    cdef uint32_t a, b, c, lo, hi
    if pred == PRED_NONE:
        return 0
    if y == 0:
        return v[x - 1] if x > 0 else 0
    if x == 0:
        return v[(y - 1) * stride]
    a = v[y * stride + x - 1]
    b = v[(y - 1) * stride + x]
    c = v[(y - 1) * stride + x - 1]
    if pred == PRED_LEFT:
        return a
    if pred == PRED_TOP:
        return b
    if pred == PRED_AVG:
        return (a >> 1) + (b >> 1) + (a & b & 1)
    if pred == PRED_PLANAR:
        return (a + b - c) & mask
    lo = a if a < b else b
    hi = a ^ b ^ lo
    if c >= hi:
        return lo
    if c <= lo:
        return hi
    return (a + b - c) & mask


cdef inline uint32_t zigzag(uint32_t r, int wbits, uint32_t mask) noexcept nogil:
    return ((r << 1) ^ (<uint32_t>0 - (r >> (wbits - 1)))) & mask


cdef inline uint32_t unzigzag(uint32_t z, uint32_t mask) noexcept nogil:
    return ((z >> 1) ^ (<uint32_t>0 - (z & 1))) & mask


cdef inline uint32_t residual(int pred, const uint32_t *v, Py_ssize_t stride, Py_ssize_t y,
                              Py_ssize_t x, int wbits, uint32_t mask) noexcept nogil:
    # NONE keeps the value's own bytes: zigzag would shift a float's exponent off its plane.
    if pred == PRED_NONE:
        return v[y * stride + x]
    return zigzag((v[y * stride + x] - predict(pred, v, stride, y, x, mask)) & mask, wbits,
                  mask)


cdef inline double plane_cost(const uint32_t *hist, Py_ssize_t n) noexcept nogil:
    """Bits to code n symbols with the tile's own order-0 statistics."""
    cdef double bits = n * log2(<double>n) if n > 0 else 0.0
    cdef int s
    for s in range(256):
        if hist[s]:
            bits -= hist[s] * log2(<double>hist[s])
    return bits


def choose_residuals(const uint32_t[:, ::1] values, int tile_h, int tile_w, int nbytes,
                     const uint8_t[::1] candidates, uint32_t[:, ::1] resid,
                     uint8_t[::1] preds):
    """Pick each tile's predictor by the smallest estimated coded size and store residuals.

    The estimate is the tile-local order-0 entropy summed over the residual's byte planes:
    unlike libpng's sum of absolute residuals it stays meaningful for float bit patterns,
    where NONE must win against differences of random mantissas."""
    cdef Py_ssize_t rows = values.shape[0], cols = values.shape[1]
    cdef Py_ssize_t tiles_x = (cols + tile_w - 1) // tile_w
    cdef Py_ssize_t ntiles = ((rows + tile_h - 1) // tile_h) * tiles_x
    cdef Py_ssize_t k, y0, x0, h, w, y, x, n
    cdef int wbits = 8 * nbytes, ci, pred, best, p, s
    cdef uint32_t mask = 0xFFFFFFFF if nbytes == 4 else ((<uint32_t>1 << wbits) - 1)
    cdef uint32_t r
    cdef uint32_t *hist
    cdef double cost, best_cost
    cdef Py_ssize_t ncand = candidates.shape[0], bad = 0
    if ntiles == 0:
        return
    with nogil, parallel():
        hist = <uint32_t *>malloc(4 * 256 * sizeof(uint32_t))
        for k in prange(ntiles, schedule="dynamic"):
            if hist == NULL:
                bad += 1
                continue
            y0 = (k // tiles_x) * tile_h
            x0 = (k % tiles_x) * tile_w
            h = min(tile_h, rows - y0)
            w = min(tile_w, cols - x0)
            n = h * w
            best = candidates[0]
            best_cost = 1e300
            for ci in range(ncand):
                pred = candidates[ci]
                for s in range(4 * 256):
                    hist[s] = 0
                for y in range(h):
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


cdef struct Tables:
    # Raw pointers into the arrays of cgc.lossless.model.CodingTables: memoryviews passed
    # to per-symbol helpers would be reference-counted on every call.
    const int32_t *tbase
    const int32_t *nctx
    const uint8_t *prob_bits
    const uint8_t *ctxmap  # [plane][256]
    const uint32_t *freq  # [table][256]
    const uint32_t *start  # [table][256]
    const uint8_t *lookup  # [table][lookup_width]
    Py_ssize_t lookup_width


cdef Tables make_tables(const int32_t[::1] tbase, const int32_t[::1] nctx,
                        const uint8_t[::1] prob_bits, const uint8_t[:, ::1] ctxmap,
                        const uint32_t[:, ::1] freq, const uint32_t[:, ::1] start,
                        const uint8_t[:, ::1] lookup):
    cdef Tables t
    t.tbase = &tbase[0]
    t.nctx = &nctx[0]
    t.prob_bits = &prob_bits[0]
    t.ctxmap = &ctxmap[0, 0]
    t.freq = &freq[0, 0]
    t.start = &start[0, 0]
    t.lookup = &lookup[0, 0]
    t.lookup_width = lookup.shape[1]
    return t


cdef inline Py_ssize_t table_of(const Tables *t, int p, uint32_t prev, int group) noexcept nogil:
    if p == 0:
        return t.tbase[0] + group * t.nctx[0]
    return t.tbase[p] + group * t.nctx[p] + t.ctxmap[256 * p + prev]


cdef Py_ssize_t encode_one(const uint32_t *resid, Py_ssize_t stride, Py_ssize_t h,
                           Py_ssize_t w, int nbytes, const uint8_t *group, const Tables *tb,
                           uint8_t *region, uint32_t *state) noexcept nogil:
    """Code one tile (resid points at its (0, 0) element) into region; returns where its
    bytes start, or -1 for a symbol without frequency (a modelling bug, never bad input)."""
    cdef Py_ssize_t n = h * w, nsteps = (n + LANES - 1) // LANES
    cdef Py_ssize_t t, e, jmax, coded = 0, raw_pos
    cdef int p, j, g
    cdef Py_ssize_t tbl
    cdef uint32_t v, sym, prev, f
    cdef uint8_t *ptr
    for p in range(nbytes):
        if group[p] != GROUP_RAW:
            coded += 1
    # Raw planes go after the stream, plane by plane in raster order.
    raw_pos = 2 * n * coded
    for p in range(nbytes):
        if group[p] == GROUP_RAW:
            for e in range(n):
                region[raw_pos + e] = <uint8_t>(
                    (resid[(e // w) * stride + e % w] >> (8 * (nbytes - 1 - p))) & 0xFF)
            raw_pos += n
    for j in range(LANES):
        state[j] = RANS_L
    ptr = region + 2 * n * coded
    for t in range(nsteps - 1, -1, -1):
        jmax = min(LANES, n - t * LANES)
        for p in range(nbytes - 1, -1, -1):
            g = group[p]
            if g == GROUP_RAW:
                continue
            for j in range(jmax - 1, -1, -1):
                e = t * LANES + j
                v = resid[(e // w) * stride + e % w]
                sym = (v >> (8 * (nbytes - 1 - p))) & 0xFF
                prev = (v >> (8 * (nbytes - p))) & 0xFF if p > 0 else 0
                tbl = table_of(tb, p, prev, g)
                f = tb.freq[256 * tbl + sym]
                if f == 0:
                    return -1
                ptr = rans_encode_symbol(&state[j], ptr, tb.start[256 * tbl + sym], f,
                                         tb.prob_bits[p])
    return ptr - region


def encode_tiles(const uint32_t[:, ::1] resid, int tile_h, int tile_w, int nbytes,
                 const uint8_t[:, ::1] groups, const uint8_t[:, ::1] ctxmap,
                 const int32_t[::1] tbase, const int32_t[::1] nctx,
                 const uint8_t[::1] prob_bits, const uint32_t[:, ::1] freq,
                 const uint32_t[:, ::1] start, const uint8_t[:, ::1] lookup,
                 uint8_t[::1] scratch, const int64_t[::1] region, int64_t[::1] first,
                 uint32_t[:, ::1] states):
    """rANS-code every tile into its scratch region [region[k], region[k + 1]).

    The region holds 2 bytes per coded symbol (the most rans_encode_symbol writes) followed
    by the raw planes; on return tile k's bytes are scratch[first[k]:region[k + 1]].
    Returns False if some symbol had no frequency."""
    cdef Py_ssize_t rows = resid.shape[0], cols = resid.shape[1]
    cdef Py_ssize_t tiles_x = (cols + tile_w - 1) // tile_w
    cdef Py_ssize_t ntiles = groups.shape[0]
    cdef Py_ssize_t k, y0, x0, at, bad = 0
    cdef Tables tb
    if ntiles == 0:
        return True
    tb = make_tables(tbase, nctx, prob_bits, ctxmap, freq, start, lookup)
    for k in prange(ntiles, nogil=True, schedule="dynamic"):
        y0 = (k // tiles_x) * tile_h
        x0 = (k % tiles_x) * tile_w
        at = encode_one(&resid[y0, x0], cols, min(tile_h, rows - y0), min(tile_w, cols - x0),
                        nbytes, &groups[k, 0], &tb, &scratch[0] + region[k], &states[k, 0])
        if at < 0:
            bad += 1
        else:
            first[k] = region[k] + at
    return bad == 0


def gather(const uint8_t[::1] scratch, const int64_t[::1] first, const int64_t[::1] region,
           const int64_t[::1] offsets, uint8_t[::1] out):
    """Copy tile k's bytes, scratch[first[k]:region[k + 1]], to out[offsets[k]:]."""
    cdef Py_ssize_t k, ntiles = first.shape[0]
    for k in prange(ntiles, nogil=True, schedule="static"):
        if region[k + 1] > first[k]:
            memcpy(&out[offsets[k]], &scratch[first[k]], region[k + 1] - first[k])


cdef inline uint32_t untransform(uint32_t v, int kind, int wbits, uint32_t mask) noexcept nogil:
    if kind == KIND_SIGNED:
        return v ^ (<uint32_t>1 << (wbits - 1))
    if kind == KIND_FLOAT:
        return ((v >> 1) | (v << (wbits - 1))) & mask
    return v


cdef int decode_one(const uint8_t *data, Py_ssize_t pos, Py_ssize_t size, int nbytes,
                    Py_ssize_t n, const uint8_t *group, const uint32_t *state,
                    const Tables *tb, uint32_t *res) noexcept nogil:
    """Decode one tile's residuals into res[0:n]; 0 on success, else an error code."""
    cdef uint32_t x[LANES]
    cdef uint32_t prev[LANES]
    cdef Py_ssize_t t, e, jmax, raw_at, end, nsteps = (n + LANES - 1) // LANES
    cdef int p, j, g, nraw = 0, pb
    cdef Py_ssize_t tbl
    cdef uint32_t sym, mask
    cdef const uint8_t *lookup
    for p in range(nbytes):
        if group[p] == GROUP_RAW:
            nraw += 1
    end = pos + size - nraw * n
    for j in range(LANES):
        x[j] = state[j]
        prev[j] = 0
    for e in range(n):
        res[e] = 0
    for t in range(nsteps):
        jmax = min(LANES, n - t * LANES)
        raw_at = end
        for p in range(nbytes):
            g = group[p]
            if g == GROUP_RAW:
                for j in range(jmax):
                    e = t * LANES + j
                    sym = data[raw_at + e]
                    res[e] = (res[e] << 8) | sym
                    prev[j] = sym
                raw_at += n
                continue
            pb = tb.prob_bits[p]
            mask = (<uint32_t>1 << pb) - 1
            for j in range(jmax):
                e = t * LANES + j
                tbl = table_of(tb, p, prev[j], g)
                sym = tb.lookup[tbl * tb.lookup_width + (x[j] & mask)]
                if not rans_decode_advance(&x[j], tb.start[256 * tbl + sym],
                                           tb.freq[256 * tbl + sym], pb, data, &pos, end):
                    return 1
                res[e] = (res[e] << 8) | sym
                prev[j] = sym
    if pos != end:
        return 2
    for j in range(LANES):
        if x[j] != RANS_L:
            return 2
    return 0


def decode_tiles(const uint8_t[::1] data, const int64_t[::1] offsets,
                 const int64_t[::1] sizes, const uint8_t[::1] preds,
                 const uint8_t[:, ::1] groups, const uint32_t[:, ::1] states,
                 const uint8_t[:, ::1] ctxmap, const int32_t[::1] tbase,
                 const int32_t[::1] nctx, const uint8_t[::1] prob_bits,
                 const uint32_t[:, ::1] freq, const uint32_t[:, ::1] start,
                 const uint8_t[:, ::1] lookup, Py_ssize_t rows, Py_ssize_t cols,
                 int tile_h, int tile_w, int nbytes, int kind, uint8_t[:, ::1] out,
                 uint8_t[::1] errors):
    """Decode all tiles into out (rows x cols*nbytes bytes, native-endian elements).

    errors[k] is set non-zero for a tile whose stream is truncated or inconsistent; out is
    then partly written.  Returns the number of failed tiles."""
    cdef Py_ssize_t tiles_x = (cols + tile_w - 1) // tile_w
    cdef Py_ssize_t ntiles = offsets.shape[0]
    cdef Py_ssize_t k, y0, x0, h, w, y, x, n, e, failed = 0
    cdef int wbits = 8 * nbytes, pred, code
    cdef uint32_t mask = 0xFFFFFFFF if nbytes == 4 else ((<uint32_t>1 << wbits) - 1)
    cdef uint32_t v
    cdef uint32_t *res
    cdef Tables tb
    if ntiles == 0:
        return 0
    tb = make_tables(tbase, nctx, prob_bits, ctxmap, freq, start, lookup)
    with nogil, parallel():
        res = <uint32_t *>malloc(tile_h * tile_w * sizeof(uint32_t))
        for k in prange(ntiles, schedule="dynamic"):
            if res == NULL:
                errors[k] = 3
                failed += 1
                continue
            y0 = (k // tiles_x) * tile_h
            x0 = (k % tiles_x) * tile_w
            h = min(tile_h, rows - y0)
            w = min(tile_w, cols - x0)
            n = h * w
            code = decode_one(&data[0], offsets[k], sizes[k], nbytes, n, &groups[k, 0],
                              &states[k, 0], &tb, res)
            errors[k] = <uint8_t>code
            if code != 0:
                failed += 1
                continue
            pred = preds[k]
            # In place in raster order: neighbours are already values, res[e] still residual.
            if pred != PRED_NONE:
                for y in range(h):
                    for x in range(w):
                        e = y * w + x
                        res[e] = (unzigzag(res[e], mask) + predict(pred, res, w, y, x, mask)) & mask
            for y in range(h):
                for x in range(w):
                    v = untransform(res[y * w + x], kind, wbits, mask)
                    if nbytes == 1:
                        out[y0 + y, x0 + x] = <uint8_t>v
                    elif nbytes == 2:
                        (<uint16_t *>&out[y0 + y, 2 * (x0 + x)])[0] = <uint16_t>v
                    else:
                        (<uint32_t *>&out[y0 + y, 4 * (x0 + x)])[0] = v
        free(res)
    return failed
