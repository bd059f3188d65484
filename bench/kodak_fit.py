"""Fit quality and time on Kodak: cgc.fit on every image at one Gaussian count, on any device.

For each Kodak image (all 24 kodim*.png in --kodak, or those named by --images) and each
iteration count K in --iterations: cgc.fit(image, N, iterations=K, device=D) wall clock,
the initialisation included and also given apart (a fit of 0 iterations; the steps at half
resolution that come first, none at the default N, are in the row too), and the 8-bit
PSNR of the fitted Gaussians rendered and rounded.  The mean over the images per K is the
figure to compare with GaussianImage's Kodak result (70,000 Gaussians, 50,000 iterations).
Results: bench/results/kodak_fit_<device>.json with the git revision.  bench/gpu.py runs
the same fits on the GPU as part of its report.

    python bench/kodak_fit.py [--device cpu] [--n 70000] [--iterations 1000]
                              [--images 05 23] [--kodak DIR]
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

import classical  # noqa: E402  (bench/classical.py, beside this script)
import cgc  # noqa: E402
from cgc.image.fit import default_coarse_iterations  # noqa: E402
from report import revision, write_report  # noqa: E402

KODAK = os.path.join(ROOT, "..", "shared", "data", "kodak")


def kodak_paths(directory, names=None):
    """kodimNN.png paths: those named (NN), or every one in the folder."""
    if names:
        return [os.path.join(directory, f"kodim{name}.png") for name in names]
    return [os.path.join(directory, f) for f in sorted(os.listdir(directory))
            if f.startswith("kodim") and f.endswith(".png")]


def fit_image(path, n, iteration_counts, device):
    """Wall clock and 8-bit PSNR of cgc.fit for each iteration count."""
    image = np.asarray(Image.open(path).convert("RGB"))
    start = time.perf_counter()
    cgc.fit(image, n, iterations=0, device=device, progress=False)
    setup = time.perf_counter() - start
    rows = []
    for iterations in iteration_counts:
        start = time.perf_counter()
        fitted = cgc.fit(image, n, iterations=iterations, device=device, progress=False)
        seconds = time.perf_counter() - start
        decoded = np.rint(fitted.render(device=device) * 255.0)
        coarse = default_coarse_iterations(*image.shape[:2], n, iterations)
        rows.append({"iterations": iterations, "coarse_iterations": coarse, "seconds": seconds,
                     "psnr": classical.psnr(image, decoded)})
        print(f"{os.path.basename(path)} N={n} {iterations:5d} iterations  {seconds:7.2f} s  "
              f"PSNR {rows[-1]['psnr']:.2f} dB", flush=True)
    return {"image": os.path.basename(path), "n": n, "setup_seconds": setup, "fits": rows}


def mean_by_iterations(images):
    """Mean and worst PSNR and time over the images, per iteration count."""
    means = {}
    for k, iterations in enumerate(r["iterations"] for r in images[0]["fits"]):
        fits = [image["fits"][k] for image in images]
        means[str(iterations)] = {
            "images": len(images),
            "mean_psnr": statistics.mean(f["psnr"] for f in fits),
            "min_psnr": min(f["psnr"] for f in fits),
            "mean_seconds": statistics.mean(f["seconds"] for f in fits),
            "max_seconds": max(f["seconds"] for f in fits),
            "mean_setup_seconds": statistics.mean(i["setup_seconds"] for i in images)}
    return means


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--n", type=int, default=70_000)
    parser.add_argument("--iterations", nargs="+", type=int, default=[1000])
    parser.add_argument("--images", nargs="*", help="NN of kodimNN.png (default: all)")
    parser.add_argument("--kodak", default=KODAK, help="folder of kodimNN.png")
    parser.add_argument("--out")
    args = parser.parse_args()
    out = args.out or os.path.join(ROOT, "bench", "results", f"kodak_fit_{args.device}.json")
    info = revision()  # at the start: the code that the whole run measured
    images = [fit_image(path, args.n, args.iterations, args.device)
              for path in kodak_paths(args.kodak, args.images)]
    means = mean_by_iterations(images)
    for iterations, m in means.items():
        print(f"{m['images']} images, N={args.n}, {iterations} iterations: mean PSNR "
              f"{m['mean_psnr']:.2f} dB (lowest {m['min_psnr']:.2f}), mean "
              f"{m['mean_seconds']:.2f} s (at most {m['max_seconds']:.2f}, initialisation "
              f"{m['mean_setup_seconds']:.2f})")
    write_report(out, {**info, "device": args.device, "n": args.n, "mean": means,
                       "images": images})


if __name__ == "__main__":
    main()
