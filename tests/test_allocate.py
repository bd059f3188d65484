"""cgc.image.allocate: the rate-distortion choice of code widths, judged by real encodes: its size
model against the files pack writes, and its choice against other widths by the measured
cost 10 log10(MSE) + SLOPE ln(bytes) of the decoded files."""
import importlib
import math

import numpy as np
import pytest
import skimage.data

from cuda_emu.providers import PROVIDERS, route_cuda
from cgc.image.allocate import SLOPE, _Measurements, allocate
from cgc.image.container import unpack
from cgc.image.codec import decode_gaussians, encode_gaussians
from cgc.image.fit import fit
from cgc.image.loss import Perceptual
from cgc.image.model import Gaussians
from cgc.imageio import to_float_image
from cgc.image.quantize import ATTRIBUTES, DEFAULT_BITS, MAX_BITS

allocate_module = importlib.import_module("cgc.image.allocate")


@pytest.fixture(scope="module")
def image():
    # 48 x 64 crop of the astronaut: face, hair and a flat background.
    return to_float_image(np.ascontiguousarray(skimage.data.astronaut()[40:88, 180:244]))


@pytest.fixture(scope="module")
def fitted(image):
    return fit(image, 200, iterations=150, seed=0, progress=False)



def allocate_bits(*args, **kwargs):
    """The widths alone of ``allocate``."""
    return allocate(*args, **kwargs)[0]

def measured_cost(gaussians, image, bits, slope=SLOPE):
    """The search's objective evaluated on the real file: its bytes and the decoded MSE."""
    data = encode_gaussians(gaussians, bits)
    decoded = np.clip(decode_gaussians(data).render(clip=False), 0, 1)
    mse = float(np.mean((decoded.astype(np.float64) - image) ** 2))
    return 10 * math.log10(mse) + slope * math.log(len(data)), len(data), mse


@pytest.mark.parametrize("bits", [DEFAULT_BITS, (12, 9, 7, 8, 6, 7, 5, 2), (1,) * 8,
                                  (16, 1, 16, 1, 16, 1, 16, 1)])
def test_size_model_is_the_file_size(fitted, image, bits):
    # The search prices widths with the streams pack writes.  The positions stream is the
    # file's own; the others are coded in the order of positions at 16 bits and with their
    # context attribute at its starting width, where the file has its chosen widths: a few
    # bytes apart on these 200 Gaussians (4 of 279 at 1-bit codes, whose contexts differ
    # most), hence 1 % + 8 bytes.  A size model pricing the wrong stream misses by more.
    measurements = _Measurements(fitted, image, "cpu")
    data = encode_gaussians(fitted, bits)
    assert measurements._positions_bytes(bits[0], bits[1]) == (
        unpack(data).stream_sizes["positions"])
    assert abs(measurements.file_bytes(bits) - len(data)) <= 8 + 0.01 * len(data)


def test_sizing_a_file_renders_nothing(fitted, image, monkeypatch):
    measurements = allocate_module._Measurements(fitted, image, "cpu")
    renders = []
    monkeypatch.setattr(measurements, "_distortion", lambda attributes: renders.append(1) or 0.0)
    floor = (1,) * len(ATTRIBUTES)
    assert measurements.file_bytes(floor) > 0
    assert renders == []
    # Weighing a width renders once.
    measurements.increment_of(0, 1)
    measurements.increment_of(0, 1)
    assert renders == [1]


def test_allocation_beats_fixed_and_neighbouring_widths(fitted, image):
    bits = allocate_bits(fitted, image)
    assert len(bits) == len(ATTRIBUTES) and all(1 <= b <= MAX_BITS for b in bits)
    best, _, _ = measured_cost(fitted, image, bits)
    for fixed in (DEFAULT_BITS, (8,) * 8, (6,) * 8, (12, 12, 8, 8, 8, 8, 6, 6)):
        if fixed != bits:
            assert best < measured_cost(fitted, image, fixed)[0], fixed
    # One bit more or less on any attribute is no better (measured here: 0.001 to 0.31 dB
    # worse).  Tolerance 0.05 dB: the search models the MSE as a sum of per-attribute
    # increments, which ignores how the errors of two attributes of one Gaussian interact,
    # so a near-tie may fall either way; a wrong size model or search would miss by more.
    for col in range(len(ATTRIBUTES)):
        for step in (-1, 1):
            other = list(bits)
            other[col] += step
            if 1 <= other[col] <= MAX_BITS:
                assert best <= measured_cost(fitted, image, tuple(other))[0] + 0.05, other


def test_dearer_bytes_give_smaller_files(fitted, image):
    cheap = allocate_bits(fitted, image, slope=SLOPE / 2)
    dear = allocate_bits(fitted, image, slope=SLOPE * 2)
    _, cheap_bytes, cheap_mse = measured_cost(fitted, image, cheap)
    _, dear_bytes, dear_mse = measured_cost(fitted, image, dear)
    assert dear_bytes < cheap_bytes
    assert dear_mse > cheap_mse


