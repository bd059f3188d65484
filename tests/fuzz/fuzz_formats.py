"""The file formats of the fuzz harness (bench/fuzz.py runs campaigns, tests/test_fuzz.py a
short one): for each of cgc-v1, cgc-v2, cgc-v3, cgc-v4 (docs/format.md), cgcl and cgcs
(docs/lossless-format.md), its seed files, a map of its fields and chunks, how to make its
CRCs valid again after an edit, and the decode an input must survive; cgcv
(docs/video-format.md) is in fuzz_cgcv.py, registered in FORMATS with the others.

* Seeds are made in memory from fixed random seeds (plus the golden files), so input k of
  a campaign is a function of the format, the campaign seed and k alone (fuzz_mutate.py).
* A map (``layout``) lists the file's numeric fields, with values that the spec's limits
  make interesting, and its chunks (``Span``), each with the length fields that must follow
  its size, so that edits can keep a file consistent and reach the parsers behind the size
  checks.  Mapping is lenient: a mutated file maps as far as it parses.
* ``outcome`` runs one input: an input passes when decoding returns or raises
  cgc.FormatError; any other exception is a finding.

Import with tests/ and tests/fuzz/ on sys.path (pytest has tests/; bench/fuzz.py adds
both): the v1 and v2 seeds use tests/rans_blocks.py, the spec's static rANS encoder."""
import json
import math
import os
import re
import struct
import traceback
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

import cgc
import cgc.lossless as lossless
from cgc.errors import FormatError
from cgc.image.codec import decode_gaussians, encode_gaussians, quantise_gaussians
from cgc.image.container import (HEADER, MAGIC, MAX_GAUSSIANS, MAX_PIXELS, MAX_SIDE,
                                 QUANTISER, STREAM_LENGTH, STREAM_NAMES, stream_names)
from cgc.image.container_legacy import STREAM_ORDER, VERSION_1_BITS
from cgc.image.layers import (LAYER_ENTRY, LAYER_TABLE, MAX_LAYERS, MIN_LAYER_BYTES,
                              layer_counts, pack_layers)
from cgc.image.model import Gaussians
from cgc.image.quantize import (ATTRIBUTES, DEFAULT_BITS, canonical_cholesky,
                                fit_quantisers, to_attributes)
from cgc.lossless import checkpoint
from cgc.lossless.layout import ELEMENT_TYPES, MAX_TILE_ELEMENTS
from fuzz_cgcv import cgcv_seeds, cgcv_walk, decode_cgcv, fix_cgcv_crcs
from rans_blocks import rans_encode

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(os.path.dirname(HERE), "golden")
REGRESSIONS = os.path.join(HERE, "regressions")
CGC_PACKAGE = os.path.dirname(os.path.abspath(cgc.__file__))
# .cgc inputs are parsed always but rendered only up to this many pixels, so that a
# campaign reaches a million inputs; parsing checks everything the file holds.
RENDER_PIXELS = 1 << 16
# How the decoders word a CRC rejection (cgc: "checksum mismatch"; cgcl and cgcs: "CRC").
CRC_REJECTION = re.compile(r"crc|checksum", re.IGNORECASE)


class Field(NamedTuple):
    """An unsigned little-endian integer ("uint"), float32 or LEB128 varint in the file.
    ``special``: values the spec makes interesting here.  ``adjust``: (offset, size) of the
    length fields to grow by as many bytes as the field's encoding grows (varints)."""
    offset: int
    size: int
    kind: str
    name: str
    special: tuple = ()
    adjust: tuple = ()


class Span(NamedTuple):
    """A chunk [start, end) of kind ``kind``; ``adjust`` as for Field: the length fields
    (offsets of later chunks included) that follow its size.  In every format they lie
    before the chunk, so an edit of the chunk leaves their offsets as they were."""
    start: int
    end: int
    kind: str
    adjust: tuple = ()


class Layout(NamedTuple):
    fields: tuple
    spans: tuple


