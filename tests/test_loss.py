"""cgc.image.loss and cgc.metrics.ssim_gradient: the gradients the fit follows, against
central finite differences in float64, and what tune="ssim" does to a fit."""
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data

import cgc
from cgc.image.loss import SSIM_TUNE_WEIGHTS, Perceptual, SquaredError, get_loss
from cgc.imageio import to_uint8
from cgc.metrics import psnr, ssim, ssim_gradient

# Central differences of a smooth function in float64: truncation error ~h^2 f''' (1e-12
# here) plus rounding ~1e-16 / h (1e-10); 1e-7 of the gradient's scale is far above both
# and far below any wrong term.
STEP = 1e-6
TOLERANCE = 1e-7


def central_differences(f, x):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += STEP
        down[index] -= STEP
        grad[index] = (f(up) - f(down)) / (2 * STEP)
    return grad


@pytest.fixture
def pair():
    rng = np.random.default_rng(5)
    target = rng.random((13, 15, 3))
    rendered = np.clip(target + 0.15 * rng.normal(size=target.shape), 0.0, 1.0)
    return rendered, target


@pytest.mark.parametrize("shape", [(13, 15, 3), (12, 11)])
def test_ssim_gradient_matches_finite_differences(shape):
    rng = np.random.default_rng(6)
    target = rng.random(shape)
    rendered = np.clip(target + 0.2 * rng.normal(size=shape), 0.0, 1.0)
    value, grad = ssim_gradient(rendered, target)
    assert value == pytest.approx(ssim(rendered, target), abs=1e-12)
    numeric = central_differences(lambda x: ssim_gradient(x, target)[0], rendered)
    assert np.abs(grad - numeric).max() < TOLERANCE * np.abs(numeric).max()
    assert grad.shape == rendered.shape


@pytest.mark.parametrize("shape,dtype,data_range", [
    ((13, 15, 3), np.float64, 1.0), ((12, 11), np.float64, 1.0),
    ((40, 27, 3), np.float32, 1.0), ((23, 31, 2), np.float64, 255.0)])
def test_compiled_ssim_gradient_matches_array_operations(shape, dtype, data_range):
    # The CPU's compiled loops against the array-operation path CuPy runs.  float64: both
    # sum the same terms in other orders, so they agree to rounding (1e-12 of the
    # gradient's scale).  float32: the array path keeps its moments in float32, whose
    # cancellation in E[x^2] - mu^2 leaves about 1e-4 of the gradient's scale.
    import scipy.ndimage

    from cgc.metrics import _ssim_gradient_arrays
    rng = np.random.default_rng(9)
    target = (rng.random(shape) * data_range).astype(dtype)
    rendered = np.clip(target + 0.2 * data_range * rng.normal(size=shape), 0,
                       data_range).astype(dtype)
    value, grad = ssim_gradient(rendered, target, data_range)
    ref_value, ref_grad = _ssim_gradient_arrays(np, scipy.ndimage, rendered, target,
                                                data_range)
    tolerance = 1e-12 if dtype == np.float64 else 1e-4
    assert grad.dtype == dtype and grad.shape == shape
    assert value == pytest.approx(ref_value, abs=tolerance)
    assert np.abs(grad - ref_grad).max() <= tolerance * np.abs(ref_grad).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ssim_value_alone_equals_the_gradients_value(dtype):
    # gradient=False skips the derivative maps but sums the SSIM map as the full call does:
    # the same bits, and the metric's value (skimage's definition) to rounding.
    rng = np.random.default_rng(12)
    target = rng.random((37, 45, 3)).astype(dtype)
    rendered = np.clip(target + 0.15 * rng.normal(size=target.shape), 0, 1).astype(dtype)
    value, grad = ssim_gradient(rendered, target)
    alone, none = ssim_gradient(rendered, target, gradient=False)
    assert none is None and grad is not None
    assert alone == value
    assert alone == pytest.approx(ssim(rendered.astype(np.float64), target.astype(np.float64),
                                       data_range=1.0), abs=1e-6)


def test_ssim_gradient_same_on_any_thread_count():
    # The fit's output must not depend on the machine's cores: each value is summed by one
    # thread in a fixed order, so 1 and 3 threads give the same bits.
    code = ("import hashlib, numpy as np; from cgc.metrics import ssim_gradient; "
            "r = np.random.default_rng(3); y = r.random((61, 47, 3)).astype(np.float32); "
            "x = np.clip(y + 0.1 * r.normal(size=y.shape), 0, 1).astype(np.float32); "
            "v, g = ssim_gradient(x, y); print(v, hashlib.sha256(g.tobytes()).hexdigest())")
    outputs = []
    for threads in ("1", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        outputs.append(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                      capture_output=True, text=True).stdout)
    assert outputs[0] == outputs[1] and outputs[0].strip()


def perceptual_value(rendered, target, l1, l2, w_ssim):
    """The "ssim" tune's loss, written from its definition, times the number of values
    (the scale its gradient is given in)."""
    d = rendered - target
    return d.size * (l1 * np.abs(d).mean() + l2 * (d * d).mean()
                     + w_ssim * (1 - ssim(rendered, target)))


@pytest.mark.parametrize("weights", [(0.2, 0.8, 0.1), (0.0, 0.0, 1.0), (1.0, 0.5, 0.0)])
def test_perceptual_gradient_matches_finite_differences(pair, weights):
    rendered, target = pair
    rendered = np.where(rendered == target, rendered + 1e-3, rendered)  # |d| differentiable
    grad = Perceptual(*weights).gradient(np, rendered, target)
    numeric = central_differences(lambda x: perceptual_value(x, target, *weights), rendered)
    assert np.abs(grad - numeric).max() < TOLERANCE * np.abs(numeric).max()


