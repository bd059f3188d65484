"""cgc.fit: the loop, its diagnostics and determinism."""
import io
import logging

import numpy as np
import pytest
import skimage.data

import cgc
from cgc.backends.cpu import CPUBackend
from cgc.image.fit import (CHECK_EVERY, COARSE_PER_FINE, DEFAULT_LR, MAX_COLOUR_LR,
                     MIN_COARSE_PIXELS_PER_GAUSSIAN, WARMUP_STEPS, FitDiagnosticError,
                     default_coarse_iterations, default_lr, half_resolution)
from cgc.metrics import psnr_of_mse as psnr
from cgc.image.model import Gaussians
from cgc.progress import ProgressBar


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(skimage.data.coffee()[::8, ::8][:40, :48])


def render_psnr(gaussians, image):
    mse = np.mean((gaussians.render() - image / 255.0) ** 2)
    return psnr(mse)


def test_fit_improves_on_its_initialisation(image):
    start = cgc.fit(image, 120, iterations=0, progress=False)
    fitted = cgc.fit(image, 120, iterations=40, progress=False)
    assert len(fitted) == 120 and fitted.params.dtype == np.float32
    assert render_psnr(fitted, image) > render_psnr(start, image) + 1.0


def test_first_step_is_warmed_up(image):
    # Adam's first step moves every parameter by about its full rate; the warm-up scales
    # it to 1 / WARMUP_STEPS of that.
    start = cgc.fit(image, 120, iterations=0, progress=False)
    one = cgc.fit(image, 120, iterations=1, coarse_iterations=0, progress=False)
    moved = np.abs(one.xy - start.xy).max()
    # 1 %: float32 positions of hundreds of pixels round a 0.04 px step by about 1e-3 of it.
    assert 0 < moved <= DEFAULT_LR["position"] / WARMUP_STEPS * 1.01


def test_fit_continues_from_given_parameters(image):
    first = cgc.fit(image, 120, iterations=40, progress=False)
    before = first.params.copy()
    # No steps: the fit hands back where it started, up to the scale clamp, which moves a
    # Gaussian already at a variance bound by an ulp or so when applied again.
    same = cgc.fit(image, 120, iterations=0, init=first.params, progress=False)
    np.testing.assert_allclose(same.params, before, rtol=1e-6, atol=0)
    more = cgc.fit(image, 120, iterations=40, init=first.params, progress=False)
    np.testing.assert_array_equal(first.params, before)  # the start is copied, not written
    assert render_psnr(more, image) > render_psnr(first, image)


def test_fixed_gaussians_are_fitted_around(image):
    """fit(fixed=) fits some Gaussians with others held still: the loss is that of the
    clipped sum, so the moved ones end better than a fit that ignores the held ones."""
    first = cgc.fit(image, 120, iterations=60, progress=False)
    held, moved = first.params[:60], first.params[60:].copy()
    moved[:, :2] += np.random.default_rng(0).normal(0, 2.0, (60, 2)).astype(np.float32)
    height, width = image.shape[:2]
    fixed = Gaussians(held, height, width).render(clip=False)

    def together(params):
        return render_psnr(Gaussians(np.concatenate([held, params]), height, width), image)

    around = cgc.fit(image, 60, iterations=40, init=moved, fixed=fixed, relocation=False,
                     progress=False)
    alone = cgc.fit(image, 60, iterations=40, init=moved, relocation=False, progress=False)
    assert together(around.params) > together(moved) + 1.0
    assert together(around.params) > together(alone.params) + 1.0
    for kwargs, match in [({"fixed": fixed[:-1]}, "shape"), ({"fixed": fixed * np.nan}, "finite"),
                          ({"fixed": fixed, "loss": "ssim"}, "squared-error"),
                          ({"fixed": fixed, "layers": [30, 30]}, "squared-error")]:
        with pytest.raises(ValueError, match=match):
            cgc.fit(image, 60, iterations=1, init=moved, progress=False, **kwargs)
    with pytest.raises(ValueError, match="given"):
        cgc.fit(image, 60, iterations=1, fixed=fixed, progress=False)


