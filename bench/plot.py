"""Rate-distortion plot of a bench/fit.py --bpp run: mean PSNR over the images against mean
bpp, for cgc and each classical codec at cgc's bpp (its PSNR interpolated on its own quality
sweep of each image, then averaged).  A codec whose mean is null at a budget (absent, or
its sweep misses cgc's bpp on some image) has no point there.

    python bench/plot.py [--results bench/results/fit_bpp.json] [--out docs/rd-kodak.png]
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from classical import CODECS, NAMES  # noqa: E402

STYLE = {"jpeg": ("tab:gray", "v"), "jpeg2000": ("tab:blue", "s"), "webp": ("tab:green", "D"),
         "avif": ("tab:red", "^"), "jpegxl": ("tab:purple", "P")}


def curves(summary):
    """{name: ([bpp], [psnr])} over the budgets, cgc first; codecs without points left out."""
    budgets = sorted(summary.values(), key=lambda s: s["bpp"])
    lines = {"cgc": ([s["bpp"] for s in budgets], [s["psnr"] for s in budgets])}
    for codec in CODECS:
        points = [(s["bpp"], s.get(f"{codec}_psnr_at_bpp")) for s in budgets]
        points = [p for p in points if p[1] is not None]
        if points:
            lines[codec] = tuple(map(list, zip(*points)))
    return lines


def plot(report, out):
    lines = curves(report["mean_by_bpp"])
    images = len({row["image"] for row in report["rows"]})
    revision = (report.get("revision") or "unknown")[:7] + ("+" if report.get("dirty") else "")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (bpp, psnr) in lines.items():
        if name == "cgc":
            ax.plot(bpp, psnr, "o-", color="black", linewidth=2.2, markersize=6, label="cgc",
                    zorder=3)
        else:
            color, marker = STYLE.get(name, (None, "x"))
            ax.plot(bpp, psnr, marker=marker, linestyle="-", color=color, linewidth=1.4,
                    markersize=5, label=NAMES.get(name, name))
    # The budgets double from one to the next: a log axis spaces them evenly.
    ax.set_xscale("log")
    ax.set_xticks(lines["cgc"][0], [f"{b:.3f}" for b in lines["cgc"][0]])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("bits per pixel (mean of cgc's files; log scale)")
    ax.set_ylabel("PSNR (dB, mean over the images)")
    ax.set_title(f"Kodak, {images} images: PSNR at cgc's file sizes (revision {revision})",
                 fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9, frameon=True)  # the empty corner
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default=os.path.join(ROOT, "bench", "results",
                                                          "fit_bpp.json"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "rd-kodak.png"))
    args = parser.parse_args()
    with open(args.results) as f:
        plot(json.load(f), args.out)


if __name__ == "__main__":
    main()
