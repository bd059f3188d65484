"""The .cgc container: pack / unpack, header validation, CRC (spec: docs/format.md).

Read me first
-------------
* Everything is little-endian.  The file is HEADER, then the quantiser table, then the
  stream-length table, then the streams, then a CRC32 of all bytes before it.
* Gaussians are stored in raster order of their quantised position (y, then x): y codes
  are then non-decreasing and stored as differences, which are mostly small.
* Every 16-bit code column is split into a high-byte and a low-byte stream; each stream is
  one rANS block (cgc._core.rans_encode) holding exactly N symbols.
* Unpacking checks magic, version and CRC before trusting any size, and every size before
  allocating: a corrupt file raises FormatError, never allocates more than the limits below.
"""
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from cgc import _core
from cgc.errors import FormatError
from cgc.gaussians import COLUMNS
from cgc.quantize import Quantiser

MAGIC = b"\x8bCGC"
VERSION = 1
HEADER = struct.Struct("<4sHHIII")  # magic, version, flags, width, height, n_gaussians
QUANTISER = struct.Struct("<BBff")  # bits, transform, lo, hi
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 25
# 2**20 Gaussians is 15x what GaussianImage uses for a 2K image; a file declaring more is
# rejected before its streams allocate anything.
MAX_GAUSSIANS = 1 << 20

# Stream order of version 1: (name, attribute column, byte of the code: 1 high, 0 low).
STREAMS = [("y_delta_hi", 1, 1), ("y_delta_lo", 1, 0), ("x_hi", 0, 1), ("x_lo", 0, 0)] + [
    (name, k, 0) for k, name in enumerate(COLUMNS) if k >= 2]
STREAM_LENGTHS = struct.Struct("<" + "I" * len(STREAMS))
# Code widths of version 1, fixed by the stream layout above.
CODE_BITS = (16, 16, 8, 8, 8, 8, 8, 8)


@dataclass
class Packed:
    """What a .cgc file holds, before dequantisation."""

    width: int
    height: int
    quantisers: list
    codes: np.ndarray  # (N, 8) uint32, raster order
    stream_sizes: dict  # stream name -> bytes


def raster_order(codes):
    """Permutation sorting the Gaussians by quantised (y, x)."""
    return np.lexsort((codes[:, 0], codes[:, 1]))


def _code_columns(codes):
    """The per-stream byte arrays of version 1 for codes in raster order."""
    y_delta = np.diff(codes[:, 1].astype(np.int64), prepend=0).astype(np.uint32)
    columns = {0: codes[:, 0], 1: y_delta}
    for k in range(2, 8):
        columns[k] = codes[:, k]
    return [((columns[col] >> (8 * byte)) & 0xFF).astype(np.uint8)
            for _, col, byte in STREAMS]


def pack(width, height, quantisers, codes):
    """Serialise quantised Gaussians (codes in raster order) into .cgc bytes."""
    codes = np.asarray(codes, dtype=np.uint32)
    n = codes.shape[0]
    _check_limits(width, height, n, ValueError)
    if np.any(np.diff(codes[:, 1].astype(np.int64)) < 0):
        raise ValueError("codes must be in raster order")
    if tuple(q.bits for q in quantisers) != CODE_BITS:
        raise ValueError(f"version {VERSION} stores codes of {CODE_BITS} bits")
    if np.any(codes > np.array([(1 << b) - 1 for b in CODE_BITS], dtype=np.uint32)):
        raise ValueError("codes exceed their quantiser width")
    streams = [_core.rans_encode(col) for col in _code_columns(codes)]
    parts = [HEADER.pack(MAGIC, VERSION, 0, width, height, n)]
    parts += [QUANTISER.pack(q.bits, q.transform, q.lo, q.hi) for q in quantisers]
    parts.append(STREAM_LENGTHS.pack(*(len(s) for s in streams)))
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
    if version != VERSION:
        raise FormatError(f"unsupported .cgc version {version} (this reader knows {VERSION})")
    (stored_crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != stored_crc:
        raise FormatError("checksum mismatch: the file is corrupt or truncated")
    if flags != 0:
        raise FormatError(f"unknown header flags {flags:#x}")
    _check_limits(width, height, n, FormatError)
    return width, height, n


def unpack(data):
    """Parse and verify .cgc bytes; returns a :class:`Packed`."""
    data = bytes(data)
    width, height, n = _check_header(data)
    pos = HEADER.size
    tables_end = pos + QUANTISER.size * len(COLUMNS) + STREAM_LENGTHS.size
    if tables_end + 4 > len(data):
        raise FormatError("truncated .cgc tables")
    quantisers = []
    for bits in CODE_BITS:
        q = Quantiser(*QUANTISER.unpack_from(data, pos))
        try:
            q.validate()
        except ValueError as exc:
            raise FormatError(str(exc)) from None
        if q.bits != bits:
            raise FormatError(f"quantiser width {q.bits} bits, version {VERSION} has {bits}")
        quantisers.append(q)
        pos += QUANTISER.size
    lengths = STREAM_LENGTHS.unpack_from(data, pos)
    pos = tables_end
    if pos + sum(lengths) + 4 != len(data):
        raise FormatError("stream lengths disagree with the file size")
    columns = []
    for (name, _, _), length in zip(STREAMS, lengths):
        out = np.empty(n, dtype=np.uint8)
        try:
            _core.rans_decode(data[pos:pos + length], out)
        except FormatError as exc:
            raise FormatError(f"stream {name}: {exc}") from None
        columns.append(out)
        pos += length
    by_name = dict(zip((s[0] for s in STREAMS), columns))
    codes = np.empty((n, 8), dtype=np.uint32)
    codes[:, 0] = (by_name["x_hi"].astype(np.uint32) << 8) | by_name["x_lo"]
    y_delta = (by_name["y_delta_hi"].astype(np.int64) << 8) | by_name["y_delta_lo"]
    y = np.cumsum(y_delta)
    if y[-1] >= 1 << quantisers[1].bits:
        raise FormatError("y positions overflow their quantiser")
    codes[:, 1] = y
    for k in range(2, 8):
        codes[:, k] = by_name[COLUMNS[k]]
    sizes = {name: length for (name, _, _), length in zip(STREAMS, lengths)}
    return Packed(width, height, quantisers, codes, sizes)
