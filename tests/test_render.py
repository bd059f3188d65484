"""render_forward / render_backward of the Cython reference (cgc._core via CPUBackend)."""
import itertools

import numpy as np
import pytest

from cgc import _core
from cgc.backends.bins import Bins
from cgc.backends.cpu import TILE, CPUBackend

backend = CPUBackend()


def brute_force_render(params, height, width):
    """Dense NumPy evaluation of the model, independent of tiles and spans."""
    params = params.astype(np.float64)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    out = np.zeros((height, width, 3))
    for x, y, l11, l21, l22, r, g, b in params:
        u = (xs - x) / l11
        v = (ys - y - l21 * u) / l22
        q = u * u + v * v
        w = np.where(q <= 9.0, np.exp(-0.5 * q), 0.0)
        out += w[..., None] * np.array([r, g, b])
    return out


def random_params(rng, n, height, width, margin=6.0, size=(0.8, 7.0)):
    p = np.zeros((n, 8))
    p[:, 0] = rng.uniform(-margin, width + margin, n)
    p[:, 1] = rng.uniform(-margin, height + margin, n)
    p[:, 2] = rng.uniform(*size, n) * rng.choice([-1, 1], n)
    p[:, 3] = rng.uniform(-4, 4, n)
    p[:, 4] = rng.uniform(*size, n)
    p[:, 5:] = rng.normal(size=(n, 3))
    return p


@pytest.mark.parametrize("height,width", [(37, 53), (16, 16), (1, 1), (64, 48)])
def test_forward_matches_dense_evaluation(height, width):
    rng = np.random.default_rng(height * 100 + width)
    params = random_params(rng, 40, height, width)
    image = backend.render_forward(params, height, width)
    # Only summation order differs from the dense reference: float64 rounding.
    np.testing.assert_allclose(image, brute_force_render(params, height, width),
                               rtol=1e-12, atol=1e-12)


def test_float32_close_to_float64():
    rng = np.random.default_rng(1)
    params = random_params(rng, 60, 40, 50)
    ref = backend.render_forward(params, 40, 50)
    img32 = backend.render_forward(params.astype(np.float32), 40, 50)
    assert img32.dtype == np.float32
    # float32 evaluation of tens of terms; pixels on the q = 9 boundary may flip, so compare
    # in relative L2 rather than elementwise.
    assert np.linalg.norm(img32 - ref) / np.linalg.norm(ref) < 1e-4


def test_tile_with_more_gaussians_than_any_batch():
    """1,000 Gaussians all binned to one tile: every one of them must be drawn."""
    rng = np.random.default_rng(2)
    n = 1000
    params = np.zeros((n, 8))
    params[:, 0] = rng.uniform(2, 14, n)
    params[:, 1] = rng.uniform(2, 14, n)
    params[:, 2] = params[:, 4] = 0.6
    params[:, 5:] = rng.uniform(0, 1, (n, 3))
    tile_start, pairs, tile = backend.bin(params, 32, 32)
    assert tile == TILE and tile_start[1] - tile_start[0] == n
    np.testing.assert_array_equal(pairs[:n], np.arange(n))
    image = backend.render_forward(params, 32, 32)
    np.testing.assert_allclose(image, brute_force_render(params, 32, 32), rtol=1e-12,
                               atol=1e-12)


def test_empty_and_offscreen():
    params = np.zeros((0, 8))
    assert not backend.render_forward(params, 5, 7).any()
    far = np.array([[-100.0, -100, 2, 0, 2, 1, 1, 1]])
    assert not backend.render_forward(far, 5, 7).any()


def test_degenerate_gaussian_is_skipped_not_divided_by():
    params = np.array([[4.0, 4, 0, 0, 2, 1, 1, 1], [4.0, 4, 2, 0, 0, 1, 1, 1]])
    image = backend.render_forward(params, 8, 8)
    assert np.isfinite(image).all() and not image.any()


def test_coverage_is_sum_of_weights():
    rng = np.random.default_rng(3)
    params = random_params(rng, 30, 20, 24)
    params[:, 5:] = 1.0
    image, coverage = backend.render_forward(params, 20, 24, weight=True)
    np.testing.assert_allclose(coverage, image[..., 0], rtol=1e-12)


