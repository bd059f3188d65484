"""cgc.lossless: tiled predictive rANS codec for 2-D arrays (and N-D, viewed as 2-D).

    data = cgc.lossless.encode(array)            # uint8/int8/uint16/int16/float16/float32
    data = cgc.lossless.encode(bits, bfloat16=True)   # bfloat16 as uint16 bit patterns
    data = cgc.lossless.encode(rgb, image=True)  # (H, W, C) image: planes, colour differences
    array = cgc.lossless.decode(data)            # bit-exact, same dtype and shape
    array = cgc.lossless.decode(data, device="cuda")  # tiles decoded by a CUDA kernel
    array = cgc.lossless.decode(data, device="cuda", to_host=False)  # a CuPy array

The format is specified in docs/lossless-format.md.  Malformed input raises
cgc.errors.FormatError."""
import math

import numpy as np

from cgc.lossless import _lossless_cy
from cgc import limits
from cgc.errors import FormatError
from cgc.lossless import model
from cgc.lossless.format import metadata_dtype, parse, serialize
from cgc.lossless.layout import (DEFAULT_TILE, LAYOUT_ARRAY, check_tile, effective_tile,
                                 element_type, from_matrix, image_layout, layout_matrix_shape,
                                 tile_count, to_matrix, to_values)

__all__ = ["encode", "decode", "decode_into", "PREDICTORS", "DEFAULT_TILE"]

PREDICTORS = tuple(_lossless_cy.PREDICTORS)


