"""CUDA renderer (bin, render_forward, render_backward) against the Cython reference, through
every available kernel provider (CPU emulation, and CuPy on a GPU)."""
import importlib
import importlib.util

import numpy as np
import pytest

import cgc
from cgc.backends.cpu import CPUBackend
from cgc.backends.cuda import TILE, CUDABackend
from cuda_emu.providers import PROVIDERS, make_backend, route_cuda

# The module, which the package's ``fit`` function shadows as an attribute of ``cgc``.
fit_module = importlib.import_module("cgc.image.fit")
backends_module = importlib.import_module("cgc.backends")
codec_module = importlib.import_module("cgc.image.codec")

BATCH = TILE * TILE
# float32 accumulation of at most a few hundred terms per pixel, each rounded at 2^-24
# relative, drifts about 1e-6 at worst in relative L2 (measured: ~1e-7); a Gaussian missed
# or counted twice on one pixel moves it above 1e-4.
FORWARD_RTOL = 1e-5
# Gradients sum signed per-pixel terms (cancellation in the position and shape columns)
# in float32 and in a different order (warp shuffles) than the float64 reference; measured
# up to ~5e-7 per column, and a dropped pixel or wrong formula moves a column by > 1e-3.
BACKWARD_RTOL = 1e-4

cpu = CPUBackend()


@pytest.fixture(scope="module", params=PROVIDERS)
def backend(request):
    return make_backend(request.param)


def random_gaussians(rng, n, height, width, scale=(0.5, 6.0), margin=5.0):
    params = np.empty((n, 8), dtype=np.float32)
    params[:, 0] = rng.uniform(-margin, width + margin, n)
    params[:, 1] = rng.uniform(-margin, height + margin, n)
    params[:, 2] = rng.uniform(*scale, n) * rng.choice([-1, 1], n)
    params[:, 3] = rng.uniform(-scale[1] / 2, scale[1] / 2, n)
    params[:, 4] = rng.uniform(*scale, n)
    params[:, 5:] = rng.uniform(0.0, 1.0, (n, 3))
    return params


def relative_l2(actual, expected):
    return np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30)


def check_against_reference(backend, params, height, width, seed=0, backward=True):
    """Bins identical, forward and coverage within FORWARD_RTOL, gradients per column within
    BACKWARD_RTOL of the reference; returns the reference bins for extra checks."""
    to_np = backend.to_numpy
    ref_bins = cpu.bin(params, height, width, tile=TILE)
    bins = backend.bin(backend.from_numpy(params), height, width)
    np.testing.assert_array_equal(to_np(bins[0]), ref_bins[0])
    np.testing.assert_array_equal(to_np(bins[1]), ref_bins[1])

    ref_image, ref_weight = cpu.render_forward(params, height, width, weight=True)
    image, weight = backend.render_forward(backend.from_numpy(params), height, width,
                                           weight=True)
    image, weight = to_np(image), to_np(weight)
    assert image.shape == (height, width, 3) and weight.shape == (height, width)
    assert np.isfinite(image).all() and np.isfinite(weight).all()
    assert relative_l2(image, ref_image) <= FORWARD_RTOL
    assert relative_l2(weight, ref_weight) <= FORWARD_RTOL
    # The image alone, and with bins handed in, matches the image drawn with coverage.
    np.testing.assert_array_equal(to_np(backend.render_forward(params, height, width)), image)
    np.testing.assert_array_equal(
        to_np(backend.render_forward(params, height, width, bins=ref_bins)), image)

    if backward:
        cotangent = np.random.default_rng(seed).standard_normal((height, width, 3))
        cotangent = cotangent.astype(np.float32)
        ref_grad = cpu.render_backward(params, height, width, cotangent)
        grad = to_np(backend.render_backward(backend.from_numpy(params), height, width,
                                             backend.from_numpy(cotangent)))
        assert grad.shape == params.shape and np.isfinite(grad).all()
        for column in range(8):
            assert relative_l2(grad[:, column], ref_grad[:, column]) <= BACKWARD_RTOL, column
    return ref_bins


def test_random_gaussians_on_an_image_not_a_multiple_of_the_tile(backend):
    params = random_gaussians(np.random.default_rng(10), 120, 37, 53)
    check_against_reference(backend, params, 37, 53, seed=11)


def test_tile_with_more_gaussians_than_batches(backend):
    rng = np.random.default_rng(20)
    # 600 small Gaussians inside tile 0, so its list spans three shared-memory batches.
    params = random_gaussians(rng, 600, 32, 32, scale=(0.3, 1.2))
    params[:, 0] = rng.uniform(4.0, 12.0, 600)
    params[:, 1] = rng.uniform(4.0, 12.0, 600)
    params[:, 3] *= 0.3
    bins = check_against_reference(backend, params, 32, 32, seed=21)
    assert bins[0][1] - bins[0][0] > 2 * BATCH


