"""Initialisers: shape, placement, colour normalisation, determinism."""
import numpy as np
import pytest
import skimage.data

from cgc.backends.cpu import CPUBackend
from cgc.image.init import METHODS, initialise, least_squares_colours


@pytest.fixture(scope="module")
def image():
    return (skimage.data.astronaut()[::8, ::8][:48, :56] / 255.0).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_initialisers(image, method):
    n = 150
    params = initialise(image, n, method, seed=0)
    assert params.shape == (n, 8) and params.dtype == np.float32
    assert np.isfinite(params).all()
    h, w = image.shape[:2]
    assert (params[:, 0] >= 0).all() and (params[:, 0] <= w).all()
    assert (params[:, 1] >= 0).all() and (params[:, 1] <= h).all()
    np.testing.assert_array_equal(params, initialise(image, n, method, seed=0))
    # Colours are normalised by coverage, so the initial render has the image's brightness
    # and is closer to it than the flat mean colour is (the image is tiny and detailed, so
    # no initialiser gets much closer than that here).
    render = CPUBackend().render_forward(params, h, w)
    assert abs(render.mean() - image.mean()) < 0.01
    mse = np.mean((np.clip(render, 0, 1) - image) ** 2)
    assert mse < np.mean((image - image.mean()) ** 2)


@pytest.mark.parametrize("method", METHODS)
def test_colours_follow_content(method):
    """Two flat halves: Gaussians well inside one take that half's colour."""
    image = np.zeros((32, 64, 3), np.float32)
    image[:, 32:] = [0.9, 0.2, 0.1]
    params = initialise(image, 64, method, seed=2)
    right = params[:, 0] > 48
    left = params[:, 0] < 16
    assert right.any() and left.any()
    assert np.all(params[right, 5] > params[right, 6])
    assert np.allclose(params[left, 5:], 0, atol=0.05)


@pytest.mark.parametrize("method", METHODS)
def test_flat_image(method):
    """No gradient anywhere: placement falls back to uniform, and the colour is the image's."""
    image = np.full((20, 30, 3), 0.25, np.float32)
    params = initialise(image, 40, method, seed=0)
    assert np.isfinite(params).all()
    render = CPUBackend().render_forward(params, 20, 30)
    assert abs(render.mean() - 0.25) < 0.01


def test_gradient_init_prefers_edges():
    rng = np.random.default_rng(0)
    image = np.full((64, 64, 3), 0.5, np.float32)
    image[:, 40:44] = rng.uniform(0, 1, (64, 4, 3))  # a textured stripe
    params = initialise(image, 400, "gradient", seed=1)
    in_stripe = np.mean((params[:, 0] > 38) & (params[:, 0] < 46))
    assert in_stripe > 3 * (8 / 64)  # well above the stripe's share of the area


def test_least_squares_colours(image):
    """The colour steps are CGLS on the render's linear map: the squared error falls with
    every step, and enough steps reach the least-squares colours of the explicit matrix."""
    h, w = 14, 12
    target = image[:h, :w].astype(np.float64)
    rng = np.random.default_rng(5)
    n = 9
    params = np.zeros((n, 8), np.float32)
    params[:, 0] = rng.uniform(0, w, n)
    params[:, 1] = rng.uniform(0, h, n)
    params[:, 2] = params[:, 4] = rng.uniform(1.5, 4, n)
    params[:, 3] = rng.uniform(-0.5, 0.5, n)
    params[:, 5:] = rng.uniform(0, 1, (n, 3))
    backend = CPUBackend()
    # Column g of the footprint matrix: Gaussian g alone with unit colour.
    columns = []
    for g in range(n):
        alone = params[g:g + 1].copy()
        alone[:, 5:] = 1
        columns.append(backend.render_forward(alone, h, w)[..., 0].ravel())
    footprints = np.array(columns, dtype=np.float64).T
    exact = np.linalg.lstsq(footprints, target.reshape(-1, 3), rcond=None)[0]

    def error(colours):
        return float(np.sum((footprints @ colours - target.reshape(-1, 3)) ** 2))

    np.testing.assert_array_equal(least_squares_colours(params, target, 0), params[:, 5:])
    errors = [error(least_squares_colours(params, target, k)) for k in range(4)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    # CG solves n unknowns in n steps in exact arithmetic; the renders are float32, so a
    # few more steps, and a tolerance of float32 rounding (about 3e-7 here, on colours of
    # order 1) with room for other compilers' rounding.
    solved = least_squares_colours(params, target, 3 * n)
    np.testing.assert_allclose(solved, exact, atol=1e-5)
    assert error(solved) <= error(exact) * (1 + 1e-4)
