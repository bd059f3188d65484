"""cgc.encode / cgc.decode end to end on a tiny crop, against the pieces they are built from
(fit, allocate, quantise_gaussians, refine_codes, render, to_uint8)."""
import numpy as np
import pytest
import skimage.data

import cgc
from cgc.image import codec as codec_module
from cgc.image.allocate import _Measurements, allocate
from cgc.image.container import SMALLEST_FILE, STREAM_NAMES, pack, storage_order, unpack
from cgc.image.codec import (BITS_PER_GAUSSIAN, REUSE_SHARE, TABLE_BYTES, decode_gaussians,
                       encode_gaussians, n_gaussians_for_bytes, quantise_gaussians)
from cgc.image.model import Gaussians
from cgc.imageio import to_float_image, to_uint8
from cgc.image.quantize import dequantise
from cgc.image.refine import refine_codes
from cgc.image.rate import MAX_ENCODES, TOLERANCE


N_GAUSSIANS = 60
ITERATIONS = 50  # the end of the learning-rate warm-up


@pytest.fixture(scope="module")
def crop():
    # 40 x 36 crop with an edge and some texture (the astronaut's shoulder patch area).
    image = skimage.data.astronaut()[100:136, 200:240]
    assert image.shape == (36, 40, 3) and image.dtype == np.uint8
    return np.ascontiguousarray(image)


@pytest.fixture(scope="module")
def encoded(crop):
    return cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=ITERATIONS, seed=0,
                      progress=False)



def allocate_bits(*args, **kwargs):
    """The widths alone of ``allocate``."""
    return allocate(*args, **kwargs)[0]

def encoder_fit(image, n_gaussians, iterations=ITERATIONS, seed=0):
    """The fit cgc.encode makes for a count: an over-fit, pruned (codec._Fitter)."""
    return codec_module._Fitter(to_float_image(image), iterations, seed, "cpu", False,
                                "gradient", None).fit(n_gaussians)


@pytest.fixture(scope="module")
def fitted(crop):
    return encoder_fit(crop, N_GAUSSIANS)


@pytest.fixture(scope="module")
def plain_fit(crop):
    """A fit to exercise the packing of given Gaussians with (the budget rules below)."""
    return cgc.fit(crop, N_GAUSSIANS, iterations=ITERATIONS, seed=0, progress=False)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_decode_shape_and_dtype(encoded, crop):
    image = cgc.decode(encoded)
    assert image.dtype == np.uint8
    assert image.shape == crop.shape == (36, 40, 3)


@pytest.fixture(scope="module")
def bits(crop, fitted):
    return allocate_bits(fitted, to_float_image(crop))


def encoder_gaussians(fitted, bits, crop, refine=True):
    """The Gaussians encode should store: quantised (and refined), in the file's order."""
    codes, quantisers, nearest = quantise_gaussians(fitted, bits)
    if not refine:
        return nearest
    refined = refine_codes(codes, quantisers, to_float_image(crop))
    refined = refined[storage_order(refined, bits)]
    return Gaussians(dequantise(quantisers, refined), fitted.height, fitted.width)


def test_file_uses_the_allocated_widths(encoded, bits):
    assert tuple(q.bits for q in unpack(encoded).quantisers) == bits


def test_decoded_gaussians_equal_quantised_fit(encoded, fitted, bits, crop):
    # encode == fit + allocate_bits + quantise_gaussians + refine_codes + pack: the file
    # holds exactly the dequantised Gaussians the encoder saw, bit for bit.
    expected = encoder_gaussians(fitted, bits, crop)
    decoded = decode_gaussians(encoded)
    assert len(decoded) == N_GAUSSIANS
    assert (decoded.height, decoded.width) == (36, 40)
    assert np.array_equal(decoded.params, expected.params)


def test_decoded_image_equals_render_of_quantised_fit(encoded, fitted, bits, crop):
    expected = encoder_gaussians(fitted, bits, crop)
    reference = to_uint8(expected.render())
    assert np.array_equal(cgc.decode(encoded), reference)
    # Quantisation does change the render (else the comparison above proves little about
    # which Gaussians were decoded): the unquantised fit renders differently somewhere.
    assert not np.array_equal(to_uint8(fitted.render()), reference)