def test_deterministic_for_a_seed(image):
    a = cgc.fit(image, 80, iterations=10, seed=3, init="random", progress=False)
    b = cgc.fit(image, 80, iterations=10, seed=3, init="random", progress=False)
    c = cgc.fit(image, 80, iterations=10, seed=4, init="random", progress=False)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_default_colour_rate_follows_density():
    kodak = default_lr(512, 768, 5000)
    assert kodak["position"] == DEFAULT_LR["position"]
    assert kodak["cholesky"] == DEFAULT_LR["cholesky"]
    assert kodak["colour"] == 0.01  # the rate its N=5000 fits were tuned with
    # 14 times the density, 14 times the colour rate; geometry rates unchanged.
    dense = default_lr(512, 768, 70000)
    assert dense["colour"] == pytest.approx(14 * kodak["colour"])
    assert dense["position"] == kodak["position"] and dense["cholesky"] == kodak["cholesky"]
    # Past the densest tested fits the rate stops growing.
    assert default_lr(512, 768, 200000)["colour"] == MAX_COLOUR_LR


def test_explicit_rates_replace_the_defaults(image):
    rates = default_lr(*image.shape[:2], 60)
    # One stage: given rates hold at every resolution, the defaults follow each one's density.
    a = cgc.fit(image, 60, iterations=5, coarse_iterations=0, progress=False)
    b = cgc.fit(image, 60, iterations=5, coarse_iterations=0, lr=rates, progress=False)
    np.testing.assert_array_equal(a.params, b.params)
    c = cgc.fit(image, 60, iterations=5, coarse_iterations=0,
                lr={"colour": rates["colour"] / 4}, progress=False)
    assert not np.array_equal(a.params, c.params)


def test_rate_factors_multiply_the_rates(image):
    rates = default_lr(*image.shape[:2], 60)
    steps = {"iterations": 5, "coarse_iterations": 0, "progress": False}
    # A factor on a group is that group's rate given multiplied: the same fit, bit for bit.
    scaled = cgc.fit(image, 60, lr_scale={"cholesky": 1.5, "colour": 2.0}, **steps)
    given = cgc.fit(image, 60, lr={"cholesky": 1.5 * rates["cholesky"],
                                   "colour": 2.0 * rates["colour"]}, **steps)
    np.testing.assert_array_equal(scaled.params, given.params)
    # A factor of 0 holds the group still (relocation, which moves whole Gaussians, off).
    start = cgc.fit(image, 60, iterations=0, progress=False)
    still = cgc.fit(image, 60, init=start.params, lr_scale={"colour": 0.0}, relocation=False,
                    **steps)
    np.testing.assert_array_equal(still.params[:, 5:], start.params[:, 5:])
    assert not np.array_equal(still.params[:, :5], start.params[:, :5])


def test_final_rate_fraction_ends_the_decay(image):
    steps = {"iterations": 4, "coarse_iterations": 0, "progress": False}
    start = cgc.fit(image, 60, iterations=0, progress=False)
    fits = [cgc.fit(image, 60, init=start.params, final_lr_fraction=fraction, **steps)
            for fraction in (0.05, 0.05, 0.5)]
    np.testing.assert_array_equal(fits[0].params, fits[1].params)
    # Every step after the first is decayed less, so the fit ends elsewhere.
    assert not np.array_equal(fits[0].params, fits[2].params)


def test_scales_stay_within_bounds(image):
    from cgc.image.fit import MIN_VARIANCE

    fitted = cgc.fit(image, 100, iterations=20, progress=False)
    eig = np.linalg.eigvalsh(fitted.covariance())
    # float32 storage of the Cholesky factor: eigenvalues within 1e-5 relative of the bound.
    assert eig.min() >= MIN_VARIANCE * (1 - 1e-5)
    assert eig.max() <= (max(image.shape[:2]) / 3.0) ** 2 * (1 + 1e-5)


