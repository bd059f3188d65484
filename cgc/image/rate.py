"""Encoding to a quality target: the smallest file that decodes at or above a PSNR.

Read me first
-------------
* The search variable is the byte budget of a budgeted encode (cgc.encode with max_bytes),
  whose Gaussian count and code widths follow from it.  A file's PSNR grows with its
  budget, by about SLOPE_DB dB per doubling on Kodak, but not strictly (fits of nearby
  counts differ by a tenth of a dB either way): the search keeps every file it made and
  returns the smallest one that reaches the target, whatever the order it was made in.
* Each step encodes at a new budget.  The first is where JPEG 2000 reaches the target on
  the same image (first_budget).  While every file lies on one side of the target, the
  next budget is extrapolated from the nearest file (with SLOPE_DB, or the slope through
  the two nearest files), by a factor of at least 1 + TOLERANCE and at most STEP_LIMIT.
  Once budgets bracket it (a failing budget below the smallest passing file), the next is
  the secant in (log budget, PSNR) through the two, kept GUARD of the bracket's width from
  either end so that the bracket shrinks every step even where the secant is poor.
  Extrapolation and secant aim AIM_DB above the target, to land on its passing side.
* A passing file counts at its size, a failing one at its budget.  The search stops when
  the smallest passing file is within TOLERANCE of the largest failing budget below it,
  when the smallest budget passes, when the largest fails, when a budget repeats, or
  after MAX_ENCODES encodes; the encode function is never called more often.
"""
import io
import logging
import math

import numpy as np
from PIL import Image

from cgc.metrics import psnr_of_mse

log = logging.getLogger("cgc.image.rate")

# Where the search starts: the rate at which JPEG 2000 (Pillow's OpenJPEG, irreversible
# wavelet, colour transform) reaches the target on the same image, linear in log(bpp)
# between PROBE_BPP rates (about 0.8 s for a 768x512 image).  On Kodak at 0.25 to 1 bpp cgc
# lies within 1.8 dB of JPEG 2000 at equal rates (kodim15 to 1.72 dB below, kodim05 to
# 0.82 above: bench/results/fit_bpp.json at 16b5097), so that start is within about a
# factor 1.5 of the answer, where the mean curve below misses single images by up to 7 dB
# (kodim01 29.2, kodim23 41.2 dB at 1 bpp).  Without JPEG 2000 in Pillow, the Kodak mean
# curve: FIRST_PSNR dB at 1 bpp.  Either way SLOPE_DB per doubling extrapolates (Kodak:
# 29.01 / 31.43 / 34.48 dB at 0.248 / 0.495 / 0.991 bpp).
PROBE_BPP = np.geomspace(0.05, 8.0, 12)
FIRST_PSNR = 34.5
SLOPE_DB = 2.7
STEP_LIMIT = 4.0
TOLERANCE = 0.03
GUARD = 0.1
AIM_DB = 0.05
# One-sided steps use the slope through the two nearest files once there are two, within
# SLOPE_RANGE (Kodak images span 2.2 to 3.3 dB per doubling between 0.25 and 1 bpp).
SLOPE_RANGE = (1.0, 6.0)
MAX_ENCODES = 8
# What Pillow raises without a JPEG 2000 codec, or for an image it cannot code.
JPEG2000_ERRORS = (OSError, ValueError, KeyError)


def first_budget(image, target):
    """The budget in bytes to try first for ``image`` ((H, W, 3) uint8) at ``target`` dB."""
    pixels = image.shape[0] * image.shape[1]
    try:
        rates, qualities = zip(*(jpeg2000_point(image, bpp) for bpp in PROBE_BPP))
    except JPEG2000_ERRORS:  # no JPEG 2000 codec, or an odd image for it
        bpp = 2.0 ** ((target - FIRST_PSNR) / SLOPE_DB)
    else:
        # np.interp needs increasing qualities: keep the running maximum.
        qualities = np.maximum.accumulate(qualities)
        bpp = math.exp(float(np.interp(target, qualities, np.log(rates))))
    return int(math.ceil(bpp * pixels / 8))


