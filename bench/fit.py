"""Fit / encode / decode benchmark on Kodak images, with classical codecs at the same bpp.

For each image and Gaussian count (--n), or each size budget in bits per pixel (--bpp:
cgc.encode with max_bytes, the Gaussian count following from it): encode with the default
iterations (and the default steps at half resolution before them; timed once: it is seconds
long), decode from the file bytes (1 warm-up, median of 5), PSNR and SSIM of the decoded
file, bpp; JPEG, JPEG 2000, WebP, AVIF and JPEG XL PSNR at cgc's bpp from a quality sweep
of the same image in the same run (bench/classical.py; a codec this installation lacks has
null columns).  --images all: the 24 Kodak images.  Results: bench/results/fit.json
(--bpp: fit_bpp.json) with the git revision and the codec libraries' versions.

    python bench/fit.py [--images 01 05 15 23 | --images all]
                        [--n 2000 5000 | --bpp 0.25 0.5 1] [--iterations K]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Benchmark this checkout (built in place), not whatever cgc is installed.
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
import classical  # noqa: E402

import cgc  # noqa: E402
from cgc.image.container import unpack  # noqa: E402
from cgc.image.codec import n_gaussians_for_bytes  # noqa: E402
from cgc.image.fit import DEFAULT_ITERATIONS, default_coarse_iterations  # noqa: E402
from kodak_fit import KODAK, kodak_paths  # noqa: E402  (beside this script)
from report import revision, write_report  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", nargs="+", default=["01", "05", "15", "23"],
                        help="Kodak numbers (01..24), or all")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--n", nargs="+", type=int, default=[2000, 5000])
    budget.add_argument("--bpp", nargs="+", type=float)
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument("--kodak", default=KODAK)
    parser.add_argument("--out")
    args = parser.parse_args()
    by = "target_bpp" if args.bpp else "n_gaussians"
    settings = args.bpp or args.n
    out = args.out or os.path.join(ROOT, "bench", "results",
                                   "fit_bpp.json" if args.bpp else "fit.json")
    names = [f"{i:02d}" for i in range(1, 25)] if args.images == ["all"] else args.images
    info = revision()  # at the start: the code that the whole run measured
    codecs = [c for c in classical.CODECS if classical.available(c)]
    run_start = time.perf_counter()

    rows = []
    for name, path in zip(names, kodak_paths(args.kodak, names)):
        image = np.asarray(Image.open(path).convert("RGB"))
        pixels = image.shape[0] * image.shape[1]
        curves = {c: classical.sweep(image, c) if c in codecs else None
                  for c in classical.CODECS}
        for setting in settings:
            kwargs = ({"max_bytes": int(setting * pixels / 8)} if args.bpp
                      else {"n_gaussians": setting})
            start = time.perf_counter()
            data = cgc.encode(image, iterations=args.iterations, progress=False, **kwargs)
            encode_s = time.perf_counter() - start
            n = len(unpack(data).codes)
            fitted_n = setting if not args.bpp else n_gaussians_for_bytes(
                kwargs["max_bytes"], *image.shape[:2])  # before any growth
            decoded = cgc.decode(data)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                cgc.decode(data)
                times.append(time.perf_counter() - start)
            bpp = 8 * len(data) / pixels
            row = {
                "image": f"kodim{name}", "n_gaussians": n, "iterations": args.iterations,
                "coarse_iterations": default_coarse_iterations(*image.shape[:2], fitted_n,
                                                               args.iterations),
                **({"target_bpp": setting} if args.bpp else {}),
                "bytes": len(data), "bpp": bpp,
                "psnr": classical.psnr(image, decoded),
                "ssim": float(structural_similarity(image, decoded, channel_axis=-1,
                                                    data_range=255)),
                "encode_s": encode_s, "decode_ms": 1000 * statistics.median(times),
            }
            for codec, points in curves.items():
                row[f"{codec}_psnr_at_bpp"] = (None if points is None
                                               else classical.psnr_at(points, bpp))
            rows.append(row)
            print(f"{row['image']} N={n:5d}  {bpp:.3f} bpp  PSNR {row['psnr']:.2f} dB  "
                  f"SSIM {row['ssim']:.4f}  encode {encode_s:.1f} s  decode "
                  f"{row['decode_ms']:.1f} ms  | {others(row)}", flush=True)
    summary = {}
    for setting in settings:
        sel = [r for r in rows if r[by] == setting]
        summary[str(setting)] = {k: statistics.mean(r[k] for r in sel)
                                 for k in ("psnr", "ssim", "bpp", "encode_s", "decode_ms")}
        for codec in classical.CODECS:
            # None where the codec is absent or its sweep cannot reach cgc's bpp on some
            # image.
            values = [r[f"{codec}_psnr_at_bpp"] for r in sel]
            summary[str(setting)][f"{codec}_psnr_at_bpp"] = (
                None if None in values else statistics.mean(values))
    key = "mean_by_bpp" if args.bpp else "mean_by_n"
    write_report(out, {**info, "codec_versions": classical.versions(),
                       "run_s": time.perf_counter() - run_start, "rows": rows, key: summary})
    for setting, s in summary.items():
        print(f"mean {by}={setting}: PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}  "
              f"{s['bpp']:.3f} bpp  encode {s['encode_s']:.1f} s  decode {s['decode_ms']:.1f} ms"
              f"  | {others(s)}")


def others(row):
    """The classical codecs' PSNRs at cgc's bpp, for the log ("-" where there is none)."""
    return "  ".join(f"{classical.NAMES[c]} " + ("-" if row[f"{c}_psnr_at_bpp"] is None
                                                   else f"{row[f'{c}_psnr_at_bpp']:.2f}")
                     for c in classical.CODECS)


if __name__ == "__main__":
    main()
