"""cgc.metrics.ssim against scikit-image, cgc.metrics.ms_ssim against a transcription of
Wang, Simoncelli and Bovik's definition written here, and the properties and input checks
of both."""
import importlib.util
import os

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

import cgc
from cgc.metrics import ms_ssim, ssim

SAMPLE = os.path.join(os.path.dirname(cgc.__file__), "data", "sample.png")


@pytest.fixture(scope="module")
def rgb():
    """The bundled 256x256 sample, uint8 RGB."""
    with Image.open(SAMPLE) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def gray(rgb):
    """The sample's luma as float64 in [0, 1]."""
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def noisy_uint8(image, sigma, seed):
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0.0, sigma, image.shape), 0, 255).round().astype(np.uint8)


def blurred(image):
    """A 3x3 box blur (edge rows and columns kept): a structural, not additive, distortion."""
    out = image.astype(np.float64).copy()
    out[1:-1, 1:-1] = sum(image[1 + i:image.shape[0] - 1 + i, 1 + j:image.shape[1] - 1 + j]
                          for i in (-1, 0, 1) for j in (-1, 0, 1)) / 9.0
    return out


def skimage_ssim(a, b, data_range):
    colour = {"channel_axis": -1} if a.ndim == 3 else {}
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=data_range, **colour)


# --- ssim against scikit-image -----------------------------------------------------------

def ssim_cases(rgb, gray):
    """(name, a, b, data_range for scikit-image); cgc's ssim gets its default data_range
    except where the case gives one for both."""
    rng = np.random.default_rng(1)
    float255 = gray * 255.0
    return [
        ("uint8 colour, noisy", rgb, noisy_uint8(rgb, 12.0, 2), 255.0),
        ("uint8 colour, blurred", rgb, blurred(rgb.astype(np.float64)).round().astype(np.uint8),
         255.0),
        ("float grayscale, noisy", gray, gray + rng.normal(0.0, 0.05, gray.shape), 1.0),
        ("float grayscale, blurred", gray, blurred(gray), 1.0),
        ("odd sizes, float grayscale", gray[3:40, 5:58], blurred(gray)[3:40, 5:58], 1.0),
        ("odd sizes, uint8 colour", rgb[10:55, 7:38], noisy_uint8(rgb[10:55, 7:38], 30.0, 3),
         255.0),
        ("smallest image, one window", gray[100:111, 50:61], blurred(gray)[100:111, 50:61],
         1.0),
        ("float on a 0-255 scale", float255, float255 + rng.normal(0.0, 8.0, gray.shape),
         255.0),
        ("identical", rgb, rgb.copy(), 255.0),
    ]


def test_ssim_matches_skimage(rgb, gray):
    for name, a, b, data_range in ssim_cases(rgb, gray):
        expected = skimage_ssim(a, b, data_range)
        given = None if data_range == (255.0 if a.dtype == np.uint8 else 1.0) else data_range
        # The task's contract. Both sides filter in float64 with SciPy's Gaussian (same taps,
        # same reflect border, same 5-pixel crop), so they agree to rounding (about 1e-16);
        # 1e-6 leaves room for scikit-image summing in another order one day while any
        # real difference (a 13-tap window, another border crop, sample covariance) is
        # 1e-4 or more.
        assert ssim(a, b, given) == pytest.approx(expected, abs=1e-6), name
        assert ssim(b, a, given) == pytest.approx(expected, abs=1e-6), name


def test_ssim_of_identical_images_is_one(rgb, gray):
    # (2 mu^2 + C1) / (mu^2 + mu^2 + C1) and its sigma counterpart are exact in floating
    # point when x == y (doubling is exact), so this holds to the last bit but for the mean
    assert ssim(rgb, rgb) == pytest.approx(1.0, abs=1e-12)
    assert ssim(gray, gray) == pytest.approx(1.0, abs=1e-12)


def test_ssim_falls_with_noise(gray):
    noise = np.random.default_rng(4).normal(0.0, 1.0, gray.shape)
    values = [ssim(gray, gray + level * noise) for level in (0.005, 0.02, 0.05, 0.1, 0.3)]
    assert all(earlier > later for earlier, later in zip(values, values[1:])), values


# --- ms_ssim against the paper's definition ------------------------------------------------

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window():
    """The 11x11 Gaussian of standard deviation 1.5, summing to 1."""
    k = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-k ** 2 / (2 * 1.5 ** 2))
    window = np.outer(g, g)
    return window / window.sum()


def window_sum(window, images):
    """For every 11x11 window wholly inside the image, sum_k w_k * product of the images'
    k-th pixels (direct correlation, no border mode)."""
    h, w = images[0].shape
    out = np.zeros((h - 10, w - 10))
    for i in range(11):
        for j in range(11):
            term = window[i, j]
            for image in images:
                term = term * image[i:i + h - 10, j:j + w - 10]
            out += term
    return out


def centred_moment(window, x, mu_x, y, mu_y):
    """sum_k w_k (x_k - mu_x)(y_k - mu_y) per window: the paper's (co)variance, two-pass."""
    h, w = x.shape
    out = np.zeros((h - 10, w - 10))
    for i in range(11):
        for j in range(11):
            out += window[i, j] * (x[i:i + h - 10, j:j + w - 10] - mu_x) \
                * (y[i:i + h - 10, j:j + w - 10] - mu_y)
    return out


