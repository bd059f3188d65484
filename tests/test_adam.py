"""adam_step and clamp_scales of the Cython core against a NumPy reference."""
import numpy as np
import pytest

from cgc.backends.cpu import CPUBackend

backend = CPUBackend()
BOUNDS = (0.25, 40.0)


def numpy_clamp(params, lo, hi):
    """Reference clamp through np.linalg.eigh: eigenvalues clipped, Cholesky recomputed."""
    out = params.copy()
    for row in out:
        l11, l21, l22 = row[2:5]
        cov = np.array([[l11 * l11, l11 * l21], [l11 * l21, l21 * l21 + l22 * l22]])
        vals, vecs = np.linalg.eigh(cov)
        if vals[0] >= lo and vals[1] <= hi:
            continue
        cov = vecs @ np.diag(np.clip(vals, lo, hi)) @ vecs.T
        row[2:5] = np.linalg.cholesky(cov)[[0, 1, 1], [0, 0, 1]]
    return out


def numpy_adam(params, grads, m, v, step, lr, b1=0.9, b2=0.999, eps=1e-8):
    m[:] = b1 * m + (1 - b1) * grads
    v[:] = b2 * v + (1 - b2) * grads * grads
    mhat = m / (1 - b1 ** step)
    vhat = v / (1 - b2 ** step)
    return params - lr * mhat / (np.sqrt(vhat) + eps)


def eigenvalues(params):
    l11, l21, l22 = params[:, 2], params[:, 3], params[:, 4]
    cov = np.stack([np.stack([l11 * l11, l11 * l21], -1),
                    np.stack([l11 * l21, l21 * l21 + l22 * l22], -1)], -2)
    return np.linalg.eigvalsh(cov.astype(np.float64))


def random_params(rng, n):
    p = rng.normal(size=(n, 8))
    p[:, 2:5] = rng.uniform(-8, 8, (n, 3))
    return p


def clamped_start(params):
    """Clamp params' scales in place; return a reference copy and zero moments for both
    (m, v, reference m, reference v)."""
    backend.clamp_scales(params, BOUNDS)
    return params.copy(), *(np.zeros_like(params) for _ in range(4))


