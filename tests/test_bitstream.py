"""The .cgc container (cgc.image.container): round trips, a golden file pinning the format, and
malformed input, which must raise cgc.FormatError and nothing else, without big allocations.

Layout of version 3 used by the hand-made corruptions below (docs/format.md):
HEADER (20 bytes) | 8 quantisers (10 bytes each) | 7 stream lengths (u32) | streams | CRC32.
Older versions: tests/test_bitstream_v2.py; the streams' coder: tests/test_gaussian_streams.py.
"""
import os
import tracemalloc

import numpy as np
import pytest

import cgc
from cgc import limits
from cgc.image import container
from cgc.image._container_cy import rans_decode
from cgc.image.container import (HEADER, MAGIC, MAX_GAUSSIANS, MAX_PIXELS, MAX_SIDE, QUANTISER,
                           READABLE_VERSIONS, STREAM_NAMES, VERSION, key_positions, pack,
                           position_keys, storage_order, unpack)
from cgc.image.codec import decode_gaussians, encode_gaussians, quantise_gaussians
from cgc.errors import FormatError
from cgc.image.model import Gaussians
from cgc.image.quantize import ATTRIBUTES, DEFAULT_BITS, LINEAR, LOG, Quantiser
from golden_files import check_golden
from rans_blocks import rans_encode
from cgc_files import (QUANT_OFFSET, assert_all_format_errors, golden_gaussians, outcome,
                       replace_stream, stream_lengths, stream_span,
                       streams_offset, with_crc, with_header, with_lengths)

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "small.cgc")
# Widths of the golden file: above and below 8 bits, odd ones, and 2-bit Cg.
GOLDEN_BITS = (12, 9, 7, 8, 6, 7, 5, 2)
REGEN_HINT = ("run `python -m pytest tests/test_bitstream.py --regen-golden` to rewrite it, "
              "but only for an intended format change (then bump VERSION if old files "
              "no longer decode)")


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def small_file():
    return encode_gaussians(golden_gaussians(), GOLDEN_BITS)


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
    """Random codes of the given widths, extremes included, in no particular order."""
    codes = np.stack([rng.integers(0, 1 << bits, n, dtype=np.int64) for bits in widths],
                     axis=1).astype(np.uint32)
    codes[0] = [(1 << bits) - 1 for bits in widths]  # every column's maximum
    if n > 1:
        codes[1] = 0
    return codes


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
    np.testing.assert_array_equal(packed.codes, codes[storage_order(codes, widths)])
    assert (packed.width, packed.height) == (width, height)
    assert packed.quantisers == quantisers  # lo / hi were float32 already: stored exactly
    assert list(packed.stream_sizes) == list(STREAM_NAMES)
    assert streams_offset(data) + sum(packed.stream_sizes.values()) + 4 == len(data)