def test_non_finite_gradient_names_gaussian_and_parameter(image, monkeypatch):
    original = CPUBackend.render_backward
    calls = []

    def poisoned(self, *args, **kwargs):
        calls.append(1)
        grads = original(self, *args, **kwargs)
        grads[7, 4] = np.nan
        return grads

    monkeypatch.setattr(CPUBackend, "render_backward", poisoned)
    with pytest.raises(FitDiagnosticError, match=r"Gaussian 7, parameter l22"):
        cgc.fit(image, 30, iterations=3, coarse_iterations=0, progress=False)
    # Raised at the last step (3) and, in a longer fit, at step CHECK_EVERY; the calls
    # before the loop (the initialisation's) are the same in both fits.
    before_loop = len(calls) - 3
    calls.clear()
    with pytest.raises(FitDiagnosticError, match=r"gradient for Gaussian 7"):
        cgc.fit(image, 30, iterations=CHECK_EVERY + 5, coarse_iterations=0, log_every=0,
                progress=False)
    assert len(calls) == before_loop + CHECK_EVERY


def test_diagnostics_logged_every_k_iterations(image, caplog):
    with caplog.at_level(logging.INFO, logger="cgc.fit"):
        cgc.fit(image, 40, iterations=9, coarse_iterations=5, log_every=4, progress=False)
    lines = [r.getMessage() for r in caplog.records
             if r.name == "cgc.fit" and "relocated" not in r.getMessage()]
    # Steps 4 and 5 of the coarse stage, then 4, 8 and the last of the full-resolution one.
    assert [line.split(" ", 2)[1 if line.startswith("step") else 2].split()[0]
            for line in lines] == ["4", "5", "4", "8", "9"]
    assert [line.startswith("coarse step") for line in lines] == [True] * 2 + [False] * 3
    for line in lines:
        assert "PSNR" in line and "uncovered" in line and "collapsed" in line


def test_progress_bar_only_when_enabled():
    stream = io.StringIO()
    bar = ProgressBar(5, enabled=True, stream=stream)
    for i in range(1, 6):
        bar.update(i, "x")
    bar.close()
    assert "5/5" in stream.getvalue()
    quiet = io.StringIO()
    bar = ProgressBar(5, enabled=False, stream=quiet)
    bar.update(5)
    bar.close()
    assert quiet.getvalue() == ""


