"""cgc.limits: decode bombs are refused before the work, and real files are not.

Each bomb is refused without rendering (the backend's renderer is replaced by one that
fails the test) and with a bounded traced peak, far below what the decode would need."""
import tracemalloc

import numpy as np
import pytest

import cgc
from cgc import limits
from cgc.backends import cpu
from cgc.image.codec import decode_gaussians, encode_gaussians
from cgc.image.container import MAX_GAUSSIANS, MAX_PIXELS
from cgc.image.model import Gaussians
from cgc.imageio import to_uint8
from cgc.lossless import checkpoint
from test_checkpoint import safetensors_file


def covering(n, height, width, sigma):
    """n identical Gaussians centred on the image, each of standard deviation sigma."""
    params = np.zeros((n, 8), np.float32)
    params[:, 0], params[:, 1] = width / 2, height / 2
    params[:, 2] = params[:, 4] = sigma
    params[:, 5:] = 0.001
    return Gaussians(params, height, width)


@pytest.fixture
def no_render(monkeypatch):
    def render_forward(*args, **kwargs):
        raise AssertionError("a refused file was rendered")
    monkeypatch.setattr(cpu.CPUBackend, "render_forward", render_forward)


def refused(data, match, decode=cgc.decode):
    """Decode data, expecting a FormatError matching match; returns the traced peak."""
    tracemalloc.start()
    try:
        with pytest.raises(cgc.FormatError, match=match):
            decode(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_few_kilobytes_of_whole_image_gaussians_are_refused(no_render, monkeypatch):
    # The report's file: 2048 x 2048, 50,000 identical Gaussians covering the image.
    data = encode_gaussians(covering(50_000, 2048, 2048, 700))
    assert len(data) < 8000
    # More Gaussians than the file's bytes allow: refused at the header.  The trace holds
    # little more than the file (a 1 MiB bound; the image alone would be 48 MiB).
    assert refused(data, "MAX_GAUSSIANS_PER_BYTE") < 1 << 20
    # Without that limit the streams are parsed (the codes and parameters, about 3 MiB),
    # then the render work is refused: 50,000 evaluations a pixel.
    monkeypatch.setattr(limits, "MAX_GAUSSIANS_PER_BYTE", None)
    assert refused(data, "MAX_OVERDRAW") < 16 << 20


def test_a_bomb_at_the_format_limits_is_refused(no_render, monkeypatch):
    # 2**20 Gaussians over 2**25 pixels (5792 x 5792), each covering the image:
    # 3.5e13 evaluations.
    side = 5792
    assert side * side <= MAX_PIXELS
    data = encode_gaussians(covering(MAX_GAUSSIANS, side, side, 2000))
    assert refused(data, "MAX_GAUSSIANS_PER_BYTE") < 1 << 20
    monkeypatch.setattr(limits, "MAX_GAUSSIANS_PER_BYTE", None)
    # Parsing 2**20 Gaussians holds their codes and parameters (a few times 32 MiB); the
    # image would be 400 MiB in float32 and the pairs far more.
    assert refused(data, "MAX_OVERDRAW") < 256 << 20


@pytest.fixture
def dense():
    """A 64 x 64 file of 300 Gaussians covering the whole image: 300 a pixel."""
    gaussians = covering(300, 64, 64, 40)
    assert gaussians.render_work() == 300 * 64 * 64
    return encode_gaussians(gaussians)


def test_render_limit_and_opt_out(dense, monkeypatch):
    monkeypatch.setattr(limits, "RENDER_WORK_ALLOWANCE", 0)
    with pytest.raises(cgc.FormatError, match="300 per pixel.*MAX_OVERDRAW = 256"):
        cgc.decode(dense)
    # The limit is relative to the output: an enlargement is refused as well ...
    with pytest.raises(cgc.FormatError, match="MAX_OVERDRAW"):
        cgc.decode(dense, size=(256, 256))
    # ... and trusted input decodes once the limit is raised or off, as it renders.
    expected = to_uint8(decode_gaussians(dense).render())
    for value in (301, None):
        monkeypatch.setattr(limits, "MAX_OVERDRAW", value)
        assert np.array_equal(cgc.decode(dense), expected)


def test_the_allowance_lets_small_outputs_through(dense):
    # 300 a pixel, but 300 * 4096 evaluations are far below RENDER_WORK_ALLOWANCE: a
    # thumbnail of a dense file (each Gaussian covers a pixel at least) decodes.
    assert 300 * 64 * 64 < limits.RENDER_WORK_ALLOWANCE
    assert cgc.decode(dense).shape == (64, 64, 3)
    assert cgc.decode(dense, size=(4, 4)).shape == (4, 4, 3)


def test_render_work_counts_the_pixels_of_each_box():
    # sigma 1 at a pixel centre: the 3-sigma box spans centres within 3 pixels, 7 x 7;
    # clipped by the image's corner to 4 x 4; off the image: nothing.
    params = np.zeros((3, 8), np.float32)
    params[:, 2] = params[:, 4] = 1.0
    params[0, :2] = (10.5, 10.5)
    params[1, :2] = (0.5, 0.5)
    params[2, :2] = (-50.0, 10.0)
    assert Gaussians(params, 32, 32).render_work() == 49 + 16
    # A degenerate factor (l11 = 0) is never drawn.
    params[0, 2] = 0.0
    assert Gaussians(params, 32, 32).render_work() == 16


@pytest.fixture
def constant():
    """A 4 MiB float32 array of zeros in one 512 x 512 tile per MiB: ~7000 times smaller."""
    array = np.zeros((1024, 1024), np.float32)
    data = cgc.lossless.encode(array, tile=(512, 512))
    assert array.nbytes > limits.MAX_LOSSLESS_RATIO * len(data)
    return array, data


def test_lossless_expansion_limit(constant, monkeypatch):
    array, data = constant
    # Under the allowance, any ratio decodes.
    assert np.array_equal(cgc.lossless.decode(data), array)
    monkeypatch.setattr(limits, "LOSSLESS_OUTPUT_ALLOWANCE", 1 << 20)
    # Refused before the 4 MiB output exists (the trace stays below it).
    assert refused(data, "MAX_LOSSLESS_RATIO", cgc.lossless.decode) < 1 << 21
    with pytest.raises(cgc.FormatError, match="MAX_LOSSLESS_RATIO"):
        cgc.lossless.decode_into(data, np.empty_like(array))
    monkeypatch.setattr(limits, "MAX_LOSSLESS_RATIO", None)
    assert np.array_equal(cgc.lossless.decode(data), array)


def test_checkpoint_expansion_limit(monkeypatch):
    zeros = np.zeros((1024, 1024), np.float32)
    original = safetensors_file({"z": ("F32", [1024, 1024], 0, zeros.nbytes)},
                                zeros.tobytes())
    data = checkpoint.compress(original, tile=(512, 512))
    monkeypatch.setattr(limits, "LOSSLESS_OUTPUT_ALLOWANCE", 1 << 20)
    for decode in (checkpoint.decompress, checkpoint.load):
        with pytest.raises(cgc.FormatError, match="checkpoint.*MAX_LOSSLESS_RATIO"):
            decode(data)
    monkeypatch.setattr(limits, "MAX_LOSSLESS_RATIO", None)
    assert bytes(checkpoint.decompress(data)) == original


def test_cli_refuses_a_bomb_unless_trusted(dense, tmp_path, monkeypatch, capsys):
    from cgc.cli import main

    # --trusted switches the limits off process-wide: monkeypatch restores them after.
    for name in ("MAX_GAUSSIANS_PER_BYTE", "MAX_OVERDRAW", "MAX_LOSSLESS_RATIO"):
        monkeypatch.setattr(limits, name, getattr(limits, name))
    monkeypatch.setattr(limits, "RENDER_WORK_ALLOWANCE", 0)
    path, png = tmp_path / "dense.cgc", tmp_path / "dense.png"
    path.write_bytes(dense)
    assert main(["decode", str(path), str(png)]) == 1
    assert "MAX_OVERDRAW" in capsys.readouterr().err and not png.exists()
    assert main(["decode", str(path), str(png), "--trusted"]) == 0
    assert png.exists() and limits.MAX_OVERDRAW is None
