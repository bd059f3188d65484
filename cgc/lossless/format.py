"""Byte layout of a cgc.lossless stream: [Header][TileMetadata x N][Data].

docs/lossless-format.md is the specification; this module writes it and parses it back,
validating every count and size against the bytes actually present before anything is
allocated from it, so malformed input raises FormatError rather than crashing or
allocating without bound.  The loops over table entries and tile records are compiled
(cgc.lossless._lossless_cy.read_table and check_metadata): in Python they cost more than decoding a
small tensor."""
import struct
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from cgc.lossless._lossless_cy import (HAVE_CLMUL, METADATA_ERRORS, NUM_LANES, TABLE_ERRORS,
                           TABLE_SYMBOL_LIST_MAX, check_metadata, crc32, read_table)
from cgc.errors import FormatError
from cgc.varint import varint
from cgc.lossless.layout import (ELEMENT_TYPES, LAYOUT_ARRAY, MAX_NDIM, MAX_TILE_ELEMENTS,
                                 check_layout, check_shape, layout_matrix_shape, tile_count)
from cgc.lossless.model import PlaneModel

MAGIC = b"CGCL"
VERSION = 2  # 2 added the layout byte; version 1 streams (layout 0) still decode
_PREFIX = struct.Struct("<4sBBBBI")  # magic, version, dtype code, ndim, lanes, crc32
MIN_PROB_BITS, MAX_PROB_BITS = 12, 14
MAX_CONTEXTS, MAX_GROUPS = 16, 16
# zlib.crc32's value, computed by carry-less multiplication where the CPU has it (several
# times faster than zlib's tables; measurements: docs/tuning.md, "native/crc32.h: CRC-32").
checksum = crc32 if HAVE_CLMUL else zlib.crc32


@lru_cache(maxsize=None)  # parse asks for it per stream, and building a dtype is slow
def metadata_dtype(nbytes):
    return np.dtype([("offset", "<u8"), ("size", "<u4"), ("pred", "u1"),
                     ("groups", "u1", (nbytes,)), ("states", "<u4", (NUM_LANES,))])


@dataclass
class Container:
    etype: object
    shape: tuple
    tile: tuple
    planes: list
    meta: np.ndarray  # structured, metadata_dtype
    data: np.ndarray  # uint8, the Data section
    layout: int = LAYOUT_ARRAY

    @property
    def matrix(self):
        return layout_matrix_shape(self.shape, self.layout)


def _table_bytes(freq):
    symbols = np.flatnonzero(freq)
    out = bytearray(varint(symbols.size))
    if symbols.size == 0:
        return bytes(out)
    if symbols.size <= TABLE_SYMBOL_LIST_MAX:
        out.extend(symbols.astype(np.uint8).tobytes())
    else:
        bitmap = np.zeros(256, np.uint8)
        bitmap[symbols] = 1
        out.extend(np.packbits(bitmap, bitorder="little").tobytes())
    for s in symbols[:-1]:
        out.extend(varint(int(freq[s])))
    return bytes(out)


def serialize(etype, shape, layout, tile, planes, meta, data):
    body = bytearray((layout,))
    for s in shape:
        body.extend(struct.pack("<Q", s))
    body.extend(struct.pack("<IIQ", tile[0], tile[1], len(data)))
    for plane in planes:
        body.extend(bytes((plane.prob_bits, plane.nctx, plane.ngroups)))
        if plane.nctx > 1:
            body.extend(plane.ctxmap.tobytes())
        for freq in plane.freqs:
            body.extend(_table_bytes(freq))
    body.extend(meta.tobytes())
    body.extend(data)
    crc = checksum(body)
    return _PREFIX.pack(MAGIC, VERSION, etype.code, len(shape), NUM_LANES, crc) + bytes(body)


class _Reader:
    def __init__(self, buf, pos):
        self.buf, self.pos = buf, pos

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.buf):
            raise FormatError(f"truncated cgc.lossless stream ({what})")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _read_table(reader, prob_bits, freq):
    end = read_table(reader.buf, reader.pos, prob_bits, freq)
    if end < 0:
        raise FormatError(TABLE_ERRORS[end])
    reader.pos = end


