"""cgc.lossless: bit-exact round trips over dtypes, shapes and patterns; malformed input."""
import contextlib
import struct
import zlib

import numpy as np
import pytest

import cgc.lossless as lossless
from cgc.lossless import _lossless_cy
from cgc.lossless._lossless_cy import RAW_GROUP
from cgc.errors import FormatError
from cgc.lossless import format as lformat
from cgc.lossless.layout import ELEMENT_TYPES
from cgc.lossless.model import PlaneModel

INT_DTYPES = ("uint8", "int8", "uint16", "int16")
FLOAT_DTYPES = ("float16", "float32")
# (dtype name, bfloat16 flag): bfloat16 travels as uint16 bit patterns.
ALL_TYPES = [(d, False) for d in INT_DTYPES + FLOAT_DTYPES] + [("uint16", True)]


def bits(a):
    """Bytes of an array, so that NaN payloads and -0.0 compare exactly."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def decode_poisoned(data):
    """decode_into a buffer filled with 0xCC first, so that unwritten bytes show."""
    container = lformat.parse(data)
    out = np.empty(container.shape, container.etype.storage)
    bits(out)[:] = 0xCC
    return lossless.decode_into(data, out)


@contextlib.contextmanager
def cpu_decoder(simd):
    """Decode with the AVX2 decoder (simd=True; on every stream, however few symbols its
    tables have) or the scalar one; restores the defaults afterwards."""
    _lossless_cy.simd_decoder(simd, min_symbols_per_table=0)
    try:
        yield
    finally:
        _lossless_cy.simd_decoder(True, _lossless_cy.AVX2_MIN_SYMBOLS_PER_TABLE)


def random_bits(rng, shape, dtype):
    """Uniformly random bit patterns of dtype (NaNs, infinities and subnormals included)."""
    itemsize = np.dtype(dtype).itemsize
    raw = rng.integers(0, 256, int(np.prod(shape)) * itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def pattern(name, shape, dtype, rng):
    dtype = np.dtype(dtype)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    if name == "noise":
        return random_bits(rng, shape, dtype)
    if dtype.kind == "f":
        smooth = {"constant": np.full(shape, 1.5), "ramp": (x - 2 * y) * 0.25,
                  "checkerboard": np.where((x + y) % 2 == 0, -3.0, 7.25),
                  "sparse": np.where(rng.random(shape) < 0.03, rng.normal(0, 1, shape), 0.0),
                  "weights": rng.normal(0, 0.05, shape)}[name]
        return smooth.astype(dtype)
    info = np.iinfo(dtype)
    values = {"constant": np.full(shape, 7), "ramp": x * 3 + y * 5,
              "checkerboard": np.where((x + y) % 2 == 0, info.min, info.max),
              "sparse": np.where(rng.random(shape) < 0.03,
                                 rng.integers(info.min, info.max, shape, endpoint=True), 0),
              "weights": np.round(rng.normal(0, 20, shape))}[name]
    # Wrap modulo the width like the codec's arithmetic, so ramps cross the type's limits.
    return np.asarray(values, dtype=np.int64).astype(dtype)


def as_input(a, bf16):
    return (a.view(np.uint16) if bf16 else a)


@pytest.mark.parametrize("dtype,bf16", ALL_TYPES)
@pytest.mark.parametrize("name", ["constant", "ramp", "checkerboard", "noise", "sparse",
                                  "weights"])
@pytest.mark.parametrize("shape", [(64, 64), (256, 256), (1, 300), (300, 1), (100, 77)])
def test_round_trip(dtype, bf16, name, shape):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, bf16, name, shape)).encode()))
    source_dtype = "float16" if bf16 else dtype  # bfloat16 patterns: any 16-bit float bits
    a = as_input(pattern(name, shape, source_dtype, rng), bf16)
    data = lossless.encode(a, bfloat16=bf16)
    b = lossless.decode(data)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert np.array_equal(bits(a), bits(b))


@pytest.mark.parametrize("tile", [(64, 64), (16, 48), (1, 1000), (7, 5)])
def test_round_trip_tile_shapes(tile):
    rng = np.random.default_rng(3)
    a = np.cumsum(rng.integers(-2, 3, (97, 131)), axis=1).astype(np.int16)
    assert np.array_equal(lossless.decode(lossless.encode(a, tile=tile)), a)


def test_large_image_round_trip():
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:4096, 0:4096]
    a = ((x // 3 + y // 5) + rng.integers(0, 4, (4096, 4096))).astype(np.uint8)
    data = lossless.encode(a)
    # Smooth plus 2 bits of noise: well under half the raw size, not a degenerate stream.
    assert 0.1 * a.nbytes < len(data) < 0.5 * a.nbytes
    assert np.array_equal(lossless.decode(data), a)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4, 5), (2, 3, 4, 70), (0,), (3, 0), (0, 5),
                                   (2, 0, 3)])
def test_nd_and_empty_shapes(shape):
    rng = np.random.default_rng(5)
    a = rng.normal(0, 1, shape).astype(np.float32)
    b = lossless.decode(lossless.encode(a))
    assert b.shape == a.shape and b.dtype == np.float32
    assert np.array_equal(bits(a), bits(b))


def test_non_contiguous_and_big_endian_input():
    rng = np.random.default_rng(6)
    a = rng.integers(0, 1000, (40, 60)).astype(np.uint16)
    assert np.array_equal(lossless.decode(lossless.encode(a[:, ::3])), a[:, ::3])
    assert np.array_equal(lossless.decode(lossless.encode(a.astype(">u2"))), a)


def test_bfloat16_flag_is_recorded():
    a = np.arange(500, dtype=np.uint16).reshape(20, 25)
    flagged, plain = lossless.encode(a, bfloat16=True), lossless.encode(a)
    assert lformat.parse(flagged).etype.name == "bfloat16"
    assert lformat.parse(plain).etype.name == "uint16"
    assert np.array_equal(lossless.decode(flagged), a)
    assert lossless.decode(flagged).dtype == np.uint16


@pytest.mark.parametrize("predictor", [p for p in lossless.PREDICTORS if p != "none"])
def test_each_predictor_is_chosen_and_inverted(predictor):
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:96, 0:80]
    a = (40 * np.sin(x / 9.0) * np.cos(y / 7.0) + 3 * x + rng.integers(0, 2, x.shape))
    a = a.astype(np.int16)
    data = lossless.encode(a, tile=(32, 32), predictors=(predictor,))
    preds = lformat.parse(data).meta["pred"]
    # On a smooth field every predictor beats storing the values.
    assert np.all(preds == lossless._lossless_cy.PREDICTORS[predictor])
    assert np.array_equal(lossless.decode(data), a)


@pytest.mark.parametrize("prob_bits", [13, 14])
def test_round_trip_at_every_table_precision(monkeypatch, prob_bits):
    # The encoder writes 12-bit tables, which the decoder has a specialised loop for; the
    # format allows up to 14 bits, decoded by the general loop.
    from cgc.lossless import model

    monkeypatch.setattr(model, "PROB_BITS", prob_bits)
    rng = np.random.default_rng(13)
    a = rng.normal(0, 0.05, (70, 300)).astype(np.float32)
    data = lossless.encode(a, tile=(32, 128))
    assert {plane.prob_bits for plane in lformat.parse(data).planes} == {prob_bits}
    assert np.array_equal(bits(lossless.decode(data)), bits(a))


def test_compression_tracks_content():
    rng = np.random.default_rng(8)
    y, x = np.mgrid[0:256, 0:256]
    ramp = (x + 2 * y).astype(np.uint16)
    noise = rng.integers(0, 256, (256, 256), dtype=np.uint8)
    assert len(lossless.encode(ramp)) < 0.05 * ramp.nbytes
    # Incompressible bytes are stored raw: no more than the tile metadata is added.
    for tile in (None, (64, 64)):
        data = lossless.encode(noise, tile=tile)
        assert len(data) <= noise.nbytes + 160 * len(lformat.parse(data).meta) + 200


def test_default_tile_is_large_and_pays_less_metadata():
    # Weight-like bfloat16: the planes code alike in any tile, so the difference is the
    # per-tile metadata (32 lane states), which the default tile spreads over 16x the data.
    rng = np.random.default_rng(12)
    w = (rng.normal(0, 0.05, (512, 1024)).astype(np.float32).view(np.uint32) >> 16)
    w = w.astype(np.uint16)
    default, small = lossless.encode(w, bfloat16=True), lossless.encode(w, tile=(64, 64),
                                                                        bfloat16=True)
    assert lformat.parse(default).tile == lossless.DEFAULT_TILE
    assert len(lformat.parse(small).meta) == 16 * len(lformat.parse(default).meta)
    assert len(default) < len(small) - 0.01 * w.nbytes
    for data in (default, small):
        assert np.array_equal(lossless.decode(data), w)


def test_decode_into_overwrites_every_byte():
    rng = np.random.default_rng(9)
    a = rng.normal(0, 1, (130, 70)).astype(np.float32)
    out = np.empty_like(a)
    out.view(np.uint8)[...] = 0xCC
    lossless.decode_into(lossless.encode(a, tile=(32, 32)), out)
    assert np.array_equal(bits(out), bits(a))


def test_decode_into_rejects_wrong_buffers():
    data = lossless.encode(np.zeros((4, 6), np.int8))
    with pytest.raises(ValueError):
        lossless.decode_into(data, np.empty((6, 4), np.int8))
    with pytest.raises(ValueError):
        lossless.decode_into(data, np.empty((4, 6), np.uint8))
    with pytest.raises(ValueError):
        lossless.decode_into(data, np.empty((4, 12), np.int8)[:, ::2])


@pytest.mark.parametrize("bad", [np.zeros(3, np.float64), np.zeros(3, np.int32),
                                 np.zeros(3, bool)])
def test_unsupported_dtypes_raise(bad):
    with pytest.raises(ValueError, match="does not support"):
        lossless.encode(bad)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        lossless.encode(np.zeros(3, np.float32), bfloat16=True)
    for tile in [(0, 4), (4,), "ab", (1024, 1024)]:
        with pytest.raises(ValueError):
            lossless.encode(np.zeros((4, 4), np.uint8), tile=tile)
    with pytest.raises(ValueError):
        lossless.encode(np.zeros((4, 4), np.uint8), predictors=("paeth",))
    with pytest.raises(ValueError):
        lossless.decode(lossless.encode(np.zeros(3, np.uint8)), device="tpu")


def small_stream():
    rng = np.random.default_rng(10)
    a = np.cumsum(rng.integers(-3, 4, (9, 40)), axis=1).astype(np.int16)
    return a, lossless.encode(a, tile=(8, 32))


def with_crc(data):
    """data with its CRC32 recomputed, so that the structural checks are what is tested."""
    data = bytearray(data)
    data[8:12] = struct.pack("<I", zlib.crc32(bytes(data[12:])))
    return bytes(data)


def test_every_truncation_raises():
    _, data = small_stream()
    for n in range(len(data)):
        with pytest.raises(FormatError):
            lossless.decode(data[:n])
    with pytest.raises(FormatError):
        lossless.decode(data + b"\x00")


def test_every_flipped_byte_raises():
    _, data = small_stream()
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x5A
        with pytest.raises(FormatError):
            lossless.decode(bytes(corrupt))


def test_flipped_bytes_behind_a_valid_crc_never_crash():
    a, data = small_stream()
    rejected = 0
    for i in range(12, len(data)):
        for flip in (0x01, 0xFF):
            corrupt = bytearray(data)
            corrupt[i] ^= flip
            try:
                b = lossless.decode(with_crc(corrupt))
            except FormatError:
                rejected += 1
            else:
                # A change the format cannot detect (a raw byte, a predictor id) still
                # decodes to an array of the recorded type and shape.
                assert b.shape == a.shape and b.dtype == a.dtype
    # Most bytes are sizes, tables, states and stream: their corruption is detected.
    assert rejected > 0.6 * 2 * (len(data) - 12)


def test_hostile_headers_raise_before_allocating():
    _, data = small_stream()
    header = bytearray(data)
    # A shape of 2**30 x 2**30 elements claims far more tiles than the bytes could hold.
    header[13:29] = struct.pack("<QQ", 1 << 30, 1 << 30)
    with pytest.raises(FormatError, match="tiles of metadata"):
        lossless.decode(with_crc(header))
    # One of 2**60 x 2**60 elements could not even exist as an array.
    header[13:29] = struct.pack("<QQ", 1 << 60, 1 << 60)
    with pytest.raises(FormatError, match="exceeds"):
        lossless.decode(with_crc(header))
    # version, dtype, ndim, lanes, layout (unknown; planar for a 2-D shape)
    for offset, value in [(4, 3), (5, 99), (6, 40), (7, 16), (12, 9), (12, 1), (12, 2)]:
        bad = bytearray(data)
        bad[offset] = value
        with pytest.raises(FormatError):
            lossless.decode(with_crc(bad))
    with pytest.raises(FormatError, match="magic"):
        lossless.decode(b"XXXX" + data[4:])


def test_tiles_no_group_fits_get_a_group_of_their_own():
    # Most tiles are centred on zero, a few on 100: coded with the zero-centred table those
    # cost more than raw, yet their own table codes them in about 5 bits a byte.
    rng = np.random.default_rng(13)
    a = np.clip(rng.normal(0, 20, (512, 512)), -127, 127).astype(np.int8)
    a[:64, :64] = rng.integers(90, 110, (64, 64))
    container = lformat.parse(lossless.encode(a, tile=(64, 64), predictors=()))
    assert container.meta["groups"][0, 0] != RAW_GROUP
    assert np.array_equal(lossless.decode(lossless.encode(a, tile=(64, 64))), a)


def test_min_gain_trades_size_for_raw_planes():
    rng = np.random.default_rng(21)
    w = (rng.normal(0, 0.02, (256, 512)).astype(np.float32).view(np.uint32) >> 16).astype(
        np.uint16)
    default = lossless.encode(w, bfloat16=True)
    fast = lossless.encode(w, bfloat16=True, min_gain=0.1)
    # The mantissa byte saves a few hundredths of a bit in the exponent's context: coded by
    # default, raw once coding must save 0.1 bit per byte.
    assert (lformat.parse(default).meta["groups"][:, 1] != RAW_GROUP).all()
    assert (lformat.parse(fast).meta["groups"][:, 1] == RAW_GROUP).all()
    assert len(default) < len(fast)
    for data in (default, fast):
        assert np.array_equal(lossless.decode(data), w)
    with pytest.raises(ValueError, match="min_gain"):
        lossless.encode(w, bfloat16=True, min_gain=-1)


def stream_through_an_empty_table():
    """A hand-made stream (no encoder writes one) whose every symbol is decoded with an
    empty table: by the spec each decodes as symbol 0 and leaves the state alone, so lanes
    starting at 2**23 with no stream bytes end valid, and the array is all zeros."""
    plane = PlaneModel(12, 1, 1, np.zeros(256, np.uint8), np.zeros((1, 256), np.uint32))
    meta = np.zeros(1, lformat.metadata_dtype(1))
    meta["groups"] = 0
    meta["states"] = 1 << 23
    return lformat.serialize(ELEMENT_TYPES[1], (2, 40), 0, (2, 40), [plane], meta, b"")


def test_a_symbol_through_an_empty_table_is_symbol_zero_on_both_decoders():
    data = stream_through_an_empty_table()
    for simd in (True, False):
        with cpu_decoder(simd):
            out = np.full((2, 40), 0xCC, np.uint8)
            assert not lossless.decode_into(data, out).any()
