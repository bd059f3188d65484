"""CUDA adam_step and clamp_scales against the Cython reference, through every available
kernel provider (CPU emulation, and CuPy on a GPU)."""
import numpy as np
import pytest

from cgc.backends.cpu import CPUBackend
from cuda_emu.providers import PROVIDERS, make_backend

# Both sides compute in double and store float32, so they differ by at most float32
# rounding of the stored values (a GPU may fuse double multiply-adds, moving a rounding
# boundary): 1e-6 relative is ~16 float32 ulps, 1e-6 absolute covers values near zero.
RTOL = ATOL = 1e-6
BOUNDS = (0.25, 30.0)
# (width, height) the centres are kept in; the random centres start on both sides of it.
BOX = (60.0, 50.0)
LR = np.array([0.5, 0.5, 0.4, 0.4, 0.4, 0.02, 0.02, 0.02])

cpu = CPUBackend()


@pytest.fixture(scope="module", params=PROVIDERS)
def backend(request):
    return make_backend(request.param)


def eigenvalues(params):
    l11, l21, l22 = (params[:, k].astype(np.float64) for k in (2, 3, 4))
    cov = np.empty((len(params), 2, 2))
    cov[:, 0, 0] = l11 * l11
    cov[:, 0, 1] = cov[:, 1, 0] = l11 * l21
    cov[:, 1, 1] = l21 * l21 + l22 * l22
    return np.linalg.eigvalsh(cov)


def out_of_bounds(params, bounds):
    eig = eigenvalues(params)
    return (eig[:, 0] < bounds[0]) | (eig[:, 1] > bounds[1])


def test_adam_steps_match_reference(backend):
    rng = np.random.default_rng(3)
    # 300 rows: two blocks of the one-thread-per-row kernel, the second one partial.
    n = 300
    params = np.empty((n, 8), dtype=np.float32)
    params[:, :2] = rng.uniform(-2, 64, (n, 2))
    params[:, 2:5] = rng.uniform(0.3, 7.0, (n, 3)) * rng.choice([-1, 1], (n, 3))
    params[:, 5:] = rng.uniform(0, 1, (n, 3))
    m_ref = np.zeros_like(params)
    v_ref = np.zeros_like(params)
    p_ref = params.copy()
    xp = backend.xp
    # Copies: with NumPy as the array module, from_numpy returns its argument itself.
    p, m, v = (backend.from_numpy(a.copy()) for a in (params, m_ref, v_ref))
    clamped = np.zeros(n, dtype=bool)
    moved_in = np.zeros(n, dtype=bool)
    for step in range(1, 7):
        grads = rng.standard_normal((n, 8)).astype(np.float32) * rng.uniform(0.01, 10, (n, 1))
        grads = grads.astype(np.float32)
        # What the step would give without clamping, to show that clamping happened.
        unclamped = p_ref.copy()
        cpu.adam_step(unclamped, grads, m_ref.copy(), v_ref.copy(), step, LR,
                      var_bounds=(0.0, np.inf))
        clamped |= out_of_bounds(unclamped, BOUNDS)
        moved_in |= ((unclamped[:, 0] < 0) | (unclamped[:, 0] > BOX[0])
                     | (unclamped[:, 1] < 0) | (unclamped[:, 1] > BOX[1]))
        cpu.adam_step(p_ref, grads, m_ref, v_ref, step, LR, var_bounds=BOUNDS, centre_box=BOX)
        backend.adam_step(p, xp.asarray(grads), m, v, step, LR, var_bounds=BOUNDS,
                          centre_box=BOX)
        for actual, expected in ((p, p_ref), (m, m_ref), (v, v_ref)):
            np.testing.assert_allclose(backend.to_numpy(actual), expected, rtol=RTOL, atol=ATOL)
    assert clamped.sum() > n // 10 and moved_in.sum() > n // 10
    centres = backend.to_numpy(p)[:, :2]
    assert (centres >= 0).all() and (centres <= BOX).all()
    eig = eigenvalues(backend.to_numpy(p))
    assert (eig[:, 0] >= BOUNDS[0] * (1 - 1e-5)).all()
    assert (eig[:, 1] <= BOUNDS[1] * (1 + 1e-5)).all()


def test_nan_centres_pass_through_the_clamp(backend):
    """The fit's finiteness check must still see a NaN that reaches a centre."""
    params = np.zeros((3, 8), dtype=np.float32)
    params[:, 2:5] = (1.0, 0.0, 1.0)
    params[0, 0] = np.nan
    params[1, 1] = np.nan
    params[2, :2] = (70.0, -5.0)
    p = backend.from_numpy(params.copy())
    zeros = backend.from_numpy(np.zeros_like(params))
    backend.adam_step(p, zeros.copy(), zeros.copy(), zeros.copy(), 1, LR, var_bounds=BOUNDS,
                      centre_box=BOX)
    p = backend.to_numpy(p)
    assert np.isnan(p[0, 0]) and np.isnan(p[1, 1])
    np.testing.assert_array_equal(p[2, :2], (BOX[0], 0.0))


def test_clamp_scales_matches_reference(backend):
    rng = np.random.default_rng(4)
    n = 200
    params = np.zeros((n, 8), dtype=np.float32)
    params[:, 2:5] = rng.uniform(-8, 8, (n, 3))
    # Rows for the special cases: round, thin, flat and huge covariances, and valid rows
    # that must come back bit for bit.
    params[0, 2:5] = (1.0, 0.0, 1.0)
    params[1, 2:5] = (0.1, 0.0, 0.1)
    params[2, 2:5] = (20.0, 0.0, 0.01)
    params[3, 2:5] = (0.01, 30.0, 0.01)
    params[4, 2:5] = (-2.0, 1.0, -1.5)
    params[5, 2:5] = (1e4, -1e4, 1e4)
    expected = params.copy()
    cpu.clamp_scales(expected, BOUNDS)
    actual = backend.from_numpy(params.copy())
    backend.clamp_scales(actual, BOUNDS)
    actual = backend.to_numpy(actual)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)
    inside = ~out_of_bounds(params, BOUNDS)
    assert inside[[0, 4]].all() and 0 < inside.sum() < n
    np.testing.assert_array_equal(actual[inside], params[inside])
    assert (actual[~inside, 2] > 0).all() and (actual[~inside, 4] > 0).all()


def test_in_place_arrays_are_checked(backend):
    params = backend.from_numpy(np.ones((4, 8), dtype=np.float32))
    zeros = backend.from_numpy(np.zeros((4, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="params must be a C-contiguous float32"):
        backend.adam_step(backend.xp.asarray(params, dtype=backend.xp.float64), zeros,
                          zeros.copy(), zeros.copy(), 1, LR)
    with pytest.raises(ValueError, match="m must be"):
        backend.adam_step(params, zeros, zeros[:2], zeros.copy(), 1, LR)
    with pytest.raises(ValueError, match="one learning rate per column"):
        backend.adam_step(params, zeros, zeros.copy(), zeros.copy(), 1, LR[:4])
    with pytest.raises(ValueError, match="step counts from 1"):
        backend.adam_step(params, zeros, zeros.copy(), zeros.copy(), 0, LR)
