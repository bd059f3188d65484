"""cgc.quantize: error bounds of the quantisers, code ranges, degenerate columns,
canonical_cholesky, the YCoCg colour transform and Quantiser.validate."""
import math

import numpy as np
import pytest

from cgc.image.model import Gaussians
from cgc.image.quantize import (ATTRIBUTES, DEFAULT_BITS, LINEAR, LOG, RGB_TO_YCOCG, TRANSFORM,
                          Quantiser, canonical_cholesky, dequantise, fit_quantiser, quantise,
                          to_attributes, ycocg_to_rgb)

F32_EPS = float(np.finfo(np.float32).eps)


def random_params(rng, n, width=64.0, height=48.0):
    params = np.empty((n, 8), dtype=np.float32)
    params[:, 0] = rng.uniform(0, width, n)
    params[:, 1] = rng.uniform(0, height, n)
    params[:, 2] = rng.uniform(0.3, 20, n) * rng.choice([-1, 1], n)
    params[:, 3] = rng.normal(0, 3, n)
    params[:, 4] = rng.uniform(0.3, 20, n) * rng.choice([-1, 1], n)
    params[:, 5:] = rng.uniform(-0.3, 1.3, (n, 3))
    return params


@pytest.mark.parametrize("bits", [1, 3, 8, 11, 16])
@pytest.mark.parametrize("seed, scale", [(0, 1.0), (1, 1000.0), (2, 1e-3)])
def test_linear_error_at_most_half_a_step(bits, seed, scale):
    rng = np.random.default_rng(seed)
    values = (rng.normal(0.3, 1.0, 5000) * scale).astype(np.float32)
    q = fit_quantiser(values, bits, LINEAR)
    codes = q.quantise(values)
    assert codes.dtype == np.uint32 and codes.shape == values.shape
    assert codes.max() <= (1 << bits) - 1
    # The range ends are hit: the quantiser spans the data, it does not waste levels.
    assert codes.min() == 0 and codes.max() == (1 << bits) - 1
    restored = q.dequantise(codes)
    assert restored.dtype == np.float32
    step = (q.hi - q.lo) / q.levels
    # Slack: dequantisation runs in float32, a few ulps of the largest magnitude.
    slack = 4 * F32_EPS * max(abs(q.lo), abs(q.hi))
    err = np.abs(restored.astype(np.float64) - values)
    assert err.max() <= step / 2 + slack
    # ... and the bound is nearly attained (a quantiser with a finer step than claimed, or
    # an error bound test that cannot fail, would not get close).
    assert err.max() > 0.4 * step


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_relative_error_bound(seed):
    rng = np.random.default_rng(seed)
    values = np.exp(rng.uniform(math.log(0.3), math.log(40.0), 5000)).astype(np.float32)
    q = fit_quantiser(values, 8, LOG)
    codes = q.quantise(values)
    assert codes.min() == 0 and codes.max() == 255
    restored = q.dequantise(codes).astype(np.float64)
    assert np.all(restored > 0)
    log_step = (q.hi - q.lo) / q.levels
    # |log(restored) - log(value)| <= step / 2, plus float32 rounding of exp and of the
    # log-domain value (its magnitude is at most ~4).
    bound = log_step / 2 + 8 * F32_EPS * max(1.0, abs(q.lo), abs(q.hi))
    rel = np.abs(np.log(restored) - np.log(values.astype(np.float64)))
    assert rel.max() <= bound
    assert rel.max() > 0.4 * log_step
    # A relative bound is what the small Gaussians need: an absolute half-step of a linear
    # 8-bit quantiser over [0.3, 40] would be ~0.08, a quarter of the smallest value.
    assert np.max(np.abs(restored - values) / values) <= math.expm1(bound)


def test_log_quantiser_needs_positive_values():
    with pytest.raises(ValueError, match="positive"):
        fit_quantiser(np.array([1.0, 0.0, 2.0]), 8, LOG)
    with pytest.raises(ValueError, match="positive"):
        fit_quantiser(np.array([1.0, -3.0]), 8, LOG)


def test_codes_clipped_into_range_for_values_outside_the_fit():
    q = Quantiser(8, LINEAR, 0.0, 1.0)
    codes = q.quantise(np.array([-5.0, -0.001, 0.0, 0.5, 1.0, 1.001, 7.0]))
    np.testing.assert_array_equal(codes, [0, 0, 0, 128, 255, 255, 255])


