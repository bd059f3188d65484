"""Quality-target benchmark on Kodak images: cgc.encode(psnr=...) against the bytes JPEG,
JPEG 2000 and WebP need for the same PSNR, in the same run.

Targets: fixed PSNRs (--psnr), or per image the PSNR JPEG 2000 reaches at given rates
(--match-jpeg2000 BPP...: how many bits cgc needs where JPEG 2000 spends BPP).  For each
image and target: encode once (timed), the encodes the search made (cgc.image.rate), bpp and
PSNR of the file, and each classical codec's bpp at the file's PSNR from a quality sweep of
the same image, log(bpp) interpolated.  Ratios below 1 mean cgc is smaller.  Results:
bench/results/quality.json with the git revision.

    python bench/quality.py [--images 01 05 15 23] [--psnr 30 34 | --match-jpeg2000 0.5 1]
"""
import argparse
import logging
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Benchmark this checkout (built in place), not whatever cgc is installed.
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
import classical  # noqa: E402

import cgc  # noqa: E402
from cgc.image.container import unpack  # noqa: E402
from kodak_fit import KODAK, kodak_paths  # noqa: E402  (beside this script)
from report import revision, write_report  # noqa: E402

CODECS = ("jpeg", "jpeg2000", "webp")


class EncodeCounter(logging.Handler):
    """Counts the encodes of a quality-target search (one cgc.image.rate log record each)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record):
        self.count += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", nargs="+", default=["01", "05", "15", "23"])
    targets = parser.add_mutually_exclusive_group()
    targets.add_argument("--psnr", nargs="+", type=float)
    targets.add_argument("--match-jpeg2000", nargs="+", type=float, default=[0.5, 1.0])
    parser.add_argument("--kodak", default=KODAK)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "quality.json"))
    args = parser.parse_args()
    info = revision()  # at the start: the code that the whole run measured
    counter = EncodeCounter()
    search_log = logging.getLogger("cgc.image.rate")
    search_log.addHandler(counter)
    search_log.setLevel(logging.INFO)
    settings = args.psnr or args.match_jpeg2000
    key = "target_psnr" if args.psnr else "jpeg2000_bpp"

    rows = []
    for name, path in zip(args.images, kodak_paths(args.kodak, args.images)):
        image = np.asarray(Image.open(path).convert("RGB"))
        pixels = image.shape[0] * image.shape[1]
        curves = {c: classical.sweep(image, c) for c in CODECS}
        for setting in settings:
            goal = setting if args.psnr else classical.psnr_at(curves["jpeg2000"], setting)
            if goal is None:  # outside JPEG 2000's sweep of this image
                print(f"kodim{name}: JPEG 2000 does not reach {setting} bpp, skipped")
                continue
            counter.count = 0
            start = time.perf_counter()
            data = cgc.encode(image, psnr=goal, progress=False)
            encode_s = time.perf_counter() - start
            reached = classical.psnr(image, cgc.decode(data))
            bpp = 8 * len(data) / pixels
            row = {"image": f"kodim{name}", key: setting, "target_psnr": goal,
                   "psnr": reached, "bytes": len(data), "bpp": bpp,
                   "n_gaussians": len(unpack(data).codes), "encodes": counter.count,
                   "encode_s": encode_s}
            for codec, points in curves.items():
                other = classical.bpp_at(points, reached)
                row[f"{codec}_bpp_at_psnr"] = other
                row[f"bpp_ratio_to_{codec}"] = None if other is None else bpp / other
            rows.append(row)
            print(f"{row['image']} target {goal:.2f} dB: {reached:.2f} dB at {bpp:.3f} bpp "
                  f"(N={row['n_gaussians']}), {counter.count} encodes, {encode_s:.0f} s | "
                  + "  ".join(f"{c} {row[f'{c}_bpp_at_psnr'] or float('nan'):.3f}"
                              for c in CODECS), flush=True)
    summary = {}
    for setting in settings:
        sel = [r for r in rows if r[key] == setting]
        if not sel:
            continue
        summary[str(setting)] = {k: statistics.mean(r[k] for r in sel)
                                 for k in ("target_psnr", "psnr", "bpp", "encodes",
                                           "encode_s")}
        for codec in CODECS:
            ratios = [r[f"bpp_ratio_to_{codec}"] for r in sel]
            # Geometric mean: a ratio of rates; None where a sweep misses an image's PSNR.
            summary[str(setting)][f"bpp_ratio_to_{codec}"] = (
                None if None in ratios else float(np.exp(np.mean(np.log(ratios)))))
    write_report(args.out, {**info, "rows": rows, f"mean_by_{key}": summary})
    for setting, s in summary.items():
        print(f"{key}={setting}: target {s['target_psnr']:.2f} dB, reached {s['psnr']:.2f} dB "
              f"at {s['bpp']:.3f} bpp, {s['encodes']:.1f} encodes, {s['encode_s']:.0f} s | "
              "bpp ratio to " + "  ".join(f"{c} {s[f'bpp_ratio_to_{c}']}" for c in CODECS))


if __name__ == "__main__":
    main()