@pytest.mark.parametrize("weights", [(0.2, 0.8, 0.1), (0.0, 0.0, 1.0), (1.0, 0.5, 0.0)])
def test_perceptual_value_is_its_definition(pair, weights):
    # The value the allocation weighs, against the definition above (divided by the count).
    rendered, target = pair
    assert Perceptual(*weights).value(np, rendered, target) == pytest.approx(
        perceptual_value(rendered, target, *weights) / rendered.size, rel=1e-12)


def test_squared_error_is_psnr_loss(pair):
    rendered, target = pair
    assert np.array_equal(SquaredError().gradient(np, rendered, target),
                          2.0 * (rendered - target))
    assert SquaredError().value(np, rendered, target) == np.mean((rendered - target) ** 2)


def test_small_images_drop_the_ssim_term():
    # Under an SSIM window's side (a coarse stage of a tiny image): L1 and L2 alone.
    rng = np.random.default_rng(8)
    rendered, target = rng.random((8, 9, 3)), rng.random((8, 9, 3))
    d = rendered - target
    l1, l2, _ = SSIM_TUNE_WEIGHTS
    assert np.allclose(Perceptual().gradient(np, rendered, target),
                       l1 * np.sign(d) + 2 * l2 * d)


def test_loss_names():
    assert isinstance(get_loss("psnr"), SquaredError)
    assert isinstance(get_loss("ssim"), Perceptual)
    with pytest.raises(ValueError, match="loss must be one of"):
        get_loss("mse")
    with pytest.raises(ValueError, match="tune must be one of"):
        cgc.encode(np.zeros((16, 16, 3), np.uint8), tune="butteraugli")


def test_encode_takes_a_loss_object():
    # Perceptual(0, 1, 0)'s gradient is 2 (rendered - target), squared error's: the same
    # file as tune="psnr" shows the object reached the fits; other weights change it.
    image = np.ascontiguousarray(skimage.data.astronaut()[40:72, 150:190])
    options = dict(n_gaussians=60, iterations=20, preset="fast", progress=False)
    plain = cgc.encode(image, tune="psnr", **options)
    assert cgc.encode(image, tune=Perceptual(0.0, 1.0, 0.0), **options) == plain
    assert cgc.encode(image, tune=Perceptual(0.2, 0.8, 0.1), **options) != plain


def test_loss_ssim_fits_for_ssim():
    image = np.ascontiguousarray(skimage.data.astronaut()[40:104, 150:230])  # 64 x 80
    measured = {}
    for loss in ("psnr", "ssim"):
        fitted = cgc.fit(image, 120, iterations=100, coarse_iterations=0, loss=loss,
                         progress=False)
        measured[loss] = ssim(image, to_uint8(fitted.render()))
    # Measured 0.03 to 0.05 higher on three crops of the photo at these settings.
    assert measured["ssim"] > measured["psnr"] + 0.01, measured


class _Fixed:
    """A loss whose gradient is given, to see what the fit keeps of it."""

    def __init__(self, grad):
        self.grad = grad

    def gradient(self, xp, rendered, target):
        return self.grad.copy()

    def value(self, xp, rendered, target):
        return 0.0


def test_pushes_past_the_clip_are_dropped():
    from cgc.image.fit import _through_the_clip

    rendered = np.array([[[-0.5, -0.5, 0.5]], [[1.5, 1.5, 0.5]]], np.float32)
    grad = np.array([[[1.0, -1.0, 1.0]], [[-1.0, 1.0, -1.0]]], np.float32)
    target = np.zeros_like(rendered)
    kept = _through_the_clip(np, _Fixed(grad), rendered, target)
    # Descent moves against the gradient: below 0 a positive gradient pushes down, above 1
    # a negative one pushes up; those go, the pulls back in and in-range pixels stay.
    assert np.array_equal(kept, [[[0.0, -1.0, 1.0]], [[0.0, 1.0, -1.0]]])
    # Squared error never points outward there, so it is passed on untouched.
    squared = _through_the_clip(np, SquaredError(), rendered, target)
    assert np.array_equal(squared, SquaredError().gradient(np, np.clip(rendered, 0, 1), target))


def test_ssim_tune_holds_beside_saturated_areas():
    # A white frame round a textured square: the SSIM term's gradient at pixels clipped to
    # white pointed further out, which nothing a decoder shows would stop, so colours ran
    # away and the fit fell to 16.3 dB (SSIM 0.53) where squared error reached 23.6 dB.
    rng = np.random.default_rng(0)
    image = np.ones((64, 64, 3))
    image[16:48, 16:48] = rng.uniform(0.25, 0.75, (32, 32, 3))
    image = np.round(255 * image).astype(np.uint8)
    measured = {}
    for loss in ("psnr", "ssim"):
        fitted = to_uint8(cgc.fit(image, 110, iterations=300, loss=loss, progress=False).render())
        measured[loss] = (psnr(image, fitted), ssim(image, fitted))
    # Measured 23.49 dB / 0.838 against 23.61 dB / 0.806 for squared error.
    assert measured["ssim"][0] > measured["psnr"][0] - 0.5, measured
    assert measured["ssim"][1] > measured["psnr"][1], measured
