"""Encoding to a quality target: the smallest file that decodes at or above a PSNR.

Read me first
-------------
* The search variable is the byte budget of a budgeted encode (cgc.encode with max_bytes),
  whose Gaussian count and code widths follow from it.  A file's PSNR grows with its
  budget, by about SLOPE_DB dB per doubling on Kodak, but not strictly (fits of nearby
  counts differ by a tenth of a dB either way): the search keeps every file it made and
  returns the smallest one that reaches the target, whatever the order it was made in.
* Each step encodes at a new budget.  The first is where a wavelet coder is estimated to
  reach the target on the same image (first_budget, cgc.image.rd_estimate).  While every
  file lies on one side of the target, the next budget is extrapolated from the nearest file (with SLOPE_DB, or the slope through
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
import logging
import math

from cgc.image import rd_estimate

log = logging.getLogger("cgc.image.rate")

# Where the search starts: the rate at which a JPEG 2000-like wavelet coder is estimated to
# reach the target on the same image (cgc.image.rd_estimate); cgc lies within about 1.8 dB
# of JPEG 2000 on Kodak, so that start is within about a factor 1.5 of the answer.  For
# images too large to estimate, the Kodak mean curve: FIRST_PSNR dB at 1 bpp; SLOPE_DB per
# doubling extrapolates (docs/tuning.md, "image/rate.py: first budget").
FIRST_PSNR = 34.5
SLOPE_DB = 2.7
STEP_LIMIT = 4.0
TOLERANCE = 0.03
GUARD = 0.1
AIM_DB = 0.05
# One-sided steps use the slope through the two nearest files once there are two, within
# SLOPE_RANGE (docs/tuning.md, "image/rate.py: steps and stopping").
SLOPE_RANGE = (1.0, 6.0)
MAX_ENCODES = 8


def first_budget(image, target):
    """The budget in bytes to try first for ``image`` ((H, W, 3) uint8) at ``target`` dB."""
    pixels = image.shape[0] * image.shape[1]
    if pixels <= rd_estimate.MAX_PIXELS:
        bpp = rd_estimate.bpp_at(image, target)
    else:  # too large to estimate in bounded memory
        bpp = 2.0 ** ((target - FIRST_PSNR) / SLOPE_DB)
    return int(math.ceil(bpp * pixels / 8))


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
