"""A P-frame's motion field: a translation per cell of a grid over the position codes,
moving every Gaussian whose centre is in the cell (spec: docs/video-format.md, "Motion
field").

Read me first
-------------
* The global motion (cgc.video.pframe) follows the camera; the field follows what moves
  in the picture.  On bikes' busy frames one motion for the frame predicts the next at
  23 dB and a shift per 32x32 cell at 28 dB (docs/tuning.md, "video/field.py: the
  motion field").
  Moving the Gaussians of a cell costs one vector, where updating each would cost a delta
  per Gaussian.
* A Gaussian's cell comes from its position codes after the global motion, clipped to the
  codes' range: column floor(k cols / (L + 1)) of a code k with L levels, rows alike.
  A vector's x is in units of ``units[0]`` x codes, its y of ``units[1]`` y codes (the
  encoder makes each unit about a pixel).
* Coded in the P-frame's header: cols and rows (u8 each; 0 and 0 for no field), then the
  two units and the byte length of the vectors' bits (varints), then per cell in raster order
  its x and y, each less the median of its left, upper and upper-right neighbours' (0
  where there is none), zigzagged, as an Elias gamma code of the value plus one, high bit
  first.
"""
from collections import namedtuple

import numpy as np

from cgc.errors import FormatError
from cgc.varint import unzigzag, varint, zigzag

Field = namedtuple("Field", "cols rows units vectors")  # units: (x, y); vectors (rows, cols, 2)
NO_FIELD = None
MAX_CELLS_SIDE = 255
MAX_UNIT = 1 << 16
# Zigzagged values are below 2^32 (a code range is at most 2^16 levels), so a gamma
# code has fewer than 33 leading zeros.
MAX_GAMMA_ZEROS = 32


def check_field(field, levels, error):
    """``field`` (a Field or NO_FIELD) with int64 vectors, each move within the position
    codes' ranges (``levels``: x's and y's); ``error`` otherwise."""
    if field is NO_FIELD:
        return field
    cols, rows = int(field.cols), int(field.rows)
    units = tuple(int(u) for u in field.units)
    if not (1 <= cols <= MAX_CELLS_SIDE and 1 <= rows <= MAX_CELLS_SIDE):
        raise error(f"a motion field of {cols}x{rows} cells (1 to {MAX_CELLS_SIDE} a side)")
    if len(units) != 2 or not all(1 <= u <= MAX_UNIT for u in units):
        raise error(f"motion field units {units} (two, each 1 to {MAX_UNIT} codes)")
    vectors = np.asarray(field.vectors)
    if vectors.shape != (rows, cols, 2) or not np.issubdtype(vectors.dtype, np.integer):
        raise error(f"motion field vectors must be integers of shape ({rows}, {cols}, 2)")
    vectors = vectors.astype(np.int64)
    if (np.abs(vectors[..., 0]) * units[0] > levels[0]).any() or (
            np.abs(vectors[..., 1]) * units[1] > levels[1]).any():
        raise error("a motion field vector beyond the codes' ranges")
    return Field(cols, rows, units, vectors)


def cells(x, y, field, levels):
    """Row-major cell index of position codes ``x``, ``y`` (int64 arrays, possibly
    outside their ranges: clipped) under ``field``."""
    cx = np.clip(x, 0, levels[0]) * field.cols // (levels[0] + 1)
    cy = np.clip(y, 0, levels[1]) * field.rows // (levels[1] + 1)
    return cy * field.cols + cx


def prediction(vectors, r, c):
    """Cell (r, c)'s prediction from ``vectors`` (rows, cols, 2), of which it reads only the
    cells before it in raster order: per axis the median of its left, upper and upper-right
    neighbours, 0 for each that does not exist."""
    cols = vectors.shape[1]
    zero = np.zeros(2, np.int64)
    left = vectors[r, c - 1] if c else zero
    up = vectors[r - 1, c] if r else zero
    up_right = vectors[r - 1, c + 1] if r and c + 1 < cols else zero
    return np.sort(np.stack([left, up, up_right]), axis=0)[1]


def vector_bits(residuals):
    """Bits of the codes of vector residuals (..., 2): the Elias gamma codes of their
    zigzagged values plus one, summed over the last axis."""
    return np.sum(2 * np.floor(np.log2(zigzag(residuals) + 1.0)) + 1, axis=-1)


def pack_field(field):
    """The bytes of ``field`` (NO_FIELD: two zero bytes); a Field checked by check_field."""
    if field is NO_FIELD:
        return bytes(2)
    residual = [field.vectors[r, c] - prediction(field.vectors, r, c)
                for r in range(field.rows) for c in range(field.cols)]
    text = "".join("0" * (int(z).bit_length() - 1) + format(int(z), "b")
                   for z in zigzag(np.ravel(residual)).astype(np.int64) + 1)
    text += "0" * (-len(text) % 8)
    data = int(text, 2).to_bytes(len(text) // 8, "big") if text else b""
    return (bytes([field.cols, field.rows]) + varint(field.units[0]) + varint(field.units[1])
            + varint(len(data)) + data)


def read_field(reader, levels):
    """The Field (or NO_FIELD) at ``reader`` (a cgc.video.pframe reader), FormatError if
    it is not valid for codes of ``levels`` (x's and y's)."""
    cols, rows = reader.take(2, "motion field size")
    if cols == 0 and rows == 0:
        return NO_FIELD
    if cols == 0 or rows == 0:
        raise FormatError(f"a motion field of {cols}x{rows} cells")
    units = (reader.varint("motion field unit"), reader.varint("motion field unit"))
    data = reader.take(reader.varint("motion field length"), "motion field")
    count = 2 * cols * rows
    if 8 * len(data) < count:  # each value takes at least one bit
        raise FormatError(f"a motion field of {len(data)} bytes for {count} values")
    bits = "".join(format(byte, "08b") for byte in data)
    values = []
    pos = 0
    for _ in range(count):
        one = bits.find("1", pos)
        if one < 0:
            raise FormatError("truncated motion field")
        zeros = one - pos
        if zeros > MAX_GAMMA_ZEROS or one + zeros >= len(bits):
            raise FormatError("bad motion field code")
        values.append(int(bits[one:one + zeros + 1], 2) - 1)
        pos = one + zeros + 1
    if len(bits) - pos >= 8 or "1" in bits[pos:]:
        raise FormatError("bytes after the motion field")
    residual = unzigzag(values).reshape(rows, cols, 2)
    vectors = np.zeros((rows, cols, 2), np.int64)
    for r in range(rows):  # each prediction reads decoded neighbours: in raster order
        for c in range(cols):
            vectors[r, c] = residual[r, c] + prediction(vectors, r, c)
    return check_field(Field(cols, rows, units, vectors), levels, FormatError)
