"""Decoding at other sizes: cgc.decode(scale=...) against JPEG 2000's own reduced decode.

For each Kodak image: a cgc file at the budget (--bpp, cgc.encode with max_bytes) and a
JPEG 2000 file of about the same size (Pillow, colour transform on).  At each reduction
factor f (--factors), the reference is the original reduced by f x f block means, and
these are compared with it (PSNR) and timed (1 warm-up, median of 5):
  cgc_scaled       cgc.decode(data, scale=1 / f): the Gaussians rendered at the small size
  cgc_unfiltered   the same without the widening that makes a pixel a block mean (the
                   Gaussians only scaled): what the filter is worth
  cgc_full_reduced cgc.decode(data) at full size, then f x f block means
  j2k_reduced      JPEG 2000 decoded at 1 / f by its own resolution levels (Pillow's
                   ``reduce``): its wavelet low band, not a block mean, so part of its
                   distance to the reference is the filter's shape
  j2k_full_reduced JPEG 2000 decoded at full size, then f x f block means
  original_gaussian the original itself filtered with cgc's Gaussian of the same variance
                   (by FFT) and sampled at the block centres: what the filter's shape alone
                   costs against block means
Enlargement (--enlarge) has no reference; only its decode time is recorded.
Results: bench/results/resize.json with the git revision.

    python bench/resize.py [--images 01 05 15 23] [--bpp 0.5] [--factors 2 4]
"""
import argparse
import io
import math
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
from cgc.image.codec import decode_gaussians  # noqa: E402
from cgc.image.model import Gaussians  # noqa: E402
from cgc.imageio import to_uint8  # noqa: E402
from kodak_fit import KODAK, kodak_paths  # noqa: E402  (beside this script)
from report import revision, write_report  # noqa: E402


def block_mean(image, factor):
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[:h * factor, :w * factor].astype(np.float64)
    return np.round(blocks.reshape(h, factor, w, factor, 3).mean(axis=(1, 3))).astype(np.uint8)


def gaussian_reduced(image, factor):
    """The image filtered (FFT, periodic borders) by the Gaussian of variance
    (factor**2 - 1) / 12 pixels**2 that cgc's reduction uses, sampled at block centres."""
    height, width = image.shape[:2]
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    shift = (factor - 1) / 2  # a block's centre, from its first pixel's
    kernel = np.exp(-2 * np.pi**2 * (factor**2 - 1) / 12 * (fx**2 + fy**2)
                    + 2j * np.pi * shift * (fx + fy))
    out = np.stack([np.fft.ifft2(np.fft.fft2(image[..., c].astype(np.float64)) * kernel).real
                    for c in range(3)], axis=-1)
    h, w = height // factor, width // factor
    return np.clip(np.round(out[:h * factor:factor, :w * factor:factor]), 0, 255).astype(np.uint8)


def timed(fn):
    """(result, median seconds of 5 calls after a warm-up)."""
    result = fn()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def unfiltered(data, factor):
    g = decode_gaussians(data)
    params = g.params.copy()
    params[:, :5] /= factor
    return to_uint8(Gaussians(params, g.height // factor, g.width // factor).render(clip=False))


def j2k_decode(j2k, reduce=0):
    img = Image.open(io.BytesIO(j2k))
    img.reduce = reduce
    return np.asarray(img.convert("RGB"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", nargs="+", default=["01", "05", "15", "23"])
    parser.add_argument("--bpp", type=float, default=0.5)
    parser.add_argument("--factors", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--enlarge", type=float, default=2.0)
    parser.add_argument("--kodak", default=KODAK)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "resize.json"))
    args = parser.parse_args()
    if any(f < 2 or f & (f - 1) for f in args.factors):
        parser.error("--factors must be powers of two (JPEG 2000 halves per level)")
    info = revision()

    rows = []
    for name, path in zip(args.images, kodak_paths(args.kodak, args.images)):
        image = np.asarray(Image.open(path).convert("RGB"))
        pixels = image.shape[0] * image.shape[1]
        data = cgc.encode(image, max_bytes=int(args.bpp * pixels / 8), progress=False)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG2000", quality_mode="rates", mct=1,
                                    quality_layers=[24.0 * pixels / (8 * len(data))],
                                    irreversible=True)
        j2k = buf.getvalue()
        full, cgc_full_s = timed(lambda: cgc.decode(data))
        j2k_full, j2k_full_s = timed(lambda: j2k_decode(j2k))
        row = {"image": f"kodim{name}", "cgc_bpp": 8 * len(data) / pixels,
               "j2k_bpp": 8 * len(j2k) / pixels,
               "full": {"cgc_psnr": classical.psnr(image, full), "cgc_ms": 1000 * cgc_full_s,
                        "j2k_psnr": classical.psnr(image, j2k_full),
                        "j2k_ms": 1000 * j2k_full_s}}
        for f in args.factors:
            ref = block_mean(image, f)
            scaled, scaled_s = timed(lambda: cgc.decode(data, scale=1 / f))
            plain, plain_s = timed(lambda: unfiltered(data, f))
            reduced, reduced_s = timed(lambda: j2k_decode(j2k, int(math.log2(f))))
            row[f"1/{f}"] = {
                "cgc_scaled_psnr": classical.psnr(ref, scaled), "cgc_scaled_ms": 1000 * scaled_s,
                "cgc_unfiltered_psnr": classical.psnr(ref, plain),
                "cgc_full_reduced_psnr": classical.psnr(ref, block_mean(full, f)),
                "cgc_full_reduced_ms": 1000 * cgc_full_s,
                "j2k_reduced_psnr": classical.psnr(ref, reduced),
                "j2k_reduced_ms": 1000 * reduced_s,
                "j2k_full_reduced_psnr": classical.psnr(ref, block_mean(j2k_full, f)),
                "original_gaussian_psnr": classical.psnr(ref, gaussian_reduced(image, f)),
            }
        _, enlarge_s = timed(lambda: cgc.decode(data, scale=args.enlarge))
        row[f"x{args.enlarge:g}"] = {"cgc_ms": 1000 * enlarge_s}
        rows.append(row)
        print(row, flush=True)
    summary = {}
    for key in rows[0]:
        if isinstance(rows[0][key], dict):
            summary[key] = {k: statistics.mean(r[key][k] for r in rows) for k in rows[0][key]}
    summary["cgc_bpp"] = statistics.mean(r["cgc_bpp"] for r in rows)
    summary["j2k_bpp"] = statistics.mean(r["j2k_bpp"] for r in rows)
    write_report(args.out, {**info, "target_bpp": args.bpp, "rows": rows, "mean": summary})
    for key, values in summary.items():
        print(key, values)


if __name__ == "__main__":
    main()
