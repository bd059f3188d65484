"""Progressive files (format version 4) on Kodak: what the layers cost, and how good each
prefix is, against JPEG 2000's quality layers and progressive JPEG measured the same way
in the same run.

Per image and rate (0.5 and 1 bpp by default), with one preset for every cgc encode:

* version 3 and version 4 (``--layers``, cgc's default 3) at the rate: bytes and PSNR;
* each prefix of the version-4 file that ends a layer: its bytes and the PSNR of its
  image, and the PSNR of a version-3 file encoded directly at that many bytes;
* the overhead at equal PSNR: the version-4 file's bytes against the bytes the version-3
  rate-distortion curve (the direct files and the full one, interpolated in log bytes)
  needs for its PSNR;
* JPEG 2000 (Pillow's OpenJPEG, the settings of bench/classical.py) with one quality layer
  per prefix rate: the image of its first k layers against a JPEG 2000 file made directly
  at that rate;
* progressive JPEG (Pillow's libjpeg) within the version-4 file's size, cut at each
  prefix's bytes and decoded as far as its scans arrived, against a baseline JPEG made
  within that many bytes (where libjpeg can make one that small).

Results (JSON with the git revision, rewritten after every image): bench/results/
progressive.json, or --out (the committed runs: progressive_0.5bpp.json and
progressive_1bpp.json).

    python bench/progressive.py [--kodak DIR] [--images 01 02] [--bpp 0.5 1]
                                [--layers 3] [--preset fast] [--out FILE]
    python bench/progressive.py --add-jpeg --out FILE   # progressive JPEG into a report
"""
import argparse
import io
import json
import os
import statistics
import sys

import numpy as np
from PIL import Image, ImageFile

from kodak_fit import KODAK, ROOT, kodak_paths  # bench/kodak_fit.py, beside this script

import cgc
from cgc.image.layers import DEFAULT_LAYERS
from cgc.imageio import load_image, to_uint8
from cgc.metrics import psnr
from report import revision, write_report

# As bench/classical.py: the colour transform on, irreversible wavelet, rates as ratios
# against 24 bits per pixel.
J2K = dict(quality_mode="rates", irreversible=True, mct=1)


