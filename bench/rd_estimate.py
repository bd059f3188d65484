"""cgc.image.rd_estimate against Pillow's JPEG 2000 (OpenJPEG), measured in the same run.

The estimate stands in for JPEG 2000 where the encoder needs an image's rate-distortion curve.
JPEG 2000 is coded here with the settings the encoder used to probe (irreversible wavelet,
colour transform, one quality layer), on the 24 Kodak images (--kodak) and scikit-image photos:

(a) the detail decision "PSNR < DETAIL_PSNR - DETAIL_MARGIN (31 dB) at the budget's rate" at
    the benches' budgets (0.25, 0.5, 1 bpp as max_bytes = round(bpp * pixels / 8)) and at 12
    other rates from 0.15 to 2 bpp: agreement, errors, smallest margin;
(b) first_budget for targets = JPEG 2000's PSNR at 0.5 and 1 bpp (a sweep as bench/quality.py
    --match-jpeg2000 makes): cgc.image.rate.first_budget against the JPEG 2000 start it
    replaced (log(bpp) interpolated against the running maximum of PSNR at PROBE_BPP);
(c) psnr_at / bpp_at time on kodim01 and kodim23 (1 warm-up, median of 5, wall and CPU);
--calibrate: refits RATE_SCALE and PSNR_OFFSET by least squares on Kodak at the 15 rates
    and prints them (the constants in cgc/image/rd_estimate.py came from this).
Results: bench/results/rd_estimate.json with the git revision (about 10 minutes, 2 cores).

    OMP_NUM_THREADS=1 python bench/rd_estimate.py [--calibrate] [--kodak DIR]
"""
import argparse
import io
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import PIL
from PIL import Image, features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Benchmark this checkout (built in place), not whatever cgc is installed.
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
import classical  # noqa: E402

from cgc.image import rd_estimate  # noqa: E402
from cgc.image.codec import DETAIL_MARGIN, DETAIL_PSNR  # noqa: E402
from cgc.image.rate import FIRST_PSNR, SLOPE_DB, first_budget  # noqa: E402
from kodak_fit import KODAK  # noqa: E402  (beside this script)
from report import revision, write_report  # noqa: E402

THRESHOLD = DETAIL_PSNR - DETAIL_MARGIN
BENCH_BPP = (0.25, 0.5, 1.0)                                  # the benches' budgets
OTHER_BPP = tuple(np.round(np.geomspace(0.15, 2.0, 12), 4))  # agreement elsewhere
MATCH_BPP = (0.5, 1.0)                                        # quality.py --match-jpeg2000
PROBE_BPP = np.geomspace(0.05, 8.0, 12)                       # the former JPEG 2000 start
SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
           "immunohistochemistry", "retina", "stereo_motorcycle")


def images(kodak):
    """(name, set, uint8 RGB image) for the 24 Kodak images and the scikit-image photos."""
    import skimage.data as data
    for k in range(1, 25):
        path = os.path.join(kodak, f"kodim{k:02d}.png")
        yield f"kodim{k:02d}", "kodak", np.asarray(Image.open(path).convert("RGB"))
    for name in SKIMAGE:
        image = getattr(data, name)()
        if name == "stereo_motorcycle":
            yield "motorcycle_left", "skimage", image[0]
            yield "motorcycle_right", "skimage", image[1]
        else:
            yield name, "skimage", image[..., :3]


def jpeg2000_point(image, bpp):
    """(bpp, PSNR) of ``image`` coded by Pillow's JPEG 2000 at about ``bpp``."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG2000", quality_mode="rates",
                                quality_layers=[24.0 / bpp], irreversible=True, mct=1)
    size = buffer.tell()
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    return 8.0 * size / (image.shape[0] * image.shape[1]), classical.psnr(image, decoded)


def jpeg2000_first_budget(probe, target, pixels):
    """The former start: log(bpp) linear against the running maximum of the probe's PSNRs."""
    rates, qualities = zip(*probe)
    bpp = math.exp(float(np.interp(target, np.maximum.accumulate(qualities), np.log(rates))))
    return int(math.ceil(bpp * pixels / 8))