@pytest.mark.parametrize("x_bits, y_bits", [(16, 16), (16, 1), (1, 16), (9, 12), (1, 1)])
def test_positions_at_the_corners_and_shared(x_bits, y_bits):
    # The grid's four corners, and three Gaussians on one position (a leaf of the position
    # tree holding several), with widths that make keys of 2 to 32 bits.
    x_top, y_top = (1 << x_bits) - 1, (1 << y_bits) - 1
    codes = np.zeros((7, 8), dtype=np.uint32)
    codes[:, 0] = [x_top, 0, x_top, 0] + [x_top // 2] * 3
    codes[:, 1] = [y_top, y_top, 0, 0] + [y_top // 2] * 3
    codes[:, 5] = np.arange(7)  # tells the three apart
    widths = (x_bits, y_bits) + DEFAULT_BITS[2:]
    data = pack(7, 5, [Quantiser(b, LINEAR, 0.0, 1.0) for b in widths], codes)
    decoded = unpack(data).codes
    np.testing.assert_array_equal(decoded, codes[storage_order(codes, widths)])


@pytest.mark.parametrize("x_bits, y_bits", [(12, 11), (11, 12), (16, 16), (1, 16), (3, 3)])
def test_position_keys_are_a_kd_tree_order(x_bits, y_bits):
    rng = np.random.default_rng(x_bits * 17 + y_bits)
    x = rng.integers(0, 1 << x_bits, 500).astype(np.uint32)
    y = rng.integers(0, 1 << y_bits, 500).astype(np.uint32)
    keys = position_keys(x, y, x_bits, y_bits)
    assert int(keys.max()) < 1 << (x_bits + y_bits)
    back_x, back_y = key_positions(keys, x_bits, y_bits)
    np.testing.assert_array_equal(back_x, x)
    np.testing.assert_array_equal(back_y, y)
    # The top bit splits the longer side of the grid in two (x on a square one): every key
    # with it clear lies in the first half of that side.
    top = keys >> np.uint64(x_bits + y_bits - 1)
    if x_bits >= y_bits:
        assert np.all((x < (1 << (x_bits - 1))) == (top == 0))
    else:
        assert np.all((y < (1 << (y_bits - 1))) == (top == 0))


def test_pack_rejects_invalid_arguments():
    q = [Quantiser(b, LINEAR, 0.0, 1.0) for b in DEFAULT_BITS]
    with pytest.raises(ValueError, match="out of range"):
        pack(4, 4, q, np.zeros((0, 8), dtype=np.uint32))
    narrow = [Quantiser(5, LINEAR, 0.0, 1.0)] * 8
    with pytest.raises(ValueError, match="exceed"):
        pack(4, 4, narrow, np.full((1, 8), 32, dtype=np.uint32))
    with pytest.raises(ValueError, match="width"):
        pack(4, 4, [Quantiser(17, LINEAR, 0.0, 1.0)] * 8, np.zeros((1, 8), dtype=np.uint32))
    with pytest.raises(ValueError, match="per attribute"):
        pack(4, 4, q[:7], np.zeros((1, 8), dtype=np.uint32))


def test_encoder_writes_the_largest_side_the_format_allows():
    # 1 x MAX_SIDE is within every limit (MAX_SIDE a side, MAX_PIXELS in all): the encoder
    # must write it, and its decoder read it back.
    params = np.array([[0.5, 0.5, 1, 0, 1, 0.5, 0.5, 0.5],
                       [MAX_SIDE - 3.5, 0.5, 2, 0.5, 1, 0.1, 0.9, 0.4]], dtype=np.float32)
    gaussians = Gaussians(params, 1, MAX_SIDE)
    data = encode_gaussians(gaussians)
    decoded = decode_gaussians(data)
    assert (decoded.height, decoded.width) == (1, MAX_SIDE)
    _, _, expected = quantise_gaussians(gaussians)
    assert np.array_equal(decoded.params, expected.params)


@pytest.mark.parametrize("height, width", [(1, MAX_SIDE + 1), (MAX_SIDE + 1, 1),
                                           (8193, 8192)])
def test_encoder_refuses_sizes_its_decoder_rejects(height, width):
    # An image may legitimately exceed the container limits (a 40000 x 2 panorama); the
    # encoder must then refuse with ValueError instead of writing an undecodable file.
    params = np.array([[0.5, 0.5, 1, 0, 1, 0.5, 0.5, 0.5],
                       [3.5, 0.5, 2, 0.5, 1, 0.1, 0.9, 0.4]], dtype=np.float32)
    with pytest.raises(ValueError, match="out of range"):
        encode_gaussians(Gaussians(params, height, width))


# ----------------------------------------------------------------------------- golden file

def test_golden_file_bytes(request):
    check_golden(request, GOLDEN, encode_gaussians(golden_gaussians(), GOLDEN_BITS),
                 REGEN_HINT)


def test_golden_file_decodes_to_the_quantised_gaussians():
    with open(GOLDEN, "rb") as f:
        golden = f.read()
    magic, version, flags, width, height, n = HEADER.unpack_from(golden)
    assert (magic, version, flags, width, height, n) == (MAGIC, 3, 0, 23, 17, 40)
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


@pytest.mark.parametrize("version", [0, max(READABLE_VERSIONS) + 1, 0xFFFF])
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


@pytest.mark.parametrize("width, height, n, match", [
    (2**31, 16, 1, "image size"), (16, 2**31, 1, "image size"),
    (2**32 - 1, 2**32 - 1, 2**32 - 1, "image size"),
    (0, 16, 1, "image size"), (16, 0, 1, "image size"),
    (MAX_SIDE + 1, 1, 1, "image size"), (1, MAX_SIDE + 1, 1, "image size"),
    (8192, MAX_PIXELS // 8192 + 1, 1, "image size"),  # both sides legal, the product is not
    (16, 16, 0, "Gaussian count"), (16, 16, 2**31, "Gaussian count"),
    (16, 16, 257, "Gaussian count"),  # 257 Gaussians for 256 pixels
    (8192, MAX_PIXELS // 8192, MAX_GAUSSIANS + 1, "Gaussian count"),  # size legal
    # Header legal: far more Gaussians than the file has bytes (cgc.limits) ...
    (4096, 4096, MAX_GAUSSIANS, "MAX_GAUSSIANS_PER_BYTE"),
    # ... and, with that limit off, the streams (40 symbols each) too short for the count.
    (4096, 4096, MAX_GAUSSIANS, "too short"),
])
def test_absurd_header_sizes_are_refused_before_decoding(small_file, monkeypatch, width,
                                                          height, n, match):
    # The sizes are checked before any stream is decoded or anything of their size is
    # allocated: the stream decoders must never be called, and the traced peak stays small.
    calls = []

    def spy(name, original):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(container._container_cy, "streams_decode",
                        spy("streams_decode", container._container_cy.streams_decode))
    monkeypatch.setattr(container.container_legacy, "decode_codes",
                        spy("decode_codes", container.container_legacy.decode_codes))
    if match == "too short":
        monkeypatch.setattr(limits, "MAX_GAUSSIANS_PER_BYTE", None)
    data = with_header(small_file, width=width, height=height, n=n)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=match):
            decode_gaussians(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert calls == []
    # A refusal traces a few KiB (the file's few hundred bytes, the exception); 1 MiB is far above
    # that and far below the codes of 2**20 Gaussians (32 MiB) or a row of 2**31 pixels.
    assert peak < 1 << 20, f"{peak / 1e6:.1f} MB allocated before rejecting the header"
    # The spies see a real decode: the unedited file goes through the stream decoder.
    decode_gaussians(small_file)
    assert calls == ["streams_decode"]


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


def test_edited_streams_with_valid_crc(small_file):
    # Each stream must be consumed exactly: a byte more or less, a first byte other than
    # the coder's leading 0, or another stream's bytes in its place is not a valid file.
    cases = []
    for index in range(len(STREAM_NAMES)):
        start, end = stream_span(small_file, index)
        block = small_file[start:end]
        other = (index + 1) % len(STREAM_NAMES)
        other_start, other_end = stream_span(small_file, other)
        edits = {"last byte dropped": block[:-1], "byte appended": block + b"\0",
                 "leading byte 1": b"\1" + block[1:], "empty": b"",
                 f"stream {other}'s bytes": small_file[other_start:other_end]}
        cases += [(f"stream {index}: {label}", replace_stream(small_file, index, edit))
                  for label, edit in edits.items()]
    assert_all_format_errors(cases)


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
        ("unknown transform", with_quantiser(5, 8, 7, 0.0, 1.0)),
        ("NaN lo", with_quantiser(5, 8, LINEAR, float("nan"), 1.0)),
        ("inf hi", with_quantiser(6, 8, LINEAR, 0.0, float("inf"))),
        ("lo > hi", with_quantiser(7, 8, LINEAR, 1.0, 0.0)),
        ("log range beyond exp", with_quantiser(2, 8, LOG, 0.0, 100.0)),
    ])


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
    block = rans_encode(symbols)
    out = np.full(symbols.shape[0], 0xCC, dtype=np.uint8)  # every byte must be written
    rans_decode(block, out)
    np.testing.assert_array_equal(out, symbols)
    if name == "skewed":  # ~0.8 bits / symbol of entropy: rANS must actually compress
        assert len(block) < symbols.shape[0] // 4
    with pytest.raises(FormatError):
        rans_decode(block, np.empty(symbols.shape[0] + 1, dtype=np.uint8))
