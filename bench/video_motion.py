"""How far one global motion (zoom about the centre and translation, cgc.video.motion's
model) predicts each frame of a clip from the frame before: the ceiling of what a P-frame
gets before it changes any Gaussian.

Per pair of source frames (k, k + 1): the motion cgc.video.motion.global_motion finds,
and that motion refined by Nelder-Mead (continuous zoom and translation); the PSNR of frame
k warped by each (bicubic) against frame k + 1, inside a margin that the motion's new
content does not reach, and of frame k unwarped; and, as the ceiling of a local motion,
the refined warp with each BLOCK x BLOCK block of that inside moved by its own best shift
of up to BLOCK_REACH pixels (in half pixels), the vectors' bits not counted.  Results:
JSON with the git revision.

    python bench/video_motion.py [--clip bikes] [--frames 8] [--margin 40] [--out FILE]
"""
import argparse
import os
import statistics
import sys

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.optimize import minimize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Benchmark this checkout (built in place), not whatever cgc is installed.
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
from cgc.metrics import psnr_of_mse  # noqa: E402
from cgc.video.io import read_video  # noqa: E402
from cgc.video.motion import (FIELD_CELL, field_candidates,  # noqa: E402
                              global_motion)
from report import revision, write_report  # noqa: E402
from video import CLIPS, fetch_clip  # noqa: E402

# Blocks of the local-motion ceiling, and the most each moves beyond the global motion.
BLOCK = 32
BLOCK_REACH = 2.0
# Frames less alike than this (PSNR, dB) are a cut, not motion.
CUT_PSNR = 12.0


def warp(image, dx, dy, scale):
    """``image`` (H, W, 3) zoomed by ``scale`` about its centre, then moved by (dx, dy):
    global_motion's model, in its pixel coordinates (the centre at ((W - 1) / 2,
    (H - 1) / 2))."""
    height, width = image.shape[:2]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    xs = (xx - dx - cx) / scale + cx
    ys = (yy - dy - cy) / scale + cy
    return np.stack([map_coordinates(image[..., c], [ys, xs], order=3, mode="nearest")
                     for c in range(3)], axis=-1)


def psnr_inside(a, b, margin):
    inner = (slice(margin, a.shape[0] - margin), slice(margin, a.shape[1] - margin))
    return psnr_of_mse(np.mean((a[inner] - b[inner]) ** 2))


def pair(previous, frame, margin):
    dx, dy, scale = global_motion(previous, frame)
    inner = (slice(margin, frame.shape[0] - margin), slice(margin, frame.shape[1] - margin))

    def error(p):
        return float(np.mean((warp(previous, *p)[inner] - frame[inner]) ** 2))

    start = [dx, dy, scale]
    simplex = [start, [dx + 0.3, dy, scale], [dx, dy + 0.3, scale], [dx, dy, scale + 0.003]]
    best = minimize(error, start, method="Nelder-Mead",
                    options={"xatol": 1e-4, "fatol": 1e-9, "initial_simplex": simplex})
    inside = frame[inner]
    rows, cols = (inside.shape[0] // BLOCK) * BLOCK, (inside.shape[1] // BLOCK) * BLOCK
    shifts = np.arange(-BLOCK_REACH, BLOCK_REACH + 0.25, 0.5)
    block_errors = []
    for sy in shifts:
        for sx in shifts:
            moved = warp(previous, best.x[0] + sx, best.x[1] + sy, best.x[2])[inner]
            squared = ((moved - inside) ** 2)[:rows, :cols].sum(axis=2)
            block_errors.append(squared.reshape(rows // BLOCK, BLOCK, cols // BLOCK, BLOCK)
                                .sum(axis=(1, 3)))
    blocks_mse = float(np.min(block_errors, axis=0).sum() / (rows * cols * 3))
    return {"field_psnr": psnr_inside(field_prediction(warp(previous, dx, dy, scale), frame),
                                      frame, margin),
            "search": [float(dx), float(dy), float(scale)],
            "search_psnr": psnr_inside(warp(previous, dx, dy, scale), frame, margin),
            "refined": [float(v) for v in best.x],
            "refined_psnr": psnr_of_mse(best.fun),
            "blocks_psnr": psnr_of_mse(blocks_mse),
            "unmoved_psnr": psnr_inside(previous, frame, margin)}


def field_prediction(reference, frame):
    """``reference`` with each FIELD_CELL-pixel cell moved by the shift the encoder's
    block matching finds for it (its best candidate, vectors free)."""
    height, width = frame.shape[:2]
    cols, rows = max(1, round(width / FIELD_CELL)), max(1, round(height / FIELD_CELL))
    ys, xs = np.mgrid[0:height, 0:width]
    cell = (ys * rows // height) * cols + xs * cols // width
    shifts = field_candidates(reference, frame, cell, rows * cols, price=0.0)[:, 0]
    return reference[np.clip(ys - shifts[cell, 1], 0, height - 1),
                     np.clip(xs - shifts[cell, 0], 0, width - 1)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", choices=sorted(CLIPS), default="bikes")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--start", type=int, default=0, help="first frame")
    parser.add_argument("--every", type=int, default=1, help="measure every n'th pair")
    parser.add_argument("--margin", type=int, default=40)
    parser.add_argument("--cache", default=os.path.join(ROOT, "bench", ".cache"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "video_motion.json"))
    args = parser.parse_args(argv)
    report = {**revision(), "clip": args.clip, "margin": args.margin, "start": args.start,
              "every": args.every, "pairs": []}
    frames, _ = read_video(fetch_clip(args.cache, args.clip))
    frames = [np.asarray(f, np.float32) / 255
              for _, f in zip(range(args.start + args.frames), frames)][args.start:]
    for k in range(0, len(frames) - 1, args.every):
        if psnr_inside(frames[k], frames[k + 1], args.margin) < CUT_PSNR:
            continue
        row = {"frame": args.start + k, **pair(frames[k], frames[k + 1], args.margin)}
        report["pairs"].append(row)
        print(row["frame"], {key: (round(v, 2) if isinstance(v, float) else
                                   [round(x, 4) for x in v])
                             for key, v in row.items() if key != "frame"}, flush=True)
    report["mean"] = {key: statistics.mean(r[key] for r in report["pairs"])
                      for key in ("search_psnr", "refined_psnr", "blocks_psnr", "field_psnr",
                                  "unmoved_psnr")}
    write_report(args.out, report)
    print(report["mean"])


if __name__ == "__main__":
    sys.exit(main())
