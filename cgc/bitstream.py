"""The .cgc container: pack / unpack, header validation, CRC (spec: docs/format.md).

Read me first
-------------
* Everything is little-endian.  The file is HEADER, then the quantiser table (one entry per
  attribute, holding its code width), then the stream-length table, then the streams, then
  a CRC32 of all bytes before it.
* Gaussians are stored in raster order of their quantised position (y, then x): y codes
  are then non-decreasing and stored as differences, which are mostly small.
* Streams go attribute by attribute in ``STREAM_ORDER`` (y's differences first).  A code of
  at most 8 bits is one stream; a wider one is two, its high bits then its low byte.  Each
  stream is one rANS block (cgc._core.rans_encode) holding exactly N symbols, so the number
  of streams, and the size of the length table, follow from the quantiser table.
* Version 2 codes colour as Y, Co, Cg with widths of 1 to 16 bits; version 1 (still read)
  coded R, G, B with the widths ``VERSION_1_BITS``.
* Unpacking checks magic, version and CRC before trusting any size, and every size before
  allocating: a corrupt file raises FormatError, never allocates more than the limits below.
"""
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from cgc import _core
from cgc.errors import FormatError
from cgc.quantize import ATTRIBUTES, Quantiser

MAGIC = b"\x8bCGC"
VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER = struct.Struct("<4sHHIII")  # magic, version, flags, width, height, n_gaussians
QUANTISER = struct.Struct("<BBff")  # bits, transform, lo, hi
STREAM_LENGTH = struct.Struct("<I")
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 25
# 2**20 Gaussians is 15x what GaussianImage uses for a 2K image; a file declaring more is
# rejected before its streams allocate anything.
MAX_GAUSSIANS = 1 << 20

# Attribute columns in stream order: y first, as differences of consecutive codes.
STREAM_ORDER = (1, 0, 2, 3, 4, 5, 6, 7)
VERSION_1_BITS = (16, 16, 8, 8, 8, 8, 8, 8)
VERSION_1_NAMES = ("x", "y", "l11", "l21", "l22", "r", "g", "b")
COLOUR_SPACE = {1: "rgb", 2: "ycocg"}


@dataclass
class Packed:
    """What a .cgc file holds, before dequantisation."""

    version: int
    width: int
    height: int
    quantisers: list
    codes: np.ndarray  # (N, 8) uint32, raster order
    stream_sizes: dict  # stream name -> bytes

    @property
    def colour_space(self):
        return COLOUR_SPACE[self.version]


def raster_order(codes):
    """Permutation sorting the Gaussians by quantised (y, x)."""
    return np.lexsort((codes[:, 0], codes[:, 1]))


def stream_names(bits, version=VERSION):
    """Names of the streams of a file whose attributes have these code widths."""
    attribute_names = VERSION_1_NAMES if version == 1 else ATTRIBUTES
    names = []
    for col in STREAM_ORDER:
        name = "y_delta" if col == 1 else attribute_names[col]
        names += [name + "_hi", name + "_lo"] if bits[col] > 8 else [name]
    return names


def code_streams(values, bits):
    """The byte streams of one attribute's codes (or y differences) of width ``bits``: one
    stream for up to 8 bits, else the high bits then the low byte."""
    values = np.asarray(values, dtype=np.uint32)
    if bits <= 8:
        return [values.astype(np.uint8)]
    return [(values >> 8).astype(np.uint8), (values & 0xFF).astype(np.uint8)]


def y_deltas(y_codes):
    """What the y streams hold: the first code, then differences of consecutive codes
    (given in raster order, so non-decreasing)."""
    return np.diff(np.asarray(y_codes, dtype=np.int64), prepend=0).astype(np.uint32)


def coded_columns(codes):
    """Per attribute, in STREAM_ORDER, the values its streams hold (codes in raster order)."""
    return [y_deltas(codes[:, 1]) if col == 1 else codes[:, col] for col in STREAM_ORDER]


