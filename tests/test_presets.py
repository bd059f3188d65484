"""Presets (cgc.encode(preset=), --preset) and the quality scale (quality=, -q)."""
import io
import math

import numpy as np
import pytest
import skimage.data
from PIL import Image

import cgc
from cgc.cli import main
from cgc.image import codec as codec_module
from cgc.image.fit import DEFAULT_ITERATIONS, FINAL_LR_FRACTION
from cgc.image.presets import PRESETS, get_preset, quality_bpp

ITERATIONS = 50  # the end of the learning-rate warm-up


@pytest.fixture(scope="module")
def photo():
    # 48 x 64 of the astronaut's face and helmet edge: texture and edges at a tiny size.
    image = skimage.data.astronaut()[60:108, 180:244]
    assert image.shape == (48, 64, 3)
    return np.ascontiguousarray(image)


class Spy:
    """Records the calls of the encoder's stages, then runs them."""

    def __init__(self, monkeypatch):
        self.calls = []
        for name in ("fit", "prune", "refine_codes", "grow"):
            original = getattr(codec_module, name)
            monkeypatch.setattr(codec_module, name, self._wrap(name, original))

    def _wrap(self, name, original):
        def call(*args, **kwargs):
            self.calls.append((name, kwargs.get("iterations", args[3] if name in (
                "prune", "grow") and len(args) > 3 else None)))
            return original(*args, **kwargs)
        return call

    def names(self):
        return [name for name, _ in self.calls]


def test_the_preset_table():
    assert list(PRESETS) == ["fast", "balanced", "high", "ultra"]
    # Each preset fits longer than the one before it; balanced is the encoder of before
    # presets existed: the default steps, the over-fit, refinement and growth.
    steps = [PRESETS[name].iterations for name in PRESETS]
    assert steps == sorted(steps) and len(set(steps)) == 4
    assert PRESETS["balanced"].iterations == DEFAULT_ITERATIONS == 600
    balanced = PRESETS["balanced"]
    assert balanced.overfit and balanced.refine and balanced.fill
    fast = PRESETS["fast"]
    assert not (fast.overfit or fast.refine or fast.fill)
    # Only the short fit takes larger rates and ends them higher (docs/tuning.md).
    assert dict(fast.lr_scale) == {"cholesky": 1.5, "colour": 1.5}
    assert fast.final_lr_fraction == 0.35
    assert all(PRESETS[name].lr_scale == () and PRESETS[name].final_lr_fraction
               == FINAL_LR_FRACTION for name in ("balanced", "high", "ultra"))
    for bad in ("slow", "FAST", None, 1):
        with pytest.raises(ValueError, match="preset must be one of fast, balanced"):
            get_preset(bad)


def test_fast_skips_the_over_fit_refinement_and_growth(photo, monkeypatch):
    spy = Spy(monkeypatch)
    data = cgc.encode(photo, preset="fast", max_bytes=600, progress=False)
    # One fit of the file's count itself, at the preset's steps; nothing else.
    assert spy.calls == [("fit", PRESETS["fast"].iterations)]
    assert len(data) <= 600


def test_fast_fits_at_its_own_rates(photo):
    # The preset's file is the one made from a fit at its rates, bit for bit.
    fast = PRESETS["fast"]
    data = cgc.encode(photo, preset="fast", n_gaussians=40, progress=False)
    fitted = cgc.fit(photo, 40, iterations=fast.iterations, progress=False,
                     lr_scale=dict(fast.lr_scale), final_lr_fraction=fast.final_lr_fraction)
    assert data == cgc.encode(photo, preset="fast", n_gaussians=40, iterations=0,
                              init=fitted.params, progress=False)
    assert data != cgc.encode(photo, preset="fast", n_gaussians=40, iterations=0,
                              init=cgc.fit(photo, 40, iterations=fast.iterations,
                                           progress=False).params, progress=False)


def test_balanced_is_the_default_and_runs_every_stage(photo, monkeypatch):
    spy = Spy(monkeypatch)
    data = cgc.encode(photo, max_bytes=600, iterations=ITERATIONS, progress=False)
    assert spy.names()[:3] == ["fit", "prune", "refine_codes"]
    assert spy.calls[0][1] == ITERATIONS  # an explicit option wins over the preset's
    assert data == cgc.encode(photo, max_bytes=600, iterations=ITERATIONS,
                              preset="balanced", progress=False)