def test_gaussians_on_tile_and_image_borders(backend):
    height, width = 40, 48
    rng = np.random.default_rng(30)
    edges_x = [0.0, 16.0, 32.0, float(width), 15.999, 16.001, -2.0, width + 2.0]
    edges_y = [0.0, 16.0, 32.0, float(height), 31.999, 0.001, -2.5, height + 1.0]
    xs, ys = np.meshgrid(edges_x, edges_y)
    n = xs.size
    params = random_gaussians(rng, n, height, width, scale=(0.7, 4.0))
    params[:, 0] = xs.ravel()
    params[:, 1] = ys.ravel()
    check_against_reference(backend, params, height, width, seed=31)


def test_q_exactly_at_the_cutoff_is_drawn(backend):
    # Unit Gaussian on pixel (8, 8)'s centre: the pixels 3 away along an axis have q = 9
    # exactly in any precision, and the cutoff q <= 9 includes them.
    params = np.array([[8.5, 8.5, 1.0, 0.0, 1.0, 1.0, 0.5, 0.25]], dtype=np.float32)
    image = backend.to_numpy(backend.render_forward(params, 20, 20))
    expected = np.float32(np.exp(-4.5))
    for i, j in ((8, 5), (8, 11), (5, 8), (11, 8)):
        np.testing.assert_allclose(image[i, j], expected * params[0, 5:], rtol=1e-6)
    assert not image[8, 4].any() and not image[4, 8].any()
    check_against_reference(backend, params, 20, 20, seed=41)


def test_single_gaussian(backend):
    params = random_gaussians(np.random.default_rng(50), 1, 37, 53, scale=(3.0, 8.0))
    params[0, :2] = (20.3, 17.8)
    check_against_reference(backend, params, 37, 53, seed=51)


def test_no_gaussians_renders_black(backend):
    params = np.zeros((0, 8), dtype=np.float32)
    image, weight = backend.render_forward(params, 21, 18, weight=True)
    assert not backend.to_numpy(image).any() and not backend.to_numpy(weight).any()
    grad = backend.render_backward(params, 21, 18, np.ones((21, 18, 3), dtype=np.float32))
    assert backend.to_numpy(grad).shape == (0, 8)


def test_empty_tiles_are_written(backend):
    rng = np.random.default_rng(60)
    params = random_gaussians(rng, 20, 64, 64, scale=(0.5, 2.0))
    params[:, :2] = rng.uniform(6.0, 10.0, (20, 2))
    bins = check_against_reference(backend, params, 64, 64, seed=61)
    counts = np.diff(bins[0])
    assert counts[0] == 20 and (counts[1:] == 0).all()
    # Output buffers start as NaN, so only an explicit write of every pixel gets here.
    image = backend.to_numpy(backend.render_forward(params, 64, 64))
    assert not image[16:].any() and not image[:, 16:].any()


def test_degenerate_gaussians_draw_nothing(backend):
    rng = np.random.default_rng(70)
    params = random_gaussians(rng, 10, 24, 40, scale=(1.0, 3.0), margin=0.0)
    params[0, 2] = 0.0
    params[1, 4] = 1e-13
    params[2, 0] = np.nan
    params[3, 3] = np.inf
    params[4, 2] = 1e10
    params[5, :2] = (-100.0, 500.0)
    bins = check_against_reference(backend, params, 24, 40, seed=71)
    assert not np.isin(np.arange(6), bins[1]).any()
    assert np.isin(np.arange(6, 10), bins[1]).all()


def test_backward_repeats_bit_for_bit(backend):
    # Large Gaussians, so every pair sums many warps' partials and most Gaussians have
    # several pairs: with atomics the emulator's OS threads (and a GPU's warps) add them in
    # a different order on every run.
    height, width = 32, 32
    params = random_gaussians(np.random.default_rng(80), 12, height, width, scale=(3.0, 10.0))
    cotangent = np.random.default_rng(81).standard_normal((height, width, 3))
    cotangent = backend.from_numpy(cotangent.astype(np.float32))
    bins = cpu.bin(params, height, width, tile=TILE)
    assert len(bins[1]) > 2 * len(params)
    device_params = backend.from_numpy(params)
    first = backend.to_numpy(backend.render_backward(device_params, height, width, cotangent))
    for _ in range(2):
        again = backend.render_backward(device_params, height, width, cotangent)
        np.testing.assert_array_equal(backend.to_numpy(again), first)
    # Bins handed in (the reference's, equal to the backend's) give the same gradients.
    handed = backend.render_backward(device_params, height, width, cotangent, bins=bins)
    np.testing.assert_array_equal(backend.to_numpy(handed), first)


