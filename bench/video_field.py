"""What the P-frames' motion field predicts, moving Gaussians: per sampled pair of frames
(k, k + 1) of a clip, frame k coded as a group's I-frame at --bpp (cgc.video's encoder,
fast preset), then the PSNR against frame k + 1 of the decoder's Gaussians moved by

* the global motion alone (the better of the search's and none, as the encoder keeps);
* the field of each cell's best pixel shift (cgc.video.motion.field_candidates' first),
  applied to the Gaussians as a field is;
* the field the encoder codes (cgc.video.motion.fit_field, cells judged by the render);

and the field's bytes and the time it took.  Pairs across a cut (source frames under
12 dB apart) are skipped.  Results: JSON with the git revision.

    python bench/video_field.py [--clip bikes] [--pairs 5 15 35 45 60 70 85]
                                [--bpp 0.1 0.4] [--out FILE]
"""
import argparse
import itertools
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Benchmark this checkout (built in place), not whatever cgc is installed.
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
from cgc.image.codec import render_gaussians  # noqa: E402
from cgc.image.container import X_COLUMN, Y_COLUMN  # noqa: E402
from cgc.image.presets import get_preset  # noqa: E402
from cgc.imageio import to_float_image  # noqa: E402
from cgc.metrics import psnr  # noqa: E402
from cgc.video import encoder  # noqa: E402
from cgc.video.field import NO_FIELD, check_field, pack_field  # noqa: E402
from cgc.video.io import read_video  # noqa: E402
from cgc.video.motion import field_candidates, field_grid  # noqa: E402
from cgc.video.pframe import NO_MOTION  # noqa: E402
from report import revision, write_report  # noqa: E402
from video import CLIPS, fetch_clip  # noqa: E402

CUT_PSNR = 12.0


def measure(previous, frame, bpp):
    """The row of one pair coded at ``bpp`` (the module's note)."""
    coder = encoder._Encoder(bpp, None, 60, get_preset("fast"), "fast", "cpu", 0)
    coder.i_bpp = bpp  # the I-frame at the rate asked, not a group's share
    coder._i_frame(previous)
    state = coder.state
    height, width = frame.shape[:2]
    best = None
    for motion in dict.fromkeys([coder._motion(frame), NO_MOTION]):
        best = coder._prediction(state, frame, motion, NO_FIELD, best)
    row = {"i_psnr": coder.i_psnr, "i_bytes": coder.i_bytes, "global_psnr": best[0]}
    quantisers = [state.quantisers[X_COLUMN], state.quantisers[Y_COLUMN]]
    levels = np.array([q.levels for q in quantisers])
    grid, pixels, cell_map = field_grid(width, height, quantisers)
    reference = render_gaussians(best[6].gaussians(height, width), "cpu")
    shifts = field_candidates(reference.astype(np.float32) / 255, frame, cell_map,
                              grid.cols * grid.rows, coder._bit_price(frame))[:, 0]
    vectors = np.round(shifts / pixels).astype(np.int64).reshape(grid.rows, grid.cols, 2)
    blocks = check_field(grid._replace(vectors=vectors), levels, ValueError)
    row["pixel_field_psnr"] = coder._prediction(state, frame, best[1], blocks, None)[0]
    start = time.perf_counter()
    field = coder._field(state, frame, best)
    row["field_seconds"] = time.perf_counter() - start
    row["field_psnr"] = (coder._prediction(state, frame, best[1], field, None)[0]
                         if field is not NO_FIELD else best[0])
    row["field_bytes"] = len(pack_field(field))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", choices=sorted(CLIPS), default="bikes")
    parser.add_argument("--pairs", nargs="+", type=int, default=[5, 15, 35, 45, 60, 70, 85])
    parser.add_argument("--bpp", nargs="+", type=float, default=[0.1, 0.4])
    parser.add_argument("--cache", default=os.path.join(ROOT, "bench", ".cache"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "video_field.json"))
    args = parser.parse_args(argv)
    frames, _ = read_video(fetch_clip(args.cache, args.clip))
    frames = [to_float_image(f) for f in itertools.islice(frames, max(args.pairs) + 2)]
    report = {**revision(), "clip": args.clip, "rows": []}
    for k in args.pairs:
        if psnr(frames[k], frames[k + 1], 1.0) < CUT_PSNR:
            continue
        for bpp in args.bpp:
            row = {"frame": k, "bpp": bpp, **measure(frames[k], frames[k + 1], bpp)}
            report["rows"].append(row)
            print({key: round(v, 3) if isinstance(v, float) else v for key, v in row.items()},
                  flush=True)
    report["mean"] = {
        bpp: {key: statistics.mean(r[key] for r in report["rows"] if r["bpp"] == bpp)
              for key in ("global_psnr", "pixel_field_psnr", "field_psnr", "field_bytes",
                          "field_seconds")}
        for bpp in args.bpp}
    write_report(args.out, report)
    print(report["mean"])


if __name__ == "__main__":
    sys.exit(main())
