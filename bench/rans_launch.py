"""Launch settings of the cgc.lossless GPU decoder (cgc/kernels/rans.cu) compared on one GPU.

Each variant compiles rans.cu with other values of its tuning macros: warps per block
(WARPS_PER_BLOCK), resident warps per SM asked of the compiler through the launch bounds
(MIN_BLOCKS_* = warps / WARPS_PER_BLOCK; fewer for 4-byte elements, whose decoder needs more
registers), and how far ahead of its stream positions a warp prefetches into L1
(RANS_PREFETCH_BYTES_*, the same for every element size).
Every variant decodes the same streams (the weights of bench/lossless_gpu.py, also encoded
with min_gain=0.1, and each --streams file as given and so re-encoded), checked bit for bit
against the CPU decoder, timed with CUDA events after a warm-up (median of --repeats).  The
first variant is the shipped setting; it runs again last, so that the spread between its
two runs shows the noise.  Results: bench/results/rans_launch.json with the git revision.

    python bench/rans_launch.py [--repeats 50] [--streams FILE.cgcl ...]
"""
import argparse
import os
import statistics
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cgc.kernels import has_gpu, kernel_source  # noqa: E402
from cgc.lossless import cuda as lcuda  # noqa: E402
from cgc.lossless.format import parse  # noqa: E402
from gpu import event_times_ms, run_info  # noqa: E402  (bench/gpu.py, beside this script)
from lossless_gpu import SPEED_MIN_GAIN, cases  # noqa: E402
from report import write_report  # noqa: E402

# The synthetic streams of bench/lossless_gpu.py timed here (by its names), besides the
# --streams files as given and re-encoded with min_gain.
SYNTHETIC = ("bf16 weights, 64x64 tiles", f"bf16 weights, 64x64 tiles, min_gain {SPEED_MIN_GAIN}",
             "bf16 weights, 128x128 tiles", "fp32 weights, 64x64 tiles",
             f"fp32 weights, 64x64 tiles, min_gain {SPEED_MIN_GAIN}")
# (warps per block, resident warps per SM for 1- and 2-byte elements, prefetch bytes);
# None in a place keeps rans.cu's own setting, so SHIPPED is the kernel cgc launches.
SHIPPED = (None, None, None)
VARIANTS = (SHIPPED, (None, None, 0), (None, None, 256), (None, None, 1024), (8, 48, None),
            SHIPPED)
# The 4-byte decoder needs 48 registers: at most 40 resident warps without spills.
WARPS_4_BYTE = 40


def options(warps, resident, prefetch):
    """NVRTC options of a variant (see VARIANTS)."""
    chosen = ["--std=c++17"]
    if warps is not None:
        blocks = max(1, resident // warps)
        blocks_4 = max(1, min(resident, WARPS_4_BYTE) // warps)
        chosen += [f"-DWARPS_PER_BLOCK={warps}", f"-DMIN_BLOCKS_1={blocks}",
                   f"-DMIN_BLOCKS_2={blocks}", f"-DMIN_BLOCKS_4={blocks_4}"]
    if prefetch is not None:
        chosen += [f"-DRANS_PREFETCH_BYTES_{k}={prefetch}" for k in (1, 2, 4)]
    return tuple(chosen)


def kernel_ms(cupy, module, warps, container, expected, repeats):
    """Median ms of one decode of container with module, after checking its output."""
    arguments = lcuda.kernel_arguments(container, cupy)
    n_tiles = len(container.meta)
    out = cupy.empty(expected.nbytes, cupy.uint8)
    out.fill(0xCC)
    errors = cupy.zeros(n_tiles * lcuda.LANES, np.int32)
    function = lcuda.kernel_function(module, container)
    grid, block = ((n_tiles + warps - 1) // warps,), (lcuda.LANES, warps)

    def run():
        function(grid, block, (*arguments, out, errors))

    run()
    flat = np.ascontiguousarray(expected).reshape(-1).view(np.uint8)
    if int(errors.max()) != 0 or not np.array_equal(out.get(), flat):
        raise RuntimeError("a variant decoded a stream wrongly")
    return statistics.median(event_times_ms(cupy, run, repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--streams", nargs="*", default=[])
    parser.add_argument("--out",
                        default=os.path.join(ROOT, "bench", "results", "rans_launch.json"))
    args = parser.parse_args()
    if not has_gpu():
        sys.exit("bench/rans_launch.py: no CUDA GPU available; nothing was measured")

    import cupy

    stream_names = tuple(os.path.basename(path) for path in args.streams)
    streams = {name: (parse(encode()), array) for name, encode, array in cases(args.streams)
               if name in SYNTHETIC or name.startswith(stream_names)}

    print("GB/s of:", "; ".join(streams))
    source = kernel_source(lcuda.KERNEL_MODULE)
    rows = []
    for warps, resident, prefetch in VARIANTS:
        module = cupy.RawModule(code=source, options=options(warps, resident, prefetch))
        row = {"warps_per_block": warps, "resident_warps": resident,
               "prefetch_bytes": prefetch, "GBps": {}}
        for name, (container, expected) in streams.items():
            ms = kernel_ms(cupy, module, warps or lcuda.WARPS_PER_BLOCK, container, expected,
                           args.repeats)
            row["GBps"][name] = expected.nbytes / (ms * 1e-3) / 1e9
        rows.append(row)
        print(f"warps {warps} resident {resident} prefetch {prefetch} (None: rans.cu's): "
              + "  ".join(f"{v:6.1f}" for v in row["GBps"].values()), flush=True)
    write_report(args.out, {**run_info(cupy), "repeats": args.repeats,
                            "unit": "GB/s of decoded output, kernel alone", "variants": rows})


if __name__ == "__main__":
    main()
