# Adam step and covariance clamping for the packed (N, 8) Gaussian array.
#
# Invariants kept by both functions: after they return, both eigenvalues of every covariance
# L L^T lie in [min_var, max_var] (up to float rounding of the stored Cholesky factor).
# A covariance already inside the bounds is left bit-for-bit untouched, so clamping is the
# identity on valid Gaussians and Adam's trajectory is not perturbed by re-factorisation.
# adam_step also keeps every centre inside its box when given one (see _clamp_centre).


cdef inline floating _clamp_centre(floating value, double lo, double hi) noexcept nogil:
    """value clamped into [lo, hi].  Adam moves a centre by about its learning rate whatever
    the size of its gradient, and a Gaussian whose cut-off ellipse leaves the image has no
    gradient to bring it back (a 1x1 image's one Gaussian wandered off and decoded black).
    NaN compares false both ways and passes through, for the fit's finiteness check."""
    if value < lo:
        return <floating>lo
    if value > hi:
        return <floating>hi
    return value

cdef inline void _clamp_cholesky(floating *row, double min_var, double max_var) noexcept nogil:
    """Clamp the eigenvalues of L L^T, L = [[row[2], 0], [row[3], row[4]]], to the bounds.

    A clamped covariance is written back as its Cholesky factor with l11 > 0, l22 > 0."""
    cdef double l11 = row[2], l21 = row[3], l22 = row[4]
    cdef double a = l11 * l11, b = l11 * l21, c = l21 * l21 + l22 * l22
    cdef double half_diff = 0.5 * (a - c), mean = 0.5 * (a + c)
    cdef double spread = sqrt(half_diff * half_diff + b * b)
    cdef double big = mean + spread, small = mean - spread
    cdef double ex, ey, norm, ex2, ey2, new_a, new_b, new_c, new_l11
    if small >= min_var and big <= max_var:
        return
    # Unit eigenvector (ex, ey) of the larger eigenvalue; pick the better-conditioned of the
    # two equivalent expressions.  A round covariance has every direction as eigenvector.
    if half_diff >= 0.0:
        ex = big - c
        ey = b
    else:
        ex = b
        ey = big - a
    norm = sqrt(ex * ex + ey * ey)
    if norm > 0.0:
        ex = ex / norm
        ey = ey / norm
    else:
        ex = 1.0
        ey = 0.0
    big = min(max(big, min_var), max_var)
    small = min(max(small, min_var), max_var)
    ex2 = ex * ex
    ey2 = ey * ey
    new_a = big * ex2 + small * ey2
    new_b = (big - small) * ex * ey
    new_c = big * ey2 + small * ex2
    new_l11 = sqrt(new_a)
    row[2] = <floating>new_l11
    row[3] = <floating>(new_b / new_l11)
    row[4] = <floating>sqrt(big * small / new_a)


def clamp_scales(floating[:, ::1] params, double min_var, double max_var):
    """Clamp every covariance's eigenvalues into [min_var, max_var], in place."""
    cdef Py_ssize_t g
    with nogil:
        for g in range(params.shape[0]):
            _clamp_cholesky(&params[g, 0], min_var, max_var)


def adam_step(floating[:, ::1] params, floating[:, ::1] grads,
              floating[:, ::1] m, floating[:, ::1] v, long step,
              double[::1] lr, double beta1, double beta2, double eps,
              double min_var, double max_var,
              double min_x, double max_x, double min_y, double max_y):
    """One bias-corrected Adam step (step counts from 1) with a learning rate per column,
    followed by clamping of the centre into [min_x, max_x] x [min_y, max_y] and of the
    covariance; updates params, m and v in place."""
    cdef Py_ssize_t n = params.shape[0], g
    cdef int k
    cdef double corr1 = 1.0 - beta1 ** step, corr2 = 1.0 - beta2 ** step
    cdef double grad, m_new, v_new
    if step < 1:
        raise ValueError("step counts from 1")
    for g in prange(n, nogil=True, schedule="static"):
        for k in range(8):
            grad = grads[g, k]
            m_new = beta1 * m[g, k] + (1.0 - beta1) * grad
            v_new = beta2 * v[g, k] + (1.0 - beta2) * grad * grad
            m[g, k] = <floating>m_new
            v[g, k] = <floating>v_new
            params[g, k] = <floating>(params[g, k]
                                      - lr[k] * (m_new / corr1) / (sqrt(v_new / corr2) + eps))
        params[g, 0] = _clamp_centre(params[g, 0], min_x, max_x)
        params[g, 1] = _clamp_centre(params[g, 1], min_y, max_y)
        _clamp_cholesky(&params[g, 0], min_var, max_var)
