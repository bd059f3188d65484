"""cgc.refine: refined codes stay codes of the same quantisers, never render worse than the
nearest ones, and end at a local minimum of the error over one-code geometry moves."""

import numpy as np
import pytest
import skimage.data

import cgc
from cgc.image import _refine_cy
from cgc.backends import get_backend
from cgc.image.quantize import dequantise, quantise
from cgc.image.refine import _tables, refine_codes

WIDTHS = (9, 9, 5, 6, 5, 6, 4, 4)


def random_problem(rng, n, height, width):
    params = np.zeros((n, 8), np.float32)
    params[:, 0] = rng.uniform(-2, width + 2, n)
    params[:, 1] = rng.uniform(-2, height + 2, n)
    params[:, 2] = rng.uniform(0.8, 4.0, n)
    params[:, 3] = rng.uniform(-1.5, 1.5, n)
    params[:, 4] = rng.uniform(0.8, 4.0, n)
    params[:, 5:] = rng.uniform(0.0, 0.6, (n, 3))
    # One Gaussian wholly outside the image: it has no pixels to be judged on.
    params[0, :2] = (width + 40, height + 40)
    image = rng.uniform(0.0, 1.0, (height, width, 3)).astype(np.float32)
    quantisers, codes = quantise(params, WIDTHS)
    return quantisers, codes, image


def clipped_sse(quantisers, codes, image):
    # float64 parameters, so the render is the one the refinement models (float64 weights).
    params = dequantise(quantisers, codes).astype(np.float64)
    rendered = get_backend("cpu").render_forward(params, *image.shape[:2])
    return float(np.sum((np.clip(rendered, 0.0, 1.0) - image.astype(np.float64)) ** 2))


def test_error_falls_and_codes_stay_in_range():
    rng = np.random.default_rng(0)
    quantisers, codes, image = random_problem(rng, 40, 23, 29)
    refined = refine_codes(codes, quantisers, image, sweeps=2)
    assert refined.dtype == np.uint32 and refined.shape == codes.shape
    assert not np.array_equal(refined, codes)
    levels = np.array([q.levels for q in quantisers])
    assert np.all(refined <= levels)
    # Geometry moves one code per sweep at most; colour takes any code around its optimum.
    assert np.abs(refined[:, :5].astype(np.int64) - codes[:, :5]).max() <= 2
    assert clipped_sse(quantisers, refined, image) < clipped_sse(quantisers, codes, image)
    # The Gaussian outside the image is left as it was.
    assert np.array_equal(refined[0], codes[0])
    # Deterministic.
    assert np.array_equal(refine_codes(codes, quantisers, image, sweeps=2), refined)


def test_converged_codes_are_a_local_minimum_of_geometry_moves():
    rng = np.random.default_rng(1)
    quantisers, codes, image = random_problem(rng, 12, 14, 17)
    # Every move lowers the error, so sweeping until no move is left ends.
    refined = codes.copy()
    params = dequantise(quantisers, refined)
    values, levels, lo, step = _tables(quantisers)
    for _ in range(5000):
        if _refine_cy.refine_codes(refined, params, values, levels, lo, step, image, 1) == 0:
            break
    else:
        pytest.fail("the refinement did not converge")
    assert np.array_equal(params, dequantise(quantisers, refined))
    best = clipped_sse(quantisers, refined, image)
    for g in range(len(refined)):
        for k in range(5):
            for step in (-1, 1):
                if not 0 <= int(refined[g, k]) + step <= levels[k]:
                    continue
                moved = refined.copy()
                moved[g, k] = int(refined[g, k]) + step
                # Tolerance: the refinement and the renderer weigh pixels with the same
                # float64 polynomial but compute q in other orders (and sum the costs in
                # lanes), so they agree to rounding, far below 1e-9 on this tiny image.
                assert clipped_sse(quantisers, moved, image) >= best - 1e-9, (g, k, step)


def test_input_codes_are_not_modified():
    rng = np.random.default_rng(2)
    quantisers, codes, image = random_problem(rng, 20, 16, 16)
    before = codes.copy()
    refine_codes(codes, quantisers, image)
    assert np.array_equal(codes, before)


