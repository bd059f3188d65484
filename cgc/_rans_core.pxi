# rANS primitives shared by every entropy coder in cgc (the .cgc attribute streams and the
# cgc.lossless tiles).  Included, not imported, so that the calls inline.
#
# Read me first
# -------------
# * State x is a uint32 kept in [RANS_L, 256 * RANS_L) between symbols; renormalisation moves
#   one byte at a time.  RANS_L = 2**23, so probabilities may use up to 16 bits.
# * rANS is last-in first-out: the encoder consumes symbols from the last to the first and
#   writes bytes backwards from the end of its buffer; the decoder reads the state (4 bytes,
#   little-endian) and then the bytes forwards, producing symbols first to last.
# * The encoder starts from x = RANS_L, so a decoder that consumed a valid stream ends with
#   x == RANS_L and no bytes left: decoders check both to catch corruption.
# * A frequency table with prob_bits bits sums to exactly 2**prob_bits, every coded symbol
#   has frequency >= 1, and cumulative starts are the exclusive prefix sums in symbol order.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef enum:
    RANS_L = 1 << 23
    RANS_MIN_PROB_BITS = 12
    RANS_MAX_PROB_BITS = 16


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
