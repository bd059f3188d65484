"""GPU decode of cgc.lossless streams with the kernel in cgc/kernels/rans.cu.

CuPy is imported only here, and only when device="cuda" is asked for.  launch() and
decode_on_device() take the array module and the kernel module as arguments so that tests
can run the same code on the CPU through the CUDA emulation."""
import numpy as np

from cgc.errors import FormatError
from cgc.kernels import load_module
from cgc.lossless import model
from cgc.lossless._lossless_cy import NUM_LANES
from cgc.lossless.layout import LAYOUT_ARRAY, from_matrix

KERNEL_MODULE = "rans"
LANES = NUM_LANES
# One warp decodes one tile; rans.cu's launch bounds allow at most this many per block, and
# tests/test_kernels_compile.py checks that the two agree
# (measurements: docs/tuning.md, "kernels/rans.cu: prefetch and launch shape").
WARPS_PER_BLOCK = 4


def kernel_function(module, container):
    """The entry point of module (rans.cu, loaded) for the container's element size."""
    return module.get_function(f"rans_decode_tiles_{container.etype.nbytes}")


def launch_shape(n_tiles):
    """(grid, block) of a launch over n_tiles tiles."""
    return ((n_tiles + WARPS_PER_BLOCK - 1) // WARPS_PER_BLOCK,), (LANES, WARPS_PER_BLOCK)


def kernel_arguments(container, xp):
    """The kernel's inputs for container (stream, tile records, tables, sizes) as xp arrays
    and scalars: uploaded once, they can be reused for repeated launches
    (bench/lossless_gpu.py)."""
    rows, cols = container.matrix
    meta = container.meta
    tables = model.coding_tables(container.planes)
    plane_info = np.stack([tables.tbase, tables.nctx, tables.prob_bits.astype(np.int32)],
                          axis=1).astype(np.int32)
    host = (container.data, meta["offset"].astype(np.int64), meta["size"].astype(np.int64),
            np.ascontiguousarray(meta["pred"]), np.ascontiguousarray(meta["groups"]),
            np.ascontiguousarray(meta["states"]), tables.ctxmap, plane_info, tables.freq_start,
            tables.lookup)
    # Empty arrays cannot be passed on every backend.  The stream is uploaded straight from
    # the caller's (possibly read-only) bytes: the kernel only reads it.
    device = [xp.asarray(np.ascontiguousarray(a if a.size else np.zeros(1, a.dtype)))
              for a in host]
    scalars = [np.int32(v) for v in (tables.lookup.shape[1], rows, cols, container.tile[0],
                                     container.tile[1], container.etype.kind, len(meta))]
    return (*device, *scalars)


def launch(module, container, xp, out_bytes, arguments=None):
    """Decode container's tiles into out_bytes (an xp uint8 array of rows*cols*nbytes bytes,
    elements native little-endian); returns the per-tile error codes as a numpy array.
    arguments: kernel_arguments(container, xp), if already uploaded."""
    if arguments is None:
        arguments = kernel_arguments(container, xp)
    errors = xp.zeros(len(container.meta) * LANES, np.int32)
    kernel_function(module, container)(*launch_shape(len(container.meta)),
                                       (*arguments, out_bytes, errors))
    errors = errors.get() if hasattr(errors, "get") else errors
    return errors.reshape(len(container.meta), LANES).max(axis=1)


def decode_on_device(container, xp=None, module=None):
    """The decoded array of container (its dtype and shape) as an xp array, made on the
    device: the decoded bytes never cross to the host.  xp and module default to CuPy and
    rans.cu loaded by it; tests pass numpy and the CUDA emulation's module."""
    if xp is None:
        try:
            import cupy as xp
        except ImportError as exc:
            raise RuntimeError("device='cuda' needs CuPy (pip install cgc[cuda])") from exc
    storage = container.etype.storage
    if len(container.meta) == 0:
        return xp.zeros(container.shape, storage)
    rows, cols = container.matrix
    out_bytes = xp.empty(rows * cols * container.etype.nbytes, np.uint8)
    errors = launch(load_module(KERNEL_MODULE) if module is None else module, container, xp,
                    out_bytes)
    if errors.any():
        raise FormatError(f"{int(np.count_nonzero(errors))} tile(s) failed to decode "
                          f"(first: tile {int(np.flatnonzero(errors)[0])})")
    matrix = out_bytes.view(storage).reshape(rows, cols)
    if container.layout == LAYOUT_ARRAY:
        return matrix.reshape(container.shape)
    out = xp.empty(container.shape, storage)
    from_matrix(matrix, container.layout, out, xp)
    return out


def decode_into(container, out):
    """Decode container on the GPU into out, a host array of its dtype and shape."""
    decoded = decode_on_device(container)
    if hasattr(decoded, "get"):
        decoded.get(out=out)
    else:  # the CUDA emulation's arrays are NumPy ones
        out[...] = decoded
