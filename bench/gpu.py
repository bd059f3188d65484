"""GPU benchmark of the CUDA backend at 768x512: render, fit iterations and full decode.

For N = 10k, 50k and 70k random Gaussians sized like a fit's initialisation:
  * render: render_forward with precomputed bins, and bin + render_forward, per frame timed
    with CUDA events after a warm-up (median of --repeats), plus the throughput of
    --repeats frames queued back to back; render_backward likewise.
  * fit: one iteration of the fitting loop (bin, forward, loss gradient, backward, Adam),
    timed with CUDA events; and cgc.fit(..., device="cuda") end to end, as iterations per
    second from the difference between the median times of fits of --fit-iterations and
    of none (the difference of a fit of a fifth of the iterations came out negative once).
  * decode: cgc.decode(bytes, device="cuda") wall clock, bytes to uint8 image on the host;
    decode_to_device: the same with to_host=False (the image left on the GPU, synchronised).
  * Kodak fit: cgc.fit(image, N, iterations=K, device="cuda") on the Kodak images named by
    --kodak-images for each K in --kodak-iterations, and on all 24 at each K in
    --kodak-mean-iterations (none given: skip), through bench/kodak_fit.py: wall clock
    (initialisation on the CPU included, and given apart) and PSNR of the fitted Gaussians
    rendered to 8 bits.
  * Kodak encode: cgc.encode(image, bpp=--encode-bpp, preset="balanced", device="cuda")
    on the --kodak-images (every stage renders on the GPU: fit, prune, allocation,
    refinement, growth): wall clock, median of --encode-repeats after a warm-up, bpp and
    PSNR.  The goal is under 2 s per image.
The goal is >= 10,000 frames/s for 50k Gaussians.  Results: bench/results/gpu.json with the
git revision.

    python bench/gpu.py [--n 10000 50000 70000] [--repeats 200] [--fit-iterations 1000]
                        [--kodak DIR] [--kodak-images 05 23] [--kodak-n 70000]
                        [--kodak-iterations 250 500 1000 2000 4000]
                        [--kodak-mean-iterations 500 1000]
                        [--encode-bpp 0.5] [--encode-repeats 3]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cgc  # noqa: E402
from cgc.image.codec import encode_gaussians  # noqa: E402
from cgc.image.model import Gaussians  # noqa: E402
from cgc.kernels import has_gpu  # noqa: E402
# beside this script
from kodak_fit import KODAK, fit_image, kodak_paths, mean_by_iterations  # noqa: E402
from report import revision, write_report  # noqa: E402

HEIGHT, WIDTH = 512, 768
GOAL_FPS = 10_000
WARMUP = 10


def run_info(cupy):
    """The revision, device and versions that a GPU bench's JSON report starts with."""
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return {**revision(),
            "device": name.decode() if isinstance(name, bytes) else name,
            "cupy": cupy.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()}


def random_gaussians(n, seed=0):
    """Gaussians over the whole image, sized like an initialisation of n Gaussians."""
    rng = np.random.default_rng(seed)
    spacing = np.sqrt(HEIGHT * WIDTH / n)
    params = np.empty((n, 8), dtype=np.float32)
    params[:, 0] = rng.uniform(0, WIDTH, n)
    params[:, 1] = rng.uniform(0, HEIGHT, n)
    params[:, 2] = spacing * rng.uniform(0.5, 1.5, n)
    params[:, 3] = spacing * rng.uniform(-0.3, 0.3, n)
    params[:, 4] = spacing * rng.uniform(0.5, 1.5, n)
    params[:, 5:] = rng.uniform(0.0, 1.0, (n, 3)) / 4
    return params


def event_times_ms(cupy, fn, repeats):
    """Per-call GPU time of fn() in ms, each call between its own pair of CUDA events."""
    for _ in range(WARMUP):
        fn()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return times


def throughput_fps(cupy, fn, repeats):
    """Calls per second with repeats calls queued back to back between two events."""
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return repeats / (cupy.cuda.get_elapsed_time(start, end) / 1e3)


def summary(times_ms):
    median = statistics.median(times_ms)
    return {"median_ms": median, "min_ms": min(times_ms), "fps": 1e3 / median,
            "samples": len(times_ms)}


