"""What real files ask of a decoder, behind cgc.limits.

Encodes every image (the 24 Kodak images and scikit-image's colour photos) at 0.25, 0.5
and 1 bpp as bench/fit.py does (cgc.encode with max_bytes), and measures each file's
Gaussians per byte (MAX_GAUSSIANS_PER_BYTE) and overdraw (MAX_OVERDRAW):
Gaussians.render_work() (pixels inside the Gaussians' 3-sigma boxes, summed) over the
output's pixels, at the encoded size and at the sizes cgc.decode(scale=...) gives
for the scales below, and the work of thumbnails (longest side 32 and 8 pixels), which
is below cgc.limits.RENDER_WORK_ALLOWANCE however dense the Gaussians.  With --cache DIR
the .cgc files are kept there and reused (--only-cached: only the images whose files are
there).  Results: bench/results/decode_cost.json.

    python bench/decode_cost.py [--kodak DIR] [--cache DIR [--only-cached]]
"""
import argparse
import os
import sys
import time

import numpy as np
import skimage.data
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
import cgc  # noqa: E402
from cgc import limits  # noqa: E402
from cgc.image.codec import decode_gaussians  # noqa: E402
from cgc.image.model import scaled_size  # noqa: E402
from kodak_fit import KODAK, kodak_paths  # noqa: E402
from report import revision, write_report  # noqa: E402

BPPS = (0.25, 0.5, 1.0)
SCALES = (0.25, 0.5, 2.0, 4.0)
THUMBNAILS = (32, 8)
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def images(kodak):
    for name, path in zip([f"{i:02d}" for i in range(1, 25)], kodak_paths(kodak)):
        yield f"kodim{name}", np.asarray(Image.open(path).convert("RGB"))
    for name in SKIMAGE_PHOTOS:
        yield name, getattr(skimage.data, name)()


def encoded(name, image, bpp, cache):
    path = cache and os.path.join(cache, f"{name}_{bpp}.cgc")
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            return f.read()
    pixels = image.shape[0] * image.shape[1]
    data = cgc.encode(image, max_bytes=int(bpp * pixels / 8), progress=False)
    if path:
        with open(path, "wb") as f:
            f.write(data)
    return data


def overdraw(gaussians):
    return gaussians.render_work() / (gaussians.height * gaussians.width)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kodak", default=KODAK)
    parser.add_argument("--cache")
    parser.add_argument("--only-cached", action="store_true",
                        help="measure only the images whose files --cache already holds "
                             "(the report lists which)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "decode_cost.json"))
    args = parser.parse_args()
    if args.only_cached and not args.cache:
        parser.error("--only-cached needs --cache")
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    info = revision()
    rows = []
    start = time.perf_counter()
    for name, image in images(args.kodak):
        if args.only_cached and not all(os.path.exists(
                os.path.join(args.cache, f"{name}_{bpp}.cgc")) for bpp in BPPS):
            continue
        for bpp in BPPS:
            data = encoded(name, image, bpp, args.cache)
            gaussians = decode_gaussians(data)
            row = {"image": name, "target_bpp": bpp, "n_gaussians": len(gaussians),
                   "gaussians_per_byte": len(gaussians) / len(data),
                   "overdraw": overdraw(gaussians)}
            for scale in SCALES:
                size = scaled_size(gaussians.height, gaussians.width, scale)
                row[f"overdraw_x{scale}"] = overdraw(gaussians.resized(*size))
            for side in THUMBNAILS:
                scale = side / max(gaussians.height, gaussians.width)
                size = scaled_size(gaussians.height, gaussians.width, scale)
                row[f"work_thumbnail_{side}"] = gaussians.resized(*size).render_work()
            rows.append(row)
            print(f"{name} {bpp} bpp N={row['n_gaussians']:5d} overdraw "
                  f"{row['overdraw']:.1f} " + " ".join(
                      f"x{s}: {row[f'overdraw_x{s}']:.1f}" for s in SCALES) + " " +
                  " ".join(f"thumb{t}: {row[f'work_thumbnail_{t}']}" for t in THUMBNAILS),
                  flush=True)
    keys = ["gaussians_per_byte", "overdraw"] + [f"overdraw_x{s}" for s in SCALES]
    summary = {k: {"max": max(r[k] for r in rows), "median": float(np.median(
        [r[k] for r in rows]))} for k in keys}
    summary.update({f"work_thumbnail_{t}_max": max(r[f"work_thumbnail_{t}"] for r in rows)
                    for t in THUMBNAILS})
    summary["limit"] = {"MAX_GAUSSIANS_PER_BYTE": limits.MAX_GAUSSIANS_PER_BYTE,
                        "MAX_OVERDRAW": limits.MAX_OVERDRAW,
                        "RENDER_WORK_ALLOWANCE": limits.RENDER_WORK_ALLOWANCE}
    write_report(args.out, {**info, "run_s": time.perf_counter() - start, "rows": rows,
                            "summary": summary})
    print(summary)


if __name__ == "__main__":
    main()
