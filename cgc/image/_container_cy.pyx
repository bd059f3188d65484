# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled entropy coding of the .cgc container (cgc/image/container.py validates a file's
sizes before calling in): the range-coded streams of version 3 (positions and attributes,
cgc/image/_gaussian_streams.h) and the static rANS blocks of versions 1 and 2, read only.
The checks here keep the C code's own preconditions (sorted keys, codes within their
width) whoever the caller."""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from cython.parallel cimport prange
from libc.stdlib cimport free
import numpy as np
cimport numpy as np

from cgc.errors import FormatError
from cgc.native.threads cimport team_size
from cgc.native.format cimport RANS_L, RANS_MAX_PROB_BITS, RANS_MIN_PROB_BITS
from cgc.native.rans cimport (TABLE_BAD_FREQUENCIES, TABLE_BAD_SYMBOLS, TABLE_BAD_VARINT,
                              TABLE_TRUNCATED, rans_decode_advance, rans_read_state,
                              read_frequencies)

np.import_array()

cdef extern from "_gaussian_streams.h" nogil:
    int STREAM_INVALID "CGC_STREAM_INVALID"
    int STREAM_NO_MEMORY "CGC_STREAM_NO_MEMORY"
    unsigned _context "cgc_context"(uint32_t code, int bits)
    int _positions_encode "cgc_positions_encode"(const uint64_t *keys, size_t n,
                                                 int total_bits, uint8_t **out,
                                                 size_t *out_size)
    int _positions_decode "cgc_positions_decode"(const uint8_t *data, size_t size, size_t n,
                                                 int total_bits, uint64_t *keys)
    int _attribute_encode "cgc_attribute_encode"(const uint32_t *codes,
                                                 const uint8_t *contexts, size_t n, int bits,
                                                 uint8_t **out, size_t *out_size)
    int _attribute_decode "cgc_attribute_decode"(const uint8_t *data, size_t size,
                                                 const uint8_t *contexts, size_t n, int bits,
                                                 uint32_t *codes)
    int _attribute_group_decode "cgc_attribute_group_decode"(
        const uint8_t *in_a, size_t size_a, int bits_a, const uint8_t *in_b, size_t size_b,
        int bits_b, const uint8_t *in_c, size_t size_c, int bits_c, size_t n,
        uint32_t *codes_a, uint32_t *codes_b, uint32_t *codes_c)

# Positions keys have at most 16 + 16 bits; at most 2**20 Gaussians (the format's limits).
MAX_KEY_BITS = 32
MAX_STREAM_GAUSSIANS = 1 << 20


cdef bytes _take_output(int status, uint8_t *out, size_t size):
    """The bytes of an encoder's malloc'ed output, freed here."""
    if status == STREAM_NO_MEMORY:
        raise MemoryError("out of memory while coding a stream")
    try:
        return (<char *>out)[:size]
    finally:
        free(out)


cdef _check_decoded(int status, str what):
    if status == STREAM_NO_MEMORY:
        raise MemoryError(f"out of memory while decoding the {what}")
    if status != 0:
        raise FormatError(f"invalid {what} stream")


def _check_stream_size(Py_ssize_t n, int bits, int max_bits):
    if not 1 <= bits <= max_bits:
        raise ValueError(f"code width {bits} out of range 1..{max_bits}")
    if not 0 <= n <= MAX_STREAM_GAUSSIANS:
        raise ValueError(f"{n} Gaussians, at most {MAX_STREAM_GAUSSIANS} per stream")


def positions_encode(const uint64_t[::1] keys, int total_bits):
    """Stream of sorted position keys of ``total_bits`` bits (at least one key)."""
    _check_stream_size(keys.shape[0], total_bits, MAX_KEY_BITS)
    cdef Py_ssize_t i, n = keys.shape[0]
    cdef uint64_t limit = (<uint64_t>1) << total_bits
    if n == 0:
        raise ValueError("no positions to code")
    for i in range(n):
        if keys[i] >= limit or (i > 0 and keys[i] < keys[i - 1]):
            raise ValueError("position keys must be sorted and within their width")
    cdef uint8_t *out = NULL
    cdef size_t size = 0
    cdef int status
    with nogil:
        status = _positions_encode(&keys[0], n, total_bits, &out, &size)
    return _take_output(status, out, size)


def positions_decode(const uint8_t[::1] data, Py_ssize_t n, int total_bits):
    """The n sorted keys of a position stream (FormatError if it is not a valid one)."""
    _check_stream_size(n, total_bits, MAX_KEY_BITS)
    keys = np.full(n, 0xCCCCCCCCCCCCCCCC, dtype=np.uint64)
    cdef uint64_t[::1] out = keys
    cdef int status = STREAM_INVALID
    if n > 0 and data.shape[0] > 0:
        with nogil:
            status = _positions_decode(&data[0], data.shape[0], n, total_bits, &out[0])
    _check_decoded(status, "positions")
    return keys


def attribute_contexts(const uint32_t[::1] codes, int bits):
    """Each code's model context for the attributes that take it (its top two bits)."""
    _check_stream_size(codes.shape[0], bits, 16)
    contexts = np.empty(codes.shape[0], dtype=np.uint8)
    cdef uint8_t[::1] out = contexts
    cdef Py_ssize_t i
    for i in range(codes.shape[0]):
        out[i] = _context(codes[i], bits)
    return contexts


