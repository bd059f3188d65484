# Cython view of crc32.h (CRC-32 with carry-less multiplication where the CPU has it).
from libc.stdint cimport uint8_t, uint32_t

cdef extern from "crc32.h" nogil:
    int have_clmul "cgc_have_clmul"()
    uint32_t crc32_of "cgc_crc32"(uint32_t value, const uint8_t *p, size_t n, int use_clmul)
    uint32_t crc32_combine "cgc_crc32_combine"(uint32_t crc_a, uint32_t crc_b, size_t len_b)
