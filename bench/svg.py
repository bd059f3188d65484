"""SVG drawings: the start from their geometry against the gradient-sampled start, decoding
at four times the fitted size, and file size at 40 dB against the SVG's gzip size.

Drawings: Twemoji (the @twemoji/svg package, graphics CC-BY 4.0 by Twitter and
contributors), fetched with ``npm pack`` into --cache unless --svg-dir names a folder of
SVGs; every k-th file in name order, --count of them.

* Starts: ``cgc.fit`` of --gaussians Gaussians to the drawing rasterised at --size, from
  each start, at each of --iterations full-resolution steps (no coarse stage, so both fit
  the same steps): PSNR of the unquantised fit.
* Files: ``cgc.encode_svg`` at --size (--preset, its default budget) from each start:
  bytes and PSNR, the encoder's whole pipeline (coarse stage, allocation) included.
* Resolution: the file from the geometry decoded at four times the size, against the
  drawing rasterised there; the --size raster upscaled with Lanczos likewise.
* Size: ``cgc.encode_svg(psnr=40)`` bytes against the SVG's gzip -9 bytes.

Results (JSON with the git revision, rewritten after each drawing): bench/results/svg.json.
--parts measures some of the four (another --out, e.g. the starts at another --gaussians).

    python bench/svg.py [--svg-dir DIR] [--count 36] [--size 256] [--gaussians 1024]
                        [--iterations 67 200 600] [--preset fast]
                        [--parts starts files resolution size]
"""
import argparse
import glob
import gzip
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import warnings

import numpy as np
from PIL import Image

from report import ROOT, revision, write_report

import cgc
from cgc.image.svg import load_svg, rasterise, read_svg
from cgc.metrics import psnr

PACKAGE = "@twemoji/svg@15.0.0"
PARTS = ("starts", "files", "resolution", "size")


def fetch(cache):
    """The folder of the package's SVGs, fetched once into ``cache`` with npm."""
    folder = os.path.join(cache, "twemoji")
    if not os.path.isdir(folder):
        os.makedirs(cache, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=work, check=True,
                           stdout=subprocess.DEVNULL)
            [archive] = glob.glob(os.path.join(work, "*.tgz"))
            with tarfile.open(archive) as tar:
                tar.extractall(work, filter="data")
            os.rename(os.path.join(work, "package"), folder)
    return folder


def fitted_psnr(target, n, iterations, init):
    gaussians = cgc.fit(target, n, iterations=iterations, coarse_iterations=0, init=init,
                        progress=False)
    image = np.round(255 * np.clip(gaussians.render(), 0, 1)).astype(np.uint8)
    return psnr(target, image)


def measure(path, args):
    size = (args.size, args.size)
    target, start = load_svg(path, size)
    row = {"file": os.path.basename(path), "shape": list(target.shape[:2]),
           "outlines": len(start.drawing.outlines)}
    if "starts" in args.parts:
        row["starts"] = {str(iterations): {
            "geometry": fitted_psnr(target, args.gaussians, iterations, start),
            "gradient": fitted_psnr(target, args.gaussians, iterations, "gradient")}
            for iterations in args.iterations}
    starts = (["geometry"] if args.parts & {"files", "resolution"} else []) + (
        ["raster"] if "files" in args.parts else [])
    files = {name: cgc.encode_svg(path, size=size, preset=args.preset, start=name,
                                  progress=False) for name in starts}
    at_size = {name: psnr(target, cgc.decode(data)) for name, data in files.items()}
    if "files" in args.parts:
        row["files"] = {name: {"bytes": len(data), "psnr": at_size[name]}
                        for name, data in files.items()}
    if "resolution" in args.parts:
        data = files["geometry"]
        height, width = target.shape[:2]
        large = rasterise(read_svg(path), 4 * height, 4 * width)
        decoded = cgc.decode(data, size=large.shape[:2])
        lanczos = np.asarray(Image.fromarray(target).resize(large.shape[1::-1],
                                                            Image.LANCZOS))
        row["resolution"] = {"bytes": len(data), "psnr_at_size": at_size["geometry"],
                             "psnr_x4": psnr(large, decoded), "lanczos_x4": psnr(large, lanczos)}
    if "size" in args.parts:
        with open(path, "rb") as f:
            svg_bytes = f.read()
        try:
            at_40 = len(cgc.encode_svg(path, size=size, psnr=40.0, preset=args.preset,
                                       progress=False))
        except ValueError:  # 40 dB not reached within the search's range
            at_40 = None
        row["size"] = {"cgc_at_40db": at_40, "svg_gzip": len(gzip.compress(svg_bytes, 9)),
                       "svg": len(svg_bytes)}
    return row


