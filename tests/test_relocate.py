"""cgc.image.relocate: which Gaussians move, where to, and how the fit applies it (CPU and the
emulated CUDA backend)."""
import importlib
import logging

import numpy as np
import pytest
import skimage.data

import cgc
from cgc.image.relocate import (MIN_PIXELS_PER_GAUSSIAN, RELOCATE_FRACTION, RELOCATE_SIGMA_FACTOR,
                          relocate, relocates_by_default, relocation_steps)
from cuda_emu.providers import PROVIDERS, route_cuda

# The module, which the package's ``fit`` function shadows as an attribute of ``cgc``.
fit_module = importlib.import_module("cgc.image.fit")


def random_params(rng, n, height, width):
    params = np.zeros((n, 8), np.float32)
    params[:, 0] = rng.uniform(0, width, n)
    params[:, 1] = rng.uniform(0, height, n)
    params[:, 2] = params[:, 4] = rng.uniform(1.0, 3.0, n)
    params[:, 5:] = rng.uniform(0.0, 0.5, (n, 3))
    return params


def test_steps_are_the_first_half_of_the_fit_in_sixths():
    assert relocation_steps(600) == [100, 200, 300]
    assert relocation_steps(500) == [83, 167, 250]
    # Too short a fit to relocate before its first step.
    assert relocation_steps(1) == [] and relocation_steps(0) == []


