"""The .cgc container (cgc.bitstream): round trips, a golden file pinning the format, and
malformed input, which must raise cgc.FormatError and nothing else, without big allocations.

Layout of version 2 used by the hand-made corruptions below (docs/format.md):
HEADER (20 bytes) | 8 quantisers (10 bytes each) | S stream lengths (u32) | streams | CRC32,
with S = 8 plus one per attribute wider than 8 bits.  Version 1 files (R, G, B colour, fixed
widths) must still decode: tests/golden/small_v1.cgc pins one.
"""
import os
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

import cgc
from cgc import _core
from cgc.bitstream import (HEADER, MAGIC, MAX_GAUSSIANS, MAX_PIXELS, MAX_SIDE, QUANTISER,
                           STREAM_LENGTH, VERSION, VERSION_1_BITS, pack, raster_order,
                           stream_names, unpack)
from cgc.codec import decode_gaussians, encode_gaussians, quantise_gaussians
from cgc.errors import FormatError
from cgc.gaussians import Gaussians
from cgc.quantize import ATTRIBUTES, DEFAULT_BITS, LINEAR, LOG, Quantiser, canonical_cholesky

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "small.cgc")
# Widths of the golden file: above and below 8 bits, odd ones; the 2-bit Cg gives a
# rANS-coded stream with a frequency table, the 7-bit ones are stored verbatim.
GOLDEN_BITS = (12, 9, 7, 8, 6, 7, 5, 2)
# A version-1 file written by the version-1 encoder, kept to prove old files still decode.
GOLDEN_V1 = os.path.join(os.path.dirname(__file__), "golden", "small_v1.cgc")
REGEN_HINT = ("run `python -m pytest tests/test_bitstream.py --regen-golden` to rewrite it, "
              "but only for an intended format change (then bump VERSION if old files "
              "no longer decode)")

QUANT_OFFSET = HEADER.size
LENGTHS_OFFSET = QUANT_OFFSET + QUANTISER.size * len(ATTRIBUTES)


# ----------------------------------------------------------------------------- helpers

def _lcg_uniform(seed):
    """Uniform floats in [0, 1) from a 64-bit LCG written out here, so the golden Gaussians
    do not depend on NumPy's random streams staying the same across versions."""
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield (state >> 11) / float(1 << 53)


def golden_gaussians():
    """40 hand-made Gaussians on a 23x17 image (not a multiple of anything).

    Signs of l11 / l22 are mixed so canonical_cholesky has work to do; red is drawn from a
    4-value palette so its stream is rANS-coded while green / blue stay near-incompressible
    (stored verbatim): the golden file then pins both block kinds."""
    width, height, n = 23, 17, 40
    u = _lcg_uniform(20240607)
    palette = (0.05, 0.3, 0.3, 0.85)
    rows = []
    for _ in range(n):
        x = next(u) * width
        y = next(u) * height
        l11 = (0.4 + 4.6 * next(u)) * (1 if next(u) < 0.7 else -1)
        l21 = -2 + 4 * next(u)
        l22 = (0.4 + 4.6 * next(u)) * (1 if next(u) < 0.7 else -1)
        r = palette[int(next(u) * len(palette))]
        g = next(u)
        b = -0.2 + 1.4 * next(u)  # colours may leave [0, 1]: opacity is folded in
        rows.append((x, y, l11, l21, l22, r, g, b))
    return Gaussians(np.array(rows, dtype=np.float32), height, width)


@pytest.fixture(scope="module")
def small_file():
    return encode_gaussians(golden_gaussians(), GOLDEN_BITS)


