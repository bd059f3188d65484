"""The weights of tune="ssim" (cgc.image.loss.Perceptual: l1, l2, ssim), by measurement.

Every image (the 24 Kodak images and scikit-image's colour photos) is encoded at --bpp
with the --preset, once under tune="psnr" and once under each weight set; the decoded files'
PSNR, SSIM and MS-SSIM are recorded, and the summary gives each set's means over the Kodak
images and over the photos, and on how many images each set's MS-SSIM beats the current
default's.  Results (JSON with the git revision, rewritten after every image):
bench/results/tune_weights.json, or --out.

    python bench/tune_weights.py [--kodak DIR] [--images 01 02] [--bpp 0.5]
                                 [--preset fast] [--no-photos | --no-kodak] [--weights 0.2,0.8,0.1 ...]
"""
import argparse
import os
import statistics
import sys

import skimage.data

from kodak_fit import KODAK, ROOT, kodak_paths  # bench/kodak_fit.py, beside this script

import cgc
from cgc.image.loss import Perceptual
from cgc.imageio import load_image, to_float_image, to_uint8
from cgc.metrics import ms_ssim, psnr, ssim
from report import revision, write_report

# (l1, l2, ssim) around the roadmap's (0.2, 0.8, 0.1): the SSIM weight from 0.01 to 0.3,
# more L1 and none.  A first look at five images had L1 without SSIM no better than squared
# error, and 1.0 lose 7 dB and SSIM on kodim03.
WEIGHTS = ((0.2, 0.8, 0.1), (0.2, 0.8, 0.03), (0.2, 0.8, 0.3), (0.5, 0.5, 0.1),
           (0.0, 1.0, 0.03), (0.0, 1.0, 0.01))
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def weight_set(text):
    """"l1,l2,ssim" as three floats (argparse type)."""
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"a weight set is three numbers L1,L2,SSIM: {text}")
    return values


def label(weights):
    return "l1={:g} l2={:g} ssim={:g}".format(*weights)


def measure(image, tune, bpp, preset):
    data = cgc.encode(image, bpp=bpp, preset=preset, tune=tune, progress=False)
    decoded, original = cgc.decode(data), to_uint8(image)
    return {"bpp": round(8 * len(data) / (image.shape[0] * image.shape[1]), 4),
            "psnr": round(psnr(original, decoded), 3),
            "ssim": round(ssim(original, decoded), 5),
            "ms_ssim": round(ms_ssim(original, decoded), 5)}


def summarise(rows):
    """Per set and group of images: mean bpp, PSNR, SSIM, MS-SSIM, and the images where the
    set's MS-SSIM is above the default weights'."""
    default = label(Perceptual().weights)
    summary = {}
    for group in ("kodak", "photos"):
        chosen = [row for row in rows if row["group"] == group]
        if not chosen:
            continue
        summary[group] = {}
        for name in chosen[0]["results"]:
            results = [row["results"][name] for row in chosen]
            summary[group][name] = {
                key: round(statistics.mean(r[key] for r in results), 5)
                for key in ("bpp", "psnr", "ssim", "ms_ssim")}
            summary[group][name]["ms_ssim_above_default"] = sum(
                row["results"][name]["ms_ssim"] > row["results"][default]["ms_ssim"]
                for row in chosen)
        summary[group]["images"] = len(chosen)
    return summary


def images(args):
    for path in kodak_paths(args.kodak, args.images) if args.kodak_images else ():
        yield "kodak", os.path.basename(path), load_image(path)
    if args.photos:
        for name in PHOTOS:
            yield "photos", name, to_float_image(getattr(skimage.data, name)())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", default=KODAK, help="folder of kodimNN.png")
    parser.add_argument("--images", nargs="*", help="NN of kodimNN.png (default: all)")
    parser.add_argument("--bpp", type=float, default=0.5)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--no-photos", dest="photos", action="store_false",
                        help="the Kodak images alone")
    parser.add_argument("--no-kodak", dest="kodak_images", action="store_false",
                        help="the photos alone")
    parser.add_argument("--weights", nargs="+", type=weight_set, default=list(WEIGHTS),
                        help="sets L1,L2,SSIM (default: WEIGHTS; the default tune's set is "
                             "always measured)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "tune_weights.json"))
    args = parser.parse_args(argv)
    weights = list(dict.fromkeys([Perceptual().weights] + args.weights))
    report = {**revision(), "bpp": args.bpp, "preset": args.preset,
              "weights": [list(w) for w in weights], "images": []}
    for group, name, image in images(args):
        row = {"group": group, "image": name, "results": {}}
        report["images"].append(row)
        row["results"]["psnr"] = measure(image, "psnr", args.bpp, args.preset)
        for chosen in weights:
            row["results"][label(chosen)] = measure(image, Perceptual(*chosen), args.bpp,
                                                    args.preset)
        print(name, row["results"], flush=True)
        report["summary"] = summarise(report["images"])
        write_report(args.out, report)
    print(report["summary"])


if __name__ == "__main__":
    sys.exit(main())
