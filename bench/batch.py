"""Batch throughput on Kodak: cgc.batch.encode_tree on local clusters of 1 and 2 workers
against serial cgc.encode calls on the same images with the same options, in one run.

The serial pass reads, encodes and writes each image in this process, its OpenMP loops on
every core; a batch of one worker gets every core too (cgc.batch.local_cluster), so their
ratio is the batch's overhead (goal: under 5 %): the tasks' scheduling, the check for an
existing output, the PSNR of the decoded file in the manifest, the temporary file and its
fsync.  The cluster's start is timed apart.  Every batch output must equal the serial one,
byte for byte.  Results: bench/results/batch.json with the git revision.

    python bench/batch.py [--kodak DIR] [--images 01 02] [--workers 1 2]
                          [-n N] [--iterations K] [--seed S] [--bpp B] [--preset P]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

from kodak_fit import KODAK, ROOT, kodak_paths  # bench/kodak_fit.py, beside this script

import cgc
from cgc import batch
from cgc.imageio import load_image
from report import revision, write_report


def encode_options(args):
    """encode_tree's options from the command line; unset ones keep cgc.encode's
    defaults."""
    given = {"n_gaussians": args.n, "iterations": args.iterations,
             "coarse_iterations": args.coarse_iterations, "seed": args.seed, "bpp": args.bpp,
             "preset": args.preset}
    return {name: value for name, value in given.items() if value is not None}


def serial_pass(paths, options, out):
    """Read, encode and write each image in turn; (seconds, {name: bytes})."""
    files = {}
    start = time.perf_counter()
    for path in paths:
        image = load_image(path)
        data = cgc.encode(image, progress=False, **options)
        name = os.path.splitext(os.path.basename(path))[0] + ".cgc"
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        files[name] = data
        print(f"serial {name}: {len(data)} bytes, "
              f"{time.perf_counter() - start:.1f} s so far", flush=True)
    return time.perf_counter() - start, files


def batch_pass(src, workers, options, out):
    """encode_tree on a fresh local cluster of ``workers``: its timings and outputs."""
    from distributed import Client

    start = time.perf_counter()
    with batch.local_cluster(workers) as cluster, \
            Client(cluster, set_as_default=False) as client:
        threads = sorted(set(client.run(omp_threads).values()))
        started = time.perf_counter() - start
        start = time.perf_counter()
        records = batch.encode_tree(src, out, client=client, progress=False, **options)
        seconds = time.perf_counter() - start
    failed = [r["source"] for r in records if r["status"] != "encoded"]
    if failed:
        sys.exit(f"the batch did not encode {failed}: see {out}/{batch.MANIFEST}")
    files = {r["output"]: read(os.path.join(out, r["output"])) for r in records}
    return {"workers": workers, "omp_threads": threads, "cluster_start_seconds": started,
            "seconds": seconds, "images_per_minute": 60 * len(records) / seconds,
            "mean_psnr": sum(r["psnr"] for r in records) / len(records)}, files


def read(path):
    with open(path, "rb") as f:
        return f.read()


def omp_threads():
    """Run on each worker: the threads its compiled loops start."""
    from cgc.native import threads

    return threads.max_threads()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kodak", default=KODAK, help="folder of kodimNN.png")
    parser.add_argument("--images", nargs="*", help="NN of kodimNN.png (default: all)")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("-n", type=int, default=None, help="Gaussians per image")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--coarse-iterations", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bpp", type=float, default=None)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "batch.json"))
    args = parser.parse_args()
    info = revision()  # at the start: the code that the whole run measured
    options = encode_options(args)
    paths = kodak_paths(args.kodak, args.images)
    with tempfile.TemporaryDirectory(prefix="cgc-batch-bench-") as work:
        src = os.path.join(work, "src")
        os.makedirs(src)
        for path in paths:
            shutil.copy(path, src)
        os.makedirs(os.path.join(work, "serial"))
        serial_seconds, serial_files = serial_pass(paths, options,
                                                   os.path.join(work, "serial"))
        runs = []
        for workers in args.workers:
            run, files = batch_pass(src, workers, options, os.path.join(work, f"w{workers}"))
            run["identical"] = files == serial_files
            run["speedup"] = serial_seconds / run["seconds"]
            runs.append(run)
            print(f"{workers} worker(s), {run['omp_threads']} OpenMP threads each: "
                  f"{run['images_per_minute']:.2f} images/min, {run['seconds']:.1f} s, "
                  f"{run['speedup']:.2f} times serial's rate, cluster start "
                  f"{run['cluster_start_seconds']:.1f} s, identical to serial: "
                  f"{run['identical']}", flush=True)
    print(f"serial: {60 * len(paths) / serial_seconds:.2f} images/min, {serial_seconds:.1f} s")
    # One worker has every core, as the serial pass had: the difference is the batch's.
    overhead = next((r["seconds"] / serial_seconds - 1 for r in runs if r["workers"] == 1),
                    None)
    if overhead is not None:
        print(f"overhead of a one-worker batch: {100 * overhead:+.1f} % (goal: under 5 %)")
    write_report(args.out, {
        **info, "cores": batch.cores(), "options": options,
        "images": [os.path.basename(p) for p in paths],
        "serial": {"seconds": serial_seconds,
                   "images_per_minute": 60 * len(paths) / serial_seconds},
        "batch": runs, "overhead": overhead})


if __name__ == "__main__":
    main()
