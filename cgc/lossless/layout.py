"""Element types, the 2-D view of an array, tile geometry and the integer transforms.

Every supported dtype is coded as width-bit unsigned integers ("transformed values"):
unsigned ints as they are, signed ints in offset binary (sign bit flipped, so that order and
averages are preserved), floats with the sign rotated from the top bit to bit 0.  The last
puts a float32 or bfloat16 exponent alone in the most significant byte plane, where most of
the redundancy of neural-network weights sits, and keeps small differences of same-signed
neighbours small for the predictors."""
import math
from dataclasses import dataclass

import numpy as np

KIND_UNSIGNED, KIND_SIGNED, KIND_FLOAT = 0, 1, 2

# Tiles hold at most this many elements: it bounds the decoder's per-thread scratch and the
# output a few bytes of metadata can claim (see docs/lossless-format.md, "Limits").
MAX_TILE_ELEMENTS = 1 << 18
# The tile encode() asks for by default, 2**16 elements: each tile carries 141 + P bytes of
# metadata, 0.1 % of a bfloat16 tensor at this size; larger tiles gained little or lost
# (measurements: docs/tuning.md, "lossless/layout.py: default tile").
DEFAULT_TILE = (128, 512)
MAX_NDIM = 32
# NumPy makes no array, not even an empty one, whose non-zero dimensions multiply past its
# index type: a stream or checkpoint declaring one is refused, whatever else it holds.
MAX_ARRAY_BYTES = 1 << 62


@dataclass(frozen=True)
class ElementType:
    code: int
    name: str
    storage: np.dtype  # dtype of decode()'s result
    kind: int

    @property
    def nbytes(self):
        return self.storage.itemsize


ELEMENT_TYPES = {
    t.code: t
    for t in (
        ElementType(1, "uint8", np.dtype(np.uint8), KIND_UNSIGNED),
        ElementType(2, "int8", np.dtype(np.int8), KIND_SIGNED),
        ElementType(3, "uint16", np.dtype(np.uint16), KIND_UNSIGNED),
        ElementType(4, "int16", np.dtype(np.int16), KIND_SIGNED),
        ElementType(5, "float16", np.dtype(np.float16), KIND_FLOAT),
        ElementType(6, "bfloat16", np.dtype(np.uint16), KIND_FLOAT),
        ElementType(7, "float32", np.dtype(np.float32), KIND_FLOAT),
    )
}
_BY_NAME = {t.name: t for t in ELEMENT_TYPES.values()}


def element_type(dtype, bfloat16=False):
    """The ElementType of an input dtype; bfloat16 arrives as its uint16 bit patterns."""
    dtype = np.dtype(dtype)
    if bfloat16:
        if dtype != np.uint16:
            raise ValueError(f"bfloat16 data must be given as uint16 bit patterns, got {dtype}")
        return _BY_NAME["bfloat16"]
    name = dtype.newbyteorder("=").name if dtype.byteorder not in "=|" else dtype.name
    if name not in _BY_NAME or name == "bfloat16":
        supported = ", ".join(n for n in _BY_NAME if n != "bfloat16")
        raise ValueError(f"cgc.lossless does not support dtype {dtype} (supported: "
                         f"{supported}, and bfloat16 as uint16 with bfloat16=True)")
    return _BY_NAME[name]


# How the array becomes the coded matrix (docs/lossless-format.md, "Layouts").
LAYOUT_ARRAY = 0  # the last axis gives the columns
LAYOUT_PLANAR = 1  # (H, W, C) image coded as C planes of H x W: a (C*H) x W matrix
# As LAYOUT_PLANAR, channels 0 and 2 (red, blue) coded as their difference from channel 1
# (green) modulo 2**bits, as the three colour planes share most of their edges and texture
# (measurements: docs/tuning.md, "lossless/layout.py: colour layout").
LAYOUT_PLANAR_RGB = 2
LAYOUTS = (LAYOUT_ARRAY, LAYOUT_PLANAR, LAYOUT_PLANAR_RGB)


def image_layout(shape, etype):
    """The layout encode(..., image=True) uses for an array of this shape and type."""
    if len(shape) == 2:
        return LAYOUT_ARRAY  # one channel: the array is already its plane
    if len(shape) != 3:
        raise ValueError(f"image=True needs an (H, W) or (H, W, C) array, got shape {shape}")
    # The colour layout wherever the stream rules allow it.
    if check_layout(LAYOUT_PLANAR_RGB, shape, etype) is None:
        return LAYOUT_PLANAR_RGB
    return LAYOUT_PLANAR