def test_same_seed_same_bytes_other_seed_other_bytes(crop, encoded):
    again = cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=ITERATIONS, seed=0,
                       progress=False)
    assert again == encoded
    other = cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=ITERATIONS, seed=1,
                       progress=False)
    assert other != encoded


def test_float_input_matches_uint8_input(crop, encoded):
    # The docstring accepts uint8 or float in [0, 1]; x / 255 in float32 is the same image.
    as_float = crop.astype(np.float32) / np.float32(255)
    assert cgc.encode(as_float, n_gaussians=N_GAUSSIANS, iterations=ITERATIONS, seed=0,
                      progress=False) == encoded


def test_decoded_psnr_beats_flat_mean_colour(encoded, crop):
    decoded = cgc.decode(encoded)
    flat = np.broadcast_to(np.round(crop.reshape(-1, 3).mean(axis=0)), crop.shape)
    baseline = psnr(crop, flat)
    assert psnr(crop, decoded) > baseline + 3.0, (psnr(crop, decoded), baseline)


def test_file_is_smaller_than_its_codes(encoded, bits):
    # The adaptive coder spends more than a code's width only on codes its models call
    # unlikely; over a whole file it must beat the codes written out plainly, plus
    # header (20), quantisers (80), stream lengths (4 each) and CRC (4).
    plain = N_GAUSSIANS * sum(bits) / 8
    assert len(encoded) < 20 + 80 + 4 * len(STREAM_NAMES) + 4 + plain


def test_explicit_widths(crop, fitted):
    widths = (10, 9, 6, 7, 6, 6, 4, 4)
    data = cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=ITERATIONS, seed=0,
                      progress=False, bits=widths)
    assert tuple(q.bits for q in unpack(data).quantisers) == widths
    expected = encoder_gaussians(fitted, widths, crop)
    assert np.array_equal(decode_gaussians(data).params, expected.params)
    for bad in ((10, 9, 6), (0, 9, 6, 7, 6, 6, 4, 4), (10, 9, 6, 7, 6, 6, 4, 17),
                (10, 9, 6, 7, 6, 6, 4, 4.5), (10, 9, 6, 7, 6, 6, 4, True)):
        # Refused before fitting: a fit of 10**9 iterations would otherwise run first.
        with pytest.raises(ValueError, match="width"):
            cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=10**9, progress=False,
                       bits=bad)


def test_refinement_renders_better_than_nearest_codes(crop, fitted, bits, encoded):
    nearest = cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=ITERATIONS, seed=0,
                         progress=False, refine=False)
    # Without refinement the file holds the nearest codes of the fit.
    expected = encoder_gaussians(fitted, bits, crop, refine=False)
    assert np.array_equal(decode_gaussians(nearest).params, expected.params)
    assert nearest != encoded
    assert psnr(crop, cgc.decode(encoded)) > psnr(crop, cgc.decode(nearest))


def test_decode_does_not_depend_on_input_buffer_type(encoded):
    assert np.array_equal(cgc.decode(bytearray(encoded)), cgc.decode(encoded))
    assert np.array_equal(cgc.decode(memoryview(encoded)), cgc.decode(encoded))


def test_max_bytes(crop):
    data = cgc.encode(crop, iterations=ITERATIONS, seed=0, progress=False, max_bytes=500,
                      fill=False)
    assert len(data) <= 500
    packed = unpack(data)
    # The Gaussian count follows from the budget when not given (and, without fill, the
    # file is not made again from more Gaussians).
    # The tables' reserve, then BITS_PER_GAUSSIAN bits per Gaussian.
    assert len(packed.codes) == n_gaussians_for_bytes(500, 36, 40) == 8 * 300 // 44
    fixed_n = cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=ITERATIONS, seed=0,
                         progress=False, max_bytes=500)
    assert len(fixed_n) <= 500 and len(unpack(fixed_n).codes) == N_GAUSSIANS