@pytest.mark.parametrize("dtype,tolerance", [(np.float32, 5e-7), (np.float64, 2e-15)])
def test_gaussian_weight_is_close_to_exp(dtype, tolerance):
    # The renderer's exp(-q / 2) is a polynomial for 2^f times 2^-n.  Tolerances: float32
    # within a few ulps, as the GPU's __expf (measured 3.6e-7 relative, 5 ulps); float64
    # within a few ulps too (measured 6.7e-16).
    q = np.concatenate([np.linspace(0, 9, 100_001), np.nextafter(9.0, 0.0) - np.arange(5)
                        * 1e-7, np.arange(14) * np.log(2)]).astype(dtype)
    q = q[(q >= 0) & (q <= 9)]
    weight = _core.gaussian_weight(q)
    assert weight.dtype == dtype and weight.shape == q.shape
    exact = np.exp(-0.5 * q.astype(np.float64))
    assert np.abs(weight / exact - 1).max() <= tolerance
    for bad in (-1e-3, 9.001, np.nan):
        with pytest.raises(ValueError):
            _core.gaussian_weight(np.array([bad], dtype))


@pytest.fixture
def baseline_loops():
    """Switches the renderer to its baseline loops for a test, and back afterwards."""
    _core.simd_renderer(False)
    yield
    _core.simd_renderer(True)


@pytest.mark.skipif(not _core.simd_renderer(),
                    reason="this CPU has no AVX2: only the baseline loops run")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile", [7, TILE])
def test_simd_and_baseline_loops_give_the_same_bits(dtype, tile, request):
    # Each lane of a chunk does the same operations in the AVX2 and the baseline builds, so
    # images, coverage and gradients must agree exactly, degenerate Gaussians included.
    rng = np.random.default_rng(11)
    params = random_params(rng, 150, 45, 70, size=(0.3, 12.0))
    params[:3, 2:5] = [[1e-11, 1.0, 0.05], [0.5, 1e6, 1e-2], [1e-3, 1e-3, 1e-11]]
    params = params.astype(dtype)
    cot = rng.normal(size=(45, 70, 3)).astype(dtype)
    bins = backend.bin(params, 45, 70, tile=tile)

    def run():
        image, coverage = backend.render_forward(params, 45, 70, bins, weight=True)
        return image, coverage, backend.render_backward(params, 45, 70, cot, bins)

    simd = run()
    request.getfixturevalue("baseline_loops")
    assert not _core.simd_renderer()
    for a, b in zip(simd, run()):
        np.testing.assert_array_equal(a, b)


def test_deterministic_and_thread_independent():
    rng = np.random.default_rng(4)
    params = random_params(rng, 200, 70, 90).astype(np.float32)
    cot = rng.normal(size=(70, 90, 3)).astype(np.float32)
    g1 = backend.render_backward(params, 70, 90, cot)
    g2 = backend.render_backward(params, 70, 90, cot)
    np.testing.assert_array_equal(g1, g2)


def _loss(params, height, width, cotangent):
    return float(np.sum(backend.render_forward(params, height, width) * cotangent))


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_central_differences(seed):
    """Every parameter kind, Gaussians straddling tile borders and image edges."""
    height, width = 35, 41
    rng = np.random.default_rng(seed)
    params = random_params(rng, 24, height, width, margin=3.0, size=(1.0, 6.0))
    # Pin some centres on tile borders and on the image edges.
    assert TILE < min(height, width)
    params[0, :2] = (TILE, TILE)
    params[1, :2] = (0.0, 10.0)
    params[2, :2] = (width, height)
    params[3, :2] = (31.7, 0.2)
    cot = rng.normal(size=(height, width, 3))
    grad = backend.render_backward(params, height, width, cot)
    eps = 1e-6
    checked = 0
    for g in range(params.shape[0]):
        for k in range(8):
            plus, minus = params.copy(), params.copy()
            plus[g, k] += eps
            minus[g, k] -= eps
            fd = (_loss(plus, height, width, cot) - _loss(minus, height, width, cot)) / (2 * eps)
            scale = max(abs(fd), abs(grad[g, k]), 1e-6)
            # Central differences in float64 have O(eps^2) truncation and ~1e-10 rounding
            # error; 1e-3 relative leaves room for a pixel crossing the q = 9 cutoff.
            assert abs(fd - grad[g, k]) / scale < 1e-3, (g, k, fd, grad[g, k])
            checked += fd != 0
    # The check must not pass vacuously: nearly every gradient is non-zero.
    assert checked > 0.8 * params.size


