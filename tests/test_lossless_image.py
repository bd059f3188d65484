"""cgc.lossless image layouts (planes, colour differences), version-1 streams, and golden
streams pinning the format (rewritten only by `pytest --regen-golden`)."""
import os

import numpy as np
import pytest
from skimage import data as skdata

import cgc.lossless as lossless
from cgc.errors import FormatError
from cgc.lossless import format as lformat
from cgc.lossless import _lossless_cy
from cgc.lossless.layout import (ELEMENT_TYPES, LAYOUT_ARRAY, LAYOUT_PLANAR,
                                 LAYOUT_PLANAR_RGB)
from cgc.lossless.model import PlaneModel
from golden_files import check_golden
from test_lossless import bits, cpu_decoder, decode_poisoned, with_crc

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")
REGEN_HINT = ("run `python -m pytest tests/test_lossless_image.py --regen-golden` to rewrite "
              "it, but only for an intended format change (then bump VERSION if old streams "
              "no longer decode)")


def synthetic_image(h, w, c, dtype, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 90 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0) + rng.normal(0, 3, (h, w))
    chans = [base * (0.6 + 0.2 * k) + 10 * k + rng.normal(0, 2, (h, w)) for k in range(c)]
    img = np.stack(chans, axis=2)
    if np.dtype(dtype).kind == "f":
        return img.astype(dtype)
    info = np.iinfo(dtype)
    scale = 1 if info.max < 1000 else 200
    return np.clip(img * scale + (info.min if info.min < 0 else 0), info.min,
                   info.max).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "float16", "float32"])
@pytest.mark.parametrize("shape", [(48, 64, 3), (37, 53, 4), (20, 30, 1), (25, 33, 2),
                                   (40, 50)])
def test_image_round_trip(dtype, shape):
    h, w = shape[:2]
    img = synthetic_image(h, w, shape[2] if len(shape) == 3 else 1, dtype, seed=len(shape))
    img = img.reshape(shape)
    data = lossless.encode(img, image=True, tile=(32, 32))
    back = decode_poisoned(data)
    assert back.shape == img.shape and back.dtype == img.dtype
    assert np.array_equal(bits(back), bits(img))
    assert np.array_equal(bits(lossless.decode(data)), bits(img))


@pytest.mark.parametrize("shape,dtype,layout", [
    ((8, 9, 3), "uint8", LAYOUT_PLANAR_RGB), ((8, 9, 4), "uint16", LAYOUT_PLANAR_RGB),
    ((8, 9, 2), "uint8", LAYOUT_PLANAR), ((8, 9, 3), "float32", LAYOUT_PLANAR),
    ((8, 9), "uint8", LAYOUT_ARRAY)])
def test_image_layout_choice(shape, dtype, layout):
    data = lossless.encode(np.zeros(shape, dtype), image=True)
    assert lformat.parse(data).layout == layout
    assert lformat.parse(lossless.encode(np.zeros(shape, dtype))).layout == LAYOUT_ARRAY


def test_colour_layout_pays_on_a_photo():
    img = skdata.astronaut()  # 512 x 512 x 3 uint8
    sizes = {name: len(lossless.encode(arr, image=image))
             for name, arr, image in [("rgb", img, True), ("interleaved", img, False)]}
    planar = len(lossless.encode(np.ascontiguousarray(np.moveaxis(img, 2, 0))))
    assert np.array_equal(lossless.decode(lossless.encode(img, image=True)), img)
    # Measured: interleaved 13.08 (its left neighbour is the pixel's other channel, a crude
    # colour predictor), planar 13.33, colour differences 11.95 bits per pixel.
    assert sizes["rgb"] < 0.95 * min(planar, sizes["interleaved"])


def test_image_rejects_other_shapes():
    with pytest.raises(ValueError, match="image=True"):
        lossless.encode(np.zeros((2, 3, 4, 5), np.uint8), image=True)
    with pytest.raises(ValueError, match="image=True"):
        lossless.encode(np.zeros(7, np.uint8), image=True)


def test_empty_image_round_trips():
    for shape in [(0, 5, 3), (4, 0, 3), (4, 5, 0)]:
        a = np.zeros(shape, np.uint8)
        assert lossless.decode(lossless.encode(a, image=True)).shape == shape


def test_version_1_stream_still_decodes():
    # Version 1 had no layout byte: the same stream without it, as a version 1 decoder wrote.
    a = np.arange(600, dtype=np.int16).reshape(20, 30) * 7
    v2 = bytearray(lossless.encode(a))
    assert v2[4] == 2 and v2[12] == LAYOUT_ARRAY
    v1 = v2[:12] + v2[13:]
    v1[4] = 1
    assert np.array_equal(lossless.decode(with_crc(v1)), a)


# ----------------------------------------------------------------------------- golden

def _lcg_bytes(seed, n):
    """n pseudo-random bytes from a 64-bit LCG written out here, so golden inputs do not
    depend on NumPy's random streams."""
    out, state = bytearray(), seed
    for _ in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(state >> 56)
    return np.frombuffer(bytes(out), np.uint8)