def _chroma_scrambled(codes, quantisers):
    """The codes with their chroma codes scrambled: the same count, a larger file (the
    narrow chroma streams compress; wider ones of a file this small are stored verbatim)."""
    out = codes.copy()
    rng = np.random.default_rng(9)
    for col in (6, 7):
        out[:, col] = rng.integers(0, quantisers[col].levels + 1, len(out))
    return out


@pytest.fixture
def tight(crop, plain_fit):
    """(image, a budget the nearest codes of the allocation for 500 bytes fill exactly):
    larger codes for the same widths overshoot it."""
    image = to_float_image(crop)
    return image, len(codec_module._encode_fitted(plain_fit, image, None, 500, False, "cpu"))


def _spy_on_allocation(monkeypatch):
    """The budgets _encode_fitted allocates for, and the sizes the allocation predicts."""
    budgets, predicted = [], []

    def allocate_spy(gaussians, img, device, max_bytes, loss):
        budgets.append(max_bytes)
        chosen, size = allocate(gaussians, img, device=device, max_bytes=max_bytes,
                                loss=loss)
        predicted.append(size)
        return chosen, size

    monkeypatch.setattr(codec_module, "allocate", allocate_spy)
    return budgets, predicted


def _spy_on_pack(monkeypatch, padding):
    """Every file _encode_fitted packs, recorded; the k-th (from 1) comes back lengthened
    by padding(k) bytes."""
    packed = []

    def pack_spy(*args):
        packed.append(pack(*args))
        return packed[-1] + bytes(padding(len(packed)))

    monkeypatch.setattr(codec_module, "pack", pack_spy)
    return packed


def test_refined_codes_over_the_budget_are_allocated_again(plain_fit, tight, monkeypatch):
    # Refined codes may code larger than the nearest ones the widths were sized for.  Forced
    # here: the first refinement comes back with its chroma scrambled.  The encoder must
    # allocate again for the predicted size less the overshoot and refine for those widths.
    image, max_bytes = tight
    budgets, predicted = _spy_on_allocation(monkeypatch)
    refinements = []

    def refine_spy(codes, quantisers, img, device):
        refinements.append(refine_codes(codes, quantisers, img, device=device))
        if len(refinements) == 1:
            return _chroma_scrambled(refinements[0], quantisers)
        return refinements[-1]

    monkeypatch.setattr(codec_module, "refine_codes", refine_spy)
    data = codec_module._encode_fitted(plain_fit, image, None, max_bytes, True, "cpu")
    assert len(data) <= max_bytes and len(budgets) == 2
    # The second budget: the first prediction less the first refined file's overshoot.
    _, quantisers, _ = quantise_gaussians(plain_fit, allocate_bits(plain_fit, image,
                                                                max_bytes=max_bytes))
    first = _chroma_scrambled(refinements[0], quantisers)
    overshoot = len(pack(plain_fit.width, plain_fit.height, quantisers, first)) - max_bytes
    assert overshoot > 0 and budgets[1] == min(max_bytes, predicted[0]) - overshoot
    codes, quantisers, _ = quantise_gaussians(plain_fit, allocate_bits(plain_fit, image,
                                                                    max_bytes=budgets[1]))
    expected = refine_codes(codes, quantisers, image)
    bits = [q.bits for q in quantisers]
    assert np.array_equal(unpack(data).codes, expected[storage_order(expected, bits)])


def test_nearest_codes_over_the_budget_are_allocated_again(plain_fit, tight, monkeypatch):
    # The allocation's size model is close to the file, not equal: forced here, the first
    # file of nearest codes comes out 30 bytes over the budget.  The encoder must allocate
    # again for 30 bytes less than the size predicted and keep no file over the budget.
    image, max_bytes = tight
    budgets, predicted = _spy_on_allocation(monkeypatch)
    packed = _spy_on_pack(monkeypatch, lambda k: 30 if k == 1 else 0)
    data = codec_module._encode_fitted(plain_fit, image, None, max_bytes, True, "cpu")
    overshoot = len(packed[0]) + 30 - max_bytes
    assert budgets[:2] == [max_bytes, min(max_bytes, predicted[0]) - overshoot]
    assert len(data) <= max_bytes
    assert data in packed[1:]


