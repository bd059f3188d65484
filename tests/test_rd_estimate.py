"""cgc.image.rd_estimate: the wavelet coder model that judges how hard an image is to code."""
import io

import numpy as np
import pytest
import skimage.data
from PIL import Image, features

from cgc.image import rd_estimate


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skimage.data.astronaut()[:160, :224])


@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (1, 9), (13, 1)])
def test_wavelet_reconstructs_exactly(shape):
    x = np.random.default_rng(3).random(shape)
    bands = rd_estimate.forward_2d(x, levels=3)
    # The lifting steps invert each other up to float64 rounding of a few operations.
    np.testing.assert_allclose(rd_estimate.inverse_2d(bands), x, rtol=0, atol=1e-12)


def test_curves_rise_and_invert_each_other(photo):
    rates = [0.25, 0.5, 1.0, 2.0]
    psnrs = [rd_estimate.psnr_at(photo, bpp) for bpp in rates]
    assert np.all(np.diff(psnrs) > 0), psnrs
    for bpp, quality in zip(rates, psnrs):
        # Both interpolate the same curve between its points: inverse to rounding.
        assert rd_estimate.bpp_at(photo, quality) == pytest.approx(bpp, rel=1e-9)


def test_a_flat_image_is_easy_and_noise_is_hard():
    flat = np.full((128, 128, 3), 117, np.uint8)
    noise = np.random.default_rng(4).integers(0, 256, (128, 128, 3)).astype(np.uint8)
    assert rd_estimate.psnr_at(flat, 0.25) > 45.0
    assert rd_estimate.psnr_at(noise, 0.25) < 15.0
    assert rd_estimate.bpp_at(noise, 31.0) > 4.0


def test_the_estimate_does_not_depend_on_the_array_layout(photo):
    strided = np.asfortranarray(photo)
    assert rd_estimate.psnr_at(strided, 0.5) == rd_estimate.psnr_at(photo, 0.5)


@pytest.mark.skipif(not features.check_codec("jpg_2000"),
                    reason="Pillow built without JPEG 2000 (OpenJPEG) to compare with")
@pytest.mark.parametrize("bpp", [0.3, 1.0])
def test_close_to_pillows_jpeg2000(photo, bpp):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG2000", quality_mode="rates",
                                quality_layers=[24.0 / bpp], irreversible=True, mct=1)
    rate = 8.0 * buffer.tell() / (photo.shape[0] * photo.shape[1])
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), np.float64)
    reference = 10 * np.log10(255.0 ** 2 / np.mean((decoded - photo) ** 2))
    # The model is within 0.25 dB of OpenJPEG on Kodak and 1.1 dB at worst on other photos
    # (docs/tuning.md, "image/rd_estimate.py"); a small crop has relatively more header.
    assert rd_estimate.psnr_at(photo, rate) == pytest.approx(reference, abs=1.0)