def bench_render(cupy, backend, n, repeats):
    params = backend.from_numpy(random_gaussians(n))
    bins = backend.bin(params, HEIGHT, WIDTH)
    grad_image = cupy.asarray(
        np.random.default_rng(1).standard_normal((HEIGHT, WIDTH, 3)).astype(np.float32))

    def render():
        backend.render_forward(params, HEIGHT, WIDTH, bins)

    def bin_render():
        backend.render_forward(params, HEIGHT, WIDTH, backend.bin(params, HEIGHT, WIDTH))

    def backward():
        backend.render_backward(params, HEIGHT, WIDTH, grad_image, bins)

    return {
        "n": n,
        "pairs": int(bins[1].shape[0]),
        "render": summary(event_times_ms(cupy, render, repeats)),
        "render_throughput_fps": throughput_fps(cupy, render, repeats),
        "bin_render": summary(event_times_ms(cupy, bin_render, repeats)),
        "bin_render_throughput_fps": throughput_fps(cupy, bin_render, repeats),
        "backward": summary(event_times_ms(cupy, backward, repeats)),
    }


def bench_fit_iteration(cupy, backend, n, repeats):
    """The body of cgc.fit's loop, on a target rendered from other Gaussians."""
    target = cupy.clip(backend.render_forward(backend.from_numpy(random_gaussians(n, seed=2)),
                                              HEIGHT, WIDTH), 0.0, 1.0)
    params = backend.from_numpy(random_gaussians(n))
    m = cupy.zeros_like(params)
    v = cupy.zeros_like(params)
    lr = np.full(8, 1e-3)
    step = [0]

    def iteration():
        step[0] += 1
        bins = backend.bin(params, HEIGHT, WIDTH)
        rendered = backend.render_forward(params, HEIGHT, WIDTH, bins)
        diff = cupy.clip(rendered, 0.0, 1.0) - target
        grad_image = cupy.ascontiguousarray((2.0 * diff).astype(cupy.float32))
        grads = backend.render_backward(params, HEIGHT, WIDTH, grad_image, bins)
        backend.adam_step(params, grads, m, v, step[0], lr, centre_box=(WIDTH, HEIGHT))

    return summary(event_times_ms(cupy, iteration, repeats))


def bench_fit_end_to_end(n, iterations, repeats=3):
    """cgc.fit on the GPU: iterations per second from the medians of fits of --fit-iterations
    and of none (each pays the same initialisation on the CPU; full resolution only).  None
    where the two medians are too close to tell apart."""
    target = np.clip(Gaussians(random_gaussians(n, seed=2), HEIGHT, WIDTH).render(), 0, 1)

    def seconds(k):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            cgc.fit(target, n, iterations=k, coarse_iterations=0, device="cuda",
                    progress=False)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    seconds(1)
    setup = seconds(0)
    total = seconds(iterations)
    return {"iterations": iterations, "seconds": total, "setup_seconds": setup,
            "iterations_per_s": iterations / (total - setup) if total > setup else None}


def bench_decode(cupy, n, repeats, to_host=True):
    data = encode_gaussians(Gaussians(random_gaussians(n), HEIGHT, WIDTH))
    for _ in range(WARMUP):
        cgc.decode(data, device="cuda", to_host=to_host)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        cgc.decode(data, device="cuda", to_host=to_host)
        cupy.cuda.Device().synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return {"bytes": len(data), **summary(times)}


def bench_kodak(args):
    """The --kodak-images sweep and the mean over every kodim*.png per iteration count."""
    first = kodak_paths(args.kodak, ["01"])[0]
    image = np.asarray(Image.open(first).convert("RGB"))
    cgc.fit(image, 1000, iterations=2, device="cuda", progress=False)  # warm-up: kernel loads
    report = {"sweep": [fit_image(path, args.kodak_n, args.kodak_iterations, "cuda")
                        for path in kodak_paths(args.kodak, args.kodak_images)]}
    if args.kodak_mean_iterations:
        every = [fit_image(path, args.kodak_n, args.kodak_mean_iterations, "cuda")
                 for path in kodak_paths(args.kodak)]
        report["all"] = {"n": args.kodak_n, "mean": mean_by_iterations(every), "rows": every}
        for iterations, mean in report["all"]["mean"].items():
            print(f"Kodak ({mean['images']} images) N={args.kodak_n} {iterations} iterations: "
                  f"mean PSNR {mean['mean_psnr']:.2f} dB (lowest {mean['min_psnr']:.2f}), mean "
                  f"{mean['mean_seconds']:.2f} s (max {mean['max_seconds']:.2f} s), "
                  f"initialisation {mean['mean_setup_seconds']:.2f} s", flush=True)
    return report