def test_widths_that_overshoot_are_not_allocated_again(plain_fit, tight, monkeypatch):
    # The size model under-predicts every file of nearest codes by 40 bytes more than it
    # does (forced by padding).  A budget cut by the overshoot alone can stay above the
    # prediction for the same widths, which are then chosen again (kodim23, 5,087
    # Gaussians at 28,183 bytes: three times, then no file).  Cut from the prediction, the
    # budget excludes widths that overshot, and a file within the budget comes out.
    image, max_bytes = tight
    budgets, predicted = _spy_on_allocation(monkeypatch)
    packed = _spy_on_pack(monkeypatch, lambda k: 40)  # nearest codes only: refine=False
    data = codec_module._encode_fitted(plain_fit, image, None, max_bytes, False, "cpu")
    assert len(data) <= max_bytes and len(budgets) >= 2
    for k in range(len(budgets) - 1):
        assert budgets[k + 1] == min(budgets[k], predicted[k]) - (len(packed[k]) + 40
                                                                  - max_bytes)
        assert budgets[k + 1] < predicted[k]


def test_refined_codes_always_over_the_budget_keep_the_nearest(plain_fit, tight, monkeypatch):
    # Every refined file too long, by 60 bytes more at every try (padding added where they
    # are packed): after ALLOCATION_TRIES allocations, each for the last predicted size (or
    # budget) less the last overshoot, the nearest codes of the first are the file.
    image, max_bytes = tight
    budgets, predicted = _spy_on_allocation(monkeypatch)
    # _encode_fitted packs the nearest codes, then the refined ones, at every try.
    packed = _spy_on_pack(monkeypatch, lambda k: 60 * (k // 2) if k % 2 == 0 else 0)
    data = codec_module._encode_fitted(plain_fit, image, None, max_bytes, True, "cpu")
    codes, _, _ = quantise_gaussians(plain_fit, allocate_bits(plain_fit, image,
                                                           max_bytes=max_bytes))
    assert data == packed[0] and len(data) <= max_bytes
    assert np.array_equal(unpack(data).codes, codes)
    assert len(budgets) == codec_module.ALLOCATION_TRIES
    for k, budget in enumerate(budgets[1:]):
        overshoot = len(packed[2 * k + 1]) + 60 * (k + 1) - max_bytes
        assert budget == min(budgets[k], predicted[k]) - overshoot


def test_refinement_growth_beyond_the_slack_is_made_room_for(crop, plain_fit, monkeypatch):
    # The nearest codes leave some slack under the budget, and refinement adds more than
    # that (forced: every refined file comes back 25 bytes longer than its nearest file
    # plus the first slack).  A budget smaller by the overshoot alone can give the same
    # widths again and again (kodim15, see _encode_fitted); the next budget must leave the
    # nearest codes room for the growth: the predicted size less the overshoot.
    image = to_float_image(crop)
    max_bytes = 575  # the nearest codes of the widths allocated for it take 569 bytes
    codes, quantisers, _ = quantise_gaussians(plain_fit, allocate_bits(plain_fit, image,
                                                                    max_bytes=max_bytes))
    slack = max_bytes - len(pack(plain_fit.width, plain_fit.height, quantisers, codes))
    assert slack > 0  # the case under test
    growth = slack + 25
    budgets, predicted = _spy_on_allocation(monkeypatch)

    def padding(k):  # the k-th file packed: nearest codes when odd, refined when even
        return len(packed[k - 2]) + growth - len(packed[k - 1]) if k % 2 == 0 else 0

    packed = _spy_on_pack(monkeypatch, padding)
    data = codec_module._encode_fitted(plain_fit, image, None, max_bytes, True, "cpu")
    overshoot = len(packed[0]) + growth - max_bytes
    assert budgets[:2] == [max_bytes, min(max_bytes, predicted[0]) - overshoot]
    # Allocated for that budget, the nearest codes leave room for the growth.
    assert len(budgets) == 2 and data == packed[3] + bytes(padding(4))
    assert len(data) == len(packed[2]) + growth <= max_bytes


def test_gaussian_count_for_a_budget():
    # Large budgets: the tables' reserve, then BITS_PER_GAUSSIAN bits per Gaussian.
    for budget in (12288, 49152):
        expected = 8 * (budget - TABLE_BYTES) // BITS_PER_GAUSSIAN
        assert n_gaussians_for_bytes(budget, 512, 768) == expected
    # Never more than one per pixel, never fewer than one.
    assert n_gaussians_for_bytes(10**9, 20, 30) == 600
    assert n_gaussians_for_bytes(1, 20, 30) == n_gaussians_for_bytes(TABLE_BYTES, 20, 30) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"max_bytes": 0}, "positive"), ({"max_bytes": -5}, "positive"),
    ({"max_bytes": 2.5}, "positive"), ({"max_bytes": True}, "positive"),
    ({"max_bytes": 500, "bits": (10, 9, 6, 7, 6, 6, 4, 4)}, "not both"),
    ({"max_bytes": SMALLEST_FILE - 1}, "smallest"),
])
def test_max_bytes_errors_before_fitting(crop, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=10**9, progress=False, **kwargs)