def with_crc(data):
    """Replace the trailing CRC32 so that the CRC check passes and later checks fire."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def with_header(data, **fields):
    names = ("magic", "version", "flags", "width", "height", "n")
    values = dict(zip(names, HEADER.unpack_from(data)))
    values.update(fields)
    return with_crc(HEADER.pack(*(values[k] for k in names)) + bytes(data[HEADER.size:]))


def file_bits(data):
    return [QUANTISER.unpack_from(data, QUANT_OFFSET + k * QUANTISER.size)[0]
            for k in range(len(ATTRIBUTES))]


def n_streams(data):
    return len(stream_names(file_bits(data)))


def streams_offset(data):
    return LENGTHS_OFFSET + STREAM_LENGTH.size * n_streams(data)


def stream_lengths(data):
    return [STREAM_LENGTH.unpack_from(data, LENGTHS_OFFSET + STREAM_LENGTH.size * i)[0]
            for i in range(n_streams(data))]


def with_lengths(data, lengths):
    table = b"".join(STREAM_LENGTH.pack(length) for length in lengths)
    return with_crc(bytes(data[:LENGTHS_OFFSET]) + table + bytes(data[streams_offset(data):]))


def stream_span(data, index):
    lengths = stream_lengths(data)
    start = streams_offset(data) + sum(lengths[:index])
    return start, start + lengths[index]


def replace_stream(data, index, block):
    """The file with stream ``index`` replaced by ``block``, lengths and CRC fixed up."""
    start, end = stream_span(data, index)
    lengths = stream_lengths(data)
    lengths[index] = len(block)
    out = bytes(data[:start]) + bytes(block) + bytes(data[end:])
    return with_lengths(out, lengths)


def read_varint(block, pos=0):
    value, shift = 0, 0
    while True:
        byte = block[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def write_varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def first_rans_coded_stream(data):
    """(index, block) of the first stream coded with rANS proper (not stored verbatim) with
    at least two distinct symbols, so that it has a frequency table to corrupt."""
    for index in range(n_streams(data)):
        start, end = stream_span(data, index)
        block = data[start:end]
        _, pos = read_varint(block)
        if block[pos] != 0 and block[pos + 1] > 0:
            return index, bytes(block)
    raise AssertionError("the small file has no rANS-coded stream")


def outcome(data):
    """None when decoding raises FormatError, else a description of what happened."""
    try:
        decode_gaussians(data)
    except FormatError:
        return None
    except Exception as exc:  # anything else is a bug: report which exception
        return f"{type(exc).__name__}: {exc}"
    return "decoded without error"


def assert_all_format_errors(cases):
    """cases: iterable of (label, bytes).  Collects every failure so one run shows them all."""
    bad = [(label, what) for label, data in cases if (what := outcome(data)) is not None]
    assert not bad, f"{len(bad)} malformed inputs not rejected with FormatError: {bad[:10]}"


def peak_allocation(func):
    """Run func (expected to raise FormatError); return (peak traced bytes, seconds)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(FormatError):
            func()
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, elapsed


def random_bits(rng):
    return tuple(int(b) for b in rng.integers(1, 17, len(ATTRIBUTES)))


def random_quantisers(rng, widths):
    quantisers = []
    for bits in widths:
        transform = int(rng.integers(0, 2))
        limit = 80.0 if transform == LOG else 1e4
        lo, hi = np.sort(rng.uniform(-limit, limit, 2).astype(np.float32))
        quantisers.append(Quantiser(bits, transform, float(lo), float(hi)))
    return quantisers


def random_codes(rng, n, widths):
    """Random codes of the given widths, extremes included, in raster order."""
    codes = np.stack([rng.integers(0, 1 << bits, n, dtype=np.int64) for bits in widths],
                     axis=1).astype(np.uint32)
    codes[0] = [(1 << bits) - 1 for bits in widths]  # every column's maximum
    if n > 1:
        codes[1] = 0
    return codes[raster_order(codes)]


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("n, seed", [(1, 0), (2, 1), (37, 2), (600, 3), (600, 4), (600, 5)])
def test_pack_unpack_round_trip(n, seed):
    rng = np.random.default_rng(seed)
    widths = DEFAULT_BITS if seed == 3 else random_bits(rng)
    codes = random_codes(rng, n, widths)
    quantisers = random_quantisers(rng, widths)
    width, height = int(rng.integers(1, 500)), int(rng.integers(1, 500))
    data = pack(width, height, quantisers, codes)
    packed = unpack(data)
    assert packed.version == VERSION and packed.colour_space == "ycocg"
    assert packed.codes.dtype == np.uint32 and packed.codes.shape == (n, 8)
    np.testing.assert_array_equal(packed.codes, codes)
    assert (packed.width, packed.height) == (width, height)
    assert packed.quantisers == quantisers  # lo / hi were float32 already: stored exactly
    assert list(packed.stream_sizes) == stream_names(widths)
    assert len(packed.stream_sizes) == 8 + sum(b > 8 for b in widths)
    assert streams_offset(data) + sum(packed.stream_sizes.values()) + 4 == len(data)