def test_gaussian_spanning_many_tiles_with_empty_pairs(backend):
    height, width = 64, 80
    rng = np.random.default_rng(90)
    params = random_gaussians(rng, 12, height, width, scale=(0.7, 3.0))
    # A long thin diagonal ellipse: its box covers all 20 tiles, but the ellipse itself
    # misses the pixels of the off-diagonal tiles, whose pair rows are all zeros.
    params[0] = (40.0, 32.0, 12.0, 9.0, 1.0, 0.9, 0.2, 0.6)
    bins = check_against_reference(backend, params, height, width, seed=91)
    tiles = np.flatnonzero([0 in bins[1][a:b] for a, b in zip(bins[0][:-1], bins[0][1:])])
    assert len(tiles) == (height // TILE) * (width // TILE)
    # Tiles where Gaussian 0 reaches no pixel centre (q > 9 throughout, in float64).
    i, j = np.mgrid[0:height, 0:width] + 0.5
    x, y, l11, l21, l22 = params[0, :5].astype(np.float64)
    u = (j - x) / l11
    v = (i - y - l21 * u) / l22
    drawn = (u * u + v * v <= 9.0).reshape(height // TILE, TILE, width // TILE, TILE)
    assert (~drawn.any(axis=(1, 3))).sum() >= 4


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fit_on_cuda_is_deterministic(provider, monkeypatch):
    route_cuda(monkeypatch, fit_module, provider)
    image = np.random.default_rng(100).uniform(0.0, 1.0, (24, 24, 3)).astype(np.float32)
    fits = [cgc.fit(image, 8, iterations=3, seed=5, init="random", device="cuda",
                    progress=False).params for _ in range(2)]
    np.testing.assert_array_equal(fits[0], fits[1])
    # The fit moved the Gaussians, so the comparison covers the gradients and Adam steps.
    start = cgc.fit(image, 8, iterations=0, seed=5, init="random", device="cuda",
                    progress=False).params
    assert not np.array_equal(fits[0], start)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fit_on_cuda_keeps_a_one_pixel_image(provider, monkeypatch):
    """The fit loop with the kernels' Adam step, whose centre clamp holds the one Gaussian
    of a 1x1 image (without it the Gaussian wanders off within 600 steps: tests/test_codec.py
    has the CPU case)."""
    route_cuda(monkeypatch, fit_module, provider)
    image = np.array([[[200, 40, 90]]], np.float32) / 255
    fitted = cgc.fit(image, 1, iterations=600, seed=0, device="cuda", progress=False)
    assert 0.0 <= fitted.params[0, 0] <= 1.0 and 0.0 <= fitted.params[0, 1] <= 1.0
    rendered = np.clip(fitted.render(), 0, 1)
    # Two 8-bit levels, as the CPU case allows.
    assert np.abs(255 * (rendered - image)).max() <= 2, 255 * rendered


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("scale", [None, 0.5])
def test_decode_to_the_device(provider, monkeypatch, scale):
    """cgc.decode(device="cuda", to_host=False): the uint8 image made on the device, as its
    host twin makes it, and within a level of the CPU's."""
    image = (np.random.default_rng(7).uniform(0, 1, (40, 56, 3)) * 255).astype(np.uint8)
    data = cgc.encode(image, 30, iterations=40, progress=False)
    expected = cgc.decode(data, scale=scale)
    route_cuda(monkeypatch, backends_module, provider)
    route_cuda(monkeypatch, codec_module, provider)
    on_device = cgc.decode(data, device="cuda", scale=scale, to_host=False)
    xp = make_backend(provider).xp
    assert isinstance(on_device, xp.ndarray) and on_device.dtype == xp.uint8
    on_host = cgc.decode(data, device="cuda", scale=scale)
    assert isinstance(on_host, np.ndarray)
    np.testing.assert_array_equal(make_backend(provider).to_numpy(on_device), on_host)
    # The kernels' float32 sums may differ from the CPU's in the last bits, which can move
    # a pixel that rounds near a half level by one level; a wrong pixel is tens off.
    assert np.abs(on_host.astype(int) - expected).max() <= 1


def test_bad_shapes_are_refused(backend):
    with pytest.raises(ValueError, match="shape"):
        backend.render_forward(np.zeros((3, 7), dtype=np.float32), 8, 8)
    with pytest.raises(ValueError, match="grad_image"):
        backend.render_backward(np.zeros((3, 8), dtype=np.float32), 8, 8,
                                np.zeros((8, 9, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="positive"):
        backend.render_forward(np.zeros((3, 8), dtype=np.float32), 0, 8)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_missing_cupy_is_explained():
    with pytest.raises(ImportError, match="needs CuPy"):
        CUDABackend()


def test_bins_of_another_tile_size_are_refused(backend):
    # The kernels draw TILE-pixel tiles: the CPU's own binning (its larger tiles) or bins
    # of unknown size would send them to the wrong pixels.
    params = random_gaussians(np.random.default_rng(95), 8, 40, 40)
    cpu_bins = cpu.bin(params, 40, 40)
    assert cpu_bins.tile != TILE
    for bins in (cpu_bins, tuple(cpu.bin(params, 40, 40, tile=TILE))[:2]):
        with pytest.raises(ValueError, match="tiles"):
            backend.render_forward(backend.from_numpy(params), 40, 40, bins=bins)
