"""PSNR, SSIM and MS-SSIM of cgc (tune "psnr" and "ssim") and of the classical codecs at
equal bpp, on the 24 Kodak images.

For each image and rate (--bpp): cgc.encode(bpp=, tune=, preset=) under each tune (encode
seconds, timed once: seconds long), and the decoded file's bpp, PSNR, SSIM and MS-SSIM
(cgc.metrics, on 8-bit RGB).  JPEG, JPEG 2000, WebP and AVIF (bench/classical.py; JPEG XL
too where imagecodecs has it) are swept over their quality knobs in the same run, and each
metric is interpolated in log(bpp) at the bpp of each cgc file, so every comparison is at
the rate cgc reached.  The summary gives the means per rate and the issue's goals: SSIM
above 0.92 at 1 bpp, tune="ssim"'s MS-SSIM against AVIF's, tune="psnr"'s PSNR against
JPEG 2000's and AVIF's.  Results (JSON with the git revision and the codec versions,
rewritten after every image): bench/results/perceptual.json, or --out.

    python bench/perceptual.py [--kodak DIR] [--images 01 02] [--bpp 0.25 0.5 1]
                               [--preset balanced] [--tunes psnr ssim]
                               [--cache DIR [--sweeps-only]] [--refine] [--no-peers]
                               [--resume]

--cache keeps the classical codecs' files of each image there (and reuses them);
--sweeps-only makes those files and stops, so that a run can prepare them beside another.
--resume keeps the (image, rate) cells already in --out, made with the same preset, tunes,
refinement and peers, and measures only the others: a run of several hours can be stopped
and taken up again.  Each (image, rate) cell names the revision it was measured at.
"""
import argparse
import json
import os
import pickle
import statistics
import sys
import time

from kodak_fit import KODAK, ROOT, kodak_paths  # bench/kodak_fit.py, beside this script

import classical  # bench/classical.py
import cgc
from cgc.imageio import load_image, to_uint8
from cgc.metrics import ms_ssim, psnr, ssim
from report import revision, write_report

METRICS = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}
PEERS = ("jpeg", "jpeg2000", "webp", "avif", "jpegxl")


def measure(original, decoded):
    return {name: round(f(original, decoded), 5) for name, f in METRICS.items()}


def encode(image, bpp, tune, preset, refine):
    start = time.perf_counter()
    data = cgc.encode(image, bpp=bpp, tune=tune, preset=preset, refine=refine, progress=False)
    seconds = time.perf_counter() - start
    original = to_uint8(image)
    return {"seconds": round(seconds, 2),
            "bpp": round(8 * len(data) / (image.shape[0] * image.shape[1]), 5),
            **measure(original, cgc.decode(data))}


def encoded_sweeps(original, name, peers, cache):
    """Per peer, classical.encoded_sweep of the image, from ``cache`` where it is there."""
    sweeps = {}
    for peer in peers:
        path = cache and os.path.join(cache, f"{os.path.splitext(name)[0]}_{peer}.pickle")
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                sweeps[peer] = pickle.load(f)
            continue
        sweeps[peer] = classical.encoded_sweep(original, peer)
        if path:
            os.makedirs(cache, exist_ok=True)
            with open(path, "wb") as f:
                pickle.dump(sweeps[peer], f)
    return sweeps


def summarise(rows, args, peers):
    """Means per rate of every codec's metrics (peers at each tune's bpp), and the goals,
    over every rate some image has."""
    summary = {}
    for key in sorted({key for row in rows for key in row["rates"]}, key=float):
        cells = [row["rates"][key] for row in rows if key in row["rates"]]
        entry = {"images": len(cells)}
        for tune in args.tunes:
            results = [cell[tune] for cell in cells]
            entry[f"cgc_{tune}"] = {name: round(statistics.mean(r[name] for r in results), 5)
                                    for name in ("seconds", "bpp", *METRICS)}
            for peer in peers:
                values = [cell[f"{peer}_at_{tune}"] for cell in cells]
                entry[f"{peer}_at_{tune}"] = {
                    name: (round(statistics.mean(v[name] for v in values), 5)
                           if all(v[name] is not None for v in values) else None)
                    for name in METRICS}
        summary[key] = entry
    return {"rates": summary, "goals": goals(summary, args, peers)}