def parse(buf):
    """Parse and validate a stream; returns a Container whose arrays view buf."""
    # A memoryview, so that the slices below (CRC, metadata) do not copy the stream.
    buf = memoryview(buf).cast("B")
    if len(buf) < _PREFIX.size:
        raise FormatError("truncated cgc.lossless stream (header)")
    magic, version, code, ndim, lanes, crc = _PREFIX.unpack(buf[:_PREFIX.size])
    if magic != MAGIC:
        raise FormatError("not a cgc.lossless stream (bad magic)")
    if version not in (1, VERSION):
        raise FormatError(f"unsupported cgc.lossless version {version}")
    if checksum(buf[_PREFIX.size:]) != crc:
        raise FormatError("cgc.lossless stream corrupt (CRC32 mismatch)")
    if code not in ELEMENT_TYPES:
        raise FormatError(f"unknown element type code {code}")
    if ndim > MAX_NDIM:
        raise FormatError(f"{ndim} dimensions exceed the limit of {MAX_NDIM}")
    if lanes != NUM_LANES:
        raise FormatError(f"stream uses {lanes} lanes; this decoder supports {NUM_LANES}")
    etype = ELEMENT_TYPES[code]
    reader = _Reader(buf, _PREFIX.size)
    layout = reader.take(1, "layout")[0] if version >= 2 else LAYOUT_ARRAY
    shape = reader.unpack(f"<{ndim}Q", "shape")
    problem = check_shape(shape, etype.nbytes) or check_layout(layout, shape, etype)
    if problem:
        raise FormatError(problem)
    th, tw, data_size = reader.unpack("<IIQ", "tile")
    if th < 1 or tw < 1 or th * tw > MAX_TILE_ELEMENTS:
        raise FormatError(f"tile {th}x{tw} out of range")
    rows, cols = layout_matrix_shape(shape, layout)
    if any(s == 0 for s in shape):
        rows = cols = 0
    planes = [_read_plane(reader) for _ in range(etype.nbytes)]
    if version == 1:
        # Version 1 coded every plane-0 symbol with its group's context-0 table.
        planes[0] = replace(planes[0], ctxmap=np.zeros(256, np.uint8))
    ntiles = tile_count(rows, cols, th, tw)
    mdtype = metadata_dtype(etype.nbytes)
    if ntiles * mdtype.itemsize > len(buf) - reader.pos:
        raise FormatError(f"truncated cgc.lossless stream ({ntiles} tiles of metadata)")
    meta = np.frombuffer(reader.take(ntiles * mdtype.itemsize, "metadata"), mdtype)
    if data_size != len(buf) - reader.pos:
        raise FormatError(f"data section is {len(buf) - reader.pos} bytes, header says "
                          f"{data_size}")
    data = np.frombuffer(buf, np.uint8, count=data_size, offset=reader.pos)
    container = Container(etype, tuple(shape), (th, tw), planes, meta, data, layout)
    _check_metadata(container, rows, cols)
    return container


def _read_plane(reader):
    prob_bits, nctx, ngroups = reader.take(3, "plane model")
    if not MIN_PROB_BITS <= prob_bits <= MAX_PROB_BITS:
        raise FormatError(f"table precision {prob_bits} bits out of range")
    if not 1 <= nctx <= MAX_CONTEXTS or ngroups > MAX_GROUPS:
        raise FormatError(f"{nctx} contexts x {ngroups} groups out of range")
    ctxmap = np.zeros(256, np.uint8)
    if nctx > 1:
        ctxmap = np.frombuffer(reader.take(256, "context map"), np.uint8)
        if ctxmap.max() >= nctx:
            raise FormatError("context map names a missing context")
    freqs = np.zeros((ngroups * nctx, 256), np.uint32)
    for freq in freqs:
        _read_table(reader, prob_bits, freq)
    return PlaneModel(prob_bits, nctx, ngroups, ctxmap, freqs)


def _check_metadata(c, rows, cols):
    if len(c.meta) == 0:
        if len(c.data):
            raise FormatError("data present for an empty array")
        return
    ngroups = np.array([plane.ngroups for plane in c.planes], np.uint8)
    records = c.meta.view(np.uint8).reshape(len(c.meta), c.meta.dtype.itemsize)
    error = check_metadata(records, c.etype.nbytes, ngroups, len(c.data), rows, cols,
                           c.tile[0], c.tile[1])
    if error:
        raise FormatError(METADATA_ERRORS[error])
