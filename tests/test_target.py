"""cgc.image.rate: the search for the smallest file that reaches a PSNR, on synthetic
budget -> (file, PSNR) curves whose answer is known, and its first budget."""
import math

import numpy as np
import pytest
import skimage.data

from cgc.image import rate as target
from cgc.image import rd_estimate
from cgc.image.rate import MAX_ENCODES, TOLERANCE, first_budget, smallest_passing


LOW, HIGH = 200, 1_000_000


class Curve:
    """An encoder whose file fills ``fill`` of its budget and decodes at
    base + slope * log2(size / 1000) dB (at most ``ceiling``), plus seeded noise."""

    def __init__(self, slope=2.7, base=30.0, ceiling=math.inf, fill=1.0, noise=0.0, seed=0):
        self.slope, self.base, self.ceiling, self.fill = slope, base, ceiling, fill
        self.noise = np.random.default_rng(seed).uniform(-noise, noise, 64) if noise else None
        self.calls = []

    def quality(self, size):
        q = min(self.ceiling, self.base + self.slope * math.log2(size / 1000))
        if self.noise is not None:
            q += self.noise[len(self.calls) % len(self.noise)]
        return q

    def __call__(self, budget):
        assert LOW <= budget <= HIGH and isinstance(budget, int)
        size = max(1, int(self.fill * budget))
        made = (bytes(size), self.quality(size))
        self.calls.append((budget, made[1]))
        return made

    def smallest_size(self, goal):
        """The least file size whose noiseless quality reaches goal."""
        return 1000 * 2 ** ((goal - self.base) / self.slope)


@pytest.mark.parametrize("slope", [1.5, 2.7, 4.0])
@pytest.mark.parametrize("start_share", [1 / 8, 1 / 2, 1.2, 8])
@pytest.mark.parametrize("goal", [32.0, 36.5])
def test_finds_the_smallest_passing_file_on_a_smooth_curve(slope, start_share, goal):
    # Starts up to 8 times off: the Kodak mean curve misses single Kodak images by up to
    # a factor 5.6 (6.7 dB at 2.7 dB per doubling); JPEG 2000's rate by about 1.5.
    curve = Curve(slope=slope)
    best = curve.smallest_size(goal)
    data, quality, encodes = smallest_passing(curve, goal, int(start_share * best), LOW, HIGH)
    assert quality >= goal and quality == curve.quality(len(data))
    # Stopping within TOLERANCE of a failing budget leaves the answer at most that far
    # above the true least size (plus a byte of rounding).
    assert best <= len(data) <= best * (1 + TOLERANCE) + 1, (len(data), best, curve.calls)
    assert encodes == len(curve.calls) <= MAX_ENCODES


@pytest.mark.parametrize("start", [LOW, HIGH])
def test_a_start_far_off_still_ends_with_a_passing_file(start):
    curve = Curve(slope=1.5)
    _, quality, encodes = smallest_passing(curve, 36.0, start, LOW, HIGH)
    assert quality >= 36.0 and encodes <= MAX_ENCODES


def test_returns_the_smallest_passing_file_of_a_noisy_curve():
    for seed in range(20):
        curve = Curve(noise=0.3, seed=seed)
        data, quality, _ = smallest_passing(curve, 33.0, 5000, LOW, HIGH)
        passing = [b for b, q in curve.calls if q >= 33.0]
        assert quality >= 33.0 and len(data) == min(passing)


def test_files_smaller_than_their_budgets():
    # Budgets need not be filled: a passing file stands at its size.
    curve = Curve(fill=0.8)
    data, quality, _ = smallest_passing(curve, 35.0, 4000, LOW, HIGH)
    best = curve.smallest_size(35.0)
    assert quality >= 35.0 and best <= len(data) <= best * (1 + TOLERANCE) / 0.8 + 1


def test_a_target_met_by_the_smallest_budget_stops_there():
    curve = Curve(base=50.0)
    data, quality, encodes = smallest_passing(curve, 30.0, 5000, LOW, HIGH)
    assert len(data) == LOW and curve.calls[-1][0] == LOW and encodes <= MAX_ENCODES


def test_an_unreachable_target_raises_after_bounded_work():
    curve = Curve(ceiling=40.0)
    with pytest.raises(ValueError, match=r"psnr=45 dB not reached.*40\.00 dB"):
        smallest_passing(curve, 45.0, 1000, LOW, 50_000)
    assert len(curve.calls) <= MAX_ENCODES
    assert max(b for b, _ in curve.calls) == 50_000  # it went as far as allowed


def test_never_encodes_more_than_asked():
    curve = Curve(noise=1.0)
    with pytest.raises(ValueError):
        smallest_passing(curve, 90.0, 1000, LOW, HIGH, max_encodes=3)
    assert len(curve.calls) == 3


def test_budgets_stay_in_range_and_never_repeat():
    curve = Curve(noise=0.5, seed=3)
    smallest_passing(curve, 31.0, 10 ** 7, LOW, 20_000)
    budgets = [b for b, _ in curve.calls]
    assert len(set(budgets)) == len(budgets) and budgets[0] == 20_000


def test_empty_range_is_an_error():
    with pytest.raises(ValueError, match="empty budget range"):
        smallest_passing(Curve(), 30.0, 1000, 500, 400)


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skimage.data.astronaut()[:128, :192])


def test_first_budget_follows_the_estimate(photo):
    goals = (26.0, 30.0, 34.0, 38.0)
    budgets = [first_budget(photo, goal) for goal in goals]
    assert budgets == sorted(budgets) and len(set(budgets)) == 4
    # The estimate at the first budget's rate lands on the target: bpp_at and psnr_at
    # interpolate the same curve, and the budget rounds up by less than a byte (0.06 dB
    # covers that byte at the curve's steepest, about 6 dB per doubling here).
    pixels = photo.shape[0] * photo.shape[1]
    for goal, budget in zip(goals, budgets):
        quality = rd_estimate.psnr_at(photo, 8 * budget / pixels)
        assert goal - 1e-9 <= quality < goal + 0.06, (goal, quality)


def test_first_budget_of_an_image_too_large_to_estimate_uses_the_kodak_curve(photo,
                                                                           monkeypatch):
    def estimate(image, psnr):
        raise AssertionError("estimated an image over MAX_PIXELS")

    monkeypatch.setattr(rd_estimate, "bpp_at", estimate)
    monkeypatch.setattr(rd_estimate, "MAX_PIXELS", photo.shape[0] * photo.shape[1] - 1)
    pixels = photo.shape[0] * photo.shape[1]
    # FIRST_PSNR at 1 bpp, and a doubling per SLOPE_DB.
    # (within a byte: 2 ** (SLOPE_DB / SLOPE_DB) is computed in floating point)
    assert abs(first_budget(photo, target.FIRST_PSNR) - pixels // 8) <= 1
    assert abs(first_budget(photo, target.FIRST_PSNR + target.SLOPE_DB) - pixels // 4) <= 1