def test_zero_sweeps_change_nothing():
    rng = np.random.default_rng(3)
    quantisers, codes, image = random_problem(rng, 20, 16, 16)
    assert np.array_equal(refine_codes(codes, quantisers, image, sweeps=0), codes)


def test_codes_that_cannot_improve_come_back_unchanged():
    # The image is exactly the render of these codes, clipped: no move can lower an error
    # of zero.
    rng = np.random.default_rng(4)
    quantisers, codes, _ = random_problem(rng, 15, 16, 16)
    params = dequantise(quantisers, codes)
    image = np.clip(cgc.Gaussians(params, 16, 16).render(), 0, 1).astype(np.float32)
    assert np.array_equal(refine_codes(codes, quantisers, image), codes)


def test_refined_fit_renders_better():
    image = skimage.data.astronaut()[100:148, 200:264].astype(np.float32) / 255
    # One stage: the threshold below was measured on this fit.
    gaussians = cgc.fit(image, 60, iterations=60, coarse_iterations=0, seed=0, progress=False)
    quantisers, codes = quantise(gaussians.params, WIDTHS)
    refined = refine_codes(codes, quantisers, image)
    before = clipped_sse(quantisers, codes, image)
    after = clipped_sse(quantisers, refined, image)
    # At these coarse widths the nearest codes leave much to win back.
    assert after < 0.9 * before, (before, after)


@pytest.mark.parametrize("change, match", [
    (lambda c, q, i: (c[:, :7], q, i), "shape"),
    (lambda c, q, i: (c, q[:7], i), "quantisers"),
    (lambda c, q, i: (c + np.uint32(1 << 12), q, i), "out of range"),
    (lambda c, q, i: (c, q, i[:, :, :2]), "shape"),
    (lambda c, q, i: (c, q, i * 2), "within"),
    (lambda c, q, i: (c, q, np.where(i > 0.5, np.nan, i)), "finite"),
])
def test_bad_arguments(change, match):
    rng = np.random.default_rng(5)
    quantisers, codes, image = random_problem(rng, 10, 12, 12)
    with pytest.raises(ValueError, match=match):
        refine_codes(*change(codes, quantisers, image))
    for sweeps in (-1, 1.5, True):
        with pytest.raises(ValueError, match="sweeps"):
            refine_codes(codes, quantisers, image, sweeps=sweeps)


@pytest.mark.parametrize("spread", [0.0, 1e-7])
def test_colour_quantisers_of_no_or_tiny_range(spread):
    # All colours (nearly) equal: a colour quantiser's step is 0 or a few ulps, and the
    # least-squares colour lies millions of steps outside its range.
    rng = np.random.default_rng(6)
    quantisers, codes, image = random_problem(rng, 12, 16, 16)
    params = dequantise(quantisers, codes)
    params[:, 5:] = 0.3
    params[::2, 5:] += spread
    quantisers, codes = quantise(params, WIDTHS)
    refined = refine_codes(codes, quantisers, image)
    assert np.all(refined <= np.array([q.levels for q in quantisers]))
    assert clipped_sse(quantisers, refined, image) <= clipped_sse(quantisers, codes, image)


def test_core_checks_shapes_and_code_ranges():
    # The compiled loop reads without bounds checks; its entry refuses what would overrun.
    rng = np.random.default_rng(8)
    quantisers, codes, image = random_problem(rng, 6, 10, 10)
    values, levels, lo, step = _tables(quantisers)
    params = dequantise(quantisers, codes)
    args = [codes.copy(), params, values, levels, lo, step, image, 1]
    for index, bad in [(0, codes[:, :7].copy()), (1, params[:5].copy()),
                       (2, values[:7].copy()), (3, levels[:7].copy()),
                       (6, np.ascontiguousarray(image[:, :, :2]))]:
        with pytest.raises(ValueError, match="shapes"):
            _refine_cy.refine_codes(*args[:index], bad, *args[index + 1:])
    too_big = codes.copy()
    too_big[3, 2] = levels[2] + 1
    with pytest.raises(ValueError, match="levels"):
        _refine_cy.refine_codes(too_big, *args[1:])
    short_table = levels.copy()
    short_table[0] = values.shape[1]
    with pytest.raises(ValueError, match="value table"):
        _refine_cy.refine_codes(codes.copy(), params, values, short_table, lo, step, image, 1)