def test_max_bytes_caps_the_file_and_spends_spare_bytes(fitted, image):
    free = allocate_bits(fitted, image)
    _, free_bytes, free_mse = measured_cost(fitted, image, free)
    tight_cap = int(free_bytes * 0.8)
    tight = allocate_bits(fitted, image, max_bytes=tight_cap)
    _, tight_bytes, tight_mse = measured_cost(fitted, image, tight)
    assert tight_bytes <= tight_cap and tight_mse > free_mse
    # A budget above the free choice buys precision with the spare bytes.
    loose_cap = int(free_bytes * 1.3)
    loose = allocate_bits(fitted, image, max_bytes=loose_cap)
    _, loose_bytes, loose_mse = measured_cost(fitted, image, loose)
    assert free_bytes < loose_bytes <= loose_cap and loose_mse < free_mse
    # At the floor: 1-bit codes, the smallest file these Gaussians can make.
    smallest = _Measurements(fitted, image, "cpu").file_bytes((1,) * len(ATTRIBUTES))
    assert allocate_bits(fitted, image, max_bytes=smallest) == (1,) * len(ATTRIBUTES)
    with pytest.raises(ValueError, match="at least"):
        allocate_bits(fitted, image, max_bytes=smallest - 1)


def test_deterministic(fitted, image):
    assert allocate_bits(fitted, image) == allocate_bits(fitted, image)


def test_degenerate_single_gaussian():
    # One Gaussian: every quantiser range is a single value, so no width changes anything.
    flat = np.full((9, 11, 3), 0.25, dtype=np.float32)
    gaussians = Gaussians(np.array([[5.5, 4.5, 3, 0, 3, 0.2, 0.3, 0.4]], np.float32), 9, 11)
    bits = allocate_bits(gaussians, flat)
    assert all(1 <= b <= MAX_BITS for b in bits)
    decoded = decode_gaussians(encode_gaussians(gaussians, bits))
    np.testing.assert_allclose(decoded.params, gaussians.params, rtol=1e-6, atol=1e-6)


def test_bad_arguments(fitted, image):
    with pytest.raises(ValueError, match="shape"):
        allocate_bits(fitted, image[:, :-1])
    for slope in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="slope"):
            allocate_bits(fitted, image, slope=slope)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cuda_allocation_matches_cpu(fitted, image, provider, monkeypatch):
    on_cpu = allocate_bits(fitted, image)

    route_cuda(monkeypatch, allocate_module, provider)
    on_cuda = allocate_bits(fitted, image, device="cuda")
    # The CUDA render differs from the CPU one by float32 summation order only (about 1e-7
    # relative), so the choices may differ only where two widths cost the same to within
    # that: compare the measured costs of the two choices, not the choices.
    assert abs(measured_cost(fitted, image, on_cuda)[0]
               - measured_cost(fitted, image, on_cpu)[0]) < 1e-3


def test_budget_is_spent_where_the_search_stops_short():
    # 91 Gaussians for 700 bytes: the bisection's searches stopped at a local optimum of
    # 322 bytes (and, before plateaus were crossed, fell back to 1-bit codes at 6 dB).
    image = np.ascontiguousarray(skimage.data.coffee()[::8, ::8][:40, :48]).astype(
        np.float32) / 255
    gaussians = fit(image, 91, iterations=150, seed=0, progress=False)
    bits = allocate_bits(gaussians, image, max_bytes=700)
    measurements = _Measurements(gaussians, image, "cpu")
    size = measurements.file_bytes(bits)
    assert 0.9 * 700 <= size <= 700
    # No one-step widening that lowers the error still fits.
    for col, width in enumerate(bits):
        higher = measurements._next_width(col, bits, 1)
        if higher is None:
            continue
        wider = list(bits)
        wider[col] = higher
        assert (measurements.file_bytes(wider) > 700
                or measurements.increment_of(col, higher)
                >= measurements.increment_of(col, width))


def test_allocation_weighs_the_tunes_loss(fitted, image):
    # Under tune "ssim" the distortion is the loss the fit minimised, measured on renders:
    # at one budget each choice is at least as good as the other's under its own measure
    # (the squared-error choice loses under the perceptual loss and the other way round).
    budget = _Measurements(fitted, image, "cpu").file_bytes((9, 9, 6, 6, 6, 5, 4, 4))
    psnr_bits = allocate_bits(fitted, image, max_bytes=budget)
    ssim_bits = allocate_bits(fitted, image, max_bytes=budget, loss="ssim")
    by_mse = _Measurements(fitted, image, "cpu")
    by_loss = _Measurements(fitted, image, "cpu", "ssim")
    assert psnr_bits != ssim_bits
    assert by_loss.distortion(ssim_bits) < by_loss.distortion(psnr_bits)
    assert by_mse.distortion(psnr_bits) < by_mse.distortion(ssim_bits)
    rendered = np.clip(fitted.render(clip=False), 0.0, 1.0)
    assert by_loss.base == pytest.approx(Perceptual().value(np, rendered, image), rel=1e-6)
