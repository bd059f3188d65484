"""The .cgc container: pack / unpack, header validation, CRC (spec: docs/format.md).

Read me first
-------------
* Everything is little-endian.  The file is HEADER, then the quantiser table (one entry per
  attribute, holding its code width), then the stream-length table, then the streams, then
  a CRC32 of all bytes before it.
* Version 3 (written here) has seven streams, each coded by the adaptive binary range
  coder of cgc/image/_gaussian_streams.h: first the positions, as a tree of counts over the
  quantised grid, then the attributes l11, l21, l22, Y, Co, Cg one stream each.  The
  Gaussians are stored in the order of their position keys (``position_keys``), a k-d tree
  order in which neighbours in the file are neighbours in the image; l21 and l22 are
  coded in contexts of l11, Co and Cg in contexts of Y (``CONTEXT_ATTRIBUTE``).
* Versions 1 and 2 (still read, cgc/image/container_legacy.py) used raster order and static
  rANS.
* Unpacking checks magic, version and CRC before trusting any size, and every size before
  allocating: a corrupt file raises FormatError, never allocates more than the limits below.
"""
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from cgc.image import _container_cy, container_legacy
from cgc import limits
from cgc.errors import FormatError
from cgc.image.quantize import ATTRIBUTES, Quantiser

MAGIC = b"\x8bCGC"
VERSION = 3
# Progressive files, in layers (cgc/image/layers.py).
LAYERED_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
HEADER = struct.Struct("<4sHHIII")  # magic, version, flags, width, height, n_gaussians
QUANTISER = struct.Struct("<BBff")  # bits, transform, lo, hi
STREAM_LENGTH = struct.Struct("<I")
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 25
# 2**20 Gaussians is 15x what GaussianImage uses for a 2K image; a file declaring more is
# rejected before its streams allocate anything.
MAX_GAUSSIANS = 1 << 20

VERSION_1_BITS = container_legacy.VERSION_1_BITS
VERSION_1_NAMES = container_legacy.VERSION_1_NAMES
COLOUR_SPACE = {1: "rgb", 2: "ycocg", 3: "ycocg", 4: "ycocg"}
X_COLUMN, Y_COLUMN = 0, 1
# Version 3: the attribute streams after the positions, in two groups that decode in
# parallel with the positions: the first of each is coded in one context, the other two in
# contexts of its code (CONTEXT_ATTRIBUTE; None: one context), which saves a little rate
# (measurements: docs/tuning.md, "image/container.py: attribute contexts").
ATTRIBUTE_GROUPS = ((2, 3, 4), (5, 6, 7))
ATTRIBUTE_STREAMS = tuple(col for group in ATTRIBUTE_GROUPS for col in group)
CONTEXT_ATTRIBUTE = {col: (None if col == group[0] else group[0])
                     for group in ATTRIBUTE_GROUPS for col in group}
# The least a modelled bit costs, log2(4096/4065) bits (cgc/native/range_coder.h caps its
# probability at 4065/4096): a stream of n b-bit codes whose bytes + 8 hold less than n * b
# such costs is invalid, checked before anything of size n is allocated (docs/tuning.md,
# "image/container.py: limits").
MIN_MODELLED_BIT_COST = 0.0109
STREAM_NAMES = ("positions",) + tuple(ATTRIBUTES[col] for col in ATTRIBUTE_STREAMS)
# Every range-coded stream is at least 5 bytes (its leading 0 and the 4 bytes its end
# flushes), so no file is smaller than this: one Gaussian with 1-bit codes.
SMALLEST_FILE = (HEADER.size + QUANTISER.size * len(ATTRIBUTES)
                 + (STREAM_LENGTH.size + 5) * len(STREAM_NAMES) + 4)


@dataclass
class Packed:
    """What a .cgc file holds, before dequantisation."""

    version: int
    width: int
    height: int
    quantisers: list
    codes: np.ndarray  # (N, 8) uint32, in the file's order
    stream_sizes: dict  # stream name -> bytes
    layers: list = None  # version 4: the Gaussian count of each layer read

    @property
    def colour_space(self):
        return COLOUR_SPACE[self.version]


def _key_layout(x_bits, y_bits):
    """(axis, bit) of each bit of a position key, from the top: the next bit of x while x
    has at least as many bits left as y, else the next bit of y."""
    layout, x_left, y_left = [], x_bits, y_bits
    while x_left or y_left:
        if x_left >= y_left:
            x_left -= 1
            layout.append((X_COLUMN, x_left))
        else:
            y_left -= 1
            layout.append((Y_COLUMN, y_left))
    return layout