def goals(summary, args, peers):
    """The issue's goals from the means: each a number and whether it holds."""
    out = {}
    if "1" in summary and "ssim" in args.tunes:
        value = summary["1"]["cgc_ssim"]["ssim"]
        out["ssim_at_1bpp_tune_ssim"] = {"value": value, "met": value > 0.92}
    for key, entry in summary.items():
        if "ssim" in args.tunes and "avif" in peers:
            ours, avif = entry["cgc_ssim"]["ms_ssim"], entry["avif_at_ssim"]["ms_ssim"]
            out[f"ms_ssim_vs_avif_{key}"] = {"cgc": ours, "avif": avif,
                                             "met": avif is not None and ours >= avif}
        if "psnr" in args.tunes:
            ours = entry["cgc_psnr"]["psnr"]
            for peer in ("jpeg2000", "avif"):
                if peer in peers and entry[f"{peer}_at_psnr"]["psnr"] is not None:
                    theirs = entry[f"{peer}_at_psnr"]["psnr"]
                    out[f"psnr_vs_{peer}_{key}"] = {"cgc": ours, peer: theirs,
                                                    "gap_db": round(ours - theirs, 3),
                                                    "met": ours >= theirs}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", default=KODAK, help="folder of kodimNN.png")
    parser.add_argument("--images", nargs="*", help="NN of kodimNN.png (default: all)")
    parser.add_argument("--bpp", nargs="+", type=float, default=[0.25, 0.5, 1.0])
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--tunes", nargs="+", default=["psnr", "ssim"])
    parser.add_argument("--refine", action="store_true", default=None,
                        help="refine the codes whatever the preset says")
    parser.add_argument("--no-peers", dest="peers", action="store_false",
                        help="cgc alone, no classical codecs")
    parser.add_argument("--cache", help="folder for the classical codecs' files")
    parser.add_argument("--sweeps-only", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="keep the cells already in --out and measure the rest")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "perceptual.json"))
    args = parser.parse_args(argv)
    if args.sweeps_only and not args.cache:
        parser.error("--sweeps-only needs --cache")
    peers = [codec for codec in PEERS if args.peers and classical.available(codec)]
    report = {**revision(), "preset": args.preset, "refine": args.refine,
              "tunes": args.tunes, "peers": peers,
              "codec_versions": classical.versions(), "images": []}
    done = {}
    if args.resume and os.path.exists(args.out):
        with open(args.out) as f:
            earlier = json.load(f)
        settings = ("preset", "refine", "tunes", "peers")
        if any(earlier.get(k) != report[k] for k in settings):
            parser.error(f"--resume: {args.out} was measured with other settings "
                         f"({', '.join(f'{k}={earlier.get(k)}' for k in settings)})")
        done = {row["image"]: row for row in earlier["images"]}
    for path in kodak_paths(args.kodak, args.images):
        image_name = os.path.basename(path)
        row = done.pop(image_name, None) or {"image": image_name, "rates": {}}
        wanted = [bpp for bpp in args.bpp if f"{bpp:g}" not in row["rates"]]
        if not wanted and not args.sweeps_only:
            report["images"].append(row)
            continue
        image = load_image(path)
        original = to_uint8(image)
        encoded = encoded_sweeps(original, image_name, peers, args.cache)
        if args.sweeps_only:
            print(image_name, "swept", flush=True)
            continue
        report["images"].append(row)
        sweeps = {peer: classical.decoded_sweep(original, peer, encoded[peer])
                  for peer in peers}
        for bpp in wanted:
            cell = row["rates"][f"{bpp:g}"] = {"revision": report["revision"],
                                               "dirty": report["dirty"]}
            for tune in args.tunes:
                cell[tune] = encode(image, bpp, tune, args.preset, args.refine)
                for peer in peers:
                    cell[f"{peer}_at_{tune}"] = {
                        name: classical.measure_at(original, sweeps[peer], cell[tune]["bpp"], f)
                        for name, f in METRICS.items()}
            print(row["image"], f"{bpp:g}", cell, flush=True)
        del sweeps, encoded
        _write(args, report, done, peers)
    if not args.sweeps_only:
        print(_write(args, report, done, peers)["summary"])


def _write(args, report, done, peers):
    """The report with the rows of this run and those kept from --out, written there."""
    rows = report["images"] + list(done.values())
    report = {**report, "images": rows, "summary": summarise(rows, args, peers)}
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    sys.exit(main())