def test_only_sparse_fits_relocate_by_default(monkeypatch):
    # The codec's densities relocate; Kodak's N=70,000 (5.6 pixels each) does not.
    assert relocates_by_default(512, 768, 5000) and not relocates_by_default(512, 768, 70000)
    assert relocates_by_default(16, 16, 256 // MIN_PIXELS_PER_GAUSSIAN)
    assert not relocates_by_default(16, 16, 256 // MIN_PIXELS_PER_GAUSSIAN + 1)
    calls = []  # one stage: the coarse one is tested in test_fit.py
    monkeypatch.setattr(fit_module, "relocation_steps", lambda its: [its])
    monkeypatch.setattr(fit_module, "relocate",
                        lambda *args: calls.append(1) or (np.zeros(0, np.int64),
                                                          np.zeros((0, 8), np.float32)))
    image = np.random.default_rng(3).uniform(0.0, 1.0, (16, 16, 3)).astype(np.float32)
    cgc.fit(image, 17, iterations=2, coarse_iterations=0, progress=False)
    assert calls == []
    cgc.fit(image, 17, iterations=2, coarse_iterations=0, progress=False, relocation=True)
    assert calls == [1]
    cgc.fit(image, 16, iterations=2, coarse_iterations=0, progress=False)
    cgc.fit(image, 16, iterations=2, coarse_iterations=0, progress=False, relocation=False)
    assert calls == [1, 1]


def test_least_active_gaussians_move_into_the_error():
    rng = np.random.default_rng(7)
    height, width, n = 30, 40, 80
    params = random_params(rng, n, height, width)
    activity = rng.permutation(n).astype(np.float64)
    residual = np.zeros((height, width, 3), np.float32)
    # Error only in a 3x2 patch: rows 10-12, columns 20-21, each pixel its own colour.
    patch = rng.uniform(-0.5, 0.5, (3, 2, 3)).astype(np.float32)
    residual[10:13, 20:22] = patch
    moved, rows = relocate(params, residual, activity, rng)

    count = int(RELOCATE_FRACTION * n)
    assert count == 4
    # The four smallest activities are 0, 1, 2, 3.
    assert sorted(activity[moved]) == [0, 1, 2, 3]
    assert rows.dtype == np.float32 and rows.shape == (count, 8)
    col, row = np.floor(rows[:, 0]).astype(int), np.floor(rows[:, 1]).astype(int)
    assert ((row >= 10) & (row <= 12) & (col >= 20) & (col <= 21)).all()
    # Drawn without replacement: four different pixels.
    assert len(set(zip(row, col))) == count
    side = RELOCATE_SIGMA_FACTOR * np.sqrt(height * width / n)
    np.testing.assert_allclose(rows[:, [2, 4]], side, rtol=1e-6)
    assert (rows[:, 3] == 0).all()
    # Each new Gaussian takes the residual of the pixel it lands on.
    np.testing.assert_array_equal(rows[:, 5:], residual[row, col])


def test_nothing_moves_without_finite_error_and_never_more_than_the_error_pixels():
    rng = np.random.default_rng(8)
    params = random_params(rng, 100, 20, 20)
    activity = rng.uniform(size=100)
    moved, rows = relocate(params, np.zeros((20, 20, 3), np.float32), activity, rng)
    assert moved.shape == (0,) and rows.shape == (0, 8)

    residual = np.zeros((20, 20, 3), np.float32)
    residual[1, 1] = np.nan
    moved, rows = relocate(params, residual, activity, rng)
    assert moved.shape == (0,) and rows.shape == (0, 8)

    residual[1, 1] = 0.0
    residual[4, 9] = (0.25, 0.0, 0.0)
    moved, rows = relocate(params, residual, activity, rng, fraction=0.5)
    assert moved.tolist() == [int(np.argmin(activity))]
    assert np.floor(rows[0, :2]).tolist() == [9, 4]


def test_fit_applies_the_chosen_rows_with_fresh_moments(monkeypatch):
    image = np.ascontiguousarray(skimage.data.coffee()[::8, ::8][:40, :48])
    target = image / np.float32(255)
    iterations = 5
    new_row = np.array([[20.5, 10.5, 1.5, 0.0, 1.5, 0.2, -0.1, 0.3]], np.float32)
    seen = []

    def recorder(params, residual, activity, rng):
        shown = np.clip(cgc.Gaussians(params, 40, 48).render(clip=False), 0.0, 1.0)
        seen.append((np.abs(residual - (target - shown)).max(), activity.copy()))
        return np.array([3]), new_row

    monkeypatch.setattr(fit_module, "relocation_steps", lambda its: [its])
    monkeypatch.setattr(fit_module, "relocate", recorder)
    fitted = cgc.fit(image, 50, iterations=iterations, coarse_iterations=0, progress=False)
    assert len(seen) == 1
    # The residual is the target minus what the step rendered, as a decoder shows it
    # (float32 rendering: within a few ulps of 1).
    assert seen[0][0] < 1e-5
    # Activity summed every step's position gradients: all Gaussians in view have some.
    assert (seen[0][1] > 0).mean() > 0.9
    # Zeroed moments and gradient: the moved row takes no Adam step after relocation.
    # The clamp recomputes the Cholesky factor of a valid round Gaussian: float32 rounding.
    np.testing.assert_allclose(fitted.params[3], new_row[0], rtol=1e-6, atol=1e-7)


def test_relocation_changes_the_fit_and_stays_deterministic(caplog):
    image = np.ascontiguousarray(skimage.data.coffee()[::8, ::8][:40, :48])
    kwargs = dict(iterations=12, coarse_iterations=0, seed=2, progress=False)
    with caplog.at_level(logging.INFO, logger="cgc.fit"):
        on = [cgc.fit(image, 60, **kwargs).params for _ in range(2)]
    # Logged for each of the two fits at steps 2, 4 and 6.
    assert [r.getMessage() for r in caplog.records if "relocated" in r.getMessage()] == [
        f"step {s}  relocated 3 Gaussians to the largest errors" for s in (2, 4, 6)] * 2
    off = cgc.fit(image, 60, relocation=False, **kwargs).params
    np.testing.assert_array_equal(on[0], on[1])
    # 5 % of 60 Gaussians, at steps 2, 4 and 6.
    changed = np.flatnonzero(np.any(on[0] != off, axis=1))
    assert len(changed) > 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_relocation_on_cuda_matches_its_rule(provider, monkeypatch):
    """The emulated CUDA fit hands relocate host copies and writes its rows back."""
    route_cuda(monkeypatch, fit_module, provider)
    image = np.random.default_rng(101).uniform(0.0, 1.0, (24, 24, 3)).astype(np.float32)
    new_row = np.array([[12.5, 6.5, 2.0, 0.0, 2.0, 0.1, 0.2, 0.3]], np.float32)
    calls = []

    def recorder(params, residual, activity, rng):
        assert isinstance(params, np.ndarray) and isinstance(residual, np.ndarray)
        assert isinstance(activity, np.ndarray) and activity.shape == (40,)
        calls.append(activity.copy())
        return np.array([5]), new_row

    monkeypatch.setattr(fit_module, "relocation_steps", lambda its: [its])
    monkeypatch.setattr(fit_module, "relocate", recorder)
    fitted = cgc.fit(image, 40, iterations=3, seed=5, init="random", device="cuda",
                     progress=False, relocation=True)
    assert len(calls) == 1 and (calls[0] > 0).any()
    np.testing.assert_allclose(fitted.params[5], new_row[0], rtol=1e-6, atol=1e-7)
