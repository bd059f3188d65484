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
  (for plane 0: ctxmap[0, activity of the row above], see _lossless_context.h); group
  GROUP_RAW stores the plane's bytes verbatim after the stream instead.
* The decoder writes each plane's symbols to a byte array of its own (a raw plane is used
  where it lies in the stream) and assembles elements afterwards in vectorisable loops; its
  symbol loop refills branch-free and reads 4 stream bytes per lane unchecked while at least
  2 * 32 + 2 bytes remain, switching to checked reads for the last few steps of a tile.
* Callers (cgc.lossless) validate every size and index before calling in (the stream's
  tables and tile records are parsed and checked by read_table and check_metadata here);
  the loops only check the byte reads that depend on stream content."""

from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.math cimport log2
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
import numpy as np
cimport numpy as np

np.import_array()

from cgc.native.threads cimport team_size
from cgc.native.crc32 cimport crc32_combine, crc32_of, have_clmul
from cgc.native.format cimport (GROUP_RAW, KIND_FLOAT, KIND_SIGNED,
                                KIND_UNSIGNED, LANES, PRED_AVG, PRED_COUNT, PRED_LEFT,
                                PRED_MED, PRED_NONE, PRED_PLANAR, PRED_TOP, RANS_L,
                                RECORD_GROUPS, RECORD_OFFSET, RECORD_PREDICTOR, RECORD_SIZE,
                                SYMBOL_LIST_MAX)
from cgc.native.rans cimport (TABLE_BAD_FREQUENCIES, TABLE_BAD_SYMBOLS, TABLE_BAD_VARINT,
                              TABLE_TRUNCATED, rans_decode_advance, rans_encode_symbol,
                              rans_read_state, rans_write_state, read_frequencies,
                              read_varint)

# check_metadata's results.
cdef enum:
    META_LAYOUT = 1
    META_PREDICTOR = 2
    META_GROUP = 3
    META_RAW_SHORT = 4
    META_STATE = 5

PREDICTORS = {"none": PRED_NONE, "left": PRED_LEFT, "top": PRED_TOP, "avg": PRED_AVG,
              "planar": PRED_PLANAR, "med": PRED_MED}
RAW_GROUP = GROUP_RAW
TABLE_SYMBOL_LIST_MAX = SYMBOL_LIST_MAX
METADATA_ERRORS = {META_LAYOUT: "tile offsets and sizes do not tile the data section",
                   META_PREDICTOR: "unknown predictor",
                   META_GROUP: "tile names a missing table group",
                   META_RAW_SHORT: "tile too short for its raw planes",
                   META_STATE: "rANS lane state out of range"}
TABLE_ERRORS = {TABLE_TRUNCATED: "truncated cgc.lossless stream (table)",
                TABLE_BAD_VARINT: "varint too long (table)",
                TABLE_BAD_SYMBOLS: "table symbols not strictly ascending or miscounted",
                TABLE_BAD_FREQUENCIES: "table frequencies do not fit the precision"}
NUM_LANES = LANES


cdef extern from "_lossless_context.h" nogil:
    uint8_t activity "cgc_activity"(const uint8_t *s, Py_ssize_t stride, Py_ssize_t w,
                                    Py_ssize_t y, Py_ssize_t x)
    void step_activity "cgc_step_activity"(const uint8_t *s, Py_ssize_t w, Py_ssize_t e0,
                                           int count, uint8_t *act)


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


include "_lossless_stats.pxi"


cdef struct Tables:
    # The encoder's tables: raw pointers into the arrays of cgc.lossless.model.CodingTables,
    # as memoryviews passed to per-symbol helpers would be reference-counted on every call.
    const int32_t *tbase
    const int32_t *nctx
    const uint8_t *prob_bits
    const uint8_t *ctxmap  # [plane][256]
    const uint32_t *freq  # [table][256]
    const uint32_t *start  # [table][256]


cdef Tables make_tables(const int32_t[::1] tbase, const int32_t[::1] nctx,
                        const uint8_t[::1] prob_bits, const uint8_t[:, ::1] ctxmap,
                        const uint32_t[:, ::1] freq, const uint32_t[:, ::1] start):
    cdef Tables t
    t.tbase = &tbase[0]
    t.nctx = &nctx[0]
    t.prob_bits = &prob_bits[0]
    t.ctxmap = &ctxmap[0, 0]
    t.freq = &freq[0, 0]
    t.start = &start[0, 0]
    return t


cdef inline Py_ssize_t table_of(const Tables *t, int p, uint32_t ctx_byte,
                                int group) noexcept nogil:
    # ctx_byte: the activity for plane 0, the previous plane's byte for the others.
    return t.tbase[p] + group * t.nctx[p] + t.ctxmap[256 * p + ctx_byte]


cdef Py_ssize_t encode_one(const uint32_t *resid, const uint8_t *act, Py_ssize_t stride,
                           Py_ssize_t h, Py_ssize_t w, int nbytes, const uint8_t *group,
                           const Tables *tb, uint8_t *region, uint32_t *state) noexcept nogil:
    """Code one tile (resid and act, its plane-0 context inputs from activity_map, point at
    its (0, 0) element) into region; returns where its bytes start, or -1 for a symbol
    without frequency (a modelling bug, never bad input)."""
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
                if p > 0:
                    prev = (v >> (8 * (nbytes - p))) & 0xFF
                else:
                    prev = act[(e // w) * stride + e % w]
                tbl = table_of(tb, p, prev, g)
                f = tb.freq[256 * tbl + sym]
                if f == 0:
                    return -1
                ptr = rans_encode_symbol(&state[j], ptr, tb.start[256 * tbl + sym], f,
                                         tb.prob_bits[p])
    return ptr - region


def encode_tiles(const uint32_t[:, ::1] resid, const uint8_t[:, ::1] activity, int tile_h,
                 int tile_w, int nbytes,
                 const uint8_t[:, ::1] groups, const uint8_t[:, ::1] ctxmap,
                 const int32_t[::1] tbase, const int32_t[::1] nctx,
                 const uint8_t[::1] prob_bits, const uint32_t[:, ::1] freq,
                 const uint32_t[:, ::1] start, uint8_t[::1] scratch,
                 const int64_t[::1] region, int64_t[::1] first, uint32_t[:, ::1] states):
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
    tb = make_tables(tbase, nctx, prob_bits, ctxmap, freq, start)
    for k in prange(ntiles, nogil=True, schedule="dynamic", num_threads=team_size()):
        y0 = (k // tiles_x) * tile_h
        x0 = (k % tiles_x) * tile_w
        at = encode_one(&resid[y0, x0], &activity[y0, x0], cols, min(tile_h, rows - y0),
                        min(tile_w, cols - x0), nbytes, &groups[k, 0], &tb,
                        &scratch[0] + region[k], &states[k, 0])
        if at < 0:
            bad += 1
        else:
            first[k] = region[k] + at
    return bad == 0


def gather(const uint8_t[::1] scratch, const int64_t[::1] first, const int64_t[::1] region,
           const int64_t[::1] offsets, uint8_t[::1] out):
    """Copy tile k's bytes, scratch[first[k]:region[k + 1]], to out[offsets[k]:]."""
    cdef Py_ssize_t k, ntiles = first.shape[0]
    for k in prange(ntiles, nogil=True, schedule="static", num_threads=team_size()):
        if region[k + 1] > first[k]:
            memcpy(&out[offsets[k]], &scratch[first[k]], region[k + 1] - first[k])


