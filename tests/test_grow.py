"""cgc.image.grow and the budget filling of cgc.encode: how many Gaussians to add, where they
start, and that the encoder keeps a grown file only within the budget and when better."""
import importlib
import math

import numpy as np
import pytest
import skimage.data

import cgc
from cgc.image.container import unpack
from cgc.image.codec import GROWTH_MARGIN, MAX_GROWTH, TABLE_BYTES, grown_count
from cgc.image.grow import grow
from cgc.image.prune import energy, prune
from cgc.image.relocate import RELOCATE_SIGMA_FACTOR
from test_codec import spy_on_fits

# The module, which the package's ``encode`` function shadows as an attribute of ``cgc``.
codec = importlib.import_module("cgc.image.codec")


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(skimage.data.coffee()[::8, ::8][:40, :48]).astype(
        np.float32) / 255


@pytest.fixture(scope="module")
def fitted(image):
    return cgc.fit(image, 60, iterations=60, seed=0, progress=False)


def test_grown_count():
    # Same bytes per Gaussian beyond the tables' reserve, with a margin.
    expected = int(1000 * GROWTH_MARGIN * (20000 - TABLE_BYTES) / (18000 - TABLE_BYTES))
    assert grown_count(1000, 18000, 20000, 512, 768) == expected > 1000
    # At most MAX_GROWTH times as many, at most one per pixel, never fewer.
    assert grown_count(1000, 5000, 20000, 512, 768) == int(1000 * MAX_GROWTH)
    assert grown_count(1000, 5000, 20000, 30, 40) == 1200
    assert grown_count(1000, 20000, 20000, 512, 768) == 1000


def test_grow_adds_gaussians_where_the_error_is(image, fitted):
    start = grow(fitted, image, 75, iterations=0)
    assert len(start) == 75
    # No steps: the old Gaussians are where they were (up to the scale clamp's ulp).
    np.testing.assert_allclose(start.params[:60], fitted.params, rtol=1e-6, atol=0)
    new = start.params[60:]
    side = RELOCATE_SIGMA_FACTOR * np.sqrt(40 * 48 / 75)
    assert np.allclose(new[:, 2], side) and np.allclose(new[:, 4], side)
    assert np.all(new[:, 3] == 0)
    residual = image - np.clip(fitted.render(), 0, 1)
    rows, cols = new[:, 1].astype(int), new[:, 0].astype(int)
    assert np.all(np.abs(residual[rows, cols]).sum(axis=1) > 0)
    np.testing.assert_allclose(new[:, 5:], residual[rows, cols], rtol=1e-6)
    # Then the continued fit lowers the error of all of them.
    grown = grow(fitted, image, 75, iterations=30)
    assert np.mean((np.clip(grown.render(), 0, 1) - image) ** 2) < np.mean(residual ** 2)


def test_nothing_to_grow(image, fitted):
    assert grow(fitted, image, 60, iterations=10) is None
    assert grow(fitted, image, 40 * 48 + 1, iterations=10) is None
    # No error left anywhere: nowhere to put a new Gaussian.
    exact = np.clip(fitted.render(), 0, 1).astype(np.float32)
    assert grow(fitted, exact, 70, iterations=10) is None


def test_encode_grows_a_file_short_of_its_budget(image, monkeypatch):
    kwargs = dict(iterations=60, seed=0, progress=False, max_bytes=700)
    # A count far below what the budget holds (as a smooth image's would be).
    monkeypatch.setattr(codec, "n_gaussians_for_bytes", lambda max_bytes, height, width: 40)
    plain = cgc.encode(image, fill=False, **kwargs)
    assert len(unpack(plain).codes) == 40 and len(plain) < codec.FILL_SHARE * 700
    filled = cgc.encode(image, **kwargs)
    assert len(filled) <= 700
    assert len(unpack(filled).codes) == grown_count(40, len(plain), 700, 40, 48) > 40
    assert codec._mse(filled, image, "cpu") < codec._mse(plain, image, "cpu")
    # A grown file that decodes worse is not kept.
    monkeypatch.setattr(codec, "_mse", lambda data, image, device: len(data))
    assert cgc.encode(image, **kwargs) == plain


def test_full_files_that_decode_well_and_given_counts_do_not_grow(image, monkeypatch):
    kwargs = dict(iterations=60, seed=0, progress=False, max_bytes=700)
    plain = cgc.encode(image, fill=False, **kwargs)
    assert len(plain) >= codec.FILL_SHARE * 700
    calls = []
    monkeypatch.setattr(codec, "grow", lambda *args, **kw: calls.append(args))
    monkeypatch.setattr(codec, "DETAIL_PSNR", 0.0)
    assert cgc.encode(image, **kwargs) == plain
    monkeypatch.setattr(codec, "FILL_SHARE", 2.0)
    monkeypatch.setattr(codec, "DETAIL_PSNR", 99.0)
    cgc.encode(image, n_gaussians=50, **kwargs)
    assert calls == []


