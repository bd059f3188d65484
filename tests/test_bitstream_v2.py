"""Files of .cgc versions 1 and 2, which readers must still decode (docs/format.md,
"Versions 1 and 2"): the golden files written by those versions' encoders, and malformed
version-2 streams (static rANS blocks in raster order), which must raise FormatError."""
import os
import struct
import zlib

import numpy as np
import pytest

from cgc.image.container import (HEADER, MAGIC, QUANTISER, STREAM_LENGTH, VERSION_1_BITS,
                           stream_names, unpack)
from cgc.image.codec import decode_gaussians
from cgc.errors import FormatError
from cgc.image.quantize import DEFAULT_BITS, LINEAR, LOG, canonical_cholesky, quantise
from rans_blocks import rans_encode
from cgc_files import (QUANT_OFFSET, assert_all_format_errors, golden_gaussians, n_streams,
                       outcome, read_varint, replace_stream, stream_span, with_crc,
                       write_varint)

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")
# Written by the version-2 encoder from golden_gaussians() with these widths.
GOLDEN_V2 = os.path.join(GOLDEN_DIR, "small_v2.cgc")
GOLDEN_V2_BITS = (12, 9, 7, 8, 6, 7, 5, 2)
# Written by the version-1 encoder: 16-bit positions, 8-bit everything, R, G, B colour.
GOLDEN_V1 = os.path.join(GOLDEN_DIR, "small_v1.cgc")


@pytest.fixture(scope="module")
def v2_file():
    with open(GOLDEN_V2, "rb") as f:
        return f.read()


def raster_order(codes):
    """Versions 1 and 2 store Gaussians sorted by quantised y, then x."""
    return np.lexsort((codes[:, 0], codes[:, 1]))


def test_version_2_file_decodes_to_the_quantised_gaussians(v2_file):
    magic, version, flags, width, height, n = HEADER.unpack_from(v2_file)
    assert (magic, version, flags, width, height, n) == (MAGIC, 2, 0, 23, 17, 40)
    quantisers, codes = quantise(golden_gaussians().params, GOLDEN_V2_BITS)
    packed = unpack(v2_file)
    assert packed.colour_space == "ycocg"
    np.testing.assert_array_equal(packed.codes, codes[raster_order(codes)])
    assert packed.quantisers == quantisers
    assert list(packed.stream_sizes) == ["y_delta_hi", "y_delta_lo", "x_hi", "x_lo", "l11",
                                         "l21", "l22", "Y", "Co", "Cg"]


def test_version_2_truncation_and_flipped_bytes(v2_file):
    cases = [(f"first {k} bytes", v2_file[:k]) for k in range(len(v2_file))]
    problems = []
    for i in range(len(v2_file) - 4):
        for mask in (0xFF, 0x01):
            data = bytearray(v2_file)
            data[i] ^= mask
            cases.append((f"byte {i} ^ {mask:#x}", bytes(data)))
            # With the CRC recomputed many edits are legal files: decoding must then
            # succeed, and must otherwise raise FormatError, never anything else.
            what = outcome(with_crc(data))
            if what not in (None, "decoded without error"):
                problems.append((i, mask, what))
    assert_all_format_errors(cases)
    assert not problems, problems[:10]


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
    with open(GOLDEN_V2, "rb") as f:
        golden = f.read()
    kinds = set()
    for index in range(n_streams(golden)):
        start, end = stream_span(golden, index)
        _, pos = read_varint(golden[start:end])
        kinds.add("stored" if golden[start + pos] == 0 else "rans")
    assert kinds == {"stored", "rans"}


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


def test_corrupted_rans_stream_with_valid_crc(v2_file):
    index, block = first_rans_coded_stream(v2_file)
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
    assert_all_format_errors((label, replace_stream(v2_file, index, b))
                             for label, b in corrupt.items())


def hand_made_file(columns, widths, n):
    """A version-2 file built stream by stream from ``columns`` (name -> uint8 array)."""
    names = stream_names(widths, 2)
    blocks = [rans_encode(columns[name]) for name in names]
    body = HEADER.pack(MAGIC, 2, 0, 4, 4, n)
    body += b"".join(QUANTISER.pack(b, LINEAR, 0.0, 1.0) for b in widths)
    body += b"".join(STREAM_LENGTH.pack(len(b)) for b in blocks) + b"".join(blocks)
    return body + struct.pack("<I", zlib.crc32(body))


def test_y_positions_overflowing_their_quantiser():
    # The encoder cannot produce it: two y deltas of 0xFF00 sum past 65535.
    n = 2
    columns = {name: np.zeros(n, dtype=np.uint8) for name in stream_names(DEFAULT_BITS, 2)}
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
    columns = {name: np.zeros(n, dtype=np.uint8) for name in stream_names(widths, 2)}
    top = (1 << widths[0] - 8) - 1 if attribute == "x_hi" else (1 << widths[6]) - 1
    columns[attribute][:] = top
    assert unpack(hand_made_file(columns, widths, n)).codes.max() > 0  # legal: decodes
    columns[attribute][1] = top + 1
    with pytest.raises(FormatError, match="exceed"):
        decode_gaussians(hand_made_file(columns, widths, n))
