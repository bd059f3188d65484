"""GPU decode of cgc.lossless streams with the kernel in cgc/kernels/rans.cu.

CuPy is imported only here, and only when device="cuda" is asked for.  launch() takes the
array module and the kernel function as arguments so that tests can run the same argument
packing on the CPU through the CUDA emulation."""
import numpy as np

from cgc.errors import FormatError
from cgc.kernels import load_module
from cgc.lossless import model

KERNEL_MODULE = "rans"
LANES = 32
# One warp decodes one tile; rans.cu's launch bounds allow at most this many per block.
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
    # Empty arrays cannot be passed on every backend; read-only views of the input bytes
    # cannot be handed out as device buffers.
    device = [xp.asarray(np.require(a if a.size else np.zeros(1, a.dtype),
                                    requirements=("C", "W"))) for a in host]
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


def decode_into(container, out):
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError("device='cuda' needs CuPy (pip install cgc[cuda])") from exc
    out_dev = cupy.empty(out.nbytes, cupy.uint8)
    errors = launch(load_module(KERNEL_MODULE), container, cupy, out_dev)
    if errors.any():
        raise FormatError(f"{int(np.count_nonzero(errors))} tile(s) failed to decode "
                          f"(first: tile {int(np.flatnonzero(errors)[0])})")
    out_dev.get(out=out.reshape(-1).view(np.uint8))