def check_layout(layout, shape, etype):
    """None if the layout fits the shape and type, else the reason it does not."""
    if layout not in LAYOUTS:
        return f"unknown layout {layout}"
    if layout != LAYOUT_ARRAY and len(shape) != 3:
        return f"planar layout needs 3 dimensions, not {len(shape)}"
    if layout == LAYOUT_PLANAR_RGB and (shape[2] < 3 or etype.kind == KIND_FLOAT):
        return "colour layout needs 3 or more integer channels"
    return None


def check_shape(shape, nbytes):
    """A message when an array of this shape and element size cannot exist (its non-zero
    dimensions times the element size exceed MAX_ARRAY_BYTES), else None."""
    size = math.prod(int(s) for s in shape if s)
    if size * nbytes > MAX_ARRAY_BYTES:
        return f"shape {tuple(shape)} exceeds {MAX_ARRAY_BYTES} bytes"
    return None


def layout_matrix_shape(shape, layout):
    """(rows, cols) of the coded matrix; (0, 0) for an array with no elements."""
    if any(int(s) == 0 for s in shape):
        return 0, 0
    if layout == LAYOUT_ARRAY:
        return matrix_shape(shape)
    h, w, c = (int(s) for s in shape)
    return c * h, w


def to_matrix(array, layout):
    """The C-contiguous coded matrix of array (planes and colour differences for images)."""
    if layout == LAYOUT_ARRAY:
        rows, cols = matrix_shape(array.shape)
        return np.ascontiguousarray(array).reshape(rows, cols)
    h, w, c = array.shape
    planes = np.ascontiguousarray(np.moveaxis(array, 2, 0))
    if layout == LAYOUT_PLANAR_RGB:
        u = planes.view(np.dtype(f"u{array.dtype.itemsize}"))
        u[0] -= u[1]
        u[2] -= u[1]
    return planes.reshape(c * h, w)


def from_matrix(matrix, layout, out, xp=np):
    """Inverse of to_matrix for the planar layouts: write the array of a decoded matrix into
    out (an (H, W, C) array; matrix is modified).  xp: the arrays' module (NumPy or CuPy)."""
    h, w, c = out.shape
    planes = matrix.reshape(c, h, w)
    if layout == LAYOUT_PLANAR_RGB:
        u = planes.view(np.dtype(f"u{out.dtype.itemsize}"))
        u[0] += u[1]
        u[2] += u[1]
    out[...] = xp.moveaxis(planes, 0, 2)


def matrix_shape(shape):
    """The (rows, cols) view: the last axis gives the columns, a scalar is 1 x 1."""
    if len(shape) == 0:
        return 1, 1
    cols = int(shape[-1])
    rows = 1
    for s in shape[:-1]:
        rows *= int(s)
    return (rows, cols) if cols else (0, 0)


def effective_tile(tile, rows, cols):
    """Shrink the requested tile to the array and, where the array is thinner than the tile,
    stretch it along the other axis so tiles keep about the requested element count (a 1-D
    array is one row: 64 x 64 tiles would otherwise hold 64 elements each)."""
    th, tw = tile
    target = th * tw
    eh = max(1, min(th, rows))
    ew = max(1, min(cols, max(tw, target // eh)))
    eh = max(1, min(rows, max(eh, target // ew)))
    return eh, ew


def check_tile(tile):
    try:
        th, tw = (int(v) for v in tile)
    except (TypeError, ValueError):
        raise ValueError(f"tile must be a pair of positive ints, got {tile!r}") from None
    if th < 1 or tw < 1 or th * tw > MAX_TILE_ELEMENTS:
        raise ValueError(f"tile {th}x{tw} must be positive with at most "
                         f"{MAX_TILE_ELEMENTS} elements")
    return th, tw


def tile_count(rows, cols, th, tw):
    return -(-rows // th) * -(-cols // tw) if rows and cols else 0


def to_values(matrix, etype):
    """Transformed values (uint32, same shape) of a C-contiguous 2-D array."""
    bits = 8 * etype.nbytes
    u = matrix.view(np.dtype(f"u{etype.nbytes}"))
    if etype.kind == KIND_SIGNED:
        u = u ^ u.dtype.type(1 << (bits - 1))
    elif etype.kind == KIND_FLOAT:
        u = (u << u.dtype.type(1)) | (u >> u.dtype.type(bits - 1))
    return u.astype(np.uint32)