def measure(name, group, image):
    """Decision rows and first-budget rows of one image, JPEG 2000 and estimate."""
    pixels = image.shape[0] * image.shape[1]
    cut = rd_estimate.bpp_at(image, THRESHOLD)  # the encoder's form of the decision
    decisions = []
    for bpp in sorted(set(BENCH_BPP) | set(OTHER_BPP)):
        max_bytes = round(bpp * pixels / 8)
        rate = 8 * max_bytes / pixels
        decisions.append(dict(image=name, set=group, bpp=float(bpp), max_bytes=max_bytes,
                              jpeg2000_psnr=jpeg2000_point(image, rate)[1],
                              estimate_psnr=rd_estimate.psnr_at(image, rate),
                              estimate_detailed_by_cut=cut > rate))
    probe = [jpeg2000_point(image, bpp) for bpp in PROBE_BPP]
    sweep = classical.sweep(image, "jpeg2000")
    budgets = []
    for bpp in MATCH_BPP:
        target = classical.psnr_at(sweep, bpp)
        if target is None:
            continue
        ours, theirs = first_budget(image, target), jpeg2000_first_budget(probe, target, pixels)
        fallback = int(math.ceil(2.0 ** ((target - FIRST_PSNR) / SLOPE_DB) * pixels / 8))
        budgets.append(dict(image=name, set=group, jpeg2000_bpp=bpp, target_db=target,
                            jpeg2000_budget=theirs, estimate_budget=ours,
                            ratio=ours / theirs, fallback_ratio=fallback / theirs))
    return decisions, budgets


def summarise_decisions(rows, cases):
    errors = np.array([r["estimate_psnr"] - r["jpeg2000_psnr"] for r in rows])
    below = [r["jpeg2000_psnr"] < THRESHOLD for r in rows]
    disagree = [r for r, b in zip(rows, below) if b != (r["estimate_psnr"] < THRESHOLD)]
    detailed = [r["estimate_psnr"] for r, b in zip(rows, below) if b]
    plain = [r["estimate_psnr"] for r, b in zip(rows, below) if not b]
    # Thresholds T for which "estimate < T" gives JPEG 2000's decisions on every case.
    low, high = max(detailed, default=-math.inf), min(plain, default=math.inf)
    return dict(
        cases=cases, count=len(rows), agree=len(rows) - len(disagree),
        jpeg2000_detailed=sum(below),
        disagreements=[{k: r[k] for k in ("image", "bpp", "jpeg2000_psnr", "estimate_psnr")}
                       for r in disagree],
        by_cut_mismatches=sum(r["estimate_detailed_by_cut"] != (r["estimate_psnr"] < THRESHOLD)
                              for r in rows),
        error_db_mean=float(errors.mean()), error_db_rms=float(np.sqrt(np.mean(errors ** 2))),
        error_db_max_abs=float(np.abs(errors).max()),
        agreeing_thresholds=[low, high] if low < high else None,
        smallest_estimate_margin_db=min(abs(r["estimate_psnr"] - THRESHOLD) for r in rows),
        smallest_jpeg2000_margin_db=min(abs(r["jpeg2000_psnr"] - THRESHOLD) for r in rows))


def summarise_budgets(rows, cases):
    ratios = np.array([r["ratio"] for r in rows])
    fallback = np.array([r["fallback_ratio"] for r in rows])
    worst = max(rows, key=lambda r: abs(math.log(r["ratio"])))
    return dict(cases=cases, count=len(rows),
                ratio_geometric_mean=float(np.exp(np.mean(np.log(ratios)))),
                ratio_min=float(ratios.min()), ratio_max=float(ratios.max()),
                within_5_percent=int(np.sum(np.abs(np.log(ratios)) <= math.log(1.05))),
                worst={k: worst[k] for k in ("image", "jpeg2000_bpp", "ratio")},
                fallback_ratio_min=float(fallback.min()),
                fallback_ratio_max=float(fallback.max()))


def timings(named, targets, repeats=5):
    out = []
    for name in ("kodim01", "kodim23"):
        image = named[name]
        calls = {"psnr_at(0.5 bpp)": lambda: rd_estimate.psnr_at(image, 0.5),
                 "psnr_at(1 bpp)": lambda: rd_estimate.psnr_at(image, 1.0),
                 f"bpp_at({THRESHOLD:g} dB)": lambda: rd_estimate.bpp_at(image, THRESHOLD),
                 f"bpp_at({targets[name]:.2f} dB, JPEG 2000's at 1 bpp)":
                     lambda: rd_estimate.bpp_at(image, targets[name])}
        for label, call in calls.items():
            call()  # warm-up
            wall, cpu = [], []
            for _ in range(repeats):
                w, c = time.perf_counter(), time.process_time()
                call()
                wall.append(time.perf_counter() - w)
                cpu.append(time.process_time() - c)
            out.append(dict(image=name, call=label, wall_s_median=statistics.median(wall),
                            cpu_s_median=statistics.median(cpu)))
            print(json.dumps(out[-1]), flush=True)
    return out


