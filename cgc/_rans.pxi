# Byte-stream rANS coder with a static, compactly stored frequency table.
#
# Block layout (docs/format.md, "Versions 1 and 2", rANS block):
#   varint  n                 symbol count; nothing follows when n == 0
#   u8      prob_bits         12..16, chosen by the encoder to minimise the block size;
#                             0 means the n symbols follow stored verbatim (incompressible)
#   u8      k - 1             number of distinct symbols, 1..256
#   symbols                   k ascending bytes when k < 32, else a 32-byte bitmap (LSB first)
#   varint  freq x (k - 1)    frequencies of all but the last symbol; the last one is
#                             2**prob_bits minus their sum and must be >= 1
#   u32le   state             initial decoder state
#   bytes                     renormalisation bytes, read forwards

cdef enum:
    SYMBOL_LIST_MAX = 31


def normalize_frequencies(counts, int prob_bits):
    """Scale symbol counts to integer frequencies summing to 2**prob_bits.

    Every symbol with a non-zero count gets frequency >= 1.  Rounding is corrected greedily
    by the smallest increase in coded size, which keeps the loss against the empirical
    entropy to a small fraction of a percent."""
    counts = np.asarray(counts, dtype=np.int64)
    total_prob = 1 << prob_bits
    present = np.flatnonzero(counts)
    if present.size == 0:
        raise ValueError("no symbols to model")
    if present.size > total_prob:
        raise ValueError("more distinct symbols than probability slots")
    c = counts[present].astype(np.float64)
    freq = np.maximum(1, np.floor(c * total_prob / c.sum() + 0.5)).astype(np.int64)
    excess = int(freq.sum()) - total_prob
    while excess != 0:
        if excess > 0:
            # Cost in bits of taking one slot from each symbol that can spare one.
            cost = np.where(freq > 1, c * np.log2(freq / np.maximum(freq - 1, 1)), np.inf)
            step = min(excess, max(1, excess // present.size))
            order = np.argsort(cost, kind="stable")[:step]
            order = order[np.isfinite(cost[order])]
            freq[order] -= 1
            excess -= order.size
        else:
            gain = c * np.log2((freq + 1) / freq)
            step = min(-excess, max(1, -excess // present.size))
            order = np.argsort(-gain, kind="stable")[:step]
            freq[order] += 1
            excess += order.size
    out = np.zeros(counts.shape[0], dtype=np.uint32)
    out[present] = freq
    return out


cdef bytes _encode_varint(unsigned long long value):
    cdef bytearray out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


cdef unsigned long long _read_varint(const uint8_t[::1] data, Py_ssize_t *pos) except? 0:
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


cdef bytes _encode_with_table(const uint8_t[::1] data, np.uint32_t[::1] freq, int prob_bits):
    cdef Py_ssize_t n = data.shape[0], i
    cdef uint32_t start[256]
    cdef uint32_t state = RANS_L, acc = 0
    cdef int s, k = 0
    cdef list symbols = []
    for s in range(256):
        start[s] = acc
        acc += freq[s]
        if freq[s]:
            symbols.append(s)
            k += 1
    header = bytearray(_encode_varint(n))
    header.append(prob_bits)
    header.append(k - 1)
    if k <= SYMBOL_LIST_MAX:
        header.extend(symbols)
    else:
        bitmap = bytearray(32)
        for s in symbols:
            bitmap[s >> 3] |= 1 << (s & 7)
        header.extend(bitmap)
    for s in symbols[:k - 1]:
        header.extend(_encode_varint(freq[s]))
    # Each symbol writes at most 2 bytes (rans_encode_symbol), the state 4.
    buf = np.empty(2 * n + 4, dtype=np.uint8)
    cdef uint8_t[::1] buf_view = buf
    cdef uint8_t *end = &buf_view[0] + buf_view.shape[0]
    cdef uint8_t *ptr = end
    with nogil:
        for i in range(n - 1, -1, -1):
            s = data[i]
            ptr = rans_encode_symbol(&state, ptr, start[s], freq[s], prob_bits)
        ptr = rans_write_state(state, ptr)
    return bytes(header) + buf[ptr - &buf_view[0]:].tobytes()


def rans_encode(data):
    """Entropy-code a byte string (or uint8 array) into a self-describing rANS block."""
    cdef const uint8_t[::1] view = np.frombuffer(bytes(data), dtype=np.uint8) \
        if not isinstance(data, np.ndarray) else np.ascontiguousarray(data, dtype=np.uint8)
    if view.shape[0] == 0:
        return _encode_varint(0)
    counts = np.bincount(np.asarray(view), minlength=256)
    best = None
    for prob_bits in range(RANS_MIN_PROB_BITS, RANS_MAX_PROB_BITS + 1):
        if np.count_nonzero(counts) > (1 << prob_bits):
            continue
        block = _encode_with_table(view, normalize_frequencies(counts, prob_bits), prob_bits)
        if best is None or len(block) < len(best):
            best = block
    stored = _encode_varint(view.shape[0]) + b"\x00" + bytes(view)
    return stored if len(stored) <= len(best) else best


def rans_decode(block, uint8_t[::1] out):
    """Decode a rANS block into out, whose length must be the block's symbol count.

    Raises FormatError on any inconsistency; out may be partly written in that case."""
    cdef const uint8_t[::1] data = np.frombuffer(bytes(block), dtype=np.uint8)
    cdef Py_ssize_t pos = 0, n, i, end = data.shape[0]
    cdef int prob_bits, k, s, j
    cdef uint32_t freq[256]
    cdef uint32_t start[256]
    cdef uint32_t acc = 0, total, state, slot, mask
    cdef bint ok = True
    n = <Py_ssize_t>_read_varint(data, &pos)
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
    k = data[pos + 1] + 1
    pos += 2
    if not RANS_MIN_PROB_BITS <= prob_bits <= RANS_MAX_PROB_BITS:
        raise FormatError(f"rANS precision {prob_bits} bits out of range")
    total = <uint32_t>1 << prob_bits
    symbols = []
    if k <= SYMBOL_LIST_MAX:
        if pos + k > end:
            raise FormatError("truncated rANS symbol list")
        symbols = list(data[pos:pos + k])
        pos += k
        if any(symbols[j] >= symbols[j + 1] for j in range(k - 1)):
            raise FormatError("rANS symbols not strictly ascending")
    else:
        if pos + 32 > end:
            raise FormatError("truncated rANS symbol bitmap")
        symbols = [s for s in range(256) if data[pos + (s >> 3)] >> (s & 7) & 1]
        pos += 32
        if len(symbols) != k:
            raise FormatError("rANS symbol bitmap disagrees with its count")
    for s in range(256):
        freq[s] = 0
    for j in range(k - 1):
        value = _read_varint(data, &pos)
        if value < 1 or acc + value >= total:
            raise FormatError("rANS frequencies do not fit the table")
        freq[symbols[j]] = <uint32_t>value
        acc += <uint32_t>value
    freq[symbols[k - 1]] = total - acc
    acc = 0
    for s in range(256):
        start[s] = acc
        acc += freq[s]
    slot_to_symbol = np.empty(total, dtype=np.uint8)
    cdef uint8_t[::1] lookup = slot_to_symbol
    for s in symbols:
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