def read_table(const uint8_t[::1] buf, Py_ssize_t pos, int prob_bits, uint32_t[::1] freq):
    """Parse one frequency table (docs/lossless-format.md) at buf[pos] into freq[256];
    returns the position after it or a negative TABLE_* error.  Compiled: a Python loop
    over the varints cost a quarter of the decode time of small tensors."""
    cdef uint32_t k
    pos = read_varint(&buf[0], buf.shape[0], pos, &k)
    if pos < 0 or k == 0:
        for k in range(256):
            freq[k] = 0
        return pos
    return read_frequencies(&buf[0], buf.shape[0], pos, k, prob_bits, &freq[0])


cdef inline uint64_t load_le(const uint8_t *p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n - 1, -1, -1):
        v = (v << 8) | p[i]
    return v


def check_metadata(const uint8_t[:, ::1] meta, int nbytes, const uint8_t[::1] ngroups,
                   Py_ssize_t data_size, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t tile_h,
                   Py_ssize_t tile_w):
    """Validate the tile records (rows of bytes laid out as cgc.lossless.format's
    metadata_dtype) against the Data size and the plane models; returns 0 or a META_* error.
    Compiled: a dozen numpy passes over a few records cost more than decoding small
    tensors."""
    cdef Py_ssize_t k, ntiles = meta.shape[0], tiles_x = (cols + tile_w - 1) // tile_w
    cdef Py_ssize_t expect = 0, size, h, w
    cdef const uint8_t *rec
    cdef int p, j, nraw
    cdef uint64_t state
    for k in range(ntiles):
        rec = &meta[k, 0]
        size = <Py_ssize_t>load_le(rec + RECORD_SIZE, 4)
        if load_le(rec + RECORD_OFFSET, 8) != <uint64_t>expect:
            return META_LAYOUT
        expect += size
        if rec[RECORD_PREDICTOR] >= PRED_COUNT:
            return META_PREDICTOR
        nraw = 0
        for p in range(nbytes):
            if rec[RECORD_GROUPS + p] == GROUP_RAW:
                nraw += 1
            elif rec[RECORD_GROUPS + p] >= ngroups[p]:
                return META_GROUP
        h = min(tile_h, rows - (k // tiles_x) * tile_h)
        w = min(tile_w, cols - (k % tiles_x) * tile_w)
        if size < nraw * h * w:
            return META_RAW_SHORT
        for j in range(LANES):
            state = load_le(rec + RECORD_GROUPS + nbytes + 4 * j, 4)
            if state < RANS_L or state >= 256 * <uint64_t>RANS_L:
                return META_STATE
    if expect != data_size:
        return META_LAYOUT
    return 0


cdef extern from *:
    """
    #include <string.h>
    /* The 4 stream bytes at p as a big-endian number: one load, whatever the alignment. */
    static inline uint32_t cgc_load_be32(const uint8_t *p) {
        uint32_t v;
        memcpy(&v, p, 4);
        return __builtin_bswap32(v);
    }
    """
    uint32_t load_be32 "cgc_load_be32"(const uint8_t *p) noexcept nogil


cdef extern from "_lossless_avx2.h" nogil:
    int have_avx2 "cgc_have_avx2"()
    Py_ssize_t avx2_decode_steps "cgc_avx2_decode_steps"(
        uint32_t *x_lanes, int nplanes, uint8_t **out, const uint8_t **ctx,
        const int32_t *base, const uint8_t **map, const unsigned *rows,
        const uint32_t *entries, const uint8_t *data, Py_ssize_t *pos, Py_ssize_t end,
        Py_ssize_t full_steps, Py_ssize_t activity_w)
    unsigned avx2_map_rows "cgc_avx2_map_rows"(const uint8_t *map)
    uint32_t avx2_entry "cgc_avx2_entry"(uint32_t symbol, uint32_t freq, uint32_t offset)
    enum:
        AVX2_PROB_BITS "CGC_AVX2_PROB_BITS"
        AVX2_SLOTS "CGC_AVX2_SLOTS"


# CRC-32 of cgc.lossless streams (cgc/native/crc32.h).
cdef bint clmul_present = have_clmul()
HAVE_CLMUL = bool(clmul_present)
# Inputs from this size on are summed in one chunk per thread, joined by crc32_combine: a
# thread team costs microseconds, a MiB far more (docs/tuning.md, "native/crc32.h: CRC-32").
PARALLEL_CRC_BYTES = 1 << 20


def crc32(const uint8_t[::1] data, uint32_t value=0, bint clmul=True, int threads=0):
    """zlib.crc32(data, value), by carry-less multiplication where the CPU has it
    (HAVE_CLMUL; several times faster), else (or with clmul=False) by a bitwise loop, far
    slower than zlib's tables: callers use zlib.crc32 when HAVE_CLMUL is false.  threads:
    chunks summed in parallel by the OpenMP threads (0: one per thread for
    PARALLEL_CRC_BYTES or more, else one)."""
    cdef uint32_t out
    cdef int use_clmul = clmul and clmul_present
    cdef Py_ssize_t n = data.shape[0], k, chunk, nchunks
    cdef int team = team_size()
    cdef uint32_t[::1] sums
    if n == 0:
        return value
    nchunks = threads if threads > 0 else (team if n >= PARALLEL_CRC_BYTES else 1)
    nchunks = max(1, min(nchunks, n, 1024))
    if nchunks == 1:
        with nogil:
            out = crc32_of(value, &data[0], <size_t>n, use_clmul)
        return out
    chunk = (n + nchunks - 1) // nchunks
    nchunks = (n + chunk - 1) // chunk
    sums = np.empty(nchunks, np.uint32)
    with nogil:
        for k in prange(nchunks, num_threads=max(1, min(team, nchunks)), schedule="static"):
            sums[k] = crc32_of(value if k == 0 else 0, &data[k * chunk],
                               <size_t>min(chunk, n - k * chunk), use_clmul)
        out = sums[0]
        for k in range(1, nchunks):
            out = crc32_combine(out, sums[k], <size_t>min(chunk, n - k * chunk))
    return out


cdef bint avx2_present = have_avx2()
cdef bint use_avx2 = avx2_present


# Filling a table's AVX2_SLOTS packed entries costs what the AVX2 decoder earns back only
# over a few thousand symbols: streams with fewer symbols per table take the scalar decoder
# alone (measurements: docs/tuning.md, "lossless/_lossless_cy.pyx: tile decoder").
AVX2_MIN_SYMBOLS_PER_TABLE = AVX2_SLOTS // 4
cdef Py_ssize_t avx2_min_symbols = AVX2_MIN_SYMBOLS_PER_TABLE


def simd_decoder(enabled=None, min_symbols_per_table=None):
    """Whether tile decoding uses the AVX2 decoder (present on this CPU and not switched
    off); enabled=True/False switches it on (if present) or off, for tests and benches.
    min_symbols_per_table sets how many symbols per frequency table a stream must have for
    the AVX2 decoder to be used (tests set 0 to run it on small arrays)."""
    global use_avx2, avx2_min_symbols
    if enabled is not None:
        use_avx2 = bool(enabled) and avx2_present
    if min_symbols_per_table is not None:
        avx2_min_symbols = max(0, int(min_symbols_per_table))
    return bool(use_avx2)


cdef struct DecodeTables:
    # Each table is one block: its slot -> symbol lookup (2**lookup_shift bytes) followed
    # by fs[256], freq << 16 | start as uint32 (both at most 2**14), so that one pointer
    # reaches both.
    const uint8_t *blocks
    Py_ssize_t block_bytes
    int lookup_shift
    const int32_t *tbase
    const int32_t *nctx
    const uint8_t *prob_bits
    const uint8_t *ctxmap  # [plane][256]
    # The AVX2 decoder's packed tables (AVX2_SLOTS entries each, same table order), or NULL
    # when it is off or some plane's precision is not AVX2_PROB_BITS.
    const uint32_t *entries
    unsigned map_rows[4]  # avx2_map_rows of each plane's context map


cdef inline Py_ssize_t decode_lane(uint32_t *x, uint8_t *sym_out, const uint8_t *block,
                                   int pb, int lookup_shift, const uint8_t *data,
                                   Py_ssize_t pos) noexcept nogil:
    """One lane's symbol from a table block with a branch-free refill; returns the new pos.

    After a decode x >= 2**7, so the lane needs (x < 2**23) + (x < 2**15) bytes, known
    before reading them.  Four bytes are always read (the caller guarantees they exist) and
    the unneeded ones shifted out, so the only serial chain across lanes is pos += need: a
    refill loop's data-dependent branch mispredicts about every other symbol."""
    cdef uint32_t xj = x[0]
    cdef uint32_t slot = xj & ((<uint32_t>1 << pb) - 1)
    cdef uint32_t sym = block[slot]
    cdef uint32_t f = (<const uint32_t *>(block + (1 << lookup_shift)))[sym]
    cdef Py_ssize_t need
    xj = (f >> 16) * (xj >> pb) + slot - (f & 0xFFFF)
    need = (xj < RANS_L) + (xj < (RANS_L >> 8))
    x[0] = <uint32_t>((((<uint64_t>xj) << 32) | load_be32(data + pos)) >> (32 - 8 * need))
    sym_out[0] = <uint8_t>sym
    return pos + need


cdef inline Py_ssize_t decode_plane_pb(uint32_t *x, uint8_t *cur, const uint8_t *prev,
                                       Py_ssize_t jmax, const uint8_t **ctx_block,
                                       int pb, int lookup_shift,
                                       const uint8_t *data, Py_ssize_t pos) noexcept nogil:
    # Inlined with constant pb and lookup_shift, so that shifts and masks are immediates,
    # and for full steps a constant jmax (faster than a loaded bound); a plane 0 without
    # activity contexts (prev NULL) skips a dependent load per lane.
    cdef Py_ssize_t j
    if prev == NULL:
        for j in range(jmax):
            pos = decode_lane(&x[j], &cur[j], ctx_block[0], pb, lookup_shift, data, pos)
    else:
        for j in range(jmax):
            pos = decode_lane(&x[j], &cur[j], ctx_block[prev[j]], pb, lookup_shift,
                              data, pos)
    return pos


cdef int decode_one(const uint8_t *data, Py_ssize_t pos, Py_ssize_t size, int nbytes,
                    Py_ssize_t n, Py_ssize_t w, const uint8_t *group, const uint8_t *state,
                    const DecodeTables *tb, uint8_t *scratch,
                    const uint8_t **planes) noexcept nogil:
    """Decode one tile's residual byte planes; 0 on success, else an error code.

    On return planes[p] points at plane p's n bytes: in scratch[p * n:] for coded planes, in
    data for raw ones.  The context of a symbol is the same element's byte of the previous
    plane, read back from that plane."""
    cdef uint32_t x[LANES]
    cdef const uint8_t *ctx_block[4][256]  # [plane][previous plane's byte]: table block
    # The coded planes alone, in order, for the AVX2 decoder.
    cdef uint8_t *coded_out[4]
    cdef const uint8_t *coded_ctx[4]
    cdef int32_t coded_base[4]
    cdef const uint8_t *coded_map[4]
    cdef unsigned coded_rows[4]
    cdef Py_ssize_t table
    cdef uint8_t act[LANES]  # plane-0 context input of a step's elements
    cdef bint by_activity = group[0] != GROUP_RAW and tb.nctx[0] > 1
    cdef Py_ssize_t t, jmax, raw_at, end, j, e0, nsteps = (n + LANES - 1) // LANES
    cdef Py_ssize_t first_step = 0
    cdef int p, nraw = 0, ncoded = 0, pb, ls = tb.lookup_shift
    cdef const uint8_t *block
    cdef const uint8_t *prev
    cdef uint8_t *cur
    for p in range(nbytes):
        if group[p] == GROUP_RAW:
            nraw += 1
    end = pos + size - nraw * n
    raw_at = end
    for p in range(nbytes):
        if group[p] == GROUP_RAW:
            planes[p] = data + raw_at
            raw_at += n
            continue
        planes[p] = scratch + p * n
        for j in range(256 if p > 0 or by_activity else 1):
            table = tb.tbase[p] + group[p] * tb.nctx[p] + tb.ctxmap[256 * p + j]
            ctx_block[p][j] = tb.blocks + tb.block_bytes * table
        coded_out[ncoded] = scratch + p * n
        # A one-context plane needs no previous plane's byte: its table is fixed per tile.
        coded_ctx[ncoded] = planes[p - 1] if p > 0 and tb.nctx[p] > 1 else NULL
        coded_base[ncoded] = <int32_t>(AVX2_SLOTS * (tb.tbase[p] + group[p] * tb.nctx[p]))
        coded_map[ncoded] = tb.ctxmap + 256 * p
        coded_rows[ncoded] = tb.map_rows[p]
        ncoded += 1
    for j in range(LANES):
        x[j] = <uint32_t>load_le(state + 4 * j, 4)
    if tb.entries != NULL and ncoded > 0:
        first_step = avx2_decode_steps(x, ncoded, coded_out, coded_ctx, coded_base,
                                       coded_map, coded_rows, tb.entries, data, &pos, end,
                                       n // LANES, w if by_activity else 0)
    for t in range(first_step, nsteps):
        e0 = t * LANES
        jmax = min(LANES, n - e0)
        for p in range(nbytes):
            if group[p] == GROUP_RAW:
                continue
            cur = scratch + p * n + e0
            if p > 0:
                prev = planes[p - 1] + e0
            elif by_activity:
                step_activity(scratch, w, e0, <int>jmax, act)
                prev = act
            else:
                prev = NULL
            pb = tb.prob_bits[p]
            if end - pos >= 2 * jmax + 2:
                if pb == 12 and ls == 12 and jmax == LANES:  # what the encoder writes
                    pos = decode_plane_pb(x, cur, prev, LANES, ctx_block[p], 12, 12,
                                          data, pos)
                else:
                    pos = decode_plane_pb(x, cur, prev, jmax, ctx_block[p], pb, ls,
                                          data, pos)
                continue
            for j in range(jmax):  # near the end of the stream: check every byte read
                block = ctx_block[p][prev[j] if prev != NULL else 0]
                cur[j] = block[x[j] & ((1u << pb) - 1)]
                if not rans_decode_advance(
                        &x[j], (<const uint32_t *>(block + (1 << ls)))[cur[j]] & 0xFFFF,
                        (<const uint32_t *>(block + (1 << ls)))[cur[j]] >> 16, pb, data,
                        &pos, end):
                    return 1
    if pos != end:
        return 2
    for j in range(LANES):
        if x[j] != RANS_L:
            return 2
    return 0


cdef inline uint32_t untransform(uint32_t v, int kind, int wbits, uint32_t mask) noexcept nogil:
    if kind == KIND_SIGNED:
        return v ^ (<uint32_t>1 << (wbits - 1))
    if kind == KIND_FLOAT:
        return ((v >> 1) | (v << (wbits - 1))) & mask
    return v


cdef void unpredict(uint32_t *res, Py_ssize_t h, Py_ssize_t w, int pred,
                    uint32_t mask) noexcept nogil:
    """Residuals to values in place, in raster order: neighbours are already values."""
    cdef Py_ssize_t y, x, e
    for y in range(h):
        for x in range(w):
            e = y * w + x
            res[e] = (unzigzag(res[e], mask) + predict(pred, res, w, y, x, mask)) & mask


cdef void assemble(const uint8_t **planes, Py_ssize_t n, int nbytes, uint32_t *res) noexcept nogil:
    """Element values from their byte planes, most significant first."""
    cdef Py_ssize_t e
    cdef int p
    for e in range(n):
        res[e] = planes[0][e]
    for p in range(1, nbytes):
        for e in range(n):
            res[e] = (res[e] << 8) | planes[p][e]


cdef void store_planes(const uint8_t **planes, Py_ssize_t h, Py_ssize_t w, int nbytes,
                       int kind, uint8_t *out, Py_ssize_t row_bytes) noexcept nogil:
    """Unpredicted tile (predictor NONE): inverse transform of the planes into the output
    rows (out points at the tile's first byte), one vectorisable loop per width and kind."""
    cdef Py_ssize_t y, x
    cdef const uint8_t *a
    cdef const uint8_t *b
    cdef const uint8_t *c
    cdef const uint8_t *d
    cdef uint32_t v
    cdef uint16_t v16
    # Stores go through memcpy: a checkpoint's tensors need not be aligned to their element
    # size (safetensors does not require it), and the compiler makes each one a plain move.
    cdef uint8_t *o8
    cdef uint8_t flip = 0x80 if kind == KIND_SIGNED else 0
    for y in range(h):
        a = planes[0] + y * w
        o8 = out + y * row_bytes
        if nbytes == 1:
            for x in range(w):
                o8[x] = a[x] ^ flip
        elif nbytes == 2:
            b = planes[1] + y * w
            if kind == KIND_FLOAT:
                for x in range(w):
                    v16 = <uint16_t>((a[x] << 7) | (b[x] >> 1) | ((b[x] & 1) << 15))
                    memcpy(o8 + 2 * x, &v16, 2)
            else:
                for x in range(w):
                    v16 = <uint16_t>(((a[x] ^ flip) << 8) | b[x])
                    memcpy(o8 + 2 * x, &v16, 2)
        else:
            b = planes[1] + y * w
            c = planes[2] + y * w
            d = planes[3] + y * w
            for x in range(w):
                v = (<uint32_t>a[x] << 24) | (<uint32_t>b[x] << 16) | (<uint32_t>c[x] << 8) | d[x]
                v = (v >> 1) | (v << 31)
                memcpy(o8 + 4 * x, &v, 4)


cdef void store_values(const uint32_t *res, Py_ssize_t h, Py_ssize_t w, int nbytes,
                       int kind, uint8_t *out, Py_ssize_t row_bytes) noexcept nogil:
    """Inverse transform of a tile's values into the output rows."""
    cdef Py_ssize_t y, x
    cdef uint32_t v
    cdef uint16_t v16
    cdef int wbits = 8 * nbytes
    cdef uint32_t mask = 0xFFFFFFFF if nbytes == 4 else ((<uint32_t>1 << wbits) - 1)
    for y in range(h):
        for x in range(w):
            v = untransform(res[y * w + x], kind, wbits, mask)
            if nbytes == 1:
                (out + y * row_bytes)[x] = <uint8_t>v
            elif nbytes == 2:
                v16 = <uint16_t>v
                memcpy(out + y * row_bytes + 2 * x, &v16, 2)
            else:
                memcpy(out + y * row_bytes + 4 * x, &v, 4)


def decode_tiles(const uint8_t[::1] data, const uint8_t[:, ::1] meta,
                 const uint8_t[:, ::1] ctxmap, const int32_t[::1] tbase,
                 const int32_t[::1] nctx, const uint8_t[::1] prob_bits,
                 const uint32_t[:, ::1] freq, Py_ssize_t rows, Py_ssize_t cols, int tile_h,
                 int tile_w, int nbytes, int kind, uint8_t[:, ::1] out, uint8_t[::1] errors):
    """Decode all tiles into out (rows x cols*nbytes bytes, native-endian elements).

    meta holds the tile records as rows of bytes (cgc.lossless.format's metadata_dtype,
    checked by check_metadata), read here in place: for a small tensor, numpy copies of
    their fields cost as much as its decode.  errors[k] is set non-zero for a tile whose
    stream is truncated or inconsistent; out is then partly written.  Returns the number of
    failed tiles."""
    cdef Py_ssize_t tiles_x = (cols + tile_w - 1) // tile_w
    cdef Py_ssize_t ntiles = meta.shape[0]
    cdef Py_ssize_t k, y0, x0, h, w, failed = 0, cap = <Py_ssize_t>tile_h * tile_w
    cdef Py_ssize_t t, acc, width, i
    cdef int code, s, p, pb_max = 0
    cdef uint32_t f
    cdef uint32_t mask = 0xFFFFFFFF if nbytes == 4 else ((<uint32_t>1 << (8 * nbytes)) - 1)
    cdef uint8_t *scratch
    cdef uint32_t *res
    cdef uint32_t *fs
    cdef const uint8_t *rec
    cdef const uint8_t **planes
    cdef DecodeTables tb
    if ntiles == 0:
        return 0
    for p in range(nbytes):
        pb_max = max(pb_max, prob_bits[p])
    width = <Py_ssize_t>1 << pb_max
    # The blocks of DecodeTables, built from the frequencies that read_table validated: each
    # table's coded symbols fill exactly its 2**prob_bits slots; a table of an unseen
    # context has none and leaves its lookup 0.
    cdef uint8_t[:, ::1] blocks = np.zeros((freq.shape[0], width + 1024), np.uint8)
    cdef bint packed = (use_avx2
                        and rows * cols * nbytes >= freq.shape[0] * avx2_min_symbols)
    # One tile: a team of threads would only wait for it.
    cdef int nthreads = team_size() if ntiles > 1 else 1
    cdef uint32_t[:, ::1] entries
    for p in range(nbytes):
        packed = packed and prob_bits[p] == AVX2_PROB_BITS
    entries = np.zeros((freq.shape[0] if packed else 1, AVX2_SLOTS), np.uint32)
    for t in range(freq.shape[0]):
        fs = <uint32_t *>&blocks[t, width]
        acc = 0
        for s in range(256):
            f = freq[t, s]
            if f > width - acc:
                raise ValueError("frequency table overflows its lookup")
            fs[s] = (f << 16) | <uint32_t>acc
            if f:
                memset(&blocks[t, acc], s, f)
                if packed:
                    for i in range(f):
                        entries[t, acc + i] = avx2_entry(s, f, i)
                acc += f
    tb.blocks = &blocks[0, 0]
    tb.block_bytes = blocks.shape[1]
    tb.lookup_shift = pb_max
    tb.tbase = &tbase[0]
    tb.nctx = &nctx[0]
    tb.prob_bits = &prob_bits[0]
    tb.ctxmap = &ctxmap[0, 0]
    tb.entries = &entries[0, 0] if packed else NULL
    for p in range(nbytes):
        tb.map_rows[p] = avx2_map_rows(&ctxmap[p, 0])
    with nogil, parallel(num_threads=nthreads):
        # Per thread: a C array declared outside the parallel block would be shared.
        planes = <const uint8_t **>malloc(4 * sizeof(uint8_t *))
        scratch = <uint8_t *>malloc(cap * nbytes)
        res = <uint32_t *>malloc(cap * sizeof(uint32_t))
        for k in prange(ntiles, schedule="dynamic"):
            if planes == NULL or scratch == NULL or res == NULL:
                errors[k] = 3
                failed += 1
                continue
            y0 = (k // tiles_x) * tile_h
            x0 = (k % tiles_x) * tile_w
            h = min(tile_h, rows - y0)
            w = min(tile_w, cols - x0)
            rec = &meta[k, 0]
            code = decode_one(&data[0], <Py_ssize_t>load_le(rec + RECORD_OFFSET, 8),
                              <Py_ssize_t>load_le(rec + RECORD_SIZE, 4), nbytes, h * w, w,
                              rec + RECORD_GROUPS, rec + RECORD_GROUPS + nbytes, &tb,
                              scratch, planes)
            errors[k] = <uint8_t>code
            if code != 0:
                failed += 1
            elif rec[RECORD_PREDICTOR] == PRED_NONE:
                store_planes(planes, h, w, nbytes, kind, &out[y0, x0 * nbytes], cols * nbytes)
            else:
                assemble(planes, h * w, nbytes, res)
                unpredict(res, h, w, rec[RECORD_PREDICTOR], mask)
                store_values(res, h, w, nbytes, kind, &out[y0, x0 * nbytes], cols * nbytes)
        free(planes)
        free(scratch)
        free(res)
    return failed