def encode(array, tile=None, *, bfloat16=False, predictors=None, image=False,
           min_gain=model.CODED_PENALTY_BITS):
    """Compress array losslessly.

    tile: requested (rows, cols) of a tile, at most 2**18 elements; None asks for
    DEFAULT_TILE, 128 x 512 (measurements: docs/tuning.md,
    "lossless/layout.py: default tile").  The tile is shrunk to the array, and thin arrays
    get tiles stretched along their long axis.
    Smaller tiles such as (64, 64) adapt predictors and tables more locally but pay 1.8 %
    of a 16-bit tensor in per-tile metadata.  bfloat16: the uint16 array holds bfloat16 bit
    patterns.  predictors: names from PREDICTORS to try per tile (default all; "none" is
    always tried).  image: array is an (H, W) or (H, W, C) image: an (H, W, C) one is coded
    as C planes of H x W (instead of rows of C columns), with red and blue coded as their
    difference from green when C >= 3 and the type is an integer one; decode() returns the
    same (H, W, C) array.  min_gain: bits per byte that entropy coding a tile's byte plane
    must save over storing it raw (raw planes decode as a copy), and that several contexts
    must save over one (a one-context plane decodes without looking contexts up); raising
    it to 0.1 trades size for decode speed on float weights, whose mantissa bytes then stay
    raw."""
    arr = np.asarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    etype = element_type(arr.dtype, bfloat16)
    th, tw = check_tile(DEFAULT_TILE if tile is None else tile)
    candidates = _candidates(predictors)
    if not min_gain >= 0:
        raise ValueError(f"min_gain must be >= 0 bits per byte, got {min_gain!r}")
    layout = image_layout(arr.shape, etype) if image else LAYOUT_ARRAY
    rows, cols = layout_matrix_shape(arr.shape, layout)
    etile = effective_tile((th, tw), rows, cols) if arr.size else (th, tw)
    nbytes = etype.nbytes
    ntiles = tile_count(rows, cols, *etile)
    values = to_values(to_matrix(arr, layout).reshape(rows, cols), etype)
    resid = np.empty_like(values)
    preds = np.zeros(ntiles, np.uint8)
    _lossless_cy.choose_residuals(values, etile[0], etile[1], nbytes, candidates, resid, preds)
    sym0 = model.plane_symbols(resid, nbytes, 0)
    activity = np.empty_like(sym0)
    _lossless_cy.activity_map(sym0, etile[0], etile[1], activity)
    planes, groups = model.build(resid, sym0, activity, nbytes, etile, float(min_gain))
    tables = model.coding_tables(planes)
    k = np.arange(ntiles)
    tiles_x = -(-cols // etile[1]) if cols else 1
    n = (np.minimum(etile[0], rows - (k // tiles_x) * etile[0])
         * np.minimum(etile[1], cols - (k % tiles_x) * etile[1])).astype(np.int64)
    coded = (groups != _lossless_cy.RAW_GROUP).sum(axis=1)
    region = np.concatenate([[0], np.cumsum(n * (2 * coded + (nbytes - coded)))]).astype(
        np.int64)
    scratch = np.empty(int(region[-1]), np.uint8)
    first = np.zeros(ntiles, np.int64)
    states = np.zeros((ntiles, _lossless_cy.NUM_LANES), np.uint32)
    if not _lossless_cy.encode_tiles(resid, activity, etile[0], etile[1], nbytes, groups,
                                  tables.ctxmap, tables.tbase, tables.nctx, tables.prob_bits,
                                  tables.freq, tables.start, scratch, region, first, states):
        raise RuntimeError("cgc.lossless model left a symbol without frequency")
    sizes = region[1:] - first
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    data = np.empty(int(sizes.sum()), np.uint8)
    _lossless_cy.gather(scratch, first, region, offsets, data)
    meta = np.zeros(ntiles, metadata_dtype(nbytes))
    meta["offset"], meta["size"], meta["pred"] = offsets, sizes, preds
    meta["groups"], meta["states"] = groups, states
    return serialize(etype, arr.shape, layout, etile, planes, meta, data.tobytes())


def _candidates(predictors):
    names = PREDICTORS if predictors is None else ("none",) + tuple(predictors)
    unknown = [p for p in names if p not in _lossless_cy.PREDICTORS]
    if unknown:
        raise ValueError(f"unknown predictors {unknown}; choose from {PREDICTORS}")
    return np.array(sorted({_lossless_cy.PREDICTORS[p] for p in names}), np.uint8)


def decode(data, device="cpu", to_host=True):
    """Decompress data; returns a new array of the encoded dtype and shape.

    With device="cuda" and to_host=False, a CuPy array on the current GPU: the decoded bytes
    stay there (only the compressed stream and the tables are uploaded).  On the CPU the
    array is on the host either way."""
    return _decoded(_parse_bounded(data), device, to_host)


def _parse_bounded(data):
    """parse(data), refused (cgc.limits) when it declares far more output than its size."""
    container = parse(data)
    limits.check_expansion(output_bytes(container), memoryview(data).nbytes)
    return container


def output_bytes(container):
    """Bytes of the array a parsed stream decodes to."""
    return math.prod(container.shape) * container.etype.nbytes


def _decoded(container, device="cpu", to_host=True):
    """A new array of a parsed stream's dtype and shape, as decode() gives."""
    if device == "cuda" and not to_host:
        from cgc.lossless import cuda
        return cuda.decode_on_device(container)
    out = np.empty(container.shape, container.etype.storage)
    _decode(container, out, device)
    return out


def decode_into(data, out, device="cpu"):
    """Decompress into out, a writeable C-contiguous array of the encoded dtype and shape.

    On FormatError, out may be partly overwritten."""
    container = _parse_bounded(data)
    if not isinstance(out, np.ndarray) or out.dtype != container.etype.storage \
            or out.shape != container.shape:
        raise ValueError(f"out must be a {container.etype.storage} array of shape "
                         f"{container.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    _decode(container, out, device)
    return out


def _decode(container, out, device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if len(container.meta) == 0:
        return
    if device == "cuda":
        from cgc.lossless import cuda
        cuda.decode_into(container, out)
        return
    rows, cols = container.matrix
    planar = container.layout != LAYOUT_ARRAY
    matrix = np.empty((rows, cols), out.dtype) if planar else out.reshape(rows, cols)
    _decode_cpu(container, matrix)
    if planar:
        from_matrix(matrix, container.layout, out)


def _decode_cpu(container, matrix):
    rows, cols = container.matrix
    tables = model.coding_tables(container.planes)
    meta = container.meta
    errors = np.zeros(len(meta), np.uint8)
    failed = _lossless_cy.decode_tiles(
        container.data, meta.view(np.uint8).reshape(len(meta), meta.dtype.itemsize),
        tables.ctxmap, tables.tbase, tables.nctx, tables.prob_bits, tables.freq, rows, cols,
        container.tile[0], container.tile[1], container.etype.nbytes, container.etype.kind,
        matrix.view(np.uint8), errors)
    if failed:
        raise FormatError(f"{failed} tile(s) failed to decode (first: tile "
                          f"{int(np.flatnonzero(errors)[0])})")