@pytest.mark.parametrize("bits", [16, 9, 8, 1])
def test_y_delta_spanning_the_full_range(bits):
    # y jumps from 0 to its largest code: the largest delta its streams must carry.
    top = (1 << bits) - 1
    codes = np.zeros((3, 8), dtype=np.uint32)
    codes[:, 1] = [0, 0, top]
    codes[:, 0] = [top, 1, 0]
    widths = (bits, bits) + DEFAULT_BITS[2:]
    data = pack(7, 5, [Quantiser(b, LINEAR, 0.0, 1.0) for b in widths], codes)
    np.testing.assert_array_equal(unpack(data).codes, codes)


def test_pack_rejects_invalid_arguments():
    q = [Quantiser(b, LINEAR, 0.0, 1.0) for b in DEFAULT_BITS]
    codes = np.zeros((2, 8), dtype=np.uint32)
    codes[:, 1] = [5, 4]  # y decreasing: not raster order
    with pytest.raises(ValueError, match="raster"):
        pack(4, 4, q, codes)
    with pytest.raises(ValueError, match="out of range"):
        pack(4, 4, q, np.zeros((0, 8), dtype=np.uint32))
    narrow = [Quantiser(5, LINEAR, 0.0, 1.0)] * 8
    with pytest.raises(ValueError, match="exceed"):
        pack(4, 4, narrow, np.full((1, 8), 32, dtype=np.uint32))
    with pytest.raises(ValueError, match="width"):
        pack(4, 4, [Quantiser(17, LINEAR, 0.0, 1.0)] * 8, np.zeros((1, 8), dtype=np.uint32))
    with pytest.raises(ValueError, match="per attribute"):
        pack(4, 4, q[:7], np.zeros((1, 8), dtype=np.uint32))


@pytest.mark.parametrize("height, width", [(1, MAX_SIDE), (1, MAX_SIDE + 1),
                                           (MAX_SIDE + 1, 1), (8193, 8192)])
def test_encoder_never_writes_a_file_its_decoder_rejects(height, width):
    # An image may legitimately exceed the container limits (a 40000 x 2 panorama); the
    # encoder must then refuse with ValueError instead of writing an undecodable file.
    params = np.array([[0.5, 0.5, 1, 0, 1, 0.5, 0.5, 0.5],
                       [3.5, 0.5, 2, 0.5, 1, 0.1, 0.9, 0.4]], dtype=np.float32)
    gaussians = Gaussians(params, height, width)
    try:
        data = encode_gaussians(gaussians)
    except ValueError:
        return
    decoded = decode_gaussians(data)  # FormatError here is the bug
    assert (decoded.height, decoded.width) == (height, width)


# ----------------------------------------------------------------------------- golden file

def test_golden_file_bytes(request):
    data = encode_gaussians(golden_gaussians(), GOLDEN_BITS)
    if request.config.getoption("--regen-golden"):
        os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
        with open(GOLDEN, "wb") as f:
            f.write(data)
    if not os.path.exists(GOLDEN):
        pytest.fail(f"golden file {GOLDEN} is missing; {REGEN_HINT}")
    with open(GOLDEN, "rb") as f:
        golden = f.read()
    if data != golden:
        first = next((i for i, (a, b) in enumerate(zip(data, golden)) if a != b),
                     min(len(data), len(golden)))
        pytest.fail(f"encode_gaussians no longer produces {GOLDEN} ({len(data)} bytes vs "
                    f"{len(golden)}, first difference at byte {first}); {REGEN_HINT}")