class Outcome(NamedTuple):
    """``kind``: "ok", "format_error" or "exception" (a finding); ``signature`` names a
    finding by exception type and the innermost line of cgc it came from."""
    kind: str
    message: str = ""
    signature: str = ""
    report: str = ""


# Values beyond the spec's limits, or on them, per field (fields add their current value
# plus or minus one, and every width gets its boundary integers: fuzz_mutate.py).
FLOATS = (float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e-45, 1.0, -1.0, 1e9,
          float(np.nextafter(np.float32(1e9), np.float32(np.inf))), -1e9, 80.0,
          float(np.nextafter(np.float32(80), np.float32(np.inf))), -80.0, 88.7, 3.4028235e38)
SIDES = (0, 1, MAX_SIDE, MAX_SIDE + 1, MAX_PIXELS // MAX_SIDE, MAX_PIXELS)
RANS_STATES = (0, (1 << 23) - 1, 1 << 23, (1 << 31) - 1, 1 << 31, (1 << 32) - 1)
DIMS = (0, 1, 2, 3, 1 << 16, 1 << 31, 1 << 32, (1 << 32) + 1, 1 << 62, 1 << 63,
        (1 << 64) - 1)
TILE_SIDES = (0, 1, 2, 32, 33, 1 << 9, MAX_TILE_ELEMENTS, MAX_TILE_ELEMENTS + 1,
              (1 << 32) - 1)
# Frequencies listed as fields per table: the first few, enough for edits to reach every
# check of a table (the rest are still reached by byte edits), at a fraction of the cost.
MAPPED_FREQUENCIES = 3


class _End(Exception):
    """A read past the end of the region being mapped: mapping stops there."""


class _Map:
    """Walks a file, collecting its fields and spans."""

    def __init__(self, data):
        self.data, self.pos, self.limit = data, 0, len(data)
        self.fields, self.spans = [], []

    def skip(self, size):
        if size < 0 or self.pos + size > self.limit:
            raise _End
        self.pos += size

    def uint(self, size, name, special=(), adjust=()):
        start = self.pos
        self.skip(size)
        self.fields.append(Field(start, size, "uint", name, special, adjust))
        return int.from_bytes(self.data[start:start + size], "little")

    def f32(self, name):
        self.skip(4)
        self.fields.append(Field(self.pos - 4, 4, "f32", name))

    def varint(self, name, special=(), adjust=(), mapped=True):
        """A varint, listed as a field when ``mapped`` (else only stepped over)."""
        start, value, shift, data = self.pos, 0, 0, self.data
        while True:
            if self.pos >= self.limit or shift > 70:  # past the end, or endless
                raise _End
            byte = data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if mapped:
            self.fields.append(Field(start, self.pos - start, "varint", name, special,
                                     adjust))
        return value

    def span(self, start, end, kind, adjust=()):
        if 0 <= start <= end <= self.limit:
            self.spans.append(Span(start, end, kind, adjust))

    def attempt(self, walk, *args):
        """Map one part of the file; a part that ends early ends only its own walk."""
        limit = self.limit
        try:
            walk(self, *args)
        except _End:
            pass
        finally:
            self.limit = limit

    def layout(self):
        return Layout(tuple(self.fields), tuple(self.spans))


# ----------------------------------------------------------------------------- .cgc

def _cgc_walk(m):
    version, n, bits = _cgc_head_walk(m)
    names = stream_names(bits, version if version in (1, 2) else 3)
    m.limit = len(m.data) - 4  # the CRC
    _cgc_streams_walk(m, names, version, n)


def _cgc_head_walk(m):
    """The header and quantiser table: (version, n, code widths)."""
    m.skip(len(MAGIC))
    version = m.uint(2, "version", (0, 1, 2, 3, 4, 0xFFFF))
    m.uint(2, "flags", (1, 0x8000))
    width = m.uint(4, "width", SIDES)
    height = m.uint(4, "height", SIDES)
    pixels = width * height
    n = m.uint(4, "n_gaussians", (0, 1, MAX_GAUSSIANS, MAX_GAUSSIANS + 1, pixels,
                                      pixels + 1))
    bits = []
    for name in ATTRIBUTES:
        start = m.pos
        bits.append(m.uint(1, name + ".bits", (0, 1, 8, 9, 15, 16, 17)))
        m.uint(1, name + ".transform", (0, 1, 2))
        m.f32(name + ".lo")
        m.f32(name + ".hi")
        m.span(start, m.pos, "cgc.quantiser")
    return version, n, bits


def _cgc_streams_walk(m, names, version, n):
    """A stream-length table and its streams, up to ``m.limit``."""
    table = m.pos
    lengths = [m.uint(STREAM_LENGTH.size, name + ".length", (0, 1, 4, 5, 1 << 31))
               for name in names]
    start = m.pos
    for k, length in enumerate(lengths):
        adjust = ((table + STREAM_LENGTH.size * k, STREAM_LENGTH.size),)
        m.span(start, start + length, "cgc.stream", adjust)
        if start + length > m.limit:
            break
        if version in (1, 2):
            m.attempt(_rans_block_walk, start, start + length, n, adjust)
        elif length:  # a range-coded stream starts with a 0 byte
            m.pos = start
            m.uint(1, "stream.first_byte", (1, 0x80))
        start += length


def _cgc_layers_walk(m):
    """A version-4 file (docs/format.md, "Version 4: layers")."""
    version, n, bits = _cgc_head_walk(m)
    count = m.uint(2, "layers.count", (0, 1, 2, MAX_LAYERS, MAX_LAYERS + 1, 0xFFFF))
    m.uint(2, "layers.reserved", (1,))
    sizes = []
    for k in range(min(count, MAX_LAYERS + 1)):
        m.uint(4, "layer.gaussians", (0, 1, n, n + 1))
        sizes.append(m.uint(4, "layer.bytes", (0, MIN_LAYER_BYTES - 1, MIN_LAYER_BYTES,
                                                1 << 31)))
    m.skip(4)  # the header's CRC
    for size in sizes:
        start = m.pos
        m.span(start, start + size, "cgc.layer")
        m.limit = min(len(m.data), start + size) - 4
        m.attempt(_cgc_streams_walk, list(STREAM_NAMES), version, n)
        m.limit = len(m.data)
        m.pos = start
        m.skip(size)


def fix_cgc_layer_crcs(data):
    """A version-4 file's header CRC and each layer's CRC, recomputed where the header's
    layer table says the parts are."""
    table = HEADER.size + QUANTISER.size * len(ATTRIBUTES)
    if len(data) < table + LAYER_TABLE.size:
        return data
    count = LAYER_TABLE.unpack_from(data, table)[0]
    end = table + LAYER_TABLE.size + LAYER_ENTRY.size * count
    if end + 4 > len(data):
        return data
    data = bytearray(data)
    data[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(data[:end])))
    start = end + 4
    for k in range(count):
        size = LAYER_ENTRY.unpack_from(data, table + LAYER_TABLE.size + LAYER_ENTRY.size * k)[1]
        if size < 4 or start + size > len(data):
            break
        body = bytes(data[start:start + size - 4])
        data[start + size - 4:start + size] = struct.pack("<I", zlib.crc32(body))
        start += size
    return bytes(data)


