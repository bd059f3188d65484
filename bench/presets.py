"""Encoder presets and the quality scale on Kodak: encode seconds, size, PSNR and SSIM.

Two measurements, each over every image in the folder (all 24 Kodak images by default):

* ``--presets P...`` at ``--bpp`` (0.5): each preset's encode seconds and quality.  An
  encode of a Kodak image takes seconds to minutes, so each is timed once, after a warm-up
  encode of a small image has loaded the extensions and started the thread pool; the table
  reports means and maxima over the images, which are the repeats.
* ``--quality Q...`` with ``--quality-preset`` (fast): size and PSNR at each quality, and
  whether both grow with the quality on every image.

Results (JSON with the git revision, rewritten after every image so that a stopped run
keeps what it measured): bench/results/presets.json, or --out.

    python bench/presets.py [--kodak DIR] [--images 01 02] [--presets fast balanced]
                            [--bpp 0.5] [--quality 30 45 60 75] [--quality-preset fast]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

from kodak_fit import KODAK, ROOT, kodak_paths  # bench/kodak_fit.py, beside this script

import cgc
from cgc.cli import SAMPLE
from cgc.imageio import load_image, to_uint8
from cgc.metrics import psnr, ssim
from report import revision, write_report


def measure(image, **options):
    """One encode's seconds, bytes, bpp, PSNR and SSIM."""
    start = time.perf_counter()
    data = cgc.encode(image, progress=False, **options)
    seconds = time.perf_counter() - start
    decoded = cgc.decode(data)
    original = to_uint8(image)
    return {"seconds": round(seconds, 3), "bytes": len(data),
            "bpp": round(8 * len(data) / (image.shape[0] * image.shape[1]), 4),
            "psnr": round(psnr(original, decoded), 3), "ssim": round(ssim(original, decoded), 5)}


def summarise(report, args):
    """Per preset: mean and max seconds, mean PSNR and SSIM over the images measured; per
    quality: mean bpp and PSNR, and whether size and PSNR grew with it on every image."""
    presets = {}
    for name in args.presets:
        rows = [image["presets"][name] for image in report["images"]
                if name in image.get("presets", {})]
        if rows:
            presets[name] = {
                "images": len(rows),
                "mean_seconds": round(statistics.mean(r["seconds"] for r in rows), 2),
                "max_seconds": max(r["seconds"] for r in rows),
                "mean_psnr": round(statistics.mean(r["psnr"] for r in rows), 3),
                "mean_ssim": round(statistics.mean(r["ssim"] for r in rows), 4),
                "mean_bpp": round(statistics.mean(r["bpp"] for r in rows), 4)}
    quality = {}
    sweeps = [image["quality"] for image in report["images"] if image.get("quality")]
    for q in args.quality:
        rows = [sweep[str(q)] for sweep in sweeps if str(q) in sweep]
        if rows:
            quality[str(q)] = {"mean_bpp": round(statistics.mean(r["bpp"] for r in rows), 4),
                               "mean_psnr": round(statistics.mean(r["psnr"] for r in rows), 3),
                               "mean_seconds": round(statistics.mean(r["seconds"]
                                                                     for r in rows), 2)}
    monotone = None
    if sweeps:
        def grows(sweep, key):
            values = [sweep[str(q)][key] for q in args.quality]
            return all(b > a for a, b in zip(values, values[1:]))
        monotone = {"size": all(grows(s, "bytes") for s in sweeps),
                    "psnr": all(grows(s, "psnr") for s in sweeps), "images": len(sweeps)}
    return {"presets": presets, "quality": quality, "quality_monotone": monotone}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", default=KODAK, help="folder of kodimNN.png")
    parser.add_argument("--images", nargs="*", help="NN of kodimNN.png (default: all)")
    parser.add_argument("--presets", nargs="*", default=["fast", "balanced"])
    parser.add_argument("--bpp", type=float, default=0.5)
    parser.add_argument("--quality", nargs="*", type=float, default=[30, 45, 60, 75])
    parser.add_argument("--quality-preset", default="fast")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "presets.json"))
    args = parser.parse_args(argv)
    report = {**revision(), "bpp": args.bpp, "quality_preset": args.quality_preset,
              "images": []}
    warm = np.asarray(load_image(SAMPLE))[:64, :64]
    cgc.encode(warm, n_gaussians=40, iterations=5, progress=False)
    for path in kodak_paths(args.kodak, args.images):
        image = load_image(path)
        row = {"image": os.path.basename(path), "presets": {}, "quality": {}}
        report["images"].append(row)
        for name in args.presets:
            row["presets"][name] = measure(image, preset=name, bpp=args.bpp)
            print(row["image"], name, row["presets"][name], flush=True)
        for q in args.quality:
            row["quality"][str(q)] = measure(image, preset=args.quality_preset, quality=q)
            print(row["image"], f"q={q:g}", row["quality"][str(q)], flush=True)
        report["summary"] = summarise(report, args)
        write_report(args.out, report)
    print(report["summary"])


if __name__ == "__main__":
    sys.exit(main())