def test_max_bytes_too_small_for_the_gaussians(crop):
    # The allocator's size model gives the least the 60 Gaussians of this fit can take
    # (1-bit codes: the tables and about 8 bytes per stream); a budget one byte below it
    # must be refused, and the error must name that size.  Derived, not a constant, so a
    # better coder moves both together.
    iterations = 5
    fit = encoder_fit(crop, N_GAUSSIANS, iterations=iterations)  # the fit encode makes
    image = to_float_image(crop)
    smallest = _Measurements(fit, image, "cpu").file_bytes((1,) * 8)
    # Above the format's smallest file: the refusal comes from the allocator, not from the
    # check of max_bytes before fitting.
    assert smallest - 1 >= SMALLEST_FILE
    with pytest.raises(ValueError, match=f"{N_GAUSSIANS} Gaussians need at least {smallest} "
                                         f"bytes"):
        cgc.encode(crop, n_gaussians=N_GAUSSIANS, iterations=iterations, progress=False,
                   max_bytes=smallest - 1)
    # At that size exactly the allocator finds widths, and its model says they fit.
    _, predicted = allocate(fit, image, max_bytes=smallest)
    assert predicted <= smallest


def test_the_smallest_file_and_budgets_near_it(crop):
    # One Gaussian with 1-bit codes makes the smallest file there is.
    smallest = encode_gaussians(Gaussians(np.array([[0.5, 0.5, 1, 0, 1, 0.5, 0.5, 0.5]],
                                                   np.float32), 1, 1), (1,) * 8)
    assert len(smallest) == SMALLEST_FILE
    # Budgets from it up: the count the budget derives fits, every file within it.
    for budget in (SMALLEST_FILE, SMALLEST_FILE + 10, 190, 230, 300):
        data = cgc.encode(crop, iterations=5, progress=False, max_bytes=budget)
        assert len(data) <= budget


@pytest.mark.parametrize("image, n, match", [
    (np.zeros((8, 8, 3), np.uint8), 0, "at least 1"),
    (np.zeros((8, 8, 3), np.uint8), -3, "at least 1"),
    (np.zeros((8, 8, 3), np.uint8), 65, "pixel count"),
    (np.zeros((0, 5, 3), np.uint8), 1, "empty"),
    (np.zeros((5, 0, 3), np.uint8), 1, "empty"),
    (np.zeros((8,), np.uint8), 1, None),
    (np.zeros((4, 4, 3, 2), np.uint8), 1, None),
    (np.zeros((4, 4, 2), np.uint8), 1, None),
    (np.full((4, 4, 3), np.nan, np.float32), 1, "NaN"),
    (np.where(np.eye(4)[:, :, None] > 0, np.inf, 0.5).repeat(3, axis=2), 1, None),
])
def test_encode_rejects_bad_arguments(image, n, match):
    with pytest.raises(ValueError, match=match):
        cgc.encode(image, n_gaussians=n, iterations=1, progress=False)


