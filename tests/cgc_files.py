"""Helpers of the .cgc container tests: the golden Gaussians, and edits of a file's
header, stream-length table and streams that keep its CRC valid (docs/format.md)."""
import struct
import zlib

import numpy as np

from cgc.image.container import HEADER, QUANTISER, STREAM_LENGTH, stream_names
from cgc.image.codec import decode_gaussians
from cgc.errors import FormatError
from cgc.image.model import Gaussians
from cgc.image.quantize import ATTRIBUTES

QUANT_OFFSET = HEADER.size
LENGTHS_OFFSET = QUANT_OFFSET + QUANTISER.size * len(ATTRIBUTES)


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
    return len(stream_names(file_bits(data), HEADER.unpack_from(data)[1]))


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
