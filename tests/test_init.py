"""Initialisers: shape, placement, colour normalisation, determinism."""
import numpy as np
import pytest
import skimage.data

from cgc.backends.cpu import CPUBackend
from cgc.image.init import METHODS, initialise


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