def _rans_block_walk(m, start, end, n, adjust):
    """A static rANS block of versions 1 and 2 (docs/format.md, "rANS block") of a file
    of ``n`` Gaussians."""
    m.pos, m.limit = start, end
    m.varint("rans.count", (0, 1, max(n - 1, 0), n + 1, 1 << 32, 1 << 35), adjust)
    precision = m.uint(1, "rans.prob_bits", (0, 11, 12, 16, 17))
    if precision:
        k = m.uint(1, "rans.symbols", (0, 1, 30, 31, 255)) + 1
        table = m.pos
        m.skip(k if k < 32 else 32)
        m.span(table, m.pos, "rans.symbol_set", adjust)
        total = 1 << min(precision, 32)
        for j in range(k - 1):
            m.varint("rans.frequency", (0, 1, total - 1, total, total + 1), adjust,
                     j < MAPPED_FREQUENCIES)
        m.uint(4, "rans.state", RANS_STATES)
    m.span(m.pos, end, "rans.payload", adjust)


def fix_cgc_crc(data):
    """The whole-file CRC32 of a .cgc, recomputed."""
    if len(data) < 4:
        return data
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


# ----------------------------------------------------------------------------- .cgcl

def _cgcl_walk(m):
    m.skip(4)
    version = m.uint(1, "version", (0, 1, 2, 3))
    code = m.uint(1, "etype", (0, 1, 2, 3, 5, 6, 7, 8))
    ndim = m.uint(1, "ndim", (0, 1, 2, 3, 32, 33))
    m.uint(1, "lanes", (0, 31, 32, 33))
    m.skip(4)  # CRC
    layout = m.uint(1, "layout", (0, 1, 2, 3)) if version >= 2 else 0
    shape = [m.uint(8, "shape", DIMS) for _ in range(ndim)]
    th = m.uint(4, "tile.height", TILE_SIDES)
    tw = m.uint(4, "tile.width", TILE_SIDES)
    data_size_at = m.pos
    m.uint(8, "data_size", (0, 1, 1 << 63, (1 << 64) - 1))
    if code not in ELEMENT_TYPES or not th or not tw:
        return
    nbytes = ELEMENT_TYPES[code].nbytes
    groups = [_plane_walk(m) for _ in range(nbytes)]
    rows, cols = _matrix(shape, layout)
    record = 8 + 4 + 1 + nbytes + 4 * 32
    ntiles = -(-rows // th) * -(-cols // tw) if rows and cols else 0
    ntiles = min(ntiles, (m.limit - m.pos) // record)
    records = [m.pos + record * k for k in range(ntiles)]
    start = m.pos + record * ntiles  # the Data section
    sizes = []
    for at in records:
        m.pos = at
        m.uint(8, "tile.offset", (0, 1, 1 << 63, (1 << 64) - 1))
        sizes.append(m.uint(4, "tile.size", (0, 1, (1 << 32) - 1)))
        m.uint(1, "tile.predictor", (0, 5, 6, 255))
        for ngroups in groups:
            m.uint(1, "tile.group", (0, max(ngroups - 1, 0), ngroups, 254, 255))
        for lane in (0, 1, 31):
            m.pos = at + 13 + nbytes + 4 * lane
            m.uint(4, "tile.state", RANS_STATES)
        m.span(at, at + record, "cgcl.record")
    for k, size in enumerate(sizes):
        adjust = ((records[k] + 8, 4), (data_size_at, 8)) + tuple(
            (at, 8) for at in records[k + 1:])
        m.span(start, start + size, "cgcl.tile", adjust)
        start += size


def _plane_walk(m):
    """One plane model; returns its group count."""
    start = m.pos
    precision = m.uint(1, "plane.prob_bits", (0, 11, 12, 14, 15))
    nctx = m.uint(1, "plane.contexts", (0, 1, 2, 16, 17))
    ngroups = m.uint(1, "plane.groups", (0, 1, 16, 17))
    if nctx > 1:
        at = m.pos
        m.skip(256)
        m.span(at, m.pos, "cgcl.context_map")
    total = 1 << min(precision, 32)
    for _ in range(ngroups * nctx):
        at = m.pos
        k = m.varint("table.symbols", (0, 1, 31, 32, 255, 256, 257))
        if k > 256:
            raise _End
        m.skip(k if k <= 31 else 32)
        for j in range(k - 1):
            m.varint("table.frequency", (0, 1, total - 1, total, total + 1, 1 << 32), (),
                     j < MAPPED_FREQUENCIES)
        m.span(at, m.pos, "cgcl.table")
    m.span(start, m.pos, "cgcl.plane")
    return ngroups


def _matrix(shape, layout):
    """(rows, cols) of the coded matrix, as the spec computes it, for any field values."""
    if any(s == 0 for s in shape):
        return 0, 0
    if layout in (1, 2) and len(shape) == 3:
        return shape[2] * shape[0], shape[1]
    if not shape:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]


def fix_cgcl_crc(data, start=0, end=None):
    """A cgc.lossless stream's CRC (of its bytes 12 on), recomputed for the stream at
    [start, end) of ``data``."""
    end = len(data) if end is None else end
    if end - start < 12:
        return data
    crc = struct.pack("<I", zlib.crc32(data[start + 12:end]))
    return data[:start + 8] + crc + data[start + 12:]


# ----------------------------------------------------------------------------- .cgcs

_CGCS_HEAD = struct.Struct("<4sHHQI")


class Checkpoint(NamedTuple):
    """A .cgcs file in parts, for the edits that change its list of streams or its JSON."""
    version: int
    flags: int
    file_size: int
    header: bytes  # the safetensors JSON
    streams: list


def split_checkpoint(data):
    """A .cgcs file in parts; None where its index does not parse."""
    if len(data) < _CGCS_HEAD.size:
        return None
    _, version, flags, file_size, count = _CGCS_HEAD.unpack_from(data)
    at = _CGCS_HEAD.size + 8 * count
    if at + 8 > len(data):
        return None
    sizes = struct.unpack_from(f"<{count}Q", data, _CGCS_HEAD.size)
    (n,) = struct.unpack_from("<Q", data, at)
    start = at + 8 + n + 4
    if start + sum(sizes) != len(data):
        return None
    streams = []
    for size in sizes:
        streams.append(data[start:start + size])
        start += size
    return Checkpoint(version, flags, file_size, data[at + 8:at + 8 + n], streams)


def join_checkpoint(parts):
    """The .cgcs file of ``parts``, its count, sizes and CRC made to match."""
    file_size = parts.file_size % (1 << 64)  # edits may push it past its field
    index = _CGCS_HEAD.pack(b"CGCS", parts.version, parts.flags, file_size, len(parts.streams))
    index += b"".join(struct.pack("<Q", len(s)) for s in parts.streams)
    index += struct.pack("<Q", len(parts.header)) + parts.header
    return index + struct.pack("<I", zlib.crc32(index)) + b"".join(parts.streams)


def _cgcs_walk(m):
    m.skip(4)
    m.uint(2, "version", (0, 1, 2, 0xFFFF))
    m.uint(2, "flags", (1, 0x8000))
    m.uint(8, "file_size", (0, 1, 8, 1 << 63, (1 << 64) - 1))
    count = m.uint(4, "count", (0, 1, 1 << 28, (1 << 32) - 1))
    table = m.pos
    sizes = [m.uint(8, "stream.size", (0, 1, 12, 1 << 63, (1 << 64) - 1))
             for _ in range(min(count, (m.limit - table) // 8))]
    at = m.pos
    n = m.uint(8, "header.size", (0, 1, 2, checkpoint.MAX_HEADER_BYTES,
                                  checkpoint.MAX_HEADER_BYTES + 1, (1 << 64) - 1))
    # The JSON's size and the file size move together, so the buffer keeps its size.
    m.span(at + 8, at + 8 + n, "cgcs.json", ((at, 8), (8, 8)))
    start = at + 8 + n + 4
    # The streams' insides are mutated as cgcl files of their own (fuzz_mutate.py).
    for k, size in enumerate(sizes):
        m.span(start, start + size, "cgcs.stream", ((table + 8 * k, 8),))
        start += size


def fix_cgcs_crcs(data):
    """Every CRC of a .cgcs: its index's and each stream's, where the index locates them."""
    if len(data) < _CGCS_HEAD.size:
        return data
    count = _CGCS_HEAD.unpack_from(data)[4]
    at = _CGCS_HEAD.size + 8 * count
    if at + 8 > len(data):
        return data
    sizes = struct.unpack_from(f"<{count}Q", data, _CGCS_HEAD.size)
    end = at + 8 + struct.unpack_from("<Q", data, at)[0]
    if end + 4 > len(data):
        return data
    data = data[:end] + struct.pack("<I", zlib.crc32(data[:end])) + data[end + 4:]
    start = end + 4
    for size in sizes:
        if start + size > len(data):
            break
        data = fix_cgcl_crc(data, start, start + size)
        start += size
    return data


# ----------------------------------------------------------------------------- seeds

def _golden(name):
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


def _random_gaussians(rng, n, height, width):
    sign = np.where(rng.random((n, 2)) < 0.8, 1.0, -1.0)
    params = np.column_stack([
        rng.uniform(0, width, n), rng.uniform(0, height, n),
        rng.uniform(0.3, 4.0, n) * sign[:, 0], rng.uniform(-2, 2, n),
        rng.uniform(0.3, 4.0, n) * sign[:, 1], rng.uniform(-0.2, 1.2, (n, 3))])
    return Gaussians(params.astype(np.float32), height, width)


# (n, height, width, code widths or None for random ones): one Gaussian, many sharing a
# position (2-bit positions), wide codes, thin images.
_CGC_SHAPES = ((1, 1, 1, (1,) * 8), (9, 4, 5, None), (24, 11, 13, (2, 2, 4, 4, 4, 6, 5, 5)),
               (64, 30, 40, DEFAULT_BITS), (40, 7, 300, None), (30, 20, 15, None))


def _cgc_seeds(version):
    golden = {1: "small_v1.cgc", 2: "small_v2.cgc", 3: "small.cgc",
              4: "small_v4.cgc"}[version]
    seeds = [_golden(golden)]
    rng = np.random.default_rng(1000 + version)
    for n, height, width, bits in _CGC_SHAPES:
        gaussians = _random_gaussians(rng, n, height, width)
        if version == 1:
            bits = VERSION_1_BITS
        elif bits is None:
            bits = tuple(int(b) for b in rng.integers(1, 17, len(ATTRIBUTES)))
        if version == 3:
            seeds.append(encode_gaussians(gaussians, bits))
        elif version == 4:
            counts = layer_counts(n, min(n, 1 + len(seeds) % 4))
            codes, quantisers, _ = quantise_gaussians(gaussians, bits, counts)
            seeds.append(pack_layers(width, height, quantisers, codes, counts))
        else:
            seeds.append(_legacy_file(gaussians, bits, version))
    return seeds


def _legacy_file(gaussians, bits, version):
    """A version 1 or 2 file, written by the spec (docs/format.md, "Versions 1 and 2")."""
    if version == 2:
        attributes = to_attributes(gaussians.params)
    else:  # R, G, B colour
        attributes = canonical_cholesky(gaussians.params).astype(np.float64)
    quantisers = fit_quantisers(attributes, bits)
    codes = np.stack([q.quantise(attributes[:, k]) for k, q in enumerate(quantisers)], 1)
    codes = codes[np.lexsort((codes[:, 0], codes[:, 1]))].astype(np.int64)
    blocks = []
    for col in STREAM_ORDER:
        values = np.diff(codes[:, col], prepend=0) if col == 1 else codes[:, col]
        if bits[col] > 8:
            blocks.append(rans_encode((values >> 8).astype(np.uint8)))
        blocks.append(rans_encode((values & 0xFF).astype(np.uint8)))
    body = HEADER.pack(MAGIC, version, 0, gaussians.width, gaussians.height, len(codes))
    body += b"".join(QUANTISER.pack(q.bits, q.transform, q.lo, q.hi) for q in quantisers)
    body += b"".join(STREAM_LENGTH.pack(len(b)) for b in blocks) + b"".join(blocks)
    return body + struct.pack("<I", zlib.crc32(body))


def _cgcl_seeds():
    rng = np.random.default_rng(2024)
    y, x = np.mgrid[0:16, 0:40]
    smooth = np.sin(x / 5.0) + np.cos(y / 4.0)
    bf16 = (smooth.astype("<f4").view("<u4") >> 16).astype(np.uint16)
    image = (smooth[:12, :10, None] * 60 + 120 + rng.integers(0, 9, (12, 10, 3)))
    arrays = [
        (rng.integers(0, 256, (7, 9), dtype=np.uint8), (4, 4), {}),
        ((smooth * 40).astype(np.int8), (8, 16), {}),
        ((smooth * 40).astype(np.int8), (4, 40), {}),  # 33+ columns: row-above contexts
        (rng.integers(0, 3000, (3, 5, 7)).astype(np.uint16), None, {}),
        (np.cumsum(rng.integers(-3, 4, (9, 40)), axis=1).astype(np.int16), (8, 32), {}),
        (smooth.astype(np.float16), (8, 40), {}),
        (smooth.astype(np.float32), (8, 8), {"min_gain": 0.0}),
        (rng.normal(0, 0.02, (10, 48)).astype(np.float32), (8, 16), {"min_gain": 0.5}),
        (bf16, (8, 20), {"bfloat16": True}),
        (image.astype(np.uint8), (8, 8), {"image": True}),
        ((image[:8, :9] * 20).astype(np.uint16).repeat(2, axis=2)[..., :4], None,
         {"image": True}),
        (smooth[:6, :5, None].repeat(3, axis=2).astype(np.float16), None, {"image": True}),
        (np.array(2.5, np.float32), None, {}),
        (np.zeros((0, 5), np.uint8), None, {}),
        (np.cumsum(rng.integers(-9, 10, 300)).astype(np.int16), None, {}),
    ]
    seeds = [_golden("lossless_rgb.cgcl"), _golden("lossless_weights.cgcl")]
    seeds += [lossless.encode(a, tile, **options) for a, tile, options in arrays]
    # A version 1 stream: version 2's fields without the layout byte (layout 0).
    v2 = seeds[4]
    seeds.append(fix_cgcl_crc(v2[:4] + b"\x01" + v2[5:12] + v2[13:]))
    return seeds


def safetensors_file(tensors, buffer, metadata=None):
    """A safetensors file: u64 header size, JSON header, buffer.  ``tensors``:
    {name: (dtype, shape, begin, end)}."""
    header = {name: {"dtype": d, "shape": s, "data_offsets": [b, e]}
              for name, (d, s, b, e) in tensors.items()}
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + bytes(buffer)


def _cgcs_seeds():
    rng = np.random.default_rng(77)
    y, x = np.mgrid[0:12, 0:24]
    smooth = np.sin(x / 5.0) + np.cos(y / 3.0)
    parts = [("f32", "F32", smooth.astype("<f4")), ("f16", "F16", smooth.astype("<f2")),
             ("bf16", "BF16", (smooth.astype("<f4").view("<u4") >> 16).astype("<u2")),
             ("i16", "I16", (smooth * 900).astype("<i2").reshape(2, 6, 24)),
             ("u16", "U16", (smooth * 900 + 2000).astype("<u2")),
             ("i8", "I8", (smooth * 50).astype("i1")),
             ("u8", "U8", rng.integers(0, 256, (5, 7), dtype=np.uint8)),
             ("f64", "F64", rng.normal(size=(2, 3))), ("flags", "BOOL", np.ones(5, bool)),
             ("odd", "Q7", rng.integers(0, 256, 11, dtype=np.uint8)),
             ("scalar", "F32", np.array(1.5, "<f4")), ("empty", "F16", np.zeros((0, 4), "<f2")),
             ("empty-cols", "U8", np.zeros((3, 0), np.uint8))]
    buffer, tensors = bytearray(), {}
    for k, (name, dtype, array) in enumerate(parts):
        if k % 4 == 1:
            buffer += bytes(range(k))  # a gap no tensor covers
        tensors[name] = (dtype, list(array.shape), len(buffer), len(buffer) + array.nbytes)
        buffer += array.tobytes()
    weights = rng.normal(0, 0.02, (16, 48)).astype("<f4")
    files = [
        (safetensors_file(tensors, buffer + b"tail", {"format": "pt"}), (8, 16)),
        (safetensors_file({"w": ("U8", [6, 4], 0, 24)}, bytes(range(24))), None),
        (safetensors_file({}, b"orphan bytes", {"note": "no tensors"}), None),
        (safetensors_file({"w": ("F32", [16, 48], 0, weights.nbytes)}, weights.tobytes()),
         (8, 32)),
    ]
    return [checkpoint.compress(data, tile) for data, tile in files]


# ----------------------------------------------------------------------------- decoders

def _decode_cgc(data):
    gaussians = decode_gaussians(data)
    if gaussians.height * gaussians.width <= RENDER_PIXELS:
        cgc.decode(data)


def _decode_cgc_layers(data):
    """Strictly, then leniently (the layers before a damaged one), then as a stream."""
    try:
        _decode_cgc(data)
    except FormatError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gaussians = decode_gaussians(data, strict=False)
            if gaussians.height * gaussians.width <= RENDER_PIXELS:
                half = len(data) // 2
                for _ in cgc.decode_progressive([data[:half], data[half:]], strict=False):
                    pass
        raise


def _decode_cgcs(data):
    checkpoint.contents(data)
    checkpoint.decompress(data)
    checkpoint.load(data)


@dataclass(frozen=True)
class Format:
    """One format: its seeds (a function, built on first use), its map, its CRC fixer and
    its decode."""
    name: str
    make_seeds: object
    walk: object
    fix_crcs: object
    decode: object

    def seeds(self):
        return _seeds(self.name)

    def layout(self, data):
        return _layout(self.name, data)


@lru_cache(maxsize=None)
def _seeds(name):
    return tuple(FORMATS[name].make_seeds())


@lru_cache(maxsize=256)  # a seed is mapped once; mutated files are mapped as they come
def _layout(name, data):
    m = _Map(data)
    m.attempt(FORMATS[name].walk)
    return m.layout()


FORMATS = {f.name: f for f in (
    Format("cgc-v1", lambda: _cgc_seeds(1), _cgc_walk, fix_cgc_crc, _decode_cgc),
    Format("cgc-v2", lambda: _cgc_seeds(2), _cgc_walk, fix_cgc_crc, _decode_cgc),
    Format("cgc-v3", lambda: _cgc_seeds(3), _cgc_walk, fix_cgc_crc, _decode_cgc),
    Format("cgc-v4", lambda: _cgc_seeds(4), _cgc_layers_walk, fix_cgc_layer_crcs,
           _decode_cgc_layers),
    Format("cgcl", _cgcl_seeds, _cgcl_walk, fix_cgcl_crc, lossless.decode),
    Format("cgcs", _cgcs_seeds, _cgcs_walk, fix_cgcs_crcs, _decode_cgcs),
    Format("cgcv", cgcv_seeds, cgcv_walk, fix_cgcv_crcs, decode_cgcv),
)}


def outcome(fmt, data):
    """Decode ``data`` as ``fmt`` (a Format) and say how it went."""
    try:
        fmt.decode(data)
    except FormatError as exc:
        return Outcome("format_error", str(exc))
    except Exception as exc:  # noqa: BLE001  anything but FormatError is a finding
        return Outcome("exception", f"{type(exc).__name__}: {exc}",
                       f"{type(exc).__name__} at {_origin(exc.__traceback__)}",
                       traceback.format_exc())
    return Outcome("ok")


def _origin(tb):
    """file:line of the innermost frame of a traceback that lies in the cgc package."""
    where = "outside cgc"
    for frame, line in traceback.walk_tb(tb):
        path = os.path.abspath(frame.f_code.co_filename)
        if path.startswith(CGC_PACKAGE + os.sep):
            where = f"{os.path.relpath(path, os.path.dirname(CGC_PACKAGE))}:{line}"
    return where
