"""A decoder of cgc.lossless streams (.cgcl) and checkpoints (.cgcs) written from
docs/lossless-format.md alone, in plain Python and NumPy.

It shares no code with cgc, so that tests/test_lossless_spec.py can hold the codec and its
specification to each other: every stream cgc.lossless writes must decode here to the
array it was given, and what the specification says a decoder must reject raises Rejected
here.  One symbol at a time, it is slow: for arrays of a few thousand elements.  The
section names in the comments are those of the specification."""
import json
import zlib
from dataclasses import dataclass

import numpy as np

LANES = 32
RANS_L = 1 << 23  # lane states stay in [RANS_L, 2**31) between symbols
MAX_TILE_ELEMENTS = 1 << 18
MAX_NDIM = 32
RAW = 255  # the table group of a plane stored raw

# "Element types": code -> (name, width in bytes, kind, dtype of the decoded array).
ELEMENT_TYPES = {
    1: ("uint8", 1, "unsigned", np.dtype("u1")),
    2: ("int8", 1, "signed", np.dtype("i1")),
    3: ("uint16", 2, "unsigned", np.dtype("<u2")),
    4: ("int16", 2, "signed", np.dtype("<i2")),
    5: ("float16", 2, "float", np.dtype("<f2")),
    6: ("bfloat16", 2, "float", np.dtype("<u2")),  # decoded as uint16 bit patterns
    7: ("float32", 4, "float", np.dtype("<f4")),
}
LAYOUT_ARRAY, LAYOUT_PLANAR, LAYOUT_PLANAR_RGB = 0, 1, 2
PREDICTOR_NAMES = ("none", "left", "top", "avg", "planar", "med")


class Rejected(Exception):
    """The input breaks a "must" of the specification."""


def require(condition, what):
    if not condition:
        raise Rejected(what)