def test_encode_rejects_single_nan_pixel():
    image = np.full((6, 6, 3), 0.5, dtype=np.float32)
    image[2, 3, 1] = np.nan
    with pytest.raises(ValueError):
        cgc.encode(image, n_gaussians=4, iterations=1, progress=False)


@pytest.mark.parametrize("iterations", [600, 1200])
def test_a_one_pixel_image_survives_long_fits(iterations):
    # 600 is the default.  With a clipped pixel's gradient masked, the red of this pixel
    # overshot to 255 and stayed there; with centres free to leave the image, the one
    # Gaussian wandered off and the file decoded black.
    image = np.array([[[200, 40, 90]]], np.uint8)
    decoded = cgc.decode(cgc.encode(image, n_gaussians=1, iterations=iterations,
                                    progress=False))
    assert np.abs(decoded.astype(int) - image).max() <= 2, decoded


@pytest.mark.parametrize("shape", [(1, 64), (64, 1), (1, 1)])
def test_images_one_pixel_wide_or_high(shape):
    # The gradient initialisation has no neighbour along a side of one pixel: it must take
    # the gradient there as 0, not fail.  Opposite ramps in red and green along the long
    # side (one colour on 1x1), 8 Gaussians: within 3 levels on average (measured 0.45 and
    # 0.32 of the 43 the mean colour is off; 1x1 exact), where a fit gone wrong is tens off.
    length = max(shape)
    ramp = np.linspace(0, 255, length).reshape(shape)
    image = np.stack([ramp, 255 - ramp, np.full(shape, 90.0)], axis=-1).astype(np.uint8)
    if length == 1:
        image[...] = (200, 40, 90)
    data = cgc.encode(image, n_gaussians=min(8, length), iterations=100, seed=0,
                      progress=False)
    decoded = cgc.decode(data)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(float) - image).mean() < 3.0


PSNR_TARGET = 28.0  # the crop's files span 12 to 32 dB between 167 and 1,640 bytes


def _spy_on_search(patch):
    """Every (budget, file, PSNR) that the quality-target search of cgc.codec makes."""
    made = []
    real = codec_module.smallest_passing

    def recording(encode_at, *args, **kwargs):
        def encode_and_record(budget):
            data, quality = encode_at(budget)
            made.append((budget, data, quality))
            return data, quality
        return real(encode_and_record, *args, **kwargs)

    patch.setattr(codec_module, "smallest_passing", recording)
    return made


@pytest.fixture(scope="module")
def psnr_search(crop):
    """A quality-target encode of the crop, with every file its search made."""
    with pytest.MonkeyPatch.context() as patch:
        made = _spy_on_search(patch)
        data = cgc.encode(crop, psnr=PSNR_TARGET, iterations=ITERATIONS, seed=0,
                          progress=False)
    return data, made


def test_psnr_target_is_reached_by_the_smallest_file_made(psnr_search, crop):
    data, made = psnr_search
    assert psnr(crop, cgc.decode(data)) >= PSNR_TARGET
    passing = [d for _, d, quality in made if quality >= PSNR_TARGET]
    assert data in passing and len(data) == min(map(len, passing))
    # Each file's PSNR is the decoded file's, as the caller measures it.
    for _, d, quality in made:
        assert quality == pytest.approx(psnr(crop, cgc.decode(d)), abs=1e-9)


def test_psnr_search_ends_next_to_a_failing_budget(psnr_search):
    data, made = psnr_search
    failing = [budget for budget, _, quality in made if quality < PSNR_TARGET]
    assert len(made) <= MAX_ENCODES
    assert any(len(data) <= budget * (1 + TOLERANCE) for budget in failing), made


