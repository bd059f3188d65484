# CRC-32 of cgc.lossless streams (cgc/_crc32.h), included by _lossless.pyx.

cdef extern from "_crc32.h" nogil:
    int have_clmul "cgc_have_clmul"()
    uint32_t crc32_of "cgc_crc32"(uint32_t value, const uint8_t *p, size_t n, int use_clmul)
    uint32_t crc32_combine "cgc_crc32_combine"(uint32_t crc_a, uint32_t crc_b, size_t len_b)


cdef bint clmul_present = have_clmul()
HAVE_CLMUL = bool(clmul_present)
# Inputs from this size on are summed in one chunk per thread, joined by crc32_combine
# (a thread team costs microseconds; a MiB takes ~100 us on one core).
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
    cdef int team = openmp.omp_get_max_threads()
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