def test_backward_is_adjoint_of_forward_in_colour():
    """Colour enters linearly: <render(p), c> equals <colour, dL/dcolour> exactly."""
    rng = np.random.default_rng(5)
    params = random_params(rng, 50, 30, 30)
    cot = rng.normal(size=(30, 30, 3))
    grad = backend.render_backward(params, 30, 30, cot)
    assert np.isclose(np.sum(grad[:, 5:] * params[:, 5:]), _loss(params, 30, 30, cot),
                      rtol=1e-10)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        backend.render_forward(np.zeros((3, 7)), 4, 4)
    with pytest.raises(ValueError):
        backend.render_forward(np.zeros((3, 8)), 0, 4)
    with pytest.raises(ValueError):
        backend.render_backward(np.zeros((3, 8)), 4, 4, np.zeros((4, 5, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_degenerate_shapes_render_finite_weights(dtype):
    """Needle-thin and hugely sheared Gaussians (as a corrupted file may hold) still give
    finite weights in [0, 1], and finite gradients: their far pixels have infinite or NaN
    u, v and q, which the loops must mask, not multiply by 0."""
    # The first shape came out of a mutated file: a = (1 + (l21 / l22)^2) / l11^2 ~ 1800
    # made the weight recurrence of an earlier renderer overflow.
    shapes = [(0.5738, 1.2951, 0.05364)] + [
        (l11, l21, l22) for l11 in (1e-11, 1e-5, 1e-3, 0.5) for l21 in (1e-3, 1.0, 1e6)
        for l22 in (1e-11, 1e-2, 0.05)]
    # x on a column's centre keeps the thinnest boxes from being empty.
    for (l11, l21, l22), x in itertools.product(shapes, (27.47, 27.5)):
        params = np.array([[x, 8.157, l11, l21, l22, 1, 1, 1]], dtype)
        image = backend.render_forward(params, 30, 40)
        assert np.isfinite(image).all(), (l11, l21, l22)
        assert image.min() >= 0 and image.max() <= 1, (l11, l21, l22)
        grad = backend.render_backward(params, 30, 40, np.ones((30, 40, 3), dtype))
        assert np.isfinite(grad).all(), (l11, l21, l22)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_image_and_gradients_do_not_depend_on_the_tile_size(dtype):
    # Tiles only find the pixels, and each pixel adds its Gaussians' terms in index order
    # whatever the tiling, so images are identical.  Gradients sum the same per-pixel
    # terms grouped by tile and by lane of a row's chunks; each pair's sum is added to the
    # Gaussian's gradient in the parameters' precision, so the error grows with the pairs
    # per Gaussian: measured 1.8e-6 of a column's largest entry in float32 at 1-pixel tiles
    # (hundreds of pairs) and 5e-7 at the others, 1.7e-15 in float64.
    rng = np.random.default_rng(7)
    params = random_params(rng, 60, 45, 70, size=(0.8, 12.0)).astype(dtype)
    cot = rng.normal(size=(45, 70, 3)).astype(dtype)
    image = backend.render_forward(params, 45, 70)
    grad = backend.render_backward(params, 45, 70, cot)
    for tile in (1, 7, 16, 64, 100):
        bins = backend.bin(params, 45, 70, tile=tile)
        assert bins.tile == tile
        np.testing.assert_array_equal(backend.render_forward(params, 45, 70, bins), image)
        other = backend.render_backward(params, 45, 70, cot, bins)
        scale = np.abs(grad).max(axis=0) * (1e-5 if dtype == np.float32 else 1e-13)
        assert np.all(np.abs(other - grad) <= scale), tile


def test_bad_bins_raise():
    rng = np.random.default_rng(8)
    params = random_params(rng, 10, 20, 30)
    start, pairs, tile = backend.bin(params, 20, 30, tile=8)
    cot = np.zeros((20, 30, 3))
    bad = [
        (start, pairs),  # a plain tuple: its tile size is unknown
        Bins(start, pairs, 16),  # another tile size than the binning's
        Bins(start[:-1], pairs, 8),
        Bins(start, pairs[:-1], 8),
        Bins(start, np.where(pairs == 0, 10, pairs), 8),  # a Gaussian index out of range
        Bins(start, np.where(pairs == 0, -1, pairs), 8),
        Bins(start[::-1].copy(), pairs, 8),
        Bins(start, pairs, 0),
    ]
    for bins in bad:
        with pytest.raises(ValueError):
            backend.render_forward(params, 20, 30, bins)
        with pytest.raises(ValueError):
            backend.render_backward(params, 20, 30, cot, bins)
    with pytest.raises(ValueError):
        backend.bin(params, 20, 30, tile=0)