def jpeg2000_point(image, bpp):
    """(bpp, PSNR) of ``image`` coded by JPEG 2000 at about ``bpp``."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG2000", quality_mode="rates",
                                quality_layers=[24.0 / bpp], irreversible=True, mct=1)
    size = buffer.tell()
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float64)
    mse = float(np.mean((decoded - image) ** 2))
    return 8.0 * size / (image.shape[0] * image.shape[1]), psnr_of_mse(mse, 255.0)


def smallest_passing(encode_at, target, first, low, high, max_encodes=MAX_ENCODES):
    """Search budgets in [low, high] bytes, starting at ``first``, for the smallest file
    whose PSNR reaches ``target``; ``encode_at(budget)`` returns (file bytes, PSNR in dB).

    Returns (file, PSNR, encodes made).  Raises ValueError when no file made reaches the
    target (the target is beyond ``high`` or the search ran out of encodes)."""
    if not low <= high:
        raise ValueError(f"empty budget range [{low}, {high}]")
    made = {}
    budget = min(max(int(first), low), high)
    while budget is not None and len(made) < max_encodes:
        made[budget] = encode_at(budget)
        log.info("budget %d bytes: file of %d bytes at %.2f dB", budget,
                 len(made[budget][0]), made[budget][1])
        budget = _next_budget(made, target, low, high)
    passing = [(len(data), quality, data) for data, quality in made.values()
               if quality >= target]
    if not passing:
        data, quality = max(made.values(), key=lambda file: file[1])
        raise ValueError(f"psnr={target:g} dB not reached: the best of {len(made)} files "
                         f"tried ({len(data)} bytes, budgets up to {max(made)}) decodes at "
                         f"{quality:.2f} dB")
    size, quality, data = min(passing, key=lambda file: file[0])
    return data, quality, len(made)


def _next_budget(made, target, low, high):
    """The next budget to try given ``made`` (budget -> (file, PSNR)), or None to stop.

    A passing file stands at its own size, not at its budget: a budget need not be filled,
    and budgets between a file's size and its budget tend to make the same file again."""
    passing = [(len(data), quality) for data, quality in made.values() if quality >= target]
    hi, q_hi = min(passing) if passing else (None, None)
    failing = [b for b, (_, quality) in made.items()
               if quality < target and (hi is None or b < hi)]
    lo = max(failing) if failing else None
    aim = target + AIM_DB
    if hi is not None and lo is not None:
        if hi <= lo * (1 + TOLERANCE):
            return None
        u_lo, u_hi = math.log(lo), math.log(hi)
        q_lo = made[lo][1]
        if q_hi > q_lo:
            u = u_lo + (aim - q_lo) * (u_hi - u_lo) / (q_hi - q_lo)
        else:  # not increasing across the bracket: bisect
            u = 0.5 * (u_lo + u_hi)
        margin = GUARD * (u_hi - u_lo)
        u = min(max(u, u_lo + margin), u_hi - margin)
    elif hi is not None:  # every file passes: go down
        if hi <= low:
            return None
        u_hi = math.log(hi)
        u = u_hi + (aim - q_hi) * math.log(2) / _slope(sorted(passing)[:2])
        u = min(max(u, u_hi - math.log(STEP_LIMIT)), u_hi - math.log(1 + TOLERANCE))
    else:  # every file fails: go up
        lo = max(made)
        if lo >= high:
            return None
        u_lo = math.log(lo)
        nearest = sorted((b, quality) for b, (_, quality) in made.items())[-2:]
        u = u_lo + (aim - made[lo][1]) * math.log(2) / _slope(nearest)
        u = min(max(u, u_lo + math.log(1 + TOLERANCE)), u_lo + math.log(STEP_LIMIT))
    budget = min(max(int(round(math.exp(u))), low), high)
    return None if budget in made else budget


def _slope(points):
    """dB per doubling through two (size, PSNR) points, within SLOPE_RANGE; SLOPE_DB for
    fewer points or equal sizes."""
    if len(points) < 2 or points[0][0] == points[1][0]:
        return SLOPE_DB
    (s0, q0), (s1, q1) = points
    slope = (q1 - q0) / math.log2(s1 / s0)
    return min(max(slope, SLOPE_RANGE[0]), SLOPE_RANGE[1])