@pytest.mark.parametrize("transform, value", [(LINEAR, 0.37), (LINEAR, -12.5), (LOG, 2.5),
                                              (LOG, 0.3)])
@pytest.mark.parametrize("bits", [8, 16])
def test_degenerate_constant_column(transform, value, bits):
    values = np.full(17, value, dtype=np.float32)
    q = fit_quantiser(values, bits, transform)
    assert q.lo <= q.hi
    q.validate()
    codes = q.quantise(values)
    assert codes.shape == (17,)
    assert np.all(codes <= q.levels)
    assert len(np.unique(codes)) == 1  # a constant column costs nothing to code
    restored = q.dequantise(codes)
    assert np.all(np.isfinite(restored))
    tol = 0 if transform == LINEAR else 4 * F32_EPS * value
    np.testing.assert_allclose(restored, values, rtol=0, atol=tol)


@pytest.mark.parametrize("bits", [DEFAULT_BITS, (12, 9, 7, 8, 6, 7, 5, 4)])
def test_quantise_all_columns_round_trip_within_bounds(bits):
    rng = np.random.default_rng(5)
    params = random_params(rng, 400)
    quantisers, codes = quantise(params, bits)
    assert len(quantisers) == len(ATTRIBUTES) and codes.shape == (400, 8)
    for k in range(len(ATTRIBUTES)):
        assert (quantisers[k].bits, quantisers[k].transform) == (bits[k], TRANSFORM[k])
        assert codes[:, k].max() <= (1 << bits[k]) - 1
    restored = dequantise(quantisers, codes)
    assert restored.dtype == np.float32 and restored.flags.c_contiguous
    assert restored.shape == (400, 8)
    canon = canonical_cholesky(params).astype(np.float64)
    # Error bounds hold in the coded domain (YCoCg for colour) ...
    coded = to_attributes(restored)
    wanted = to_attributes(params)
    for k, q in enumerate(quantisers):
        step = (q.hi - q.lo) / q.levels
        if q.transform == LINEAR:
            # Slack: float32 dequantisation, and for colour the float32 round trip through
            # RGB, a few ulps of the largest magnitude.
            slack = 16 * F32_EPS * max(abs(q.lo), abs(q.hi), 1.0)
            assert np.abs(coded[:, k] - wanted[:, k]).max() <= step / 2 + slack, ATTRIBUTES[k]
        else:
            rel = np.abs(np.log(restored[:, k].astype(np.float64)) - np.log(canon[:, k]))
            assert rel.max() <= step / 2 + 1e-5, ATTRIBUTES[k]
    # ... and in RGB the error of a channel is at most the sum of the YCoCg errors that
    # feed it (R = Y + Co - Cg, G = Y + Cg, B = Y - Co - Cg), each half a step.
    half = [(q.hi - q.lo) / q.levels / 2 for q in quantisers[5:8]]
    rgb_bound = np.array([sum(half), half[0] + half[2], sum(half)]) + 1e-5
    assert np.all(np.abs(restored[:, 5:8] - params[:, 5:8]).max(axis=0) <= rgb_bound)
    # Quantisation keeps the covariance close too (what the decoder actually renders).
    cov_in = Gaussians(canon, 48, 64).covariance()
    cov_out = Gaussians(restored, 48, 64).covariance()
    assert np.all(np.abs(cov_out - cov_in) <= 0.1 * np.abs(cov_in).max(axis=(1, 2))[:, None,
                                                                                     None])


def test_ycocg_round_trip():
    rng = np.random.default_rng(8)
    rgb = rng.uniform(-0.5, 1.5, (1000, 3)).astype(np.float32)
    ycocg = (rgb.astype(np.float64) @ RGB_TO_YCOCG.T).astype(np.float32)
    back = ycocg_to_rgb(ycocg)
    assert back.dtype == np.float32
    # Three float32 roundings in, two sums out: a few ulps of values below 2 in magnitude.
    np.testing.assert_allclose(back, rgb, rtol=0, atol=8 * F32_EPS * 2)
    # Grey has no chroma: the point of coding Co and Cg with fewer bits.
    grey = np.repeat(rng.uniform(0, 1, (50, 1)), 3, axis=1)
    np.testing.assert_allclose((grey @ RGB_TO_YCOCG.T)[:, 1:], 0, atol=1e-15)