def test_several_steps_match_numpy_reference():
    rng = np.random.default_rng(0)
    params = random_params(rng, 64)
    ref, m, v, ref_m, ref_v = clamped_start(params)
    lr = np.array([0.3, 0.3, 0.5, 0.5, 0.5, 0.01, 0.02, 0.03])
    for step in range(1, 8):
        grads = rng.normal(size=params.shape) * 10
        backend.adam_step(params, grads, m, v, step, lr, var_bounds=BOUNDS)
        ref = numpy_clamp(numpy_adam(ref, grads, ref_m, ref_v, step, lr), *BOUNDS)
        # Same float64 maths in a different order; the covariance is re-factorised by
        # different formulas (closed form vs eigh + cholesky): agreement to ~1e-12.
        np.testing.assert_allclose(params, ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(m, ref_m, rtol=1e-12)
        np.testing.assert_allclose(v, ref_v, rtol=1e-12)
        vals = eigenvalues(params)
        # Eigenvalues recomputed from the stored factor: a few ulps of float64 slack.
        assert vals.min() >= BOUNDS[0] * (1 - 1e-12) and vals.max() <= BOUNDS[1] * (1 + 1e-12)


def test_centres_are_clamped_into_the_box():
    rng = np.random.default_rng(5)
    box = (40.0, 30.0)
    params = random_params(rng, 200)
    params[:, :2] = rng.uniform(-3, 43, (200, 2))
    ref, m, v, ref_m, ref_v = clamped_start(params)
    lr = np.array([2.0, 2.0, 0.5, 0.5, 0.5, 0.01, 0.02, 0.03])
    for step in range(1, 5):
        grads = rng.normal(size=params.shape)
        backend.adam_step(params, grads, m, v, step, lr, var_bounds=BOUNDS, centre_box=box)
        ref = numpy_adam(ref, grads, ref_m, ref_v, step, lr)
        outside = ((ref[:, 0] < 0) | (ref[:, 0] > box[0])
                   | (ref[:, 1] < 0) | (ref[:, 1] > box[1]))
        assert outside.any()
        ref[:, 0] = np.clip(ref[:, 0], 0, box[0])
        ref[:, 1] = np.clip(ref[:, 1], 0, box[1])
        ref = numpy_clamp(ref, *BOUNDS)
        # As in the test above: the same float64 maths, clamps by different formulas.
        np.testing.assert_allclose(params, ref, rtol=1e-9, atol=1e-9)
    assert (params[:, 0] >= 0).all() and (params[:, 0] <= box[0]).all()
    assert (params[:, 1] >= 0).all() and (params[:, 1] <= box[1]).all()


def test_without_a_box_centres_are_free():
    params = np.array([[-5.0, 1e6, 1, 0, 1, 0, 0, 0]])
    before = params.copy()
    zeros = np.zeros_like(params)
    backend.adam_step(params, zeros, zeros.copy(), zeros.copy(), 1, np.ones(8))
    np.testing.assert_array_equal(params, before)
    with pytest.raises(ValueError, match="centre_box"):
        backend.adam_step(params, zeros, zeros.copy(), zeros.copy(), 1, np.ones(8),
                          centre_box=(-1, 5))


def test_float32_steps_keep_bounds():
    rng = np.random.default_rng(1)
    params = random_params(rng, 500).astype(np.float32)
    m, v = np.zeros_like(params), np.zeros_like(params)
    lr = np.full(8, 2.0)
    for step in range(1, 5):
        grads = rng.normal(size=params.shape).astype(np.float32)
        backend.adam_step(params, grads, m, v, step, lr, var_bounds=BOUNDS)
        vals = eigenvalues(params)
        # float32 storage of the factor: eigenvalues within ~1e-6 relative of the bounds.
        assert vals.min() >= BOUNDS[0] * (1 - 1e-5) and vals.max() <= BOUNDS[1] * (1 + 1e-5)


def test_clamp_matches_reference_and_is_identity_inside():
    rng = np.random.default_rng(2)
    params = random_params(rng, 300)
    clamped = params.copy()
    backend.clamp_scales(clamped, BOUNDS)
    np.testing.assert_allclose(clamped, numpy_clamp(params, *BOUNDS), rtol=1e-9, atol=1e-9)
    inside = (eigenvalues(params)[:, 0] >= BOUNDS[0]) & (eigenvalues(params)[:, 1] <= BOUNDS[1])
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(clamped[inside], params[inside])


@pytest.mark.parametrize("lo_hi", [(0.25, 16.0), (4.0, 4.0)])
def test_inputs_exactly_at_bounds(lo_hi):
    lo, hi = lo_hi
    # Axis-aligned covariances whose eigenvalues are exactly lo and hi (squares of exact
    # floats), and a rotated one built from them.
    at = np.array([[0, 0, np.sqrt(lo), 0.0, np.sqrt(hi), 0, 0, 0],
                   [0, 0, np.sqrt(hi), 0.0, np.sqrt(lo), 0, 0, 0],
                   [0, 0, np.sqrt(lo), 0.0, np.sqrt(lo), 0, 0, 0]])
    before = at.copy()
    backend.clamp_scales(at, (lo, hi))
    np.testing.assert_array_equal(at, before)
    # A zero step must leave them untouched too, and keep them within the bounds.
    m, v = np.zeros_like(at), np.zeros_like(at)
    backend.adam_step(at, np.zeros_like(at), m, v, 1, np.ones(8), var_bounds=(lo, hi))
    np.testing.assert_array_equal(at, before)


def test_singular_and_sign_flipped_factors_are_repaired():
    params = np.array([[0, 0, 0.0, 0.0, 0.0, 0, 0, 0],
                       [0, 0, -3.0, 1.0, -2.0, 0, 0, 0],
                       [0, 0, 1e3, 0.0, 1e-3, 0, 0, 0]])
    backend.clamp_scales(params, BOUNDS)
    vals = eigenvalues(params)
    assert np.isfinite(params).all()
    assert vals.min() >= BOUNDS[0] * (1 - 1e-12) and vals.max() <= BOUNDS[1] * (1 + 1e-12)


def test_bad_arguments_raise():
    p = np.zeros((3, 8))
    with pytest.raises(ValueError):
        backend.adam_step(p, p.copy(), p.copy(), p.copy(), 0, np.ones(8))
    with pytest.raises(ValueError):
        backend.adam_step(p, p.copy(), p.copy(), p.copy(), 1, np.ones(3))
    with pytest.raises(ValueError):
        backend.adam_step(p, np.zeros((3, 8), np.float32), p.copy(), p.copy(), 1, np.ones(8))