def test_full_files_that_decode_badly_are_fitted_again_with_more_gaussians(image,
                                                                          monkeypatch):
    kwargs = dict(iterations=60, seed=0, progress=False, max_bytes=700)
    plain = cgc.encode(image, fill=False, **kwargs)
    n = len(unpack(plain).codes)
    assert len(plain) >= codec.FILL_SHARE * 700
    psnr = 10 * np.log10(255 ** 2 / codec._mse(plain, image, "cpu"))
    counts = spy_on_fits(monkeypatch)
    monkeypatch.setattr(codec, "grow", lambda *args, **kw: pytest.fail("grew a full file"))
    monkeypatch.setattr(codec, "DETAIL_PSNR", psnr + 0.01)
    refitted = cgc.encode(image, **kwargs)
    assert counts == [n, int(n * codec.DETAIL_COUNT_SHARE)] and counts[1] > n
    assert len(refitted) <= 700
    # Below LOW_RATE_BPP (700 bytes are 2.9 bits per pixel here), the smaller share.
    counts.clear()
    monkeypatch.setattr(codec, "LOW_RATE_BPP", 3.0)
    cgc.encode(image, **kwargs)
    assert counts == [n, int(n * codec.LOW_RATE_DETAIL_COUNT_SHARE)] and counts[1] < int(
        n * codec.DETAIL_COUNT_SHARE)
    monkeypatch.setattr(codec, "LOW_RATE_BPP", 2.9)
    counts.clear()
    cgc.encode(image, **kwargs)
    assert counts[1] == int(n * codec.DETAIL_COUNT_SHARE)
    # Kept only if it decodes better: the new file when it does, else the first one.
    if codec._mse(refitted, image, "cpu") < codec._mse(plain, image, "cpu"):
        assert len(unpack(refitted).codes) == counts[1]
    else:
        assert refitted == plain
    # A new file that decodes worse (by the stubbed error) is not kept.
    monkeypatch.setattr(codec, "_mse", lambda data, image, device: (
        2000.0 if len(unpack(data).codes) > n else 1000.0))
    monkeypatch.setattr(codec, "DETAIL_PSNR", 99.0)
    counts.clear()
    assert cgc.encode(image, **kwargs) == plain and len(counts) == 2
    # Just above the threshold, one fit only.
    monkeypatch.undo()
    counts = spy_on_fits(monkeypatch)
    monkeypatch.setattr(codec, "DETAIL_PSNR", psnr - 0.01)
    assert cgc.encode(image, **kwargs) == plain and counts == [n]


def test_prune_keeps_the_gaussians_with_most_energy(image, fitted):
    start = prune(fitted, image, 45, iterations=0)
    e = energy(fitted.params)
    keep = np.sort(np.argsort(-e, kind="stable")[:45])
    # The fit re-clamps the covariances it starts from: a factor whose eigenvalue sat on the
    # floor by float32 rounding may be written back one ulp away.
    np.testing.assert_allclose(start.params, fitted.params[keep], rtol=1e-6, atol=1e-7)
    assert e[keep].min() >= np.delete(e, keep).max()
    pruned = prune(fitted, image, 45, iterations=30)
    error = [np.mean((np.clip(g.render(), 0, 1) - image) ** 2) for g in (start, pruned)]
    assert error[1] < error[0]
    for bad in (0, 61):
        with pytest.raises(ValueError, match="cannot prune"):
            prune(fitted, image, bad, iterations=1)


def test_energy_is_squared_colour_times_the_root_of_the_area():
    params = np.array([[5, 5, 2.0, 0.7, 3.0, 0.1, 0.2, -0.3],
                       [1, 1, -1.0, 0.0, 0.5, 1.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(energy(params), [0.14 * 6.0 ** 0.5, 1.0 * 0.5 ** 0.5],
                               rtol=1e-6)


def test_the_encoder_prunes_an_over_fit_and_reuses_it(image, monkeypatch):
    made = []
    real_fit = codec.fit

    def recording_fit(img, n_gaussians, **kw):
        made.append(n_gaussians)
        return real_fit(img, n_gaussians, **kw)

    monkeypatch.setattr(codec, "fit", recording_fit)
    fitter = codec._Fitter(image, 20, 0, "cpu", False, "gradient", None)
    first = fitter.fit(50)
    assert made == [math.ceil(codec.OVERFIT_SHARE * 50)] and len(first) == 50
    # The same over-fit serves a count it exceeds within PRUNE_REACH...
    assert len(fitter.fit(46)) == 46 and made == [60]
    # ...a count within REUSE_SHARE of a fit made takes that fit...
    assert fitter.fit(51) is first
    # ...and a count beyond the over-fit's reach gets its own.
    assert len(fitter.fit(40)) == 40 and made == [60, 48]
    assert fitter.fit(40 * 48) is not None and made[-1] == 40 * 48  # one per pixel: no room