def test_dequantise_rgb_is_version_1_colour():
    # A version-1 file holds R, G, B codes: no colour transform on the way out.
    rng = np.random.default_rng(9)
    quantisers = [Quantiser(b, t, 0.5, 2.0) for b, t in zip(DEFAULT_BITS, TRANSFORM)]
    codes = rng.integers(0, 256, (20, 8)).astype(np.uint32)
    as_rgb = dequantise(quantisers, codes, colour_space="rgb")
    as_ycocg = dequantise(quantisers, codes)
    np.testing.assert_array_equal(as_rgb[:, :5], as_ycocg[:, :5])
    np.testing.assert_array_equal(
        as_rgb[:, 5:8], np.stack([q.dequantise(codes[:, k]) for k, q in
                                  enumerate(quantisers[5:8], start=5)], axis=1))
    np.testing.assert_array_equal(as_ycocg[:, 5:8], ycocg_to_rgb(as_rgb[:, 5:8]))
    with pytest.raises(ValueError, match="colour space"):
        dequantise(quantisers, codes, colour_space="hsv")


def test_canonical_cholesky_preserves_covariance_and_fixes_signs():
    rng = np.random.default_rng(3)
    params = random_params(rng, 300)
    # Every sign combination of (l11, l22) is present.
    signs = {(np.sign(a), np.sign(b)) for a, b in params[:, [2, 4]]}
    assert len(signs) == 4
    before = params.copy()
    canon = canonical_cholesky(params)
    np.testing.assert_array_equal(params, before)  # input untouched: a copy is returned
    assert canon is not params
    assert np.all(canon[:, 2] > 0) and np.all(canon[:, 4] > 0)
    np.testing.assert_array_equal(canon[:, [0, 1, 5, 6, 7]], params[:, [0, 1, 5, 6, 7]])
    np.testing.assert_array_equal(np.abs(canon[:, 2:5]), np.abs(params[:, 2:5]))
    # Sign flips are exact in floating point, so the covariance must match to the last bit
    # of float64 arithmetic on the same magnitudes.
    cov_before = Gaussians(params, 10, 10).covariance()
    cov_after = Gaussians(canon, 10, 10).covariance()
    np.testing.assert_allclose(cov_after, cov_before, rtol=1e-12, atol=0)


def test_canonical_cholesky_on_already_canonical_input_is_identity():
    params = random_params(np.random.default_rng(4), 50)
    params[:, [2, 4]] = np.abs(params[:, [2, 4]])
    np.testing.assert_array_equal(canonical_cholesky(params), params)


@pytest.mark.parametrize("lo, hi", [
    (float("nan"), 1.0), (0.0, float("nan")), (float("-inf"), 1.0), (0.0, float("inf")),
    (float("nan"), float("nan")), (2.0, 1.0)])
@pytest.mark.parametrize("transform", [LINEAR, LOG])
def test_validate_rejects_bad_ranges(lo, hi, transform):
    with pytest.raises(ValueError):
        Quantiser(8, transform, lo, hi).validate()


@pytest.mark.parametrize("q", [Quantiser(17, LINEAR, 0.0, 1.0), Quantiser(0, LINEAR, 0.0, 1.0),
                               Quantiser(8, 2, 0.0, 1.0), Quantiser(8, LOG, 0.0, 81.0),
                               Quantiser(8, LOG, -100.0, -90.0)])
def test_validate_rejects_bad_widths_transforms_and_log_ranges(q):
    with pytest.raises(ValueError):
        q.validate()


def test_validate_accepts_what_fit_quantiser_produces():
    rng = np.random.default_rng(6)
    for bits in range(1, 17):
        for transform in (LINEAR, LOG):
            values = rng.uniform(0.3, 30, 100)
            fit_quantiser(values, bits, transform).validate()  # must not raise
    for bits in (0, 17):
        with pytest.raises(ValueError, match="width"):
            fit_quantiser(rng.uniform(0.3, 30, 100), bits, LINEAR)
    Quantiser(8, LINEAR, 1.0, 1.0).validate()  # degenerate range is legal
