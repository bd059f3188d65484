"""Speed of the SSIM term's gradient (tune="ssim"), compiled loops against array operations.

cgc.metrics.ssim_gradient on the CPU runs cgc._core.ssim_gradient; the array-operation path
(scipy.ndimage filters, the path CuPy runs) is timed beside it on the same float32 images:
a Kodak image and a noisy copy of it.  One warm-up call each, then the median of --repeats.
Results (JSON with the git revision): bench/results/ssim_gradient.json, or --out.

    python bench/ssim_gradient.py [--image PATH] [--repeats 9]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import scipy.ndimage

from kodak_fit import KODAK, ROOT  # bench/kodak_fit.py, beside this script

from cgc import metrics
from cgc.imageio import load_image
from report import revision, write_report


def median_seconds(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default=os.path.join(KODAK, "kodim05.png"))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "ssim_gradient.json"))
    args = parser.parse_args(argv)
    target = load_image(args.image).astype(np.float32)
    noise = np.random.default_rng(0).normal(0.0, 0.05, target.shape).astype(np.float32)
    rendered = np.clip(target + noise, 0.0, 1.0)
    compiled = median_seconds(lambda: metrics.ssim_gradient(rendered, target), args.repeats)
    arrays = median_seconds(lambda: metrics._ssim_gradient_arrays(
        np, scipy.ndimage, rendered, target, 1.0), args.repeats)
    report = {**revision(), "image": os.path.basename(args.image),
              "shape": list(target.shape), "repeats": args.repeats,
              "compiled_seconds": round(compiled, 5), "arrays_seconds": round(arrays, 5),
              "speedup": round(arrays / compiled, 2)}
    write_report(args.out, report)
    print(report)


if __name__ == "__main__":
    sys.exit(main())
