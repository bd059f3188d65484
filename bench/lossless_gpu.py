"""GPU decode speed of cgc.lossless (cgc/kernels/rans.cu): GB/s of decoded output.

Inputs are synthetic, so that the script needs nothing but cgc on the GPU machine: weights
drawn from N(0, 0.02) as bfloat16 and float32 (8192 x 8192 and 4096 x 8192, 128 MiB each)
and a smooth 16-bit image plane, each encoded with the default tile, 128 x 128 and 64 x 64
tiles (one warp decodes one tile, so small tiles give the GPU more parallel work; on the
bf16 weights 128 x 128 tiles cost 0.3 % of the original size more than the default, 64 x 64
tiles 1.4 %).  The weights are also encoded with min_gain=0.1 at 128 x 128 and 64 x 64
tiles, which leaves their mantissa bytes raw (a copy instead of a second rANS plane) for a
slightly larger stream; so is each --streams file, re-encoded at its own tile.  Per stream:
  * kernel: the decode kernel alone, inputs already on the device, timed with CUDA events
    after a warm-up (median of --repeats); output checked bit for bit against the CPU.
  * end to end: cgc.lossless.decode(bytes, device="cuda") wall clock, bytes on the host to
    an array on the host (uploads and the download included); and to the device:
    decode(bytes, device="cuda", to_host=False), bytes on the host to a CuPy array (the
    upload of the stream and tables included, the result synchronised).
The goal is >= 250 GB/s on an H100.  Results: bench/results/lossless_gpu.json with the git
revision.

Streams given with --streams (the all-MiniLM-L6-v2 checkpoint written by
bench/checkpoint_streams.py) are timed the same way, checked against the CPU decoder.

    python bench/lossless_gpu.py [--repeats 50] [--streams FILE.cgcl ...] [--only TEXT ...]
"""
import argparse
import functools
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cgc.lossless as lossless  # noqa: E402
from cgc.kernels import has_gpu, load_module  # noqa: E402
from cgc.lossless import cuda as lcuda  # noqa: E402
from cgc.lossless.format import parse  # noqa: E402
# bench/gpu.py, beside this script
from gpu import event_times_ms, run_info  # noqa: E402
from report import write_report  # noqa: E402

GOAL_GBPS = 250
TILES = {"default tiles": None, "128x128 tiles": (128, 128), "64x64 tiles": (64, 64)}
# encode's min_gain that keeps the weights' mantissa bytes raw, trading size for speed.
SPEED_MIN_GAIN = 0.1


def inputs():
    rng = np.random.default_rng(0)
    fp32 = rng.normal(0, 0.02, (4096, 8192)).astype(np.float32)
    bf16 = (rng.normal(0, 0.02, (8192, 8192)).astype(np.float32).view(np.uint32)
            >> 16).astype(np.uint16)
    y, x = np.mgrid[0:4096, 0:4096]
    plane = (30000 + 8000 * np.sin(x / 40.0) * np.cos(y / 55.0)
             + rng.normal(0, 30, (4096, 4096))).astype(np.uint16)
    return {"bf16 weights": (bf16, True), "fp32 weights": (fp32, False),
            "uint16 image": (plane, False)}


def kernel_ms(cupy, module, container, out_dev, repeats):
    arguments = lcuda.kernel_arguments(container, cupy)
    errors = cupy.zeros(len(container.meta) * lcuda.LANES, np.int32)
    function = lcuda.kernel_function(module, container)
    grid, block = lcuda.launch_shape(len(container.meta))

    def run():
        function(grid, block, (*arguments, out_dev, errors))

    times = event_times_ms(cupy, run, repeats)
    if int(errors.max()) != 0:
        raise RuntimeError("the kernel reported a corrupt tile on a valid stream")
    return times


