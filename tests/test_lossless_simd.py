"""The AVX2 tile decoder against the scalar one: same arrays, same failures.

Both decoders are compiled into cgc.lossless._lossless_cy; simd_decoder() switches between them.  The
AVX2 one decodes the full steps of a tile while enough stream bytes remain and hands the
rest to the scalar one, so every case here crosses that hand-over."""
import zlib

import numpy as np
import pytest

import cgc.lossless as lossless
from cgc.lossless import _lossless_cy
from cgc.errors import FormatError
from cgc.lossless import format as lformat
from skimage import data as skdata
from test_lossless import (ALL_TYPES, as_input, bits, cpu_decoder, decode_poisoned, pattern,
                           with_crc)

pytestmark = pytest.mark.skipif(not _lossless_cy.simd_decoder(),
                                reason="this CPU has no AVX2: only the scalar decoder runs")


@pytest.fixture
def decoders():
    """Decode data with the AVX2 decoder and with the scalar one into 0xcc-poisoned
    buffers; returns the two results (array or FormatError) in that order.  The AVX2
    decoder runs on every stream here, however few symbols each table has."""
    def run(data):
        results = []
        for simd in (True, False):
            with cpu_decoder(simd):
                try:
                    results.append(decode_poisoned(data))
                except FormatError as exc:
                    results.append(exc)
        return results
    return run


@pytest.mark.parametrize("dtype,bf16", ALL_TYPES)
@pytest.mark.parametrize("name", ["constant", "ramp", "noise", "sparse", "weights"])
# 256 x 512: one default-size tile of many full steps; 70 x 45: a partial last step.
@pytest.mark.parametrize("shape", [(256, 512), (70, 45)])
def test_simd_decoder_matches_scalar(decoders, dtype, bf16, name, shape):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, bf16, name, shape)).encode()))
    a = as_input(pattern(name, shape, "float16" if bf16 else dtype, rng), bf16)
    simd, scalar = decoders(lossless.encode(a, bfloat16=bf16))
    assert np.array_equal(bits(simd), bits(a))
    assert np.array_equal(bits(scalar), bits(a))


def test_simd_decoder_on_planes_with_contexts_and_raw_planes(decoders):
    # Normal float32 weights: exponent coded, top mantissa byte coded in its context,
    # lower mantissa bytes stored raw (so a raw plane can be the context of no plane and
    # coded planes sit between raw ones).
    rng = np.random.default_rng(3)
    a = rng.normal(0, 0.02, (384, 1536)).astype(np.float32)
    data = lossless.encode(a)
    container = lformat.parse(data)
    groups = container.meta["groups"]
    assert (groups == _lossless_cy.RAW_GROUP).any() and (groups != _lossless_cy.RAW_GROUP).any()
    assert container.planes[1].nctx > 1
    simd, scalar = decoders(data)
    assert np.array_equal(bits(simd), bits(a)) and np.array_equal(bits(scalar), bits(a))


def photo_with_noise():
    """A photo crop with one tile of noise, cut into tiles whose last column is 32 wide:
    plane 0 coded with activity contexts in the photo's tiles, stored raw in the noise
    tile, and no activity in the narrow tiles."""
    a = skdata.camera()[:192, :300].copy()
    a[96:192, 134:268] = np.random.default_rng(5).integers(0, 256, (96, 134), dtype=np.uint8)
    return a, lossless.encode(a, tile=(96, 134))


def test_simd_decoder_on_activity_contexts_raw_and_narrow_tiles(decoders):
    a, data = photo_with_noise()
    container = lformat.parse(data)
    assert container.planes[0].nctx > 1
    groups = container.meta["groups"][:, 0]
    assert (groups == _lossless_cy.RAW_GROUP).any() and (groups != _lossless_cy.RAW_GROUP).any()
    simd, scalar = decoders(data)
    assert np.array_equal(simd, a) and np.array_equal(scalar, a)


@pytest.mark.parametrize("source", ["int16 noise", "photo"])
def test_simd_decoder_fails_like_scalar_on_corrupt_streams(decoders, source):
    # Corrupt stream bytes behind a valid CRC: both decoders must reject the same tiles or
    # decode the same bytes; neither may read outside the stream (no crash).
    rng = np.random.default_rng(11)
    if source == "photo":  # plane 0 read through activity contexts
        a, data = photo_with_noise()
        assert lformat.parse(data).planes[0].nctx > 1
    else:
        a = np.round(rng.normal(0, 30, (64, 640))).astype(np.int16)
        data = lossless.encode(a, tile=(32, 320))
    container = lformat.parse(data)
    start = len(data) - len(container.data)
    rejected = 0
    for i in rng.choice(np.arange(start, len(data)), 120, replace=False):
        corrupt = bytearray(data)
        corrupt[i] ^= int(rng.integers(1, 256))
        simd, scalar = decoders(with_crc(corrupt))
        if isinstance(scalar, FormatError):
            rejected += 1
            assert isinstance(simd, FormatError) and str(simd) == str(scalar)
        else:
            assert np.array_equal(bits(simd), bits(scalar))
    # A flipped rANS byte almost always breaks the final states; the photo's noise tile is
    # stored raw (its one plane), where a flip is undetectable by design.
    raw = container.meta["groups"][:, 0] == _lossless_cy.RAW_GROUP
    coded_share = 1 - container.meta["size"][raw].sum() / len(container.data)
    assert rejected > (100 if source == "int16 noise" else 0.8 * 120 * coded_share)

