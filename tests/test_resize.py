"""Rendering at another size: cgc.Gaussians.resized, cgc.decode(scale=, size=) and the CLI's
decode --scale / --size."""
import numpy as np
import pytest
import skimage.data
from PIL import Image

import cgc
from cgc.cli import main
from cgc.image.fit import half_resolution
from cgc.image.model import Gaussians, scaled_size

H, W = 48, 64


def random_gaussians(rng, n, height, width, min_sigma, max_sigma):
    p = np.zeros((n, 8), np.float32)
    p[:, 0] = rng.uniform(0, width, n)
    p[:, 1] = rng.uniform(0, height, n)
    p[:, 2] = rng.uniform(min_sigma, max_sigma, n)
    p[:, 3] = rng.uniform(-0.5, 0.5, n) * min_sigma
    p[:, 4] = rng.uniform(min_sigma, max_sigma, n)
    p[:, 5:] = rng.uniform(-0.1, 0.4, (n, 3))
    return Gaussians(p, height, width)


def model_at(params, xs, ys):
    """The continuous model sum_g colour_g exp(-q_g / 2) (q <= 9) at points (xs, ys) of the
    input grid, in float64, and a mask of the points that lie within 1e-3 of some Gaussian's
    cut-off q = 9, where float32 rounding may decide whether they are inside it."""
    p = params.astype(np.float64)
    out = np.zeros(xs.shape + (3,))
    on_cutoff = np.zeros(xs.shape, bool)
    for x, y, l11, l21, l22, r, g, b in p:
        u = (xs - x) / l11
        v = (ys - y - l21 * u) / l22
        q = u * u + v * v
        on_cutoff |= np.abs(q - 9.0) < 1e-3
        w = np.where(q <= 9.0, np.exp(-0.5 * q), 0.0)
        out += w[..., None] * np.array([r, g, b])
    return out, on_cutoff


@pytest.mark.parametrize("height, width", [(96, 96), (72, 128), (48, 64)])
def test_enlarged_render_samples_the_model(height, width):
    # Enlarging adds no filter: output pixel (i, j) is the model at ((j + 0.5) / sx,
    # (i + 0.5) / sy) of the input grid, a different factor on each axis included.
    rng = np.random.default_rng(1)
    g = random_gaussians(rng, 40, H, W, 1.0, 6.0)
    out = g.resized(height, width).render(clip=False)
    assert out.shape == (height, width, 3)
    jj, ii = np.meshgrid(np.arange(width), np.arange(height))
    ref, on_cutoff = model_at(g.params, (jj + 0.5) * W / width, (ii + 0.5) * H / height)
    assert on_cutoff.mean() < 0.01
    # float32 parameters and render: a few ulps of colour sums of at most ~1.5.
    np.testing.assert_allclose(out[~on_cutoff], ref[~on_cutoff], rtol=0, atol=1e-5)


def test_same_size_is_the_same_model():
    g = random_gaussians(np.random.default_rng(2), 30, H, W, 0.5, 5.0)
    same = g.resized(H, W)
    assert np.array_equal(same.params, g.params) and same.params is not g.params