def test_golden_file_decodes_to_the_quantised_gaussians():
    with open(GOLDEN, "rb") as f:
        golden = f.read()
    magic, version, flags, width, height, n = HEADER.unpack_from(golden)
    assert (magic, version, flags, width, height, n) == (MAGIC, 2, 0, 23, 17, 40)
    source = golden_gaussians()
    codes, quantisers, expected = quantise_gaussians(source, GOLDEN_BITS)
    packed = unpack(golden)
    np.testing.assert_array_equal(packed.codes, codes)
    assert packed.quantisers == quantisers
    assert tuple(q.bits for q in packed.quantisers) == GOLDEN_BITS
    decoded = decode_gaussians(golden)
    assert (decoded.height, decoded.width) == (17, 23)
    assert decoded.params.dtype == np.float32
    assert np.array_equal(decoded.params, expected.params)
    # The decoded Gaussians are the source up to quantisation (x: 12 bits over less than
    # the image width), not something unrelated that merely round-trips.
    np.testing.assert_allclose(np.sort(decoded.params[:, 0]), np.sort(source.params[:, 0]),
                               atol=23 / 4095)


def test_version_1_file_still_decodes():
    # Written by the version-1 encoder: 16-bit positions, 8-bit everything, R, G, B colour.
    with open(GOLDEN_V1, "rb") as f:
        old = f.read()
    packed = unpack(old)
    assert (packed.version, packed.colour_space) == (1, "rgb")
    assert tuple(q.bits for q in packed.quantisers) == VERSION_1_BITS
    assert list(packed.stream_sizes) == ["y_delta_hi", "y_delta_lo", "x_hi", "x_lo", "l11",
                                         "l21", "l22", "r", "g", "b"]
    source = golden_gaussians()
    decoded = decode_gaussians(old)
    assert (decoded.height, decoded.width, len(decoded)) == (17, 23, 40)
    # Match each decoded Gaussian to its source by position (16 bits: no two collide),
    # then every attribute must be within half a step of its quantiser.  Reading the
    # colours as Y, Co, Cg would break the colour bounds.
    order_src = np.lexsort((source.params[:, 0], source.params[:, 1]))
    order_dec = np.lexsort((decoded.params[:, 0], decoded.params[:, 1]))
    src = canonical_cholesky(source.params).astype(np.float64)[order_src]
    dec = decoded.params[order_dec].astype(np.float64)
    for k, q in enumerate(packed.quantisers):
        step = (q.hi - q.lo) / q.levels
        if q.transform == LOG:
            err = np.abs(np.log(dec[:, k]) - np.log(src[:, k]))
        else:
            err = np.abs(dec[:, k] - src[:, k])
        assert err.max() <= step / 2 + 1e-5 * max(1.0, abs(q.lo), abs(q.hi)), k


def test_version_1_widths_are_enforced():
    with open(GOLDEN_V1, "rb") as f:
        old = f.read()
    at = QUANT_OFFSET + 2 * QUANTISER.size  # l11: 8 bits in version 1
    bits, transform, lo, hi = QUANTISER.unpack_from(old, at)
    changed = old[:at] + QUANTISER.pack(7, transform, lo, hi) + old[at + QUANTISER.size:-4]
    with pytest.raises(FormatError, match="version 1"):
        decode_gaussians(with_crc(changed + b"\0" * 4))


def test_golden_file_holds_both_block_kinds():
    # Guards the golden file's coverage: it must pin a rANS-coded and a stored block.
    with open(GOLDEN, "rb") as f:
        golden = f.read()
    kinds = set()
    for index in range(n_streams(golden)):
        start, end = stream_span(golden, index)
        _, pos = read_varint(golden[start:end])
        kinds.add("stored" if golden[start + pos] == 0 else "rans")
    assert kinds == {"stored", "rans"}