def attribute_encode(const uint32_t[::1] codes, const uint8_t[::1] contexts, int bits):
    """Stream of one attribute's codes of ``bits`` bits, each with its context (0..3)."""
    _check_stream_size(codes.shape[0], bits, 16)
    cdef Py_ssize_t i, n = codes.shape[0]
    if contexts.shape[0] != n:
        raise ValueError("need one context per code")
    for i in range(n):
        if codes[i] >> bits or contexts[i] > 3:
            raise ValueError("codes must be within their width and contexts in 0..3")
    cdef uint8_t *out = NULL
    cdef size_t size = 0
    cdef int status
    with nogil:
        status = _attribute_encode(&codes[0] if n else NULL, &contexts[0] if n else NULL,
                                   n, bits, &out, &size)
    return _take_output(status, out, size)


def attribute_decode(const uint8_t[::1] data, const uint8_t[::1] contexts, int bits):
    """The codes of an attribute stream, one per context (FormatError if invalid)."""
    cdef Py_ssize_t i, n = contexts.shape[0]
    _check_stream_size(n, bits, 16)
    for i in range(n):
        if contexts[i] > 3:
            raise ValueError("contexts must be in 0..3")
    codes = np.full(n, 0xCCCCCCCC, dtype=np.uint32)
    cdef uint32_t[::1] out = codes
    cdef int status = STREAM_INVALID
    if data.shape[0] > 0:
        with nogil:
            status = _attribute_decode(&data[0], data.shape[0], &contexts[0] if n else NULL,
                                       n, bits, &out[0] if n else NULL)
    _check_decoded(status, "attribute")
    return codes


def streams_decode(positions, Py_ssize_t n, int total_bits, groups):
    """Decode a version-3 file's streams at once: ``positions`` (keys of ``total_bits``
    bits) and ``groups``, two triples of (block, bits) each holding an attribute coded in
    context 0 and two coded in its contexts.  The three are independent and decode in
    parallel.  Returns (the n sorted keys, codes (6, n) uint32 in the groups' order)."""
    _check_stream_size(n, total_bits, MAX_KEY_BITS)
    if n == 0:
        raise ValueError("no Gaussians to decode")
    if len(groups) != 2 or any(len(group) != 3 for group in groups):
        raise ValueError("need two groups of three attribute streams")
    blocks = [positions] + [block for group in groups for block, _ in group]
    widths = [total_bits] + [bits for group in groups for _, bits in group]
    for bits in widths[1:]:
        _check_stream_size(n, bits, 16)
    keys = np.full(n, 0xCCCCCCCCCCCCCCCC, dtype=np.uint64)
    codes = np.full((6, n), 0xCCCCCCCC, dtype=np.uint32)
    cdef uint64_t[::1] key_out = keys
    cdef uint32_t[:, ::1] code_out = codes
    cdef const uint8_t *data[7]
    cdef size_t sizes[7]
    cdef int bit_widths[7]
    cdef int status[3]
    cdef const uint8_t[::1] view
    views = []
    cdef int i, task
    for i in range(7):
        view = blocks[i]
        views.append(view)  # keeps the buffer alive while the pointer is in use
        sizes[i] = view.shape[0]
        data[i] = &view[0] if view.shape[0] > 0 else NULL
        bit_widths[i] = widths[i]
    for task in prange(3, nogil=True, schedule="static", chunksize=1,
                      num_threads=min(3, team_size())):
        if task == 0:
            status[0] = (_positions_decode(data[0], sizes[0], n, bit_widths[0], &key_out[0])
                         if sizes[0] > 0 else STREAM_INVALID)
        else:
            i = 1 + 3 * (task - 1)
            status[task] = _attribute_group_decode(
                data[i], sizes[i], bit_widths[i], data[i + 1], sizes[i + 1], bit_widths[i + 1],
                data[i + 2], sizes[i + 2], bit_widths[i + 2], n, &code_out[i - 1, 0],
                &code_out[i, 0], &code_out[i + 1, 0])
    _check_decoded(status[0], "positions")
    for task in range(1, 3):
        _check_decoded(status[task], "attribute")
    return keys, codes