def test_psnr_search_fits_each_count_once(crop, monkeypatch):
    counts = spy_on_fits(monkeypatch)
    cgc.encode(crop, psnr=PSNR_TARGET, iterations=ITERATIONS, seed=0, progress=False)
    # No fit within REUSE_SHARE of an earlier one: that one was used again.
    for k, count in enumerate(counts):
        assert all(abs(count - earlier) > REUSE_SHARE * count for earlier in counts[:k])


def test_unreachable_psnr_target(crop):
    with pytest.raises(ValueError, match="psnr=99 dB not reached"):
        cgc.encode(crop, psnr=99.0, iterations=ITERATIONS, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"psnr": 0}, "positive"), ({"psnr": -20.0}, "positive"),
    ({"psnr": float("nan")}, "positive"), ({"psnr": float("inf")}, "positive"),
    ({"psnr": True}, "positive"), ({"psnr": "30"}, "positive"),
    ({"psnr": 30.0, "n_gaussians": 10}, "give psnr or n_gaussians"),
    ({"psnr": 30.0, "max_bytes": 500}, "not max_bytes and psnr"),
    ({"psnr": 30.0, "bits": (10, 9, 6, 7, 6, 6, 4, 4)}, "give psnr or bits"),
])
def test_psnr_errors_before_fitting(crop, kwargs, match, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before checking the arguments")

    monkeypatch.setattr(codec_module, "fit", no_fit)
    with pytest.raises(ValueError, match=match):
        cgc.encode(crop, iterations=ITERATIONS, progress=False, **kwargs)


@pytest.fixture(scope="module")
def textured():
    """256 x 256 (PROBE_MIN_PIXELS): JPEG 2000 decodes it at 29.5 dB at 0.3 bpp."""
    return np.ascontiguousarray(skimage.data.astronaut()[:256, :256])


def spy_on_fits(monkeypatch):
    """The counts the encoder makes a fit for (not those it takes an earlier fit for)."""
    counts = []
    real = codec_module._Fitter.fit

    def counting(self, n_gaussians):
        made = len(self.made)
        gaussians = real(self, n_gaussians)
        if len(self.made) > made:
            counts.append(n_gaussians)
        return gaussians

    monkeypatch.setattr(codec_module._Fitter, "fit", counting)
    return counts


PROBE_BUDGET = 2457  # 0.3 bpp on 256 x 256


def test_a_clearly_detailed_image_is_fitted_at_the_detail_count_at_once(textured,
                                                                          monkeypatch):
    counts = spy_on_fits(monkeypatch)
    data = cgc.encode(textured, iterations=ITERATIONS, progress=False, max_bytes=PROBE_BUDGET)
    n = n_gaussians_for_bytes(PROBE_BUDGET, 256, 256)
    detail = int(n * codec_module.LOW_RATE_DETAIL_COUNT_SHARE)  # 0.3 bpp: a low rate
    assert counts == [detail] and detail > n
    fitted = encoder_fit(textured, detail)
    assert data == codec_module._encode_fitted(fitted, to_float_image(textured), None,
                                               PROBE_BUDGET, True, "cpu")


def test_where_the_estimate_says_smooth_the_budget_count_is_fitted_first(textured,
                                                                          monkeypatch):
    # An estimate that reaches any PSNR at no rate: the image is judged smooth.
    monkeypatch.setattr(codec_module.rd_estimate, "bpp_at", lambda image, psnr: 0.0)
    counts = spy_on_fits(monkeypatch)
    cgc.encode(textured, iterations=ITERATIONS, progress=False, max_bytes=PROBE_BUDGET)
    n = n_gaussians_for_bytes(PROBE_BUDGET, 256, 256)
    # The first file decodes below DETAIL_PSNR: the detail count is fitted after it.
    assert counts == [n, int(n * codec_module.LOW_RATE_DETAIL_COUNT_SHARE)]


def test_a_smooth_image_is_fitted_at_the_budget_count(monkeypatch):
    y, x = np.mgrid[0:256, 0:256]
    ramp = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.uint8)  # a wavelet coder's ~70 dB
    counts = spy_on_fits(monkeypatch)
    cgc.encode(ramp, iterations=ITERATIONS, progress=False, max_bytes=PROBE_BUDGET)
    assert counts[0] == n_gaussians_for_bytes(PROBE_BUDGET, 256, 256)