def pack(width, height, quantisers, codes):
    """Serialise quantised Gaussians (codes in raster order) into .cgc bytes."""
    codes = np.asarray(codes, dtype=np.uint32)
    n = codes.shape[0]
    _check_limits(width, height, n, ValueError)
    if len(quantisers) != len(ATTRIBUTES) or codes.shape != (n, len(ATTRIBUTES)):
        raise ValueError(f"need one quantiser and one code column per attribute "
                         f"({len(ATTRIBUTES)})")
    for q in quantisers:
        q.validate()
    if np.any(np.diff(codes[:, 1].astype(np.int64)) < 0):
        raise ValueError("codes must be in raster order")
    if np.any(codes > np.array([q.levels for q in quantisers], dtype=np.uint32)):
        raise ValueError("codes exceed their quantiser width")
    streams = [_core.rans_encode(stream)
               for col, values in zip(STREAM_ORDER, coded_columns(codes))
               for stream in code_streams(values, quantisers[col].bits)]
    parts = [HEADER.pack(MAGIC, VERSION, 0, width, height, n)]
    parts += [QUANTISER.pack(q.bits, q.transform, q.lo, q.hi) for q in quantisers]
    parts += [STREAM_LENGTH.pack(len(s)) for s in streams]
    parts += streams
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def _check_limits(width, height, n, error):
    """The size limits of the format, shared by writer (ValueError) and reader (FormatError)."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE
            and width * height <= MAX_PIXELS):
        raise error(f"image size {width}x{height} out of range (at most {MAX_SIDE} a side "
                    f"and {MAX_PIXELS} pixels)")
    if not 1 <= n <= min(MAX_GAUSSIANS, width * height):
        raise error(f"Gaussian count {n} out of range for {width}x{height}")


def _check_header(data):
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise FormatError("not a .cgc file (bad magic)")
    if len(data) < HEADER.size + 4:
        raise FormatError("truncated .cgc header")
    magic, version, flags, width, height, n = HEADER.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported .cgc version {version} (this reader knows "
                          f"{', '.join(map(str, READABLE_VERSIONS))})")
    (stored_crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != stored_crc:
        raise FormatError("checksum mismatch: the file is corrupt or truncated")
    if flags != 0:
        raise FormatError(f"unknown header flags {flags:#x}")
    _check_limits(width, height, n, FormatError)
    return version, width, height, n


def unpack(data):
    """Parse and verify .cgc bytes; returns a :class:`Packed`."""
    data = bytes(data)
    version, width, height, n = _check_header(data)
    pos = HEADER.size
    if pos + QUANTISER.size * len(ATTRIBUTES) + 4 > len(data):
        raise FormatError("truncated .cgc quantiser table")
    quantisers = []
    for k in range(len(ATTRIBUTES)):
        q = Quantiser(*QUANTISER.unpack_from(data, pos))
        try:
            q.validate()
        except ValueError as exc:
            raise FormatError(str(exc)) from None
        if version == 1 and q.bits != VERSION_1_BITS[k]:
            raise FormatError(f"quantiser width {q.bits} bits, version 1 has "
                              f"{VERSION_1_BITS[k]}")
        quantisers.append(q)
        pos += QUANTISER.size
    bits = [q.bits for q in quantisers]
    names = stream_names(bits, version)
    if pos + STREAM_LENGTH.size * len(names) + 4 > len(data):
        raise FormatError("truncated .cgc stream-length table")
    lengths = [STREAM_LENGTH.unpack_from(data, pos + STREAM_LENGTH.size * i)[0]
               for i in range(len(names))]
    pos += STREAM_LENGTH.size * len(names)
    if pos + sum(lengths) + 4 != len(data):
        raise FormatError("stream lengths disagree with the file size")
    streams = []
    for name, length in zip(names, lengths):
        out = np.empty(n, dtype=np.uint8)
        try:
            _core.rans_decode(data[pos:pos + length], out)
        except FormatError as exc:
            raise FormatError(f"stream {name}: {exc}") from None
        streams.append(out)
        pos += length
    codes = np.empty((n, len(ATTRIBUTES)), dtype=np.uint32)
    next_stream = iter(streams)
    for col in STREAM_ORDER:
        values = next(next_stream).astype(np.int64)
        if bits[col] > 8:
            values = (values << 8) | next(next_stream)
        if col == 1:
            values = np.cumsum(values)
            if values[-1] > quantisers[1].levels:
                raise FormatError("y positions overflow their quantiser")
        elif values.max() > quantisers[col].levels:
            label = (VERSION_1_NAMES if version == 1 else ATTRIBUTES)[col]
            raise FormatError(f"{label} codes exceed their {bits[col]}-bit quantiser")
        codes[:, col] = values
    sizes = dict(zip(names, lengths))
    return Packed(version, width, height, quantisers, codes, sizes)
