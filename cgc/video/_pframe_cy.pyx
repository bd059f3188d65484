# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled coding of a .cgcv P-frame's modes and deltas (cgc/video/_pframe_streams.h;
cgc/video/pframe.py validates sizes before calling in).  The checks here keep the C code's
preconditions whoever the caller."""

from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport free
import numpy as np

from cgc.errors import FormatError

cdef extern from "_pframe_streams.h" nogil:
    int P_INVALID "CGC_P_INVALID"
    int P_NO_MEMORY "CGC_P_NO_MEMORY"
    int _encode "cgc_p_encode"(const uint8_t *modes, const uint8_t *mode_contexts,
                               const uint8_t *contexts, const uint32_t *deltas, size_t n,
                               const int *widths, uint8_t **out, size_t *out_size)
    int _decode "cgc_p_decode"(const uint8_t *data, size_t size,
                               const uint8_t *mode_contexts, const uint8_t *contexts,
                               size_t n, const int *widths, uint8_t *modes, uint32_t *deltas)

ATTRIBUTES = 8
MAX_WIDTH = 16


cdef _widths(widths, int *out):
    if len(widths) != ATTRIBUTES:
        raise ValueError(f"need {ATTRIBUTES} widths")
    for a in range(ATTRIBUTES):
        if not 0 <= widths[a] <= MAX_WIDTH:
            raise ValueError(f"delta widths must be 0 to {MAX_WIDTH}")
        out[a] = widths[a]


def _check(Py_ssize_t n, const uint8_t[::1] mode_contexts, const uint8_t[:, ::1] contexts):
    if mode_contexts.shape[0] != n or contexts.shape[0] != n or contexts.shape[1] != ATTRIBUTES:
        raise ValueError("need one mode context and 8 delta contexts per Gaussian")
    cdef Py_ssize_t i, a
    for i in range(n):
        if mode_contexts[i] > 2:
            raise ValueError("mode contexts must be 0 to 2")
        for a in range(ATTRIBUTES):
            if contexts[i, a] > 3:
                raise ValueError("delta contexts must be 0 to 3")


def p_encode(const uint8_t[::1] modes, const uint8_t[::1] mode_contexts,
             const uint8_t[:, ::1] contexts, const uint32_t[:, ::1] deltas, widths):
    """The stream of n modes (0..2) and the updated Gaussians' zigzagged deltas (n, 8),
    each attribute's within its width (0 to 16 bits; 0: none coded)."""
    cdef Py_ssize_t n = modes.shape[0], i, a
    cdef int w[8]
    _widths(widths, w)
    _check(n, mode_contexts, contexts)
    if deltas.shape[0] != n or deltas.shape[1] != ATTRIBUTES:
        raise ValueError("need 8 deltas per Gaussian")
    for i in range(n):
        if modes[i] > 2:
            raise ValueError("modes must be 0 to 2")
        for a in range(ATTRIBUTES):
            if modes[i] == 1 and deltas[i, a] >> w[a]:
                raise ValueError("deltas must be within their widths")
    cdef uint8_t *out = NULL
    cdef size_t size = 0
    cdef int status
    with nogil:
        status = _encode(&modes[0] if n else NULL, &mode_contexts[0] if n else NULL,
                         &contexts[0, 0] if n else NULL, &deltas[0, 0] if n else NULL, n, w,
                         &out, &size)
    if status == P_NO_MEMORY:
        raise MemoryError("out of memory while coding a P-frame")
    try:
        return (<char *>out)[:size]
    finally:
        free(out)


def p_decode(const uint8_t[::1] data, const uint8_t[::1] mode_contexts,
             const uint8_t[:, ::1] contexts, widths):
    """(modes (n,) uint8, deltas (n, 8) uint32, 0 where not coded) of a stream
    (FormatError if it is not a valid one)."""
    cdef Py_ssize_t n = mode_contexts.shape[0]
    cdef int w[8]
    _widths(widths, w)
    _check(n, mode_contexts, contexts)
    modes = np.full(n, 0xCC, dtype=np.uint8)
    deltas = np.full((n, ATTRIBUTES), 0xCCCCCCCC, dtype=np.uint32)
    cdef uint8_t[::1] modes_out = modes
    cdef uint32_t[:, ::1] deltas_out = deltas
    cdef int status = P_INVALID
    if data.shape[0] > 0:
        with nogil:
            status = _decode(&data[0], data.shape[0], &mode_contexts[0] if n else NULL,
                             &contexts[0, 0] if n else NULL, n, w,
                             &modes_out[0] if n else NULL, &deltas_out[0, 0] if n else NULL)
    if status == P_NO_MEMORY:
        raise MemoryError("out of memory while decoding a P-frame")
    if status != 0:
        raise FormatError("invalid mode and delta stream")
    return modes, deltas