def jpeg2000(image, rates, layers=None):
    """(bytes, PSNR) of a JPEG 2000 file with one quality layer per rate (bpp, ascending),
    decoded with its first ``layers`` layers (all by default)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG2000",
                                quality_layers=[24.0 / r for r in rates], **J2K)
    size = buffer.tell()
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        # Pillow passes its ``layers`` attribute to OpenJPEG only along with a reduction;
        # the tile's arguments are (codec, reduce, layers, offset, length).
        tile = decoded.tile[0]
        decoded.tile = [tile._replace(args=(tile.args[0], 0, layers or len(rates),
                                            *tile.args[3:]))]
        return size, psnr(image, np.asarray(decoded.convert("RGB")))


def jpeg_within(image, size, progressive):
    """The JPEG (Pillow's libjpeg, 4:2:0) of the highest quality whose file is at most
    ``size`` bytes (quality 1 if none is)."""
    def save(quality):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, progressive=progressive,
                                    optimize=True)
        return buffer.getvalue()

    low, high = 1, 95
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if len(save(mid)) <= size else (low, mid - 1)
    return save(low)


def progressive_jpeg(image, whole, prefixes):
    """Progressive JPEG measured as the cgc file is: a file of at most ``whole`` bytes, cut
    at each of ``prefixes`` bytes and decoded (the scans that arrived), against a baseline
    JPEG made directly within that size (no gap where even quality 1 is larger)."""
    data = jpeg_within(image, whole, progressive=True)
    rows = []
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # decode what arrived, as a viewer does
    try:
        for end in prefixes:
            with Image.open(io.BytesIO(data[:end])) as cut:
                shown = psnr(image, np.asarray(cut.convert("RGB")))
            direct = jpeg_within(image, end, progressive=False)
            with Image.open(io.BytesIO(direct)) as made:
                direct_psnr = psnr(image, np.asarray(made.convert("RGB")))
            rows.append({"bytes": end, "prefix_psnr": shown, "direct_bytes": len(direct),
                         "direct_psnr": direct_psnr,
                         "gap_db": direct_psnr - shown if len(direct) <= end else None})
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    with Image.open(io.BytesIO(data)) as full:
        whole_psnr = psnr(image, np.asarray(full.convert("RGB")))
    return {"bytes": len(data), "psnr": whole_psnr, "prefixes": rows}


def bytes_for(points, quality):
    """Bytes the (bytes, PSNR) curve needs for ``quality``, linear in log bytes between
    neighbours (extrapolated from the two ends)."""
    points = sorted(points)
    for (b0, q0), (b1, q1) in zip(points, points[1:]):
        if q0 <= quality <= q1 or (b1, q1) == points[-1]:
            break
    if q1 == q0:
        return b1
    t = (quality - q0) / (q1 - q0)
    return float(np.exp(np.log(b0) + t * (np.log(b1) - np.log(b0))))


def measure(image, bpp, layers, preset):
    pixels = image.shape[0] * image.shape[1]
    single = cgc.encode(image, bpp=bpp, preset=preset, progress=False)
    layered = cgc.encode(image, bpp=bpp, preset=preset, layers=layers, progress=False)
    info = cgc.layer_info(layered)
    row = {"bpp": bpp, "v3_bytes": len(single), "v3_psnr": psnr(image, cgc.decode(single)),
           "v4_bytes": len(layered), "v4_psnr": psnr(image, cgc.decode(layered)),
           "layer_gaussians": info.gaussians, "prefixes": []}
    curve = [(len(single), row["v3_psnr"])]
    for end in info.ends[:-1]:
        direct = cgc.encode(image, max_bytes=end, preset=preset, progress=False)
        prefix = {"bytes": end, "bpp": round(8 * end / pixels, 4),
                  "psnr": psnr(image, cgc.decode(layered[:end])),
                  "direct_bytes": len(direct), "direct_psnr": psnr(image, cgc.decode(direct))}
        prefix["gap_db"] = prefix["direct_psnr"] - prefix["psnr"]
        row["prefixes"].append(prefix)
        curve.append((len(direct), prefix["direct_psnr"]))
    row["v3_bytes_at_v4_psnr"] = bytes_for(curve, row["v4_psnr"])
    row["overhead"] = len(layered) / row["v3_bytes_at_v4_psnr"] - 1
    rates = [p["bpp"] for p in row["prefixes"]] + [8 * len(layered) / pixels]
    row["jpeg2000"] = []
    for k, rate in enumerate(rates[:-1], 1):
        _, layered_psnr = jpeg2000(image, rates, layers=k)
        _, direct_psnr = jpeg2000(image, [rate])
        row["jpeg2000"].append({"bpp": rate, "layers_psnr": layered_psnr,
                                "direct_psnr": direct_psnr,
                                "gap_db": direct_psnr - layered_psnr})
    size, whole = jpeg2000(image, rates)
    _, direct = jpeg2000(image, [rates[-1]])
    row["jpeg2000_whole"] = {"bytes": size, "psnr": whole, "direct_psnr": direct}
    row["progressive_jpeg"] = progressive_jpeg(image, len(layered), info.ends[:-1])
    return row


def _mean_known(values):
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else None


def summarise(images, rates, layers):
    summary = {}
    for bpp in rates:
        rows = [r for image in images for r in image["rates"] if r["bpp"] == bpp]
        if not rows:
            continue
        gaps = [[r["prefixes"][k]["gap_db"] for r in rows] for k in range(layers - 1)]
        j2k = [[r["jpeg2000"][k]["gap_db"] for r in rows] for k in range(layers - 1)]
        summary[str(bpp)] = {
            "images": len(rows),
            "mean_overhead": statistics.mean(r["overhead"] for r in rows),
            "max_overhead": max(r["overhead"] for r in rows),
            "mean_v4_psnr_loss_db": statistics.mean(r["v3_psnr"] - r["v4_psnr"] for r in rows),
            "prefix_mean_bpp": [statistics.mean(r["prefixes"][k]["bpp"] for r in rows)
                                for k in range(layers - 1)],
            "prefix_mean_gap_db": [statistics.mean(g) for g in gaps],
            "prefix_max_gap_db": [max(g) for g in gaps],
            "jpeg2000_mean_gap_db": [statistics.mean(g) for g in j2k],
            "progressive_jpeg_mean_gap_db": [_mean_known(
                r["progressive_jpeg"]["prefixes"][k]["gap_db"] for r in rows)
                for k in range(layers - 1)],
            "progressive_jpeg_measurable": [sum(
                r["progressive_jpeg"]["prefixes"][k]["gap_db"] is not None for r in rows)
                for k in range(layers - 1)],
            "jpeg2000_whole_loss_db": statistics.mean(
                r["jpeg2000_whole"]["direct_psnr"] - r["jpeg2000_whole"]["psnr"] for r in rows)}
    return summary


def add_jpeg(out, kodak):
    """Progressive JPEG's rows added to the report ``out``, at the sizes it records."""
    with open(out) as f:
        report = json.load(f)
    report["jpeg_added"] = revision()
    for entry in report["images"]:
        image = to_uint8(load_image(os.path.join(kodak, entry["image"])))
        for row in entry["rates"]:
            row["progressive_jpeg"] = progressive_jpeg(
                image, row["v4_bytes"], [p["bytes"] for p in row["prefixes"]])
    rates = [row["bpp"] for row in report["images"][0]["rates"]]
    report["summary"] = summarise(report["images"], rates, report["layers"])
    write_report(out, report)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", default=KODAK, help="folder of kodimNN.png")
    parser.add_argument("--images", nargs="*", help="NN of kodimNN.png (default: all)")
    parser.add_argument("--bpp", nargs="*", type=float, default=[0.5, 1.0])
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "progressive.json"))
    parser.add_argument("--add-jpeg", action="store_true",
                        help="measure progressive JPEG into an --out made without it, at "
                             "its files' sizes and prefixes (no cgc encode)")
    args = parser.parse_args(argv)
    if args.add_jpeg:
        return add_jpeg(args.out, args.kodak)
    report = {**revision(), "preset": args.preset, "layers": args.layers, "images": []}
    for path in kodak_paths(args.kodak, args.images):
        image = to_uint8(load_image(path))
        entry = {"image": os.path.basename(path), "rates": []}
        report["images"].append(entry)
        for bpp in args.bpp:
            row = measure(image, bpp, args.layers, args.preset)
            entry["rates"].append(row)
            print(entry["image"], bpp, f"overhead {100 * row['overhead']:.2f} %",
                  "gaps", [round(p["gap_db"], 2) for p in row["prefixes"]],
                  "j2k", [round(p["gap_db"], 2) for p in row["jpeg2000"]], "progressive jpeg",
                  [p["gap_db"] and round(p["gap_db"], 2)
                   for p in row["progressive_jpeg"]["prefixes"]],
                  flush=True)
        report["summary"] = summarise(report["images"], args.bpp, args.layers)
        write_report(args.out, report)
    print(report["summary"])


if __name__ == "__main__":
    sys.exit(main())