def position_keys(x_codes, y_codes, x_bits, y_bits):
    """uint64 keys of quantised positions: their order is the file's order of Gaussians."""
    coords = (np.asarray(x_codes, dtype=np.uint64), np.asarray(y_codes, dtype=np.uint64))
    keys = np.zeros(coords[0].shape, dtype=np.uint64)
    for axis, bit in _key_layout(x_bits, y_bits):
        keys = (keys << np.uint64(1)) | ((coords[axis] >> np.uint64(bit)) & np.uint64(1))
    return keys


def key_positions(keys, x_bits, y_bits):
    """Inverse of position_keys: (x codes, y codes) as uint32."""
    keys = np.asarray(keys, dtype=np.uint64)
    coords = [np.zeros(keys.shape, dtype=np.uint64), np.zeros(keys.shape, dtype=np.uint64)]
    layout = _key_layout(x_bits, y_bits)
    for shift, (axis, bit) in enumerate(reversed(layout)):
        coords[axis] |= ((keys >> np.uint64(shift)) & np.uint64(1)) << np.uint64(bit)
    return coords[0].astype(np.uint32), coords[1].astype(np.uint32)


def storage_order(codes, bits):
    """Permutation putting codes (N, 8) of these widths in the file's order (stable)."""
    keys = position_keys(codes[:, X_COLUMN], codes[:, Y_COLUMN], bits[X_COLUMN],
                         bits[Y_COLUMN])
    return np.argsort(keys, kind="stable")


def contexts(codes, col, bits):
    """Model contexts (uint8, 0..3) of attribute ``col``'s stream, for codes (N, 8) in
    storage order."""
    source = CONTEXT_ATTRIBUTE[col]
    if source is None:
        return np.zeros(codes.shape[0], dtype=np.uint8)
    return _container_cy.attribute_contexts(np.ascontiguousarray(codes[:, source], dtype=np.uint32),
                                    bits[source])


def position_stream(x_codes, y_codes, x_bits, y_bits):
    """The positions stream of these codes (any order)."""
    keys = np.sort(position_keys(x_codes, y_codes, x_bits, y_bits))
    return _container_cy.positions_encode(keys, x_bits + y_bits)


def attribute_stream(codes, col, bits):
    """The stream of attribute ``col`` of codes (N, 8) in storage order."""
    return _container_cy.attribute_encode(np.ascontiguousarray(codes[:, col], dtype=np.uint32),
                                  contexts(codes, col, bits), bits[col])


def pack(width, height, quantisers, codes):
    """Serialise quantised Gaussians (codes (N, 8), any order) into .cgc bytes; the file
    holds them in storage order."""
    codes = check_codes(width, height, quantisers, codes)
    n = codes.shape[0]
    bits = [q.bits for q in quantisers]
    body = b"".join([header(VERSION, width, height, n, quantisers),
                     stream_block(codes[storage_order(codes, bits)], bits)])
    return body + struct.pack("<I", zlib.crc32(body))


def check_codes(width, height, quantisers, codes):
    """Codes (N, 8) uint32 within the format's limits and their quantisers' widths."""
    codes = np.asarray(codes, dtype=np.uint32)
    n = codes.shape[0]
    check_limits(width, height, n, ValueError)
    if len(quantisers) != len(ATTRIBUTES) or codes.shape != (n, len(ATTRIBUTES)):
        raise ValueError(f"need one quantiser and one code column per attribute "
                         f"({len(ATTRIBUTES)})")
    for q in quantisers:
        q.validate()
    if np.any(codes > np.array([q.levels for q in quantisers], dtype=np.uint32)):
        raise ValueError("codes exceed their quantiser width")
    return codes


def header(version, width, height, n, quantisers):
    """The header and quantiser table."""
    return b"".join([HEADER.pack(MAGIC, version, 0, width, height, n)]
                    + [QUANTISER.pack(q.bits, q.transform, q.lo, q.hi) for q in quantisers])


def stream_block(codes, bits):
    """The stream-length table and the seven streams of codes (N, 8) in storage order."""
    streams = [position_stream(codes[:, X_COLUMN], codes[:, Y_COLUMN], bits[X_COLUMN],
                               bits[Y_COLUMN])]
    streams += [attribute_stream(codes, col, bits) for col in ATTRIBUTE_STREAMS]
    return b"".join([STREAM_LENGTH.pack(len(s)) for s in streams] + streams)


def stream_names(bits, version=VERSION):
    """Names of the streams of a file of this version whose attributes have these widths."""
    if version == 3:
        return list(STREAM_NAMES)
    return container_legacy.stream_names(bits, version)