# ----------------------------------------------------------------------------- bad input

def test_empty_and_random_bytes():
    rng = np.random.default_rng(7)
    cases = [("empty", b""), ("magic only", MAGIC), ("magic + 1", MAGIC + b"\x01")]
    for length in (1, 3, 4, 23, 24, 25, 200, 5000):
        cases.append((f"random {length}", rng.integers(0, 256, length, np.uint8).tobytes()))
        # Random bytes behind a valid magic get as far as the CRC check.
        body = MAGIC + rng.integers(0, 256, length, np.uint8).tobytes()
        cases.append((f"magic + random {length}", body))
        cases.append((f"magic + random {length} + crc", with_crc(body + b"\0\0\0\0")))
    assert_all_format_errors(cases)
    for data in (b"", b"\x89PNG\r\n\x1a\n" + bytes(100)):
        with pytest.raises(FormatError):
            cgc.decode(data)  # the public entry point too


def test_wrong_magic(small_file):
    for magic in (b"\x89PNG", b"\x8bCGD", b"CGC\x8b", b"\0\0\0\0"):
        data = with_crc(magic + small_file[4:])
        with pytest.raises(FormatError, match="magic"):
            decode_gaussians(data)


@pytest.mark.parametrize("version", [0, VERSION + 1, 0xFFFF])
def test_wrong_version(small_file, version):
    data = with_header(small_file, version=version)  # CRC valid: the version check fires
    with pytest.raises(FormatError, match="version"):
        decode_gaussians(data)


def test_unknown_flags(small_file):
    with pytest.raises(FormatError, match="flags"):
        decode_gaussians(with_header(small_file, flags=1))


def test_truncation_at_every_length(small_file):
    assert_all_format_errors((f"first {k} bytes", small_file[:k])
                             for k in range(len(small_file)))


def test_every_single_flipped_byte(small_file):
    cases = []
    for i in range(len(small_file)):
        for mask in (0xFF, 0x01):
            data = bytearray(small_file)
            data[i] ^= mask
            cases.append((f"byte {i} ^ {mask:#x}", bytes(data)))
    assert_all_format_errors(cases)


def test_trailing_garbage(small_file):
    assert_all_format_errors([("one extra byte", small_file + b"\0"),
                              ("extra byte, crc fixed", with_crc(small_file[:-4] + b"\0" * 5))])