def test_explicit_options_win_over_the_preset(photo, monkeypatch):
    spy = Spy(monkeypatch)
    cgc.encode(photo, preset="fast", n_gaussians=30, iterations=7, refine=True,
               progress=False)
    assert spy.calls == [("fit", 7), ("refine_codes", None)]
    spy.calls.clear()
    cgc.encode(photo, preset="ultra", n_gaussians=30, iterations=3, refine=False,
               progress=False)
    assert "refine_codes" not in spy.names() and spy.calls[0] == ("fit", 3)


def test_quality_scale_values():
    # The documented mapping, 0.1 * 2 ** (q / 20) bits per pixel, written out.
    for quality, bpp in ((0, 0.1), (20, 0.2), (40, 0.4), (50, 0.1 * 2 ** 2.5), (75, 1.3454),
                         (100, 3.2)):
        assert quality_bpp(quality) == pytest.approx(bpp, rel=1e-4)
    assert quality_bpp(np.float32(60)) == pytest.approx(0.8)
    values = [quality_bpp(q) for q in range(101)]
    assert all(b > a for a, b in zip(values, values[1:]))
    for bad in (-1, 100.5, math.nan, math.inf, True, "50", None):
        with pytest.raises(ValueError, match="quality must be a number from 0 to 100"):
            quality_bpp(bad)


def test_quality_and_bpp_are_byte_budgets(photo):
    pixels = 48 * 64
    by_quality = cgc.encode(photo, quality=60, iterations=ITERATIONS, progress=False)
    # quality 60 is 0.8 bits per pixel: 307 bytes for 48 x 64.
    assert by_quality == cgc.encode(photo, max_bytes=307, iterations=ITERATIONS,
                                    progress=False)
    assert len(by_quality) <= 0.8 * pixels / 8
    assert cgc.encode(photo, bpp=0.8, iterations=ITERATIONS, progress=False) == by_quality


def test_quality_is_monotone_in_size_and_psnr(photo):
    sizes, quality = [], []
    for q in (45, 60, 75, 90):
        data = cgc.encode(photo, quality=q, preset="fast", progress=False)
        sizes.append(len(data))
        quality.append(cgc.metrics.psnr(photo, cgc.decode(data)))
    assert sizes == sorted(sizes) and len(set(sizes)) == 4, sizes
    assert quality == sorted(quality), quality


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "slow"}, "preset must be one of"),
    ({"quality": 101}, "quality must be a number from 0 to 100"),
    ({"quality": "high"}, "quality must be a number"),
    ({"bpp": 0}, "bpp must be positive"), ({"bpp": math.nan}, "bpp must be positive"),
    ({"bpp": 1.0, "max_bytes": 500}, "give one of max_bytes, bpp, quality and psnr"),
    ({"quality": 50, "psnr": 30.0}, "not quality and psnr"),
    ({"quality": 50, "bits": (10, 9, 6, 7, 6, 6, 4, 4)}, "give bits or quality"),
    ({"quality": 0}, "quality=0 is 38 bytes for this 64x48 image, below the smallest"),
])
def test_errors_before_fitting(photo, kwargs, match, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before checking the arguments")

    monkeypatch.setattr(codec_module, "fit", no_fit)
    with pytest.raises(ValueError, match=match):
        cgc.encode(photo, progress=False, **kwargs)


def test_command_line(photo, tmp_path, capsys):
    source = tmp_path / "photo.png"
    Image.fromarray(photo).save(source)
    out = tmp_path / "q.cgc"
    assert main(["encode", str(source), str(out), "-q", "60", "--preset", "fast",
                 "--no-progress"]) == 0
    assert out.read_bytes() == cgc.encode(photo, quality=60, preset="fast", progress=False)
    capsys.readouterr()
    for options, message in ((["-q", "60", "--bpp", "1"], "not allowed with argument"),
                             (["--preset", "slow"], "invalid choice: 'slow'")):
        with pytest.raises(SystemExit) as stop:
            main(["encode", str(source), str(out)] + options)
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_pillow_save_takes_quality_and_preset(photo):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="CGC", quality=60, preset="fast")
    assert buffer.getvalue() == cgc.encode(photo, quality=60, preset="fast", progress=False)
    with pytest.raises(ValueError, match="quality must be a number"):
        Image.fromarray(photo).save(io.BytesIO(), format="CGC", quality=-5)