def test_images_below_the_probe_size_are_not_probed(crop, monkeypatch):
    def probe(image, psnr):
        raise AssertionError("probed a small image")

    monkeypatch.setattr(codec_module.rd_estimate, "bpp_at", probe)
    counts = spy_on_fits(monkeypatch)
    cgc.encode(crop, iterations=ITERATIONS, progress=False, max_bytes=300)
    assert counts[0] == n_gaussians_for_bytes(300, 36, 40)


def test_images_above_the_estimates_size_are_not_probed(textured, monkeypatch):
    def probe(image, psnr):
        raise AssertionError("probed an image too large to estimate")

    monkeypatch.setattr(codec_module.rd_estimate, "bpp_at", probe)
    monkeypatch.setattr(codec_module.rd_estimate, "MAX_PIXELS", 256 * 256 - 1)
    counts = spy_on_fits(monkeypatch)
    cgc.encode(textured, iterations=ITERATIONS, progress=False, max_bytes=PROBE_BUDGET)
    assert counts[0] == n_gaussians_for_bytes(PROBE_BUDGET, 256, 256)


def test_a_fit_too_short_to_grow_is_not_made_again(textured, monkeypatch):
    # One step: a third of it rounds to no growth steps, and no fit is made twice or at
    # another count than the budget's, probe or not.
    counts = spy_on_fits(monkeypatch)
    cgc.encode(textured, iterations=1, progress=False, max_bytes=PROBE_BUDGET)
    assert counts == [n_gaussians_for_bytes(PROBE_BUDGET, 256, 256)]


@pytest.mark.parametrize("detailed", [True, False])
def test_a_caller_that_knows_overrides_the_probe(textured, monkeypatch, detailed):
    def probe(image, psnr):
        raise AssertionError("probed although the caller knew")

    monkeypatch.setattr(codec_module.rd_estimate, "bpp_at", probe)
    counts = spy_on_fits(monkeypatch)
    fitter = codec_module._Fitter(to_float_image(textured), ITERATIONS, 0, "cpu", False,
                                  "gradient", None)
    n = n_gaussians_for_bytes(PROBE_BUDGET, 256, 256)
    data, mse = codec_module._encode_count(to_float_image(textured), n, fitter, None,
                                           PROBE_BUDGET, True, True, detailed=detailed)
    detail = int(n * codec_module.LOW_RATE_DETAIL_COUNT_SHARE)
    # Not detailed: the budget count first, then (its file decodes below DETAIL_PSNR) the
    # detail count, as without the probe.
    assert counts == ([detail] if detailed else [n, detail])
    # The MSE returned is the returned file's, measured where the files were compared.
    if detailed:
        assert mse is None
    else:
        decoded = cgc.decode(data).astype(np.float64)
        # Against the 8-bit original; the codec's float image is textured / 255 in float32.
        assert mse == pytest.approx(np.mean((decoded - textured) ** 2), rel=1e-6)


def test_a_psnr_search_probes_only_for_its_first_encode(textured, monkeypatch):
    probed = []
    real = codec_module._clearly_detailed

    def probe(image, max_bytes):
        probed.append(max_bytes)
        return real(image, max_bytes)

    monkeypatch.setattr(codec_module, "_clearly_detailed", probe)
    made = _spy_on_search(monkeypatch)
    cgc.encode(textured, psnr=27.0, iterations=ITERATIONS, progress=False)
    # Later budgets are judged from the files already made (SLOPE_DB per doubling).
    assert len(made) > 1 and probed == [made[0][0]]
