# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# rANS primitives and the frequency-table parser shared by every rANS coder in cgc (the
# .cgc version 1 / 2 streams and the cgc.lossless tiles).  Inline functions of a .pxd:
# each extension that cimports them compiles its own copy, so the calls inline.

# Read me first
# * State x is a uint32 kept in [RANS_L, 256 * RANS_L) between symbols; renormalisation
#   moves one byte at a time.  RANS_L = 2**23, so probabilities may use up to 16 bits.
# * rANS is last-in first-out: the encoder consumes symbols last to first and writes bytes
#   backwards from the end of its buffer; the decoder reads the state (4 bytes, little-endian)
#   and then the bytes forwards, producing symbols first to last.
# * The encoder starts from x = RANS_L, so a decoder that consumed a valid stream ends with
#   x == RANS_L and no bytes left: decoders check both to catch corruption.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

from cgc.native.format cimport RANS_L, SYMBOL_LIST_MAX

# Negative results of read_varint and read_frequencies.
cdef enum:
    TABLE_TRUNCATED = -1
    TABLE_BAD_VARINT = -2
    TABLE_BAD_SYMBOLS = -3
    TABLE_BAD_FREQUENCIES = -4


cdef inline uint8_t *rans_encode_symbol(uint32_t *state, uint8_t *ptr, uint32_t start,
                                        uint32_t freq, int prob_bits) noexcept nogil:
    """Push one symbol (start, freq) onto the state; returns the new write pointer.

    Writes at most 2 bytes below ptr when prob_bits <= 16 and freq >= 1."""
    cdef uint32_t x = state[0]
    cdef uint32_t x_max = ((<uint32_t>RANS_L >> prob_bits) << 8) * freq
    while x >= x_max:
        ptr -= 1
        ptr[0] = <uint8_t>(x & 0xff)
        x >>= 8
    state[0] = ((x // freq) << prob_bits) + (x % freq) + start
    return ptr


cdef inline uint8_t *rans_write_state(uint32_t state, uint8_t *ptr) noexcept nogil:
    """Flush the final encoder state as 4 little-endian bytes below ptr."""
    ptr -= 4
    ptr[0] = <uint8_t>(state & 0xff)
    ptr[1] = <uint8_t>((state >> 8) & 0xff)
    ptr[2] = <uint8_t>((state >> 16) & 0xff)
    ptr[3] = <uint8_t>(state >> 24)
    return ptr


cdef inline uint32_t rans_read_state(const uint8_t *ptr) noexcept nogil:
    return (<uint32_t>ptr[0] | (<uint32_t>ptr[1] << 8) | (<uint32_t>ptr[2] << 16)
            | (<uint32_t>ptr[3] << 24))


cdef inline bint rans_decode_advance(uint32_t *state, uint32_t start, uint32_t freq,
                                     int prob_bits, const uint8_t *data, Py_ssize_t *pos,
                                     Py_ssize_t end) noexcept nogil:
    """Pop the symbol (start, freq) that the state's low bits selected and refill.

    Returns False if the refill would read past end (a truncated or corrupt stream)."""
    cdef uint32_t mask = (<uint32_t>1 << prob_bits) - 1
    cdef uint32_t x = state[0]
    x = freq * (x >> prob_bits) + (x & mask) - start
    while x < RANS_L:
        if pos[0] >= end:
            return False
        x = (x << 8) | data[pos[0]]
        pos[0] += 1
    state[0] = x
    return True


cdef inline Py_ssize_t read_varint(const uint8_t *buf, Py_ssize_t n, Py_ssize_t pos,
                                   uint32_t *value) noexcept nogil:
    """A LEB128 varint of at most 5 bytes and 32 bits at buf[pos]; returns the position after
    it, TABLE_TRUNCATED or TABLE_BAD_VARINT."""
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef uint8_t byte
    while True:
        if pos >= n:
            return TABLE_TRUNCATED
        byte = buf[pos]
        pos += 1
        v |= <uint64_t>(byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 35:
            return TABLE_BAD_VARINT
    if v >> 32:
        return TABLE_BAD_VARINT
    value[0] = <uint32_t>v
    return pos


cdef inline Py_ssize_t read_frequencies(const uint8_t *buf, Py_ssize_t n, Py_ssize_t pos,
                                        uint32_t k, int prob_bits,
                                        uint32_t *freq) noexcept nogil:
    """The symbols and frequencies of a table of 1 <= k <= 256 symbols at buf[pos] (both
    formats: k ascending bytes when k <= SYMBOL_LIST_MAX, else a 32-byte bitmap, LSB first;
    then varint frequencies of all but the last symbol, which takes the rest of
    2**prob_bits and must be >= 1) into freq[256], zeroed first.  Returns the position
    after the table or a negative TABLE_* error.

    A valid table sums to exactly 2**prob_bits, every coded symbol has frequency >= 1, and
    the coders take a symbol's start as the exclusive prefix sum in symbol order."""
    cdef Py_ssize_t i
    cdef uint32_t f, total = <uint32_t>1 << prob_bits, acc = 0
    cdef int count = 0, s, last = -1
    cdef uint8_t symbols[256]
    for s in range(256):
        freq[s] = 0
    if k < 1 or k > 256:
        return TABLE_BAD_SYMBOLS
    if k <= SYMBOL_LIST_MAX:
        if pos + k > n:
            return TABLE_TRUNCATED
        for i in range(k):
            if <int>buf[pos + i] <= last:
                return TABLE_BAD_SYMBOLS
            last = buf[pos + i]
            symbols[i] = buf[pos + i]
        pos += k
    else:
        if pos + 32 > n:
            return TABLE_TRUNCATED
        for s in range(256):
            if (buf[pos + s // 8] >> (s % 8)) & 1:
                symbols[count] = <uint8_t>s
                count += 1
        if <uint32_t>count != k:
            return TABLE_BAD_SYMBOLS
        pos += 32
    for i in range(k - 1):
        pos = read_varint(buf, n, pos, &f)
        if pos < 0:
            return pos
        if f < 1 or f >= total - acc:
            return TABLE_BAD_FREQUENCIES
        acc += f
        freq[symbols[i]] = f
    freq[symbols[k - 1]] = total - acc
    return pos