def golden_inputs():
    """An RGB uint8 image (colour layout; stripes of low and high noise, so that plane 0 is
    coded with activity contexts) and float32 values (exponent plane, mantissa plane in
    context tables, raw planes), both with edge tiles."""
    y, x = np.mgrid[0:24, 0:80]
    noise = _lcg_bytes(7, 24 * 80 * 3).reshape(24, 80, 3).astype(np.int64)
    amplitude = np.where((x // 12) % 2 == 0, 2, 128)[..., None]
    rgb = ((x[..., None] * 3 + y[..., None] * 2 + np.array([40, 10, 70]) + noise % amplitude)
           % 256).astype(np.uint8)
    # 17 magnitudes (each exponent has few mantissas: context tables pay) with random low
    # 16 bits (stored raw).
    k = (_lcg_bytes(11, 30 * 50).reshape(30, 50) % 17).astype(np.float32) - 8
    low = _lcg_bytes(12, 2 * 30 * 50).view("<u2").reshape(30, 50).astype(np.uint32)
    weights = ((k * np.float32(0.013)).view(np.uint32) ^ low).view(np.float32)
    return {"lossless_rgb.cgcl": (rgb, dict(image=True, tile=(24, 40))),
            "lossless_weights.cgcl": (weights, dict(tile=(16, 32)))}


@pytest.mark.parametrize("name", sorted(golden_inputs()))
def test_golden_stream(request, name):
    array, kwargs = golden_inputs()[name]
    path = os.path.join(GOLDEN_DIR, name)
    golden = check_golden(request, path, lossless.encode(array, **kwargs), REGEN_HINT)
    assert np.array_equal(bits(lossless.decode(golden)), bits(array))


def test_golden_streams_pin_every_context_kind_and_raw_planes():
    with open(os.path.join(GOLDEN_DIR, "lossless_weights.cgcl"), "rb") as f:
        container = lformat.parse(f.read())
    groups = container.meta["groups"]
    assert container.planes[1].nctx > 1
    assert (groups == 255).any() and (groups != 255).any()
    with open(os.path.join(GOLDEN_DIR, "lossless_rgb.cgcl"), "rb") as f:
        container = lformat.parse(f.read())
    assert container.layout == LAYOUT_PLANAR_RGB and container.planes[0].nctx > 1


def test_corrupt_layout_byte_raises():
    with open(os.path.join(GOLDEN_DIR, "lossless_rgb.cgcl"), "rb") as f:
        data = bytearray(f.read())
    data[12] = 7
    with pytest.raises(FormatError):
        lossless.decode(bytes(data))


# ----------------------------------------------------------------------------- contexts

def activity_reference(sym0, th, tw):
    """The plane-0 context input as docs/lossless-format.md defines it, tile by tile."""
    rows, cols = sym0.shape
    out = np.zeros(sym0.shape, np.int64)
    s = sym0.astype(np.int64)
    for y0 in range(0, rows, th):
        for x0 in range(0, cols, tw):
            t = s[y0:y0 + th, x0:x0 + tw]
            h, w = t.shape
            if w < 33 or h < 2:
                continue
            up = t[:-1]
            left = np.concatenate([up[:, :1], up[:, :-1]], axis=1)
            right = np.concatenate([up[:, 1:], up[:, -1:]], axis=1)
            out[y0 + 1:y0 + h, x0:x0 + w] = np.minimum(255, left + 2 * up + right)
    return out


@pytest.mark.parametrize("shape,tile", [((70, 100), (32, 40)), ((64, 64), (64, 32)),
                                        ((50, 90), (50, 90)), ((9, 200), (4, 33))])
def test_activity_map_matches_its_definition(shape, tile):
    rng = np.random.default_rng(shape[0])
    # Mostly small symbols, some large, so both the sum and the cap at 255 are exercised.
    sym0 = np.where(rng.random(shape) < 0.9, rng.integers(0, 20, shape),
                    rng.integers(0, 256, shape)).astype(np.uint8)
    out = np.full(shape, 0xCC, np.uint8)
    _lossless_cy.activity_map(sym0, tile[0], tile[1], out)
    assert np.array_equal(out, activity_reference(sym0, *tile))


def test_photo_uses_activity_contexts_and_decoders_agree():
    img = skdata.astronaut()[100:300, 150:400]
    data = lossless.encode(img, image=True)
    assert lformat.parse(data).planes[0].nctx > 1
    for simd in (True, False):
        with cpu_decoder(simd):
            assert np.array_equal(decode_poisoned(data), img)


def test_plane_0_contexts_mean_activity_in_version_2_and_nothing_in_version_1():
    # Hand-made: plane 0 has two contexts, activity 0 -> a table of the single symbol 5,
    # any other activity -> a table of the single symbol 9; no stream bytes are needed.
    ctxmap = np.ones(256, np.uint8)
    ctxmap[0] = 0
    freqs = np.zeros((2, 256), np.uint32)
    freqs[0, 5] = freqs[1, 9] = 1 << 12
    plane = PlaneModel(12, 2, 1, ctxmap, freqs)
    meta = np.zeros(1, lformat.metadata_dtype(1))
    meta["groups"] = 0
    meta["states"] = 1 << 23
    v2 = lformat.serialize(ELEMENT_TYPES[1], (3, 40), LAYOUT_ARRAY, (3, 40), [plane], meta,
                           b"")
    # Row 0 has activity 0; row 1 sees 5 + 2 * 5 + 5 = 20, row 2 sees 9 + 18 + 9 = 36.
    expected = np.array([[5] * 40, [9] * 40, [9] * 40], np.uint8)
    v1 = bytearray(v2[:12] + v2[13:])
    v1[4] = 1
    v1 = with_crc(v1)
    for simd in (True, False):
        with cpu_decoder(simd):
            assert np.array_equal(decode_poisoned(v2), expected)
            assert np.array_equal(decode_poisoned(v1), np.full((3, 40), 5, np.uint8))