# Versions 1 and 2: one static rANS block per stream (docs/format.md, "Versions 1 and 2"):
#   varint n (symbol count; nothing follows when 0), u8 prob_bits (12..16; 0: the n symbols
#   stored verbatim), u8 k - 1 (distinct symbols), the frequency table
#   (cgc/native/rans.pxd, read_frequencies), u32le initial state, renormalisation bytes.
TABLE_ERRORS = {TABLE_TRUNCATED: "truncated rANS table",
                TABLE_BAD_VARINT: "varint too long in rANS table",
                TABLE_BAD_SYMBOLS: "rANS symbols not strictly ascending or miscounted",
                TABLE_BAD_FREQUENCIES: "rANS frequencies do not fit the table"}


cdef unsigned long long _read_count(const uint8_t[::1] data, Py_ssize_t *pos) except? 0:
    """The block's leading varint (up to 64 bits, as the format allows)."""
    cdef unsigned long long value = 0
    cdef int shift = 0
    while True:
        if pos[0] >= data.shape[0]:
            raise FormatError("truncated varint in rANS block")
        if shift > 56:
            raise FormatError("varint too long in rANS block")
        value |= <unsigned long long>(data[pos[0]] & 0x7F) << shift
        pos[0] += 1
        if data[pos[0] - 1] < 0x80:
            return value
        shift += 7


def rans_decode(block, uint8_t[::1] out):
    """Decode a version 1 / 2 rANS block into out, whose length must be the block's symbol
    count.  Raises FormatError on any inconsistency; out may be partly written then."""
    cdef const uint8_t[::1] data = np.frombuffer(bytes(block), dtype=np.uint8)
    cdef Py_ssize_t pos = 0, n, i, end = data.shape[0]
    cdef int prob_bits, s
    cdef uint32_t freq[256]
    cdef uint32_t start[256]
    cdef uint32_t acc = 0, total, state, mask
    cdef bint ok = True
    n = <Py_ssize_t>_read_count(data, &pos)
    if n != out.shape[0]:
        raise FormatError(f"rANS block holds {n} symbols, expected {out.shape[0]}")
    if n == 0:
        if pos != end:
            raise FormatError("trailing bytes after empty rANS block")
        return
    if pos >= end:
        raise FormatError("truncated rANS table")
    if data[pos] == 0:
        if end - pos - 1 != n:
            raise FormatError("stored rANS block has the wrong length")
        out[:] = data[pos + 1:]
        return
    if pos + 2 > end:
        raise FormatError("truncated rANS table")
    prob_bits = data[pos]
    if not RANS_MIN_PROB_BITS <= prob_bits <= RANS_MAX_PROB_BITS:
        raise FormatError(f"rANS precision {prob_bits} bits out of range")
    pos = read_frequencies(&data[0], end, pos + 2, <uint32_t>data[pos + 1] + 1, prob_bits,
                           freq)
    if pos < 0:
        raise FormatError(TABLE_ERRORS[pos])
    total = <uint32_t>1 << prob_bits
    for s in range(256):
        start[s] = acc
        acc += freq[s]
    slot_to_symbol = np.empty(total, dtype=np.uint8)
    cdef uint8_t[::1] lookup = slot_to_symbol
    for s in range(256):
        if freq[s]:
            lookup[start[s]:start[s] + freq[s]] = s
    if pos + 4 > end:
        raise FormatError("truncated rANS state")
    state = rans_read_state(&data[pos])
    pos += 4
    if state < RANS_L:
        raise FormatError("rANS state out of range")
    mask = total - 1
    with nogil:
        for i in range(n):
            s = lookup[state & mask]
            out[i] = <uint8_t>s
            if not rans_decode_advance(&state, start[s], freq[s], prob_bits, &data[0], &pos,
                                       end):
                ok = False
                break
    if not ok:
        raise FormatError("rANS stream truncated")
    if state != RANS_L or pos != end:
        raise FormatError("rANS stream corrupt (final state or length mismatch)")