def test_reduced_covariance_and_colour():
    # Reduced axes widen by (1 - s**2) / 12 output pixels**2; the colour keeps each
    # Gaussian's integral, colour * 2 pi sqrt(det cov), at the new scale.
    g = random_gaussians(np.random.default_rng(3), 50, H, W, 0.3, 5.0)
    sx, sy = 16 / W, 36 / H  # a quarter across, three quarters down
    small = g.resized(36, 16)
    scale = np.diag([sx, sy])
    expected = scale @ g.covariance() @ scale + np.diag([(1 - sx**2) / 12, (1 - sy**2) / 12])
    # Float32 parameters: the covariances to ~1e-6 relative.
    np.testing.assert_allclose(small.covariance(), expected, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(small.xy, g.xy * [sx, sy], rtol=1e-6)
    mass = g.colour * np.sqrt(np.linalg.det(g.covariance()))[:, None] * sx * sy
    mass_small = small.colour * np.sqrt(np.linalg.det(small.covariance()))[:, None]
    np.testing.assert_allclose(mass_small, mass, rtol=2e-5, atol=1e-8)


@pytest.mark.parametrize("factor", [2, 4])
def test_reduced_render_is_the_block_mean(factor):
    # Against the mean of each factor x factor block of the full render, the widened
    # Gaussians must do much better than the same Gaussians merely scaled (point samples,
    # which alias small Gaussians): 4.8x and 5.9x lower RMS error when written; 3x is the
    # bar.  Sums agree to 1 % (0.3 % when written: the cut-off's tails and the borders).
    g = random_gaussians(np.random.default_rng(4), 300, H, W, 0.4, 4.0)
    full = g.render(clip=False)
    block_mean = full.reshape(H // factor, factor, W // factor, factor, 3).mean(axis=(1, 3))
    reduced = g.resized(H // factor, W // factor).render(clip=False)
    point = g.params.copy()
    point[:, :5] /= factor
    sampled = Gaussians(point, H // factor, W // factor).render(clip=False)
    rms = np.sqrt(np.mean((reduced - block_mean) ** 2))
    rms_sampled = np.sqrt(np.mean((sampled - block_mean) ** 2))
    assert rms * 3 < rms_sampled, (rms, rms_sampled)
    assert abs(reduced.sum() / block_mean.sum() - 1) < 0.01


def test_half_size_render_matches_half_resolution_of_a_smooth_model():
    # Gaussians of 2 pixels and more: their half-size render is the 2x2 mean of the full one
    # to 1 % of the peak (0.67 % when written).  The widening has the variance of the 2x2
    # mean, so their second-order terms cancel; what is left is higher-order terms and the
    # cut-off's tails.
    g = random_gaussians(np.random.default_rng(5), 60, H, W, 2.0, 6.0)
    full = g.render(clip=False)
    half = g.resized(H // 2, W // 2).render(clip=False)
    assert np.abs(half - half_resolution(full)).max() < 0.01 * np.abs(full).max()


@pytest.mark.parametrize("scale, shape", [(0.5, (18, 20)), (2, (72, 80)), (0.3, (11, 12)),
                                          (1e-3, (1, 1))])
def test_scaled_size(scale, shape):
    assert scaled_size(36, 40, scale) == shape


@pytest.fixture(scope="module")
def crop():
    image = np.ascontiguousarray(skimage.data.astronaut()[100:164, 200:264])
    return image


@pytest.fixture(scope="module")
def encoded(crop):
    return cgc.encode(crop, n_gaussians=120, iterations=100, seed=0, progress=False)


def test_decode_scale_and_size(encoded, crop):
    full = cgc.decode(encoded)
    assert np.array_equal(cgc.decode(encoded, scale=1), full)
    assert np.array_equal(cgc.decode(encoded, size=(64, 64)), full)
    half = cgc.decode(encoded, scale=0.5)
    assert half.shape == (32, 32, 3) and half.dtype == np.uint8
    # The half-size decode is the full decode's 2x2 means up to rounding and the sampling
    # terms: within 2 levels RMS (0.98 when written).
    means = 255 * half_resolution(full.astype(np.float32) / 255)
    assert np.sqrt(np.mean((half - means) ** 2)) < 2
    wide = cgc.decode(encoded, size=(40, 100))
    assert wide.shape == (40, 100, 3)
    np.testing.assert_array_equal(cgc.decode(encoded, size=np.array([40, 100])), wide)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale=0), "scale"), (dict(scale=-1), "scale"), (dict(scale=float("nan")), "scale"),
    (dict(scale=float("inf")), "scale"), (dict(scale=True), "scale"), (dict(scale="2"), "scale"),
    (dict(scale=1e9), "out of range"), (dict(size=(0, 5)), "out of range"),
    (dict(size=(1 << 15, 1 << 15)), "out of range"), (dict(size=(10.5, 4)), "integers"),
    (dict(size=(4, 4, 4)), r"\(height, width\)"), (dict(size="44"), r"\(height, width\)"),
    (dict(size=4), r"\(height, width\)"), (dict(scale=2, size=(4, 4)), "not both"),
])
def test_decode_rejects_bad_sizes(encoded, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cgc.decode(encoded, **kwargs)


def test_cli_decode_scale_and_size(encoded, tmp_path):
    path = tmp_path / "in.cgc"
    path.write_bytes(encoded)
    for args, shape in ((["--scale", "0.5"], (32, 32)), (["--size", "100x40"], (40, 100))):
        out = tmp_path / "out.png"
        assert main(["decode", str(path), str(out)] + args) == 0
        with Image.open(out) as img:
            decoded = np.asarray(img)
        scale, size = (0.5, None) if args[0] == "--scale" else (None, shape)
        assert np.array_equal(decoded, cgc.decode(encoded, scale=scale, size=size))


def test_cli_decode_bad_sizes(encoded, tmp_path, capsys):
    path = tmp_path / "in.cgc"
    path.write_bytes(encoded)
    with pytest.raises(SystemExit) as exc:  # argparse: usage error, status 2
        main(["decode", str(path), str(tmp_path / "o.png"), "--size", "100x"])
    assert exc.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["decode", str(path), str(tmp_path / "o.png"), "--scale", "0"]) == 1
    assert capsys.readouterr().err.startswith("cgc: error: scale must be")
    with pytest.raises(SystemExit):
        main(["decode", str(path), str(tmp_path / "o.png"), "--scale", "2", "--size", "4x4"])
    assert not (tmp_path / "o.png").exists()