def test_fit_is_silent_when_stderr_is_not_a_tty(image, capsys):
    cgc.fit(image, 20, iterations=2)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kwargs,match", [
    ({"n_gaussians": 0}, "at least 1"),
    ({"n_gaussians": 40 * 48 + 1}, "pixel count"),
    ({"n_gaussians": 5, "iterations": -1}, "non-negative"),
    ({"n_gaussians": 5, "init": "kmeans"}, "init must be"),
    ({"n_gaussians": 5, "init": np.zeros((4, 8))}, "shape"),
    ({"n_gaussians": 5, "init": np.full((5, 8), np.nan)}, "finite"),
    ({"n_gaussians": 5, "lr": {"opacity": 1.0}}, "learning-rate"),
    ({"n_gaussians": 5, "lr_scale": {"opacity": 1.0}}, "lr_scale groups"),
    ({"n_gaussians": 5, "lr_scale": {"colour": -1.0}}, "non-negative"),
    ({"n_gaussians": 5, "lr_scale": {"colour": np.inf}}, "finite"),
    ({"n_gaussians": 5, "final_lr_fraction": 1.5}, "from 0 to 1"),
    ({"n_gaussians": 5, "final_lr_fraction": np.nan}, "from 0 to 1"),
    ({"n_gaussians": 5, "coarse_iterations": -1}, "non-negative"),
    ({"n_gaussians": 5, "coarse_iterations": 3, "init": np.ones((5, 8))}, "name a method"),
    ({"n_gaussians": 20 * 24 + 1, "coarse_iterations": 3}, "half resolution"),
    ({"n_gaussians": 5, "device": "tpu"}, "device"),
])
def test_bad_arguments(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cgc.fit(image, **kwargs)


def test_half_resolution_averages_blocks_and_repeats_an_odd_edge():
    rng = np.random.default_rng(5)
    image = rng.random((5, 7, 3), dtype=np.float32)
    half = half_resolution(image)
    assert half.shape == (3, 4, 3) and half.dtype == np.float32
    for i in range(3):
        for j in range(4):
            rows = [min(2 * i + a, 4) for a in (0, 1)]
            cols = [min(2 * j + b, 6) for b in (0, 1)]
            block = image[np.ix_(rows, cols)].astype(np.float64)
            np.testing.assert_allclose(half[i, j], block.mean(axis=(0, 1)), rtol=1e-6)


def test_doubled_gaussians_render_the_full_resolution_image():
    # A Gaussian fitted at half resolution, doubled, must land where the full-resolution
    # image has it: the 2x2 means of the doubled one's render match the coarse render.
    # Tolerance 1.5 % of the peak (0.8): the mean of samples a quarter coarse pixel either
    # side of a point differs from the value there by about 1 / (16 sigma^2) (0.5 % here,
    # sigma about 3.5 coarse pixels), and the 3-sigma cut-off, met between other pixels at
    # each resolution, by up to exp(-4.5) = 1.1 %.  A coarse grid half a full pixel off
    # would cost 4 %.
    coarse = np.array([[11.3, 9.7, 4.0, 1.2, 3.5, 0.5, 0.3, 0.8]], np.float32)
    full = coarse.copy()
    full[:, :5] *= 2
    small = Gaussians(coarse, 20, 24).render(clip=False)
    large = half_resolution(Gaussians(full, 40, 48).render(clip=False))
    assert np.abs(small - large).max() <= 0.015 * 0.8


def test_coarse_iterations_follow_density_and_fine_iterations():
    # 40x48 is 480 pixels at half resolution; 41x47 would be 21x24.
    assert default_coarse_iterations(40, 48, 480 // MIN_COARSE_PIXELS_PER_GAUSSIAN,
                                     100) == round(COARSE_PER_FINE * 100)
    assert default_coarse_iterations(40, 48, 480 // MIN_COARSE_PIXELS_PER_GAUSSIAN + 1,
                                     100) == 0
    assert default_coarse_iterations(41, 47, 504 // MIN_COARSE_PIXELS_PER_GAUSSIAN,
                                     10) == round(COARSE_PER_FINE * 10)
    assert default_coarse_iterations(41, 47, 1, 0) == 0


def test_coarse_stage_is_a_half_resolution_fit_doubled(image):
    # A variance bound small enough to bind (the default is (48 / 3)^2): a quarter of it
    # at half resolution.
    fitted = cgc.fit(image, 60, iterations=12, coarse_iterations=20, max_variance=6.0,
                     progress=False)
    # 32 pixels per Gaussian at full resolution: both stages relocate, although 8 per
    # Gaussian at half resolution would not on its own.
    coarse = cgc.fit(half_resolution(image / np.float32(255)), 60, iterations=20,
                     max_variance=1.5, relocation=True, progress=False, coarse_iterations=0)
    assert np.linalg.eigvalsh(coarse.covariance()).max() > 1.5 * 0.999
    start = coarse.params.copy()
    start[:, :5] *= 2
    by_hand = cgc.fit(image, 60, iterations=12, init=start, max_variance=6.0, progress=False)
    np.testing.assert_array_equal(fitted.params, by_hand.params)


def test_coarse_stage_improves_the_fit(image):
    fine_only = cgc.fit(image, 60, iterations=40, coarse_iterations=0, progress=False)
    both = cgc.fit(image, 60, iterations=40, coarse_iterations=60, progress=False)
    assert render_psnr(both, image) > render_psnr(fine_only, image) + 0.2


def test_coarse_stage_relocates_when_the_full_resolution_fit_does(image, caplog):
    # 40x48 pixels and 120 Gaussians: 16 pixels each at full resolution, 4 at half.
    with caplog.at_level(logging.INFO, logger="cgc.fit"):
        cgc.fit(image, 120, iterations=12, coarse_iterations=12, log_every=100,
                progress=False)
    moves = [r.getMessage() for r in caplog.records if "relocated" in r.getMessage()]
    assert [m.startswith("coarse step") for m in moves] == [True] * 3 + [False] * 3
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cgc.fit"):
        cgc.fit(image, 121, iterations=12, coarse_iterations=12, log_every=100,
                progress=False)
    assert not [r for r in caplog.records if "relocated" in r.getMessage()]