class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def take(self, n, what):
        require(self.pos + n <= len(self.data), f"truncated ({what})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, size, what):
        return int.from_bytes(self.take(size, what), "little")

    def varint(self, what):
        """LEB128, at most 5 bytes and below 2**32."""
        value = 0
        for i in range(5):
            byte = self.uint(1, what)
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                require(value < 1 << 32, f"varint of 32 bits or more ({what})")
                return value
        raise Rejected(f"varint longer than 5 bytes ({what})")


@dataclass
class Table:
    """One frequency table; an empty one (k = 0) decodes as symbol 0 owning every slot."""
    empty: bool
    freq: list  # [256]
    start: list  # [256]: exclusive prefix sums in symbol order
    lookup: list  # [2**prob_bits]: slot -> symbol


def read_table(reader, prob_bits):
    total = 1 << prob_bits
    k = reader.varint("table size")
    require(k <= 256, f"table of {k} symbols")
    freq = [0] * 256
    if k == 0:
        freq[0] = total
        symbols = [0]
    else:
        if k <= 31:
            symbols = list(reader.take(k, "table symbols"))
            require(all(a < b for a, b in zip(symbols, symbols[1:])),
                    "table symbols not strictly ascending")
        else:
            bitmap = reader.take(32, "table bitmap")
            symbols = [s for s in range(256) if (bitmap[s // 8] >> (s % 8)) & 1]
            require(len(symbols) == k, "table bitmap does not hold k symbols")
        for s in symbols[:-1]:
            freq[s] = reader.varint("table frequency")
            require(freq[s] >= 1, "table frequency 0")
        freq[symbols[-1]] = total - sum(freq)
        require(freq[symbols[-1]] >= 1, "table frequencies exceed 2**prob_bits")
    start, acc = [0] * 256, 0
    for s in range(256):
        start[s], acc = acc, acc + freq[s]
    lookup = []
    for s in range(256):
        lookup.extend([s] * freq[s])
    return Table(k == 0, freq, start, lookup)


@dataclass
class PlaneModel:
    prob_bits: int
    nctx: int
    ngroups: int
    ctxmap: list  # [256]
    tables: list  # ngroups * nctx Tables, table g * nctx + c


def read_plane(reader):
    prob_bits, nctx, ngroups = reader.take(3, "plane model")
    require(12 <= prob_bits <= 14, f"prob_bits {prob_bits}")
    require(1 <= nctx <= 16, f"nctx {nctx}")
    require(ngroups <= 16, f"ngroups {ngroups}")
    ctxmap = [0] * 256
    if nctx > 1:
        ctxmap = list(reader.take(256, "context map"))
        require(max(ctxmap) < nctx, "context map names a missing context")
    tables = [read_table(reader, prob_bits) for _ in range(ngroups * nctx)]
    return PlaneModel(prob_bits, nctx, ngroups, ctxmap, tables)


@dataclass
class TileRecord:
    offset: int
    size: int
    predictor: int
    groups: list  # [P]
    states: list  # [32]


@dataclass
class Stream:
    version: int
    code: int
    shape: tuple
    layout: int
    tile: tuple  # (TH, TW)
    planes: list  # [P] PlaneModel
    tiles: list  # [N] TileRecord
    data: bytes  # the Data section
    matrix: tuple  # (rows, cols) of the coded matrix
    metadata_offset: int  # where the tile records start in the stream

    @property
    def width(self):
        return ELEMENT_TYPES[self.code][1]

    @property
    def tbase(self):
        """tbase[p]: index of plane p's first table among all the planes' tables in stream
        order, ngroups * nctx summed over the planes before p."""
        out, acc = [], 0
        for plane in self.planes:
            out.append(acc)
            acc += plane.ngroups * plane.nctx
        return out

    @property
    def tables(self):
        """Every plane's tables, plane after plane, in stream order."""
        return [table for plane in self.planes for table in plane.tables]


def matrix_shape(shape, layout):
    """(rows, cols) of the coded matrix ("Element types and the 2-D view"); (0, 0) when an
    axis has length 0 (no tiles)."""
    if any(d == 0 for d in shape):
        return 0, 0
    if layout == LAYOUT_ARRAY:
        if not shape:
            return 1, 1
        return int(np.prod(shape[:-1], dtype=object)) if len(shape) > 1 else 1, shape[-1]
    h, w, c = shape
    return c * h, w


def record_size(width):
    return 8 + 4 + 1 + width + 4 * LANES


def parse(data):
    """Header, plane models and tile records of a stream, checked as "Header", "Plane
    model" and "Tile metadata" require."""
    data = bytes(data)
    head = Reader(data)
    require(head.take(4, "magic") == b"CGCL", "bad magic")
    version, code, ndim, lanes = head.take(4, "header")
    require(version in (1, 2), f"version {version}")
    crc = head.uint(4, "CRC32")
    require(zlib.crc32(data[12:]) == crc, "CRC32 mismatch")
    require(code in ELEMENT_TYPES, f"element type {code}")
    require(ndim <= MAX_NDIM, f"ndim {ndim}")
    require(lanes == LANES, f"{lanes} lanes")
    _, width, kind, _ = ELEMENT_TYPES[code]
    layout = head.uint(1, "layout") if version >= 2 else LAYOUT_ARRAY
    shape = tuple(head.uint(8, "shape") for _ in range(ndim))
    require(layout in (LAYOUT_ARRAY, LAYOUT_PLANAR, LAYOUT_PLANAR_RGB), f"layout {layout}")
    if layout != LAYOUT_ARRAY:
        require(ndim == 3, "planar layout without 3 dimensions")
    if layout == LAYOUT_PLANAR_RGB:
        require(shape[2] >= 3 and kind != "float", "colour layout without 3 integer channels")
    th, tw = head.uint(4, "tile height"), head.uint(4, "tile width")
    require(th >= 1 and tw >= 1 and th * tw <= MAX_TILE_ELEMENTS, f"tile {th} x {tw}")
    data_size = head.uint(8, "data size")
    planes = [read_plane(head) for _ in range(width)]
    rows, cols = matrix_shape(shape, layout)
    ntiles = -(-rows // th) * -(-cols // tw) if rows else 0
    metadata_offset = head.pos
    require(ntiles * record_size(width) <= len(data) - head.pos, "truncated tile metadata")
    tiles, expected = [], 0
    for k in range(ntiles):
        offset, size = head.uint(8, "tile offset"), head.uint(4, "tile size")
        predictor = head.uint(1, "predictor")
        groups = list(head.take(width, "groups"))
        states = [head.uint(4, "lane state") for _ in range(LANES)]
        require(offset == expected, f"tile {k} offset {offset}, not {expected}")
        expected += size
        require(predictor <= 5, f"predictor {predictor}")
        for p, g in enumerate(groups):
            require(g == RAW or g < planes[p].ngroups, f"tile {k} plane {p} group {g}")
        require(all(RANS_L <= x < 1 << 31 for x in states), "lane state out of range")
        tiles.append(TileRecord(offset, size, predictor, groups, states))
    require(data_size == len(data) - head.pos, "Data size differs from the header's")
    require(expected == data_size, "tile sizes do not add up to the Data size")
    return Stream(version, code, shape, layout, (th, tw), planes, tiles, data[head.pos:],
                  (rows, cols), metadata_offset)


def activity(sym0, w, e):
    """Context input of plane-0 symbol e of a tile w wide, from its plane-0 symbols."""
    y, x = divmod(e, w)
    if y == 0 or w < 33:
        return 0
    up = (y - 1) * w
    left = sym0[up + x - 1] if x > 0 else sym0[up + x]
    right = sym0[up + x + 1] if x + 1 < w else sym0[up + x]
    return min(255, left + 2 * sym0[up + x] + right)


def decode_planes(stream, record, h, w):
    """The tile's byte planes ("Data: one tile"): P lists of its n = h * w bytes."""
    n, width = h * w, stream.width
    body = stream.data[record.offset:record.offset + record.size]
    coded = [p for p in range(width) if record.groups[p] != RAW]
    stream_size = record.size - (width - len(coded)) * n
    require(stream_size >= 0, "tile shorter than its raw planes")
    planes, at = [None] * width, stream_size
    for p in range(width):
        if record.groups[p] == RAW:
            planes[p] = list(body[at:at + n])
            at += n
        else:
            planes[p] = [None] * n
    tables, tbase, x, pos = stream.tables, stream.tbase, list(record.states), 0
    for step in range(-(-n // LANES)):
        for p in coded:
            model, group = stream.planes[p], record.groups[p]
            for j in range(min(LANES, n - step * LANES)):
                e = step * LANES + j
                if p > 0:
                    ctx_byte = planes[p - 1][e]
                elif stream.version >= 2:
                    ctx_byte = activity(planes[0], w, e)
                else:
                    ctx_byte = None  # version 1: plane 0 always uses context 0
                ctx = 0 if ctx_byte is None else model.ctxmap[ctx_byte]
                table = tables[tbase[p] + group * model.nctx + ctx]
                slot = x[j] & ((1 << model.prob_bits) - 1)
                s = table.lookup[slot]
                x[j] = table.freq[s] * (x[j] >> model.prob_bits) + slot - table.start[s]
                while x[j] < RANS_L:
                    require(pos < stream_size, "tile stream read past its end")
                    x[j] = (x[j] << 8) | body[pos]
                    pos += 1
                planes[p][e] = s
    require(pos == stream_size, "tile stream not used up")
    require(all(v == RANS_L for v in x), "final lane state is not 2**23")
    return planes


def unzigzag(z, bits):
    return ((z >> 1) ^ -(z & 1)) % (1 << bits)


def predict(predictor, v, w, y, x, bits):
    """Prediction of element (y, x) from the values already reconstructed ("Residuals")."""
    if y == 0:
        return v[x - 1] if x > 0 else 0
    if x == 0:
        return v[(y - 1) * w]
    a, b, c = v[y * w + x - 1], v[(y - 1) * w + x], v[(y - 1) * w + x - 1]
    planar = (a + b - c) % (1 << bits)
    if predictor == 1:
        return a
    if predictor == 2:
        return b
    if predictor == 3:
        return (a + b) // 2
    if predictor == 4:
        return planar
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return planar


def tile_values(stream, record, h, w):
    """The tile's transformed values v (width-bit unsigned), in raster order."""
    planes, bits, n = decode_planes(stream, record, h, w), 8 * stream.width, h * w
    resid = [0] * n
    for p, plane in enumerate(planes):
        shift = 8 * (stream.width - 1 - p)
        for e in range(n):
            resid[e] |= plane[e] << shift
    if record.predictor == 0:
        return resid
    v = [0] * n
    for e in range(n):  # raster order: every neighbour is reconstructed before it is used
        y, x = divmod(e, w)
        v[e] = (unzigzag(resid[e], bits) + predict(record.predictor, v, w, y, x, bits)) % (
            1 << bits)
    return v


def untransform(v, kind, bits):
    """A transformed value back to the stored integer (the element's bit pattern)."""
    if kind == "signed":
        return v ^ (1 << (bits - 1))
    if kind == "float":
        return (v >> 1) | ((v & 1) << (bits - 1))
    return v


def decode(data):
    """The array a stream holds (bfloat16 as uint16 bit patterns)."""
    stream = parse(data)
    _, width, kind, dtype = ELEMENT_TYPES[stream.code]
    bits = 8 * width
    rows, cols = stream.matrix
    th, tw = stream.tile
    tiles_x = -(-cols // tw) if cols else 1
    matrix = np.zeros((rows, cols), np.dtype(f"<u{width}"))  # the stored integers
    for k, record in enumerate(stream.tiles):
        y0, x0 = (k // tiles_x) * th, (k % tiles_x) * tw
        h, w = min(th, rows - y0), min(tw, cols - x0)
        values = tile_values(stream, record, h, w)
        for e, v in enumerate(values):
            matrix[y0 + e // w, x0 + e % w] = untransform(v, kind, bits)
    if stream.layout == LAYOUT_ARRAY:
        return matrix.view(dtype).reshape(stream.shape)
    h, w, c = stream.shape
    if rows == 0:
        return np.zeros(stream.shape, dtype)
    channels = matrix.reshape(c, h, w)
    if stream.layout == LAYOUT_PLANAR_RGB:
        mask = (1 << bits) - 1
        green = channels[1].astype(np.int64)
        channels[0] = (channels[0].astype(np.int64) + green) & mask
        channels[2] = (channels[2].astype(np.int64) + green) & mask
    return np.ascontiguousarray(np.moveaxis(channels, 0, 2)).view(dtype)


# ----------------------------------------------------------------------------- checkpoints

# safetensors dtypes: those coded as a matrix of an element type (code), and the other
# dtypes of known element size, coded as bytes.
TENSOR_TYPES = {"F32": 7, "F16": 5, "BF16": 6, "I16": 4, "U16": 3, "I8": 2, "U8": 1}
OTHER_SIZES = {"F64": 8, "I64": 8, "U64": 8, "I32": 4, "U32": 4, "BOOL": 1, "F8_E4M3": 1,
               "F8_E5M2": 1}
MAX_JSON_HEADER = 100_000_000


def checkpoint_segments(header_bytes, buffer_size):
    """[(begin, end, element type code, (rows, cols))] of a safetensors buffer."""
    try:
        header = json.loads(bytes(header_bytes))
    except ValueError:
        raise Rejected("JSON header") from None
    require(isinstance(header, dict), "JSON header not an object")
    tensors = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        require(isinstance(entry, dict), f"{name}: not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get(
            "data_offsets")
        require(isinstance(dtype, str) and isinstance(shape, list)
                and isinstance(offsets, list) and len(offsets) == 2
                and all(type(v) is int and v >= 0 for v in shape + offsets),
                f"{name}: dtype, shape, data_offsets")
        begin, end = offsets
        require(begin <= end <= buffer_size, f"{name}: data_offsets")
        count = int(np.prod(shape, dtype=object)) if shape else 1
        size = width_of(dtype)
        if size is not None:
            require(end - begin == count * size, f"{name}: extent")
        tensors.append((begin, end, dtype, shape))
    segments, at = [], 0
    for begin, end, dtype, shape in sorted(tensors, key=lambda t: t[:2]):
        require(begin >= at, "tensors overlap")
        if begin > at:
            segments.append((at, begin, 1, byte_matrix(begin - at)))
        if dtype in TENSOR_TYPES:
            segments.append((begin, end, TENSOR_TYPES[dtype], tensor_matrix(shape)))
        else:
            segments.append((begin, end, 1, byte_matrix(end - begin)))
        at = end
    if at < buffer_size:
        segments.append((at, buffer_size, 1, byte_matrix(buffer_size - at)))
    return segments


def tensor_matrix(shape):
    """(rows, cols) of a tensor segment: a scalar is 1 x 1, a last dimension of 0 gives
    0 x 0, and other empty tensors 0 x cols."""
    if not shape:
        return 1, 1
    if shape[-1] == 0:
        return 0, 0
    return int(np.prod(shape[:-1], dtype=object)), shape[-1]


def width_of(dtype):
    if dtype in TENSOR_TYPES:
        return ELEMENT_TYPES[TENSOR_TYPES[dtype]][1]
    return OTHER_SIZES.get(dtype)


def byte_matrix(length):
    return (1, length) if length else (0, 0)


def decode_checkpoint(data):
    """The safetensors file a .cgcs checkpoint holds, as bytes."""
    data = bytes(data)
    head = Reader(data)
    require(head.take(4, "magic") == b"CGCS", "bad checkpoint magic")
    require(head.uint(2, "version") == 1, "checkpoint version")
    require(head.uint(2, "flags") == 0, "checkpoint flags")
    file_size, count = head.uint(8, "file size"), head.uint(4, "count")
    sizes = [head.uint(8, "stream size") for _ in range(count)]
    prefix_at = head.pos
    json_size = head.uint(8, "JSON header size")
    require(json_size <= MAX_JSON_HEADER, "JSON header over 100,000,000 bytes")
    header_bytes = head.take(json_size, "JSON header")
    crc = head.uint(4, "checkpoint CRC")
    require(zlib.crc32(data[:head.pos - 4]) == crc, "checkpoint CRC mismatch")
    require(file_size >= 8 + json_size, "file smaller than its prefix")
    segments = checkpoint_segments(header_bytes, file_size - 8 - json_size)
    require(len(segments) == count, "stream count differs from the segments")
    require(sum(sizes) == len(data) - head.pos, "stream sizes differ from the rest")
    streams, at = [], head.pos
    for (begin, end, code, matrix), size in zip(segments, sizes):
        stream = parse(data[at:at + size])
        require(stream.code == code and stream.shape == matrix,
                f"stream of [{begin}, {end}) holds {stream.code} {stream.shape}")
        streams.append(data[at:at + size])
        at += size
    out = bytearray(data[prefix_at:prefix_at + 8 + json_size])
    for stream in streams:
        out += decode(stream).tobytes()
    require(len(out) == file_size, "decoded size differs from file_size")
    return bytes(out)