def bench_stream(cupy, module, data, expected, repeats):
    """Kernel and end-to-end decode speed of one stream, checked against ``expected``."""
    container = parse(data)
    out_dev = cupy.empty(expected.nbytes, cupy.uint8)
    times = kernel_ms(cupy, module, container, out_dev, repeats)
    flat = np.ascontiguousarray(expected).reshape(-1).view(np.uint8)
    if not np.array_equal(out_dev.get(), flat):
        raise RuntimeError("GPU decode differs from the expected array")
    wall, wall_device = [], []
    for _ in range(max(5, repeats // 5)):
        t0 = time.perf_counter()
        lossless.decode(data, device="cuda")
        wall.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        on_device = lossless.decode(data, device="cuda", to_host=False)
        cupy.cuda.Device().synchronize()
        wall_device.append(time.perf_counter() - t0)
    if not np.array_equal(on_device.reshape(-1).view(cupy.uint8).get(), flat):
        raise RuntimeError("GPU decode to the device differs from the expected array")
    median = statistics.median(times)
    size = expected.nbytes
    return {"decoded_bytes": size, "stream_bytes": len(data),
            "percent": 100.0 * len(data) / size, "tiles": len(container.meta),
            "kernel_median_ms": median, "kernel_min_ms": min(times),
            "kernel_GBps": size / (median * 1e-3) / 1e9,
            "end_to_end_median_ms": 1e3 * statistics.median(wall),
            "end_to_end_GBps": size / statistics.median(wall) / 1e9,
            "to_device_median_ms": 1e3 * statistics.median(wall_device),
            "to_device_GBps": size / statistics.median(wall_device) / 1e9}


def report_row(results, name, row):
    results[name] = row
    print(f"{name:<40} {row['percent']:6.2f} %  {row['tiles']:6d} tiles  kernel "
          f"{row['kernel_GBps']:7.1f} GB/s  end to end {row['end_to_end_GBps']:6.2f} GB/s, "
          f"to the device {row['to_device_GBps']:6.2f} GB/s",
          flush=True)


def cases(streams):
    """(name, encode() -> stream, expected array) of every stream the bench can time."""
    for name, (array, bf16) in inputs().items():
        for tile_name, tile in TILES.items():
            encode = functools.partial(lossless.encode, array, tile=tile, bfloat16=bf16)
            yield f"{name}, {tile_name}", encode, array
            if "weights" in name and tile is not None:
                yield (f"{name}, {tile_name}, min_gain {SPEED_MIN_GAIN}",
                       functools.partial(encode, min_gain=SPEED_MIN_GAIN), array)
    for path in streams:
        with open(path, "rb") as f:
            data = f.read()
        # The CPU decoder gives the reference (the stream's CRC guards its bytes).
        array = lossless.decode(data)
        yield os.path.basename(path), lambda data=data: data, array
        container = parse(data)
        yield (f"{os.path.basename(path)}, min_gain {SPEED_MIN_GAIN}",
               functools.partial(lossless.encode, array, tile=container.tile,
                                 bfloat16=container.etype.name == "bfloat16",
                                 min_gain=SPEED_MIN_GAIN), array)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--streams", nargs="*", default=[],
                        help="cgc.lossless files to time as well, e.g. the checkpoint's from "
                             "bench/checkpoint_streams.py")
    parser.add_argument("--only", nargs="*", default=[],
                        help="time only the streams whose name contains one of these")
    parser.add_argument("--out",
                        default=os.path.join(ROOT, "bench", "results", "lossless_gpu.json"))
    args = parser.parse_args()
    if not has_gpu():
        sys.exit("bench/lossless_gpu.py: no CUDA GPU available (it needs CuPy and a CUDA "
                 "device); nothing was measured")

    import cupy

    module = load_module(lcuda.KERNEL_MODULE)
    results = {}
    for name, encode, array in cases(args.streams):
        if not args.only or any(part in name for part in args.only):
            report_row(results, name,
                       bench_stream(cupy, module, encode(), array, args.repeats))
    write_report(args.out, {**run_info(cupy), "repeats": args.repeats, "goal_GBps": GOAL_GBPS,
                            "results": results})


if __name__ == "__main__":
    main()