def check_limits(width, height, n, error):
    """The size limits of the format, shared by writer (ValueError) and reader (FormatError)."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE
            and width * height <= MAX_PIXELS):
        raise error(f"image size {width}x{height} out of range (at most {MAX_SIDE} a side "
                    f"and {MAX_PIXELS} pixels)")
    if not 1 <= n <= min(MAX_GAUSSIANS, width * height):
        raise error(f"Gaussian count {n} out of range for {width}x{height}")


def peek_version(data):
    """The version of a file starting with ``data``, None if too few bytes came to tell;
    FormatError for a bad magic or an unknown version."""
    start = bytes(data[:HEADER.size])
    if start[:len(MAGIC)] != MAGIC[:len(start)]:
        raise FormatError("not a .cgc file (bad magic)")
    if len(start) < 6:
        return None
    (version,) = struct.unpack_from("<H", start, 4)
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported .cgc version {version} (this reader knows "
                          f"{', '.join(map(str, READABLE_VERSIONS))})")
    return version


def _check_header(data):
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise FormatError("not a .cgc file (bad magic)")
    if len(data) < HEADER.size + 4:
        raise FormatError("truncated .cgc header")
    magic, version, flags, width, height, n = HEADER.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported .cgc version {version} (this reader knows "
                          f"{', '.join(map(str, READABLE_VERSIONS))})")
    if version != LAYERED_VERSION:  # version 4 has a CRC per part (cgc.image.layers)
        (stored_crc,) = struct.unpack_from("<I", data, len(data) - 4)
        if zlib.crc32(data[:-4]) != stored_crc:
            raise FormatError("checksum mismatch: the file is corrupt or truncated")
    if flags != 0:
        raise FormatError(f"unknown header flags {flags:#x}")
    check_limits(width, height, n, FormatError)
    return version, width, height, n


def read_quantisers(data, version):
    """The quantiser table after the header (FormatError if it is cut short or invalid)."""
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
    return quantisers


def header_fields(data):
    """(version, width, height, n, quantisers) of a file's start, checked; for versions 1 to
    3 the whole file's CRC is checked too."""
    version, width, height, n = _check_header(data)
    return version, width, height, n, read_quantisers(data, version)


def unpack(data):
    """Parse and verify a whole .cgc file; returns a :class:`Packed`."""
    data = bytes(data)
    if peek_version(data) == LAYERED_VERSION:  # its reader checks its own header
        from cgc.image.layers import read_layers

        return read_layers(data, whole=True)[0]
    version, width, height, n, quantisers = header_fields(data)
    limits.check_count(n, len(data))
    pos = HEADER.size + QUANTISER.size * len(ATTRIBUTES)
    bits = [q.bits for q in quantisers]
    names = stream_names(bits, version)
    if pos + STREAM_LENGTH.size * len(names) + 4 > len(data):
        raise FormatError("truncated .cgc stream-length table")
    lengths = stream_lengths(data, pos, len(names))
    pos += STREAM_LENGTH.size * len(names)
    if pos + sum(lengths) + 4 != len(data):
        raise FormatError("stream lengths disagree with the file size")
    blocks = []
    for length in lengths:
        blocks.append(data[pos:pos + length])
        pos += length
    if version < 3:
        codes = container_legacy.decode_codes(blocks, names, quantisers, n, version)
    else:
        codes = decode_codes(blocks, bits, n)
    sizes = dict(zip(names, lengths))
    return Packed(version, width, height, quantisers, codes, sizes)


def stream_lengths(data, pos, count):
    return [STREAM_LENGTH.unpack_from(data, pos + STREAM_LENGTH.size * i)[0]
            for i in range(count)]


def decode_codes(blocks, bits, n):
    """(N, 8) uint32 codes, in storage order, from a version-3 file's streams (or a
    version-4 layer's)."""
    for col, block in zip(ATTRIBUTE_STREAMS, blocks[1:]):
        if 8 * (len(block) + 8) < n * bits[col] * MIN_MODELLED_BIT_COST:
            raise FormatError(f"the {ATTRIBUTES[col]} stream is too short for {n} Gaussians")
    codes = np.empty((n, len(ATTRIBUTES)), dtype=np.uint32)
    attribute_blocks = iter(blocks[1:])
    groups = [[(next(attribute_blocks), bits[col]) for col in group]
              for group in ATTRIBUTE_GROUPS]
    keys, attributes = _container_cy.streams_decode(blocks[0], n, bits[X_COLUMN] + bits[Y_COLUMN],
                                            groups)
    codes[:, X_COLUMN], codes[:, Y_COLUMN] = key_positions(keys, bits[X_COLUMN],
                                                           bits[Y_COLUMN])
    codes[:, list(ATTRIBUTE_STREAMS)] = attributes.T
    return codes