@pytest.mark.parametrize("width, height, n", [
    (2**31, 16, 1), (16, 2**31, 1), (2**32 - 1, 2**32 - 1, 2**32 - 1),
    (0, 16, 1), (16, 0, 1), (MAX_SIDE + 1, 1, 1), (1, MAX_SIDE + 1, 1),
    (8192, MAX_PIXELS // 8192 + 1, 1),           # both sides legal, the product is not
    (16, 16, 0), (16, 16, 2**31), (16, 16, 257),  # 257 Gaussians for 256 pixels
    (8192, 8192, MAX_GAUSSIANS + 1),
    (4096, 4096, MAX_GAUSSIANS),  # header legal: the streams (40 symbols each) disagree
])
def test_absurd_header_sizes_fail_fast_and_small(small_file, width, height, n):
    data = with_header(small_file, width=width, height=height, n=n)
    peak, elapsed = peak_allocation(lambda: decode_gaussians(data))
    assert peak < 50e6, f"{peak / 1e6:.0f} MB allocated before rejecting the header"
    assert elapsed < 2.0


def test_stream_lengths_disagreeing_with_file_size(small_file):
    lengths = stream_lengths(small_file)
    cases = [("all lengths 2**32-1", with_lengths(small_file, [2**32 - 1] * len(lengths)))]
    for i in range(len(lengths)):
        for delta in (-1, 1, 2**31):
            changed = list(lengths)
            changed[i] = (changed[i] + delta) % 2**32
            cases.append((f"stream {i} length {delta:+d}", with_lengths(small_file, changed)))
        if i + 1 < len(lengths):
            # Sum preserved: the size check passes, the last byte of stream i moves to the
            # front of stream i + 1, and stream i must then be detected as short.
            moved = list(lengths)
            moved[i] -= 1
            moved[i + 1] += 1
            cases.append((f"one byte moved from stream {i}", with_lengths(small_file, moved)))
    assert_all_format_errors(cases)


def test_corrupted_rans_stream_with_valid_crc(small_file):
    index, block = first_rans_coded_stream(small_file)
    n, pos = read_varint(block)
    assert n == 40 and pos == 1  # one-byte varint: the edits below keep the layout
    prob_bits, k = block[pos], block[pos + 1] + 1
    assert 12 <= prob_bits <= 16 and 2 <= k < 32  # a symbol list, then k - 1 frequencies
    symbols_at = pos + 2
    freq_at = symbols_at + k

    def edit(offset, value):
        out = bytearray(block)
        out[offset] = value
        return bytes(out)

    swapped = bytearray(block)
    swapped[symbols_at], swapped[symbols_at + 1] = block[symbols_at + 1], block[symbols_at]
    _, after_first_freq = read_varint(block, freq_at)
    state_at = freq_at  # the 4 state bytes follow the k - 1 frequency varints
    for _ in range(k - 1):
        _, state_at = read_varint(block, state_at)
    corrupt = {
        "symbol count - 1": edit(0, n - 1),
        "symbol count + 1": edit(0, n + 1),
        "precision 11 bits": edit(pos, 11),
        "precision 17 bits": edit(pos, 17),
        "symbols not ascending": bytes(swapped),
        "zero frequency": edit(freq_at, 0),
        "frequency = table size": (block[:freq_at] + write_varint(1 << prob_bits)
                                   + block[after_first_freq:]),
        "state zero": block[:state_at] + b"\0\0\0\0" + block[state_at + 4:],
        "state 0xffffffff": block[:state_at] + b"\xff" * 4 + block[state_at + 4:],
        "last byte dropped": block[:-1],
        "byte appended": block + b"\0",
        "only the header": block[:state_at],
    }
    assert_all_format_errors((label, replace_stream(small_file, index, b))
                             for label, b in corrupt.items())


def test_every_flipped_byte_with_valid_crc_never_crashes(small_file):
    # With the CRC recomputed many edits are legal files (another width, another colour):
    # decoding must then succeed, and must otherwise raise FormatError, never anything else.
    problems = []
    for i in range(len(small_file) - 4):
        for mask in (0xFF, 0x01):
            data = bytearray(small_file)
            data[i] ^= mask
            what = outcome(with_crc(data))
            if what not in (None, "decoded without error"):
                problems.append((i, mask, what))
    assert not problems, problems[:10]


def test_corrupt_quantiser_table_with_valid_crc(small_file):
    def with_quantiser(k, bits, transform, lo, hi):
        at = QUANT_OFFSET + k * QUANTISER.size
        return with_crc(small_file[:at] + QUANTISER.pack(bits, transform, lo, hi)
                        + small_file[at + QUANTISER.size:])

    assert_all_format_errors([
        ("x with 0 bits", with_quantiser(0, 0, LINEAR, 0.0, 1.0)),
        ("x with 17 bits", with_quantiser(0, 17, LINEAR, 0.0, 1.0)),
        ("x 12 -> 10 bits: its codes no longer fit", with_quantiser(0, 10, LINEAR, 0.0, 1.0)),
        ("x 12 -> 8 bits: one stream fewer", with_quantiser(0, 8, LINEAR, 0.0, 1.0)),
        ("l11 with 16 bits: one stream more", with_quantiser(2, 16, LOG, 0.0, 1.0)),
        ("unknown transform", with_quantiser(5, 8, 7, 0.0, 1.0)),
        ("NaN lo", with_quantiser(5, 8, LINEAR, float("nan"), 1.0)),
        ("inf hi", with_quantiser(6, 8, LINEAR, 0.0, float("inf"))),
        ("lo > hi", with_quantiser(7, 8, LINEAR, 1.0, 0.0)),
        ("log range beyond exp", with_quantiser(2, 8, LOG, 0.0, 100.0)),
    ])


def hand_made_file(columns, widths, n):
    """A version-2 file built stream by stream from ``columns`` (name -> uint8 array)."""
    names = stream_names(widths)
    blocks = [_core.rans_encode(columns[name]) for name in names]
    body = HEADER.pack(MAGIC, VERSION, 0, 4, 4, n)
    body += b"".join(QUANTISER.pack(b, LINEAR, 0.0, 1.0) for b in widths)
    body += b"".join(STREAM_LENGTH.pack(len(b)) for b in blocks) + b"".join(blocks)
    return body + struct.pack("<I", zlib.crc32(body))


def test_y_positions_overflowing_their_quantiser():
    # The encoder cannot produce it: two y deltas of 0xFF00 sum past 65535.
    n = 2
    columns = {name: np.zeros(n, dtype=np.uint8) for name in stream_names(DEFAULT_BITS)}
    columns["y_delta_hi"][:] = 0xFF
    with pytest.raises(FormatError, match="overflow"):
        decode_gaussians(hand_made_file(columns, DEFAULT_BITS, n))
    # Control: the same construction with one delta is a valid file, so the error above
    # comes from the overflow and not from the hand-made layout.
    columns["y_delta_hi"][1] = 0
    packed = unpack(hand_made_file(columns, DEFAULT_BITS, n))
    np.testing.assert_array_equal(packed.codes[:, 1], [0xFF00, 0xFF00])


@pytest.mark.parametrize("attribute, widths", [("x_hi", (12,) + DEFAULT_BITS[1:]),
                                               ("Co", DEFAULT_BITS[:6] + (5, 8))])
def test_codes_beyond_their_width(attribute, widths):
    # A high byte (12-bit x) or a whole code (5-bit Co) one past the largest legal value.
    n = 3
    columns = {name: np.zeros(n, dtype=np.uint8) for name in stream_names(widths)}
    top = (1 << widths[0] - 8) - 1 if attribute == "x_hi" else (1 << widths[6]) - 1
    columns[attribute][:] = top
    assert unpack(hand_made_file(columns, widths, n)).codes.max() > 0  # legal: decodes
    columns[attribute][1] = top + 1
    with pytest.raises(FormatError, match="exceed"):
        decode_gaussians(hand_made_file(columns, widths, n))


# ----------------------------------------------------------------------------- rANS blocks

def rans_inputs():
    rng = np.random.default_rng(21)
    skewed = rng.choice(4, 3000, p=[0.85, 0.1, 0.04, 0.01]).astype(np.uint8)
    return {
        "one symbol": np.zeros(1, np.uint8),
        "constant": np.full(500, 77, np.uint8),
        "skewed": skewed,
        "uniform bytes": rng.integers(0, 256, 4000, dtype=np.uint8),   # stored verbatim
        "40 distinct (bitmap)": rng.integers(100, 140, 2000, dtype=np.uint8),
        "all 256 + skew": np.concatenate([np.arange(256, dtype=np.uint8), skewed]),
    }


@pytest.mark.parametrize("name", list(rans_inputs()))
def test_rans_block_round_trip_into_poisoned_buffer(name):
    symbols = rans_inputs()[name]
    block = _core.rans_encode(symbols)
    out = np.full(symbols.shape[0], 0xCC, dtype=np.uint8)  # every byte must be written
    _core.rans_decode(block, out)
    np.testing.assert_array_equal(out, symbols)
    if name == "skewed":  # ~0.8 bits / symbol of entropy: rANS must actually compress
        assert len(block) < symbols.shape[0] // 4
    with pytest.raises(FormatError):
        _core.rans_decode(block, np.empty(symbols.shape[0] + 1, dtype=np.uint8))