def bench_encode(args):
    """Balanced-preset encodes on the GPU of the --kodak-images (see the module docstring)."""
    from cgc.metrics import psnr

    paths = kodak_paths(args.kodak, args.kodak_images)
    warm = np.asarray(Image.open(paths[0]).convert("RGB"))[:128, :128]
    cgc.encode(warm, bpp=args.encode_bpp, device="cuda", progress=False)
    rows = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        times = []
        for _ in range(args.encode_repeats):
            start = time.perf_counter()
            data = cgc.encode(image, bpp=args.encode_bpp, device="cuda", progress=False)
            times.append(time.perf_counter() - start)
        rows.append({"image": os.path.basename(path), "seconds": statistics.median(times),
                     "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]),
                     "psnr": psnr(image, cgc.decode(data))})
        print(f"encode {rows[-1]['image']} balanced at {args.encode_bpp} bpp: "
              f"{rows[-1]['seconds']:.2f} s, {rows[-1]['psnr']:.2f} dB", flush=True)
    return {"bpp": args.encode_bpp, "preset": "balanced", "goal_seconds": 2.0, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", nargs="+", type=int, default=[10_000, 50_000, 70_000])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--fit-iterations", type=int, default=1000)
    parser.add_argument("--kodak", default=KODAK, help="folder of kodimNN.png")
    parser.add_argument("--kodak-images", nargs="*", default=["05", "23"])
    parser.add_argument("--kodak-n", type=int, default=70_000)
    parser.add_argument("--kodak-iterations", nargs="+", type=int,
                        default=[250, 500, 1000, 2000, 4000])
    parser.add_argument("--kodak-mean-iterations", nargs="*", type=int, default=[500, 1000])
    parser.add_argument("--encode-bpp", type=float, default=0.5)
    parser.add_argument("--encode-repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "gpu.json"))
    args = parser.parse_args()
    if args.repeats < 100:
        parser.error("--repeats must be at least 100 for a stable median")
    if not has_gpu():
        sys.exit("bench/gpu.py: no CUDA GPU available (it needs CuPy and a CUDA device); "
                 "nothing was measured")

    import cupy

    from cgc.backends.cuda import CUDABackend

    backend = CUDABackend()
    rows = []
    for n in args.n:
        row = bench_render(cupy, backend, n, args.repeats)
        row["fit_iteration"] = bench_fit_iteration(cupy, backend, n, args.repeats)
        row["fit"] = bench_fit_end_to_end(n, args.fit_iterations)
        row["decode"] = bench_decode(cupy, n, args.repeats)
        row["decode_to_device"] = bench_decode(cupy, n, args.repeats, to_host=False)
        rows.append(row)
        print(f"n={n:6d}  render {row['render']['fps']:9.0f} fps  "
              f"bin+render {row['bin_render']['fps']:8.0f} fps  "
              f"fit {row['fit_iteration']['fps']:7.0f} it/s  "
              f"decode {row['decode']['fps']:6.0f} fps "
              f"({row['decode_to_device']['fps']:6.0f} to the device)", flush=True)

    # The encode before the Kodak fit sweep, the longest part, and the report written after
    # each, so that a run cut short by a time limit keeps what it measured.
    report = {**run_info(cupy), "height": HEIGHT, "width": WIDTH, "repeats": args.repeats,
              "goal_fps_at_50k": GOAL_FPS, "results": rows}
    report["kodak_encode"] = bench_encode(args)
    write_report(args.out, report)
    report["kodak_fit"] = bench_kodak(args)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