def summarise(rows, args):
    summary = {"drawings": len(rows)}
    if "starts" in args.parts:
        summary["starts"] = {}
        for iterations in map(str, args.iterations):
            gains = [r["starts"][iterations]["geometry"] - r["starts"][iterations]["gradient"]
                     for r in rows]
            summary["starts"][iterations] = {
                "geometry": statistics.mean(r["starts"][iterations]["geometry"] for r in rows),
                "gradient": statistics.mean(r["starts"][iterations]["gradient"] for r in rows),
                "mean_gain_db": statistics.mean(gains),
                "median_gain_db": statistics.median(gains),
                "drawings_better": sum(g > 0 for g in gains),
                "drawings_1db_better": sum(g >= 1 for g in gains)}
    if "files" in args.parts:
        summary["files"] = {name: {key: statistics.mean(r["files"][name][key] for r in rows)
                                   for key in ("bytes", "psnr")}
                            for name in ("geometry", "raster")}
        summary["files"]["drawings_better"] = sum(
            r["files"]["geometry"]["psnr"] > r["files"]["raster"]["psnr"] for r in rows)
    if "resolution" in args.parts:
        summary["psnr_x4"] = statistics.mean(r["resolution"]["psnr_x4"] for r in rows)
        summary["lanczos_x4"] = statistics.mean(r["resolution"]["lanczos_x4"] for r in rows)
        summary["x4_at_least_lanczos"] = sum(r["resolution"]["psnr_x4"]
                                             >= r["resolution"]["lanczos_x4"] for r in rows)
    if "size" in args.parts:
        sized = [r["size"] for r in rows if r["size"]["cgc_at_40db"]]
        summary["reached_40db"] = len(sized)
        if sized:
            summary["median_cgc_over_gzip_at_40db"] = statistics.median(
                s["cgc_at_40db"] / s["svg_gzip"] for s in sized)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--svg-dir", default=None, help="a folder of SVGs instead")
    parser.add_argument("--cache", default=os.path.join(ROOT, "bench", ".cache"))
    parser.add_argument("--count", type=int, default=36)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--gaussians", type=int, default=1024)
    parser.add_argument("--iterations", nargs="+", type=int, default=[67, 200, 600])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="what to measure")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "svg.json"))
    args = parser.parse_args(argv)
    args.parts = set(args.parts)
    folder = args.svg_dir or fetch(args.cache)
    files = sorted(glob.glob(os.path.join(folder, "*.svg")))
    files = files[::max(1, len(files) // args.count)][:args.count]
    report = {**revision(), "source": args.svg_dir or PACKAGE, "size": args.size,
              "gaussians": args.gaussians, "preset": args.preset,
              "parts": sorted(args.parts), "drawings": []}
    warnings.simplefilter("ignore", RuntimeWarning)  # drawings with text say so per file
    for path in files:
        row = measure(path, args)
        report["drawings"].append(row)
        print(row["file"], {k: round(v["geometry"] - v["gradient"], 2)
                            for k, v in row.get("starts", {}).items()},
              *(row[part] for part in PARTS[1:] if part in row), flush=True)
        report["summary"] = summarise(report["drawings"], args)
        write_report(args.out, report)
    print(report["summary"])


if __name__ == "__main__":
    sys.exit(main())
