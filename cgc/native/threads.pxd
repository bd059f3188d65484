cdef int team_size() noexcept nogil
