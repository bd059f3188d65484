"""cgc.lossless against its specification: tests/lossless_spec.py, a decoder written from
docs/lossless-format.md alone, must decode the golden streams, and every stream
cgc.lossless.encode writes (each element type, layout, predictor, context kind, raw
planes, cut edge tiles), to the input; what the specification says a decoder must reject,
both decoders reject.  Only the public API of cgc is used."""
import json
import os
import struct
import zlib

import numpy as np
import pytest

import cgc.lossless as lossless
import lossless_spec as spec
from test_lossless_image import golden_inputs
from cgc import FormatError
from cgc.lossless import checkpoint

GOLDEN = {name: os.path.join(os.path.dirname(__file__), "golden", name)
          for name in ("lossless_rgb.cgcl", "lossless_weights.cgcl")}
# (numpy dtype, bfloat16 flag) of every element type; bfloat16 travels as uint16.
ELEMENT_TYPES = [("uint8", False), ("int8", False), ("uint16", False), ("int16", False),
                 ("float16", False), ("uint16", True), ("float32", False)]


def bits(a):
    """The bytes of an array, so that NaN payloads and -0.0 compare exactly."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def assert_same(decoded, original):
    assert decoded.shape == original.shape and decoded.dtype == original.dtype
    assert np.array_equal(bits(decoded), bits(original))


def check(data, original):
    """Both decoders give the original array."""
    assert_same(spec.decode(data), original)
    assert_same(lossless.decode(data), original)


def with_crc(data):
    """A stream with its CRC32 field rewritten, so that later checks are the ones that fire."""
    data = bytearray(data)
    data[8:12] = struct.pack("<I", zlib.crc32(bytes(data[12:])))
    return bytes(data)


def both_reject(data, reason=None):
    """Both decoders reject data; the specification's decoder for the given reason (a
    regular expression), so that a test breaks the rule it means to."""
    with pytest.raises(spec.Rejected, match=reason):
        spec.decode(data)
    with pytest.raises(FormatError):
        lossless.decode(data)


# ----------------------------------------------------------------------------- golden

def golden_originals():
    """The arrays the golden streams were encoded from (tests/test_lossless_image.py)."""
    return {name: array for name, (array, _) in golden_inputs().items()}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_stream_decodes_to_its_original(name):
    with open(GOLDEN[name], "rb") as f:
        data = f.read()
    ours = spec.decode(data)
    assert_same(ours, golden_originals()[name])
    assert_same(lossless.decode(data), ours)


def test_golden_streams_cover_contexts_layout_and_raw_planes():
    with open(GOLDEN["lossless_rgb.cgcl"], "rb") as f:
        rgb = spec.parse(f.read())
    with open(GOLDEN["lossless_weights.cgcl"], "rb") as f:
        weights = spec.parse(f.read())
    assert rgb.layout == spec.LAYOUT_PLANAR_RGB and rgb.planes[0].nctx > 1
    assert weights.planes[1].nctx > 1  # the exponent selects the mantissa's table
    groups = [g for record in weights.tiles for g in record.groups]
    assert spec.RAW in groups and any(g != spec.RAW for g in groups)
    # Edge tiles cut by the matrix: 24 x 80 planes in 24 x 40 tiles stack 3 channels;
    # 30 x 50 in 16 x 32 tiles leaves 14-row and 18-column edges.
    assert rgb.matrix == (72, 80) and weights.matrix[0] % weights.tile[0] != 0


# ----------------------------------------------------------------------------- round trips

def sample(rng, shape, dtype, bf16=False):
    """Smooth values with noise and a few arbitrary bit patterns (NaNs and infinities
    included for floats), of dtype (uint16 bit patterns of bfloat16 when bf16)."""
    n = int(np.prod(shape))
    t = np.arange(n, dtype=np.float64)
    smooth = 40 * np.sin(t / 17.0) + rng.normal(0, 3, n)
    wild = rng.random(n) < 0.02
    if bf16 or np.dtype(dtype).kind == "f":
        values = (smooth / 16).astype(np.float32)
        if bf16:
            values = (values.view(np.uint32) >> 16).astype(np.uint16)
        else:
            values = values.astype(dtype)
    else:
        info = np.iinfo(dtype)
        scale = 1 if info.bits == 8 else 300
        values = np.asarray(np.round(smooth * scale), np.int64).astype(dtype)
    noise = rng.integers(0, 256, n * values.itemsize, dtype=np.uint8).view(values.dtype)
    values[wild] = noise[wild]
    return values.reshape(shape)


@pytest.mark.parametrize("dtype,bf16", ELEMENT_TYPES)
@pytest.mark.parametrize("shape,tile", [((37, 70), (16, 48)), ((2, 3, 5, 7), (4, 4)),
                                         ((300,), None), ((), None), ((3, 0), None)])
def test_array_layout_round_trips(dtype, bf16, shape, tile):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, bf16, shape)).encode()))
    a = sample(rng, shape, dtype, bf16)
    data = lossless.encode(a, tile, bfloat16=bf16)
    stream = spec.parse(data)
    assert stream.layout == spec.LAYOUT_ARRAY
    assert spec.ELEMENT_TYPES[stream.code][0] == ("bfloat16" if bf16 else dtype)
    check(data, a)


@pytest.mark.parametrize("dtype,bf16", ELEMENT_TYPES)
@pytest.mark.parametrize("channels", [2, 4])
def test_image_layouts_round_trip(dtype, bf16, channels):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, bf16, channels)).encode()))
    h, w = 21, 38  # 21 rows in 16-row tiles: tiles straddle the channel planes
    img = np.stack([sample(rng, (h, w), dtype, bf16) for _ in range(channels)], axis=2)
    data = lossless.encode(img, (16, 40), bfloat16=bf16, image=True)
    stream = spec.parse(data)
    colour = channels >= 3 and not bf16 and np.dtype(dtype).kind != "f"
    assert stream.layout == (spec.LAYOUT_PLANAR_RGB if colour else spec.LAYOUT_PLANAR)
    assert stream.matrix == (channels * h, w)
    check(data, img)


def test_colour_difference_wraps_on_the_stored_integers():
    # Signed channels whose differences overflow: red - green and blue - green are taken
    # modulo 2**8 on the two's complement bytes, before the sign-bit flip.
    img = np.array([[[127, -128, -128], [-128, 127, 127], [0, -1, 5]]], np.int8)
    img = np.repeat(img, 4, axis=0)
    data = lossless.encode(img, image=True)
    assert spec.parse(data).layout == spec.LAYOUT_PLANAR_RGB
    check(data, img)


def smooth_field(rng, shape, dtype):
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    f = 500 + 40 * np.sin(x / 6.0) + 30 * np.cos(y / 5.0) + 3 * x + rng.integers(0, 3, shape)
    return f.astype(dtype)


@pytest.mark.parametrize("predictor", range(1, 6))
def test_every_predictor_is_inverted(predictor):
    name = spec.PREDICTOR_NAMES[predictor]
    rng = np.random.default_rng(predictor)
    for dtype in ("uint16", "int16", "uint8"):
        a = smooth_field(rng, (29, 45), dtype)
        data = lossless.encode(a, (16, 16), predictors=[name])
        used = {record.predictor for record in spec.parse(data).tiles}
        assert predictor in used and used <= {0, predictor}
        check(data, a)


def test_contexts_groups_and_raw_planes_are_decoded():
    """Streams whose models have plane-0 activity contexts, previous-plane contexts,
    several table groups, raw planes and one-row tiles."""
    rng = np.random.default_rng(7)
    seen = set()
    # Activity: stripes of flat and busy columns; the edge tiles are 32 columns wide, where
    # the activity is 0 (the row above is decoded in the same 32-lane step).
    y, x = np.mgrid[0:40, 0:96]
    busy = np.where((x // 10) % 2 == 0, 1, 60)
    img = (x + 2 * y + rng.integers(0, busy)).astype(np.uint8)
    # Groups: tiles of very different scales.
    scales = np.repeat(np.repeat(np.array([[1, 400], [3000, 20]]), 24, 0), 24, 1)
    scaled = np.round(rng.normal(0, 1, (48, 48)) * scales).astype(np.int16)
    # Previous-plane contexts and raw planes: few magnitudes, random low mantissa bits.
    k = rng.integers(-6, 7, (30, 40)).astype(np.float32) * np.float32(0.37)
    low = rng.integers(0, 1 << 16, (30, 40), dtype=np.uint32)
    floats = (k.view(np.uint32) ^ low).view(np.float32)
    cases = [(img, dict(tile=(20, 64))), (scaled, dict(tile=(12, 12))),
             (floats, dict(tile=(16, 32))), (floats, dict(tile=(16, 32), min_gain=0.1)),
             (floats.reshape(-1), {})]
    for a, kwargs in cases:
        data = lossless.encode(a, **kwargs)
        stream = spec.parse(data)
        if stream.planes[0].nctx > 1 and stream.tile[1] >= 33:
            seen.add("activity")
        if any(p.nctx > 1 for p in stream.planes[1:]):
            seen.add("previous plane")
        if any(p.ngroups > 1 for p in stream.planes):
            seen.add("groups")
        if any(g == spec.RAW for r in stream.tiles for g in r.groups):
            seen.add("raw")
        if stream.tile[0] == 1:
            seen.add("one-row tiles")
        check(data, a)
    assert seen == {"activity", "previous plane", "groups", "raw", "one-row tiles"}


def test_version_1_stream_decodes_without_layout_byte():
    a = (np.arange(600, dtype=np.int16).reshape(20, 30) * 7)
    v2 = bytearray(lossless.encode(a))
    assert spec.parse(bytes(v2)).planes[0].nctx == 1  # context 0 either way
    v1 = v2[:12] + v2[13:]
    v1[4] = 1
    check(with_crc(v1), a)


def hand_made_stream(table, states=(1 << 23,) * 32, data=b""):
    """A 2 x 40 uint8 stream, one tile, one group of one table, written byte by byte as
    docs/lossless-format.md lays it out."""
    header = bytes([0]) + struct.pack("<QQ", 2, 40) + struct.pack("<IIQ", 2, 40, len(data))
    plane = bytes([12, 1, 1]) + table
    record = struct.pack("<QIB", 0, len(data), 0) + bytes([0]) + struct.pack("<32I", *states)
    body = header + plane + record + data
    return b"CGCL" + bytes([2, 1, 2, 32]) + struct.pack("<I", zlib.crc32(body)) + body


def test_an_empty_table_decodes_symbol_zero_without_changing_the_state():
    data = hand_made_stream(b"\x00")  # k = 0
    check(data, np.zeros((2, 40), np.uint8))


def test_hand_made_one_symbol_table():
    # Symbol 9 with all 2**12 slots: as for an empty table the states never move.
    data = hand_made_stream(b"\x01\x09")
    check(data, np.full((2, 40), 9, np.uint8))
    # A final state other than 2**23 must be rejected.
    both_reject(hand_made_stream(b"\x01\x09", states=(1 << 23,) * 31 + ((1 << 23) + 1,)),
                "final lane state")


# ----------------------------------------------------------------------------- rejection

def small_stream(tile=(8, 40)):
    """A smooth 10 x 45 uint16 array and its stream: 4 tiles by default."""
    rng = np.random.default_rng(11)
    a = (np.cumsum(rng.integers(-3, 4, (10, 45)), axis=1) + 1000).astype(np.uint16)
    return a, lossless.encode(a, tile)


def offsets(data):
    """Positions of the header fields a test edits (docs/lossless-format.md, "Header")."""
    stream = spec.parse(data)
    ndim = len(stream.shape)
    tile = 13 + 8 * ndim
    return dict(layout=12, tile=tile, data_size=tile + 8, planes=tile + 16,
                meta=stream.metadata_offset, record=spec.record_size(stream.width))


def edited(data, at, new):
    data = bytearray(data)
    data[at:at + len(new)] = new
    return with_crc(data)


def test_streams_breaking_a_must_are_rejected_by_both():
    a, data = small_stream()
    check(data, a)
    f = offsets(data)
    meta, rec = f["meta"], f["record"]
    both_reject(data[:-1], "CRC32")
    both_reject(b"CGCX" + data[4:], "magic")
    for at, new, reason in [(4, b"\x03", "version 3"),
                            (5, b"\x08", "element type 8"),
                            (6, b"\x21", "ndim 33"),
                            (7, b"\x10", "16 lanes"),
                            (f["layout"], b"\x07", "layout 7"),
                            (f["layout"], b"\x02", "planar layout"),  # colour on 2-D
                            (f["tile"], struct.pack("<I", 0), "tile 0 x"),
                            (f["tile"], struct.pack("<II", 1 << 9, 1 << 10), "tile 512 x"),
                            (f["data_size"], struct.pack("<Q", len(data)), "Data size"),
                            (f["planes"], b"\x0b", "prob_bits 11"),
                            (f["planes"] + 1, b"\x11", "nctx 17"),
                            (meta, struct.pack("<Q", 1), "tile 0 offset 1"),
                            (meta + 12, b"\x06", "predictor 6"),
                            (meta + 13, b"\x10", "group 16"),
                            (meta + 15, struct.pack("<I", (1 << 23) - 1), "lane state"),
                            (meta + 15, struct.pack("<I", 1 << 31), "lane state"),
                            (meta + rec + 8, struct.pack("<I", 1), "tile 2 offset")]:
        both_reject(edited(data, at, new), reason)
    both_reject(with_crc(data[:-1]), "Data size")


def test_context_map_must_name_existing_contexts():
    with open(GOLDEN["lossless_rgb.cgcl"], "rb") as f:
        data = f.read()
    stream = spec.parse(data)
    nctx = stream.planes[0].nctx
    at = offsets(data)["planes"] + 3 + stream.planes[0].ctxmap.index(0)
    both_reject(edited(data, at, bytes([nctx])), "missing context")


def test_corrupt_tile_bytes_decode_alike_or_are_rejected_by_both():
    """Every byte of the Data section flipped behind a valid CRC: where the decoders accept
    the stream they return the same array (raw plane bytes decode to other values), and
    rANS stream bytes are caught by the end-of-stream checks."""
    a, data = small_stream(tile=(10, 45))  # one tile: a few hundred bytes to flip
    start = len(data) - len(spec.parse(data).data)
    rejected = 0
    for at in range(start, len(data)):
        bad = edited(data, at, bytes([data[at] ^ 0x41]))
        try:
            ours = spec.decode(bad)
        except spec.Rejected:
            rejected += 1
            with pytest.raises(FormatError):
                lossless.decode(bad)
            continue
        assert_same(lossless.decode(bad), ours)
    assert rejected > 0


# ----------------------------------------------------------------------------- checkpoints

def safetensors_file():
    """Coded dtypes (BF16 apart from U16), dtypes stored as bytes, an unknown dtype, a
    scalar, empty tensors, bytes no tensor covers (between tensors and at the end), and a
    header order unlike the buffer's."""
    rng = np.random.default_rng(5)
    parts = [("w", "F32", rng.normal(0, 0.1, (6, 9)).astype("<f4")),
             ("bf", "BF16", (rng.normal(0, 1, (4, 33)).astype("<f4").view("<u4")
                             >> 16).astype("<u2")),
             ("i", "I16", rng.integers(-300, 300, (3, 4, 5)).astype("<i2")),
             ("u", "U16", rng.integers(0, 9, (2, 7)).astype("<u2")),
             ("d", "F64", rng.normal(0, 1, 3)),
             ("q", "Q7", rng.integers(0, 256, 5).astype("u1")),
             ("s", "F32", np.array(1.25, "<f4")),
             ("e", "F16", np.zeros((0, 6), "<f2")),
             ("z", "U8", np.zeros((4, 0), "u1"))]
    buffer, header = bytearray(), {"__metadata__": {"format": "pt"}}
    for k, (name, dtype, array) in enumerate(parts):
        buffer += bytes(range(k % 4 // 3 * 3))  # 3 bytes before tensors 3 and 7
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [len(buffer), len(buffer) + array.nbytes]}
        buffer += array.tobytes()
    buffer += b"tail"
    text = json.dumps(dict(reversed(list(header.items())))).encode()
    return struct.pack("<Q", len(text)) + text + bytes(buffer)


def test_checkpoint_decodes_to_the_safetensors_file():
    original = safetensors_file()
    data = checkpoint.compress(original, tile=(4, 16))
    assert spec.decode_checkpoint(data) == original
    assert bytes(checkpoint.decompress(data)) == original


def test_checkpoint_streams_must_hold_their_segments():
    # Two tensors of 8 bytes each, float16 and int16: their streams swapped in place (sizes
    # too) each parse, but hold the other segment's element type.
    a = np.arange(4, dtype="<f2").tobytes()
    b = np.arange(4, dtype="<i2").tobytes()
    header = json.dumps({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]},
                         "b": {"dtype": "I16", "shape": [4], "data_offsets": [8, 16]}}).encode()
    original = struct.pack("<Q", len(header)) + header + a + b
    data = checkpoint.compress(original)
    assert spec.decode_checkpoint(data) == original
    count = struct.unpack_from("<I", data, 16)[0]
    sizes = struct.unpack_from(f"<{count}Q", data, 20)
    index_end = 20 + 8 * count + 8 + len(header)
    first = index_end + 4
    streams = [data[first:first + sizes[0]], data[first + sizes[0]:]]
    index = bytearray(data[:index_end])
    struct.pack_into("<2Q", index, 20, sizes[1], sizes[0])
    swapped = bytes(index) + struct.pack("<I", zlib.crc32(index)) + streams[1] + streams[0]
    with pytest.raises(spec.Rejected, match="holds"):
        spec.decode_checkpoint(swapped)
    with pytest.raises(FormatError):
        checkpoint.decompress(swapped)
    # Flags must be 0, and the CRC must match.
    flagged = bytearray(data)
    flagged[6] = 1
    flipped = data[:first - 1] + bytes([data[first - 1] ^ 1]) + data[first:]
    for bad, reason in ((bytes(flagged), "flags"), (flipped, "CRC")):
        with pytest.raises(spec.Rejected, match=reason):
            spec.decode_checkpoint(bad)
        with pytest.raises(FormatError):
            checkpoint.decompress(bad)