def calibrate(named, rows):
    """Least-squares RATE_SCALE and PSNR_OFFSET on Kodak, from the model's curves with both
    constants neutral (rates rescaled beyond the headers, PSNRs shifted)."""
    saved = rd_estimate.RATE_SCALE, rd_estimate.PSNR_OFFSET
    rd_estimate.RATE_SCALE, rd_estimate.PSNR_OFFSET = 1.0, 0.0
    header_bits = 8 * rd_estimate.HEADER_BYTES
    curves = {}
    try:
        for name, image in named.items():
            rates, qualities = rd_estimate.estimate_curve(image, max_bpp=4.0)
            pixels = image.shape[0] * image.shape[1]
            curves[name] = (rates * pixels - header_bits, qualities, pixels)
    finally:
        rd_estimate.RATE_SCALE, rd_estimate.PSNR_OFFSET = saved
    cases = [(r["image"], 8 * r["max_bytes"] / curves[r["image"]][2], r["jpeg2000_psnr"])
             for r in rows if r["image"] in curves]

    def residuals(scale):
        out = []
        for name, rate, quality in cases:
            bits, qualities, pixels = curves[name]
            rates = (scale * bits + header_bits) / pixels
            out.append(quality - float(np.interp(math.log(rate), np.log(rates), qualities)))
        return np.array(out)

    def loss(scale):  # the best offset for a scale is the mean residual
        r = residuals(scale)
        return float(np.mean((r - r.mean()) ** 2))

    low, high = 0.85, 1.15  # golden-section search on the scale
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if loss(a) < loss(b):
            high = b
        else:
            low = a
    scale = (low + high) / 2
    r = residuals(scale)
    return dict(rate_scale=scale, psnr_offset_db=float(r.mean()),
                rms_db=float(np.sqrt(np.mean((r - r.mean()) ** 2))), cases=len(cases))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--kodak", default=KODAK, help="folder of kodimNN.png")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "rd_estimate.json"))
    args = parser.parse_args()
    report = dict(revision(), pillow=PIL.__version__, openjpeg=features.version("jpg_2000"),
                  numpy=np.__version__, threshold_db=THRESHOLD,
                  constants={k: getattr(rd_estimate, k) for k in (
                      "RATE_SCALE", "PSNR_OFFSET", "HEADER_BYTES", "STEPS_PER_OCTAVE",
                      "LEVELS", "BLOCK", "ROUGH_RATIO", "MAX_PIXELS")})
    decisions, budgets, kodak = [], [], {}
    for name, group, image in images(args.kodak):
        start = time.perf_counter()
        rows, firsts = measure(name, group, image)
        decisions += rows
        budgets += firsts
        if group == "kodak":
            kodak[name] = image
        print(f"{name} {image.shape[1]}x{image.shape[0]} {time.perf_counter() - start:.1f} s",
              flush=True)

    if args.calibrate:
        report["calibration"] = calibrate(kodak, decisions)
        print("calibration", json.dumps(report["calibration"]), flush=True)
    bench = {float(b) for b in BENCH_BPP}
    report["decisions_summary"] = [summarise_decisions(rows, cases) for cases, rows in (
        ("kodak, benches' budgets (0.25, 0.5, 1 bpp)",
         [r for r in decisions if r["set"] == "kodak" and r["bpp"] in bench]),
        ("kodak, 12 other rates from 0.15 to 2 bpp",
         [r for r in decisions if r["set"] == "kodak" and r["bpp"] not in bench]),
        ("scikit-image photos, all 15 rates", [r for r in decisions if r["set"] == "skimage"]))]
    report["first_budget_summary"] = [summarise_budgets(rows, cases) for cases, rows in (
        ("kodak", [r for r in budgets if r["set"] == "kodak"]),
        ("scikit-image photos", [r for r in budgets if r["set"] == "skimage"]))]
    for summary in report["decisions_summary"] + report["first_budget_summary"]:
        print(json.dumps(summary), flush=True)
    report["load_average_before_timing"] = os.getloadavg()
    targets = {r["image"]: r["target_db"] for r in budgets if r["jpeg2000_bpp"] == 1.0}
    report["timings"] = timings(kodak, targets)
    report["decisions"] = decisions
    report["first_budget"] = budgets
    write_report(args.out, report)


if __name__ == "__main__":
    main()
