# cython: language_level=3
"""The thread count of cgc's compiled loops, made safe across fork (threads.h says why).

Every OpenMP region in cgc takes ``num_threads(team_size())``: the other extensions cimport
it from here, so one process-wide state decides."""

cdef extern from "threads.h" nogil:
    int cgc_threads_install()
    int cgc_team_size()
    int cgc_max_threads()
    int cgc_forked_single_thread()


if cgc_threads_install() != 0:
    raise ImportError("cgc: could not register the at-fork handler")


cdef int team_size() noexcept nogil:
    return cgc_team_size()


def max_threads():
    """Threads a compiled loop of cgc would start now (1 in a child forked after use)."""
    return cgc_max_threads()


def forked_single_thread():
    """Whether this process was forked after cgc had started threads, and so runs its
    compiled loops on one thread."""
    return bool(cgc_forked_single_thread())