def reference_ms_ssim(a, b, data_range):
    """MS-SSIM as Wang, Simoncelli and Bovik 2003 define it, per channel then averaged:
    prod_j max(mean cs_j, 0)^w_j over five scales, the coarsest term being mean(l * cs);
    a scale is the 2x2 block average of the one before, an odd last row or column dropped."""
    window = gaussian_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    a = a.astype(np.float64).reshape(a.shape[0], a.shape[1], -1)
    b = b.astype(np.float64).reshape(a.shape)
    values = []
    for channel in range(a.shape[2]):
        x, y = a[:, :, channel], b[:, :, channel]
        value = 1.0
        for scale, weight in enumerate(WEIGHTS):
            if scale:
                x, y = halve(x), halve(y)
            mu_x, mu_y = window_sum(window, [x]), window_sum(window, [y])
            var_x = centred_moment(window, x, mu_x, x, mu_x)
            var_y = centred_moment(window, y, mu_y, y, mu_y)
            cov = centred_moment(window, x, mu_x, y, mu_y)
            term = (2 * cov + c2) / (var_x + var_y + c2)
            if scale == len(WEIGHTS) - 1:
                term = term * (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
            value *= max(term.mean(), 0.0) ** weight
        values.append(value)
    return sum(values) / len(values)


def halve(x):
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return (x[0:h:2, 0:w:2] + x[1:h:2, 0:w:2] + x[0:h:2, 1:w:2] + x[1:h:2, 1:w:2]) / 4.0


def test_ms_ssim_matches_the_definition(rgb, gray):
    rng = np.random.default_rng(5)
    cases = [
        ("uint8 colour, noisy", rgb, noisy_uint8(rgb, 15.0, 6), 255.0),
        ("float grayscale, blurred", gray, blurred(gray), 1.0),
        # 181 -> 90 -> 45 -> 22 -> 11 and 199 -> 99 -> 49 -> 24 -> 12: odd sides dropped at
        # several scales, and the coarsest scale exactly one window high
        ("odd sizes, float grayscale, noisy", gray[20:201, 30:229],
         gray[20:201, 30:229] + rng.normal(0.0, 0.1, (181, 199)), 1.0),
        ("uint8 colour, heavy noise", rgb, noisy_uint8(rgb, 80.0, 7), 255.0),
    ]
    for name, a, b, data_range in cases:
        # The reference takes (co)variances two-pass, sum w (x - mu)^2, where cgc takes
        # E[x^2] - mu^2 after a separable filter; that cancellation costs about
        # 2e-16 * range^2 per window against C2 = 9e-4 * range^2, so about 1e-12 in each cs
        # and less in the weighted product (measured: below 1e-14). 1e-9 keeps a wide margin,
        # while a wrong weight, window or downsampling moves the value by 1e-4 or more.
        assert ms_ssim(a, b) == pytest.approx(reference_ms_ssim(a, b, data_range), abs=1e-9), \
            name


def test_ms_ssim_of_identical_images_is_one(rgb, gray):
    # every term is exactly 1 when x == y (see the ssim test); the mean only rounds
    assert ms_ssim(rgb, rgb.copy()) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(gray, gray) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_falls_with_noise(gray):
    noise = np.random.default_rng(8).normal(0.0, 1.0, gray.shape)
    values = [ms_ssim(gray, gray + level * noise) for level in (0.005, 0.02, 0.05, 0.1, 0.3)]
    assert all(earlier > later for earlier, later in zip(values, values[1:])), values
    assert 0.0 < values[-1] < values[0] < 1.0


def test_ms_ssim_is_symmetric(rgb, gray):
    # the formula is symmetric; the float products (2 mu_x) mu_y and (2 mu_y) mu_x may round
    # differently, hence 1e-12 rather than equality
    b = noisy_uint8(rgb, 20.0, 9)
    assert ms_ssim(rgb, b) == pytest.approx(ms_ssim(b, rgb), abs=1e-12)
    c = blurred(gray)
    assert ms_ssim(gray, c) == pytest.approx(ms_ssim(c, gray), abs=1e-12)


def test_ms_ssim_clamps_anticorrelated_structure_to_zero(gray):
    # the inverted image has negative contrast-structure at the fine scales; clamped to 0
    # before the fractional power, the result is 0 rather than NaN
    assert ms_ssim(gray, 1.0 - gray) == 0.0


def test_ms_ssim_needs_176_pixels_a_side(gray):
    # five scales: the coarsest, 1/16 of the image, must hold one 11x11 window
    for shape in ((175, 200), (200, 175), (175, 175)):
        with pytest.raises(ValueError, match="176"):
            ms_ssim(gray[:shape[0], :shape[1]], gray[:shape[0], :shape[1]])
    assert ms_ssim(gray[:176, :176], blurred(gray)[:176, :176]) < 1.0


def test_ssim_needs_one_window(gray):
    with pytest.raises(ValueError, match="11x11"):
        ssim(gray[:10, :40], gray[:10, :40])


@pytest.mark.parametrize("measure", [ssim, ms_ssim])
def test_bad_inputs_are_refused(measure, gray):
    image = gray[:180, :180]
    with_nan, with_inf = image.copy(), image.copy()
    with_nan[5, 7] = np.nan
    with_inf[9, 2] = np.inf
    bad = [
        (image, image[:, :179], "differ in shape"),
        (image[0], image[0], r"\(H, W\)"),
        (image[None, :, :, None], image[None, :, :, None], r"\(H, W\)"),
        (image, with_nan, "finite"),
        (with_inf, image, "finite"),
    ]
    for a, b, message in bad:
        with pytest.raises(ValueError, match=message):
            measure(a, b)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed")
def test_cupy_arrays_give_the_numpy_values(rgb, gray):
    import cupy

    b = noisy_uint8(rgb, 15.0, 10)
    c = blurred(gray)
    for measure in (ssim, ms_ssim):
        for x, y in ((rgb, b), (gray, c)):
            value = measure(cupy.asarray(x), cupy.asarray(y))
            assert type(value) is float
            # float64 on both; the GPU may fuse multiply-adds and sum in another order
            assert value == pytest.approx(measure(x, y), abs=1e-9)
