"""Per-image choice of the quantisers' code widths by a rate-distortion search.

Read me first
-------------
* A choice b gives one code width (1 to 16 bits) per attribute (cgc.quantize.ATTRIBUTES).
  Its cost is J(b) = 10 log10 D(b) + SLOPE ln R(b): D the mean squared error of the
  render, R the file size in bytes.  Minimising J takes a bit wherever it buys more PSNR
  than SLOPE dB per unit of ln(bytes) would: SLOPE = 3 / ln 2 is 3 dB per doubling of the
  file, about what classical codecs gain on Kodak between 0.25 and 1 bpp (JPEG 2000:
  29.3, 32.2, 36.0 dB), so a width is cut where the bytes it saves are worth more than the
  PSNR it costs.  Not critical: on the fits of bench/fit.py (kodim01 / 05 / 15 / 23, N =
  2,000 and 5,000) 2.1, 3 and 4.2 dB per doubling all left cgc within 0.15 dB of the same
  distance to JPEG 2000 at equal bpp (1.03 to 1.15 dB behind at N = 2,000, 1.98 to 2.02 at
  5,000, against 2.09 and 3.23 with version 1's fixed widths).
* The errors of different attributes are independent, so D is modelled as the unquantised
  MSE plus one increment per attribute, each measured by rendering with only that attribute
  quantised.  R is exact: every attribute has streams of its own (cgc.bitstream), so the
  file is the fixed tables plus the sum of the attributes' coded streams.
* Coordinate descent: each width moves to the best of the widths within SEARCH_REACH bits
  of it while J falls, as J is not convex in one width (one-bit steps kept 12-bit y codes
  on a 48x64 crop where 8 bits gave J 0.25 lower, its two neighbours within 0.01), and
  across a plateau of equal coded sizes in one move (else a search stops at its edge: a
  78-Gaussian file meant for 600 bytes was stuck at 788 and fell back to 1-bit codes,
  6 dB).  Increments and sizes are cached per (attribute, width), separately (a size needs
  no render), so a render happens only for a width the search weighs and has not seen
  before; passes repeat until no width moves, at most MAX_PASSES times.
* Rate control: the cache does not depend on SLOPE, so a byte budget is met by bisecting
  on SLOPE, each step a search that costs at most a few new renders.  The searches can
  still stop at a local optimum short of the budget, so the choice is then widened one
  step at a time where a byte buys the most MSE while the file fits (``spend``); and if
  no slope fits at all, narrowed where a byte saved costs the least (``shed``).
"""
import math

import numpy as np

from cgc import _core
from cgc.backends import get_backend
from cgc.bitstream import HEADER, QUANTISER, STREAM_LENGTH, code_streams, y_deltas
from cgc.quantize import (ATTRIBUTES, MAX_BITS, TRANSFORM, fit_quantiser, to_attributes,
                          ycocg_to_rgb)

SLOPE = 3 / math.log(2)
# Where the search starts: within a bit or two of where it settles on bench/fit.py's Kodak
# fits (N = 2,000 to 10,000), so that few widths need a render.
START_BITS = (12, 12, 8, 8, 8, 8, 6, 6)
MAX_PASSES = 4
# A move weighs every width within this many bits of the current one (see above).
SEARCH_REACH = 3
# Rate control (max_bytes): slopes go down to SLOPE / 64 (finer widths than that buy almost
# nothing) and up to SLOPE * 64**2, where J is all rate and the 1-bit choice, which the
# budget was checked to hold, is taken.  12 bisection steps on log(slope) narrow the first
# bracket (a factor of 64 at most) to 0.1 %.
MAX_SLOPE_RATIO = 64.0
BISECTION_STEPS = 12
Y_COLUMN = ATTRIBUTES.index("y")
FIXED_BYTES = HEADER.size + QUANTISER.size * len(ATTRIBUTES) + 4  # + 4: the CRC


def _params(attributes):
    """float32 (N, 8) parameters from float64 attributes (YCoCg colour back to RGB)."""
    params = attributes.astype(np.float32)
    params[:, 5:8] = ycocg_to_rgb(params[:, 5:8])
    return params


def coded_bytes(codes, col, bits):
    """Bytes of this attribute's streams in the file, their length-table entries included."""
    values = y_deltas(np.sort(codes)) if col == Y_COLUMN else codes
    streams = code_streams(values, bits)
    return sum(len(_core.rans_encode(s)) + STREAM_LENGTH.size for s in streams)


class _Measurements:
    """Per-(attribute, width) MSE increments and coded sizes of one fit, measured once."""

    def __init__(self, gaussians, image, device):
        self.backend = get_backend(device)
        self.height, self.width = gaussians.height, gaussians.width
        image = np.asarray(image, dtype=np.float32)
        if image.shape != (self.height, self.width, 3):
            raise ValueError(f"image must have shape {(self.height, self.width, 3)}, "
                             f"got {image.shape}")
        self.target = self.backend.from_numpy(np.ascontiguousarray(image))
        self.attributes = to_attributes(gaussians.params)
        self.base = self._mse(self.attributes)
        self.increment, self.size = {}, {}

    def _mse(self, attributes):
        xp = self.backend.xp
        params = self.backend.from_numpy(_params(attributes))
        out = self.backend.render_forward(params, self.height, self.width)
        return float(xp.mean((xp.clip(out, 0.0, 1.0) - self.target) ** 2))

    def _codes(self, col, bits):
        q = fit_quantiser(self.attributes[:, col], bits, TRANSFORM[col])
        return q, q.quantise(self.attributes[:, col])

    def bytes(self, col, bits):
        """Coded bytes of attribute ``col`` at ``bits`` bits (no render needed)."""
        if (col, bits) not in self.size:
            self.size[col, bits] = coded_bytes(self._codes(col, bits)[1], col, bits)
        return self.size[col, bits]

    def measure(self, col, bits):
        """(MSE increment, bytes) of attribute ``col`` coded with ``bits`` bits."""
        if (col, bits) not in self.increment:
            q, codes = self._codes(col, bits)
            trial = self.attributes.copy()
            trial[:, col] = q.dequantise(codes)
            self.increment[col, bits] = self._mse(trial) - self.base
            if (col, bits) not in self.size:
                self.size[col, bits] = coded_bytes(codes, col, bits)
        return self.increment[col, bits], self.size[col, bits]

    def file_bytes(self, bits):
        return FIXED_BYTES + sum(self.bytes(col, b) for col, b in enumerate(bits))

    def search(self, slope):
        """Coordinate descent on J from START_BITS (see the module docstring)."""
        chosen = list(START_BITS)
        parts = [self.measure(col, b) for col, b in enumerate(chosen)]

        def cost(col, bits):
            d, r = self.measure(col, bits)
            total_d = self.base + d + sum(p[0] for k, p in enumerate(parts) if k != col)
            total_r = FIXED_BYTES + r + sum(p[1] for k, p in enumerate(parts) if k != col)
            return 10 * math.log10(max(total_d, 1e-20)) + slope * math.log(total_r)

        for _ in range(MAX_PASSES):
            moved = False
            for col in range(len(ATTRIBUTES)):
                while True:
                    now = chosen[col]
                    candidates = set(range(max(1, now - SEARCH_REACH),
                                           min(MAX_BITS, now + SEARCH_REACH) + 1))
                    candidates.update(w for w in (self._next_width(col, now, -1),
                                                  self._next_width(col, now, 1))
                                      if w is not None)
                    # Ties go to the wider width: on a plateau of equal size it is the best.
                    best = min(candidates, key=lambda w: (cost(col, w), -w))
                    if cost(col, best) >= cost(col, now):
                        break
                    chosen[col] = best
                    parts[col] = self.measure(col, best)
                    moved = True
            if not moved:
                break
        return tuple(chosen)

    def shed(self, bits, max_bytes):
        """``bits`` cut one step at a time, each where a byte saved costs the least added
        MSE, until the file fits ``max_bytes`` (which the 1-bit floor must)."""
        bits = list(bits)
        while self.file_bytes(bits) > max_bytes:
            best = None
            for col, width in enumerate(bits):
                lower = self._next_width(col, width, -1)
                if lower is None:
                    continue
                (d_now, r_now), (d_low, r_low) = self.measure(col, width), self.measure(col, lower)
                if r_low < r_now and (best is None
                                      or (d_low - d_now) / (r_now - r_low) < best[0]):
                    best = ((d_low - d_now) / (r_now - r_low), col, lower)
            if best is None:
                break
            bits[best[1]] = best[2]
        return tuple(bits)

    def spend(self, bits, max_bytes, min_slope):
        """``bits`` widened one step at a time, each where a byte buys the most MSE, while
        the file still fits ``max_bytes`` and the step lowers J at ``min_slope`` (finer
        widths buy next to nothing, and a budget left unused tells cgc.encode to grow the
        fit instead): the searches above can stop at a local optimum well short of the
        budget (a 91-Gaussian file meant for 700 bytes came out at 322)."""
        bits = list(bits)
        size = self.file_bytes(bits)
        while True:
            best = None
            mse = self.base + sum(self.measure(col, width)[0] for col, width in enumerate(bits))
            for col, width in enumerate(bits):
                higher = self._next_width(col, width, 1)
                if higher is None:
                    continue
                (d_now, r_now), (d_up, r_up) = self.measure(col, width), self.measure(col, higher)
                if d_up >= d_now or size + r_up - r_now > max_bytes:
                    continue
                if (10 * math.log10(max(mse + d_up - d_now, 1e-20) / max(mse, 1e-20))
                        + min_slope * math.log((size + r_up - r_now) / size)) >= 0:
                    continue
                gain = (d_now - d_up) / max(r_up - r_now, 1)
                if best is None or gain > best[0]:
                    best = (gain, col, higher)
            if best is None:
                return tuple(bits)
            size += self.measure(best[1], best[2])[1] - self.measure(best[1], bits[best[1]])[1]
            bits[best[1]] = best[2]

    def _next_width(self, col, bits, direction):
        """The width a step in ``direction`` leads to, or None past the ends.  Widths of
        the same coded size form a plateau (a short stream stored verbatim costs a byte
        per code from 4 to 8 bits): the widest of a plateau is its best, so a step down
        leaves the plateau and a step up goes to its widest width."""
        size = self.bytes(col, bits)
        step = bits + direction
        if direction < 0:
            while step >= 1 and self.bytes(col, step) == size:
                step -= 1
        elif step <= MAX_BITS and self.bytes(col, step) == size:
            while step + 1 <= MAX_BITS and self.bytes(col, step + 1) == size:
                step += 1
        return step if 1 <= step <= MAX_BITS else None


def allocate_bits(gaussians, image, device="cpu", slope=SLOPE, max_bytes=None):
    """Code widths (a tuple, one per attribute) minimising the cost J above for these
    Gaussians fitted to ``image`` (float32 (H, W, 3) in [0, 1]).

    With ``max_bytes`` the file must fit in that many bytes: the widths are those of the
    smallest slope (down to ``slope / MAX_SLOPE_RATIO``) whose choice fits, found by
    bisection, so that spare bytes buy precision and a tight budget sheds it where it costs
    least; then widened while it fits (``_Measurements.spend``).  ValueError if even 1-bit
    codes do not fit."""
    if not (isinstance(slope, (int, float)) and 0 < slope < math.inf):
        raise ValueError(f"slope must be a positive finite number, got {slope!r}")
    measurements = _Measurements(gaussians, image, device)
    if max_bytes is None:
        return measurements.search(slope)
    smallest = measurements.file_bytes((1,) * len(ATTRIBUTES))
    if max_bytes < smallest:
        raise ValueError(f"{len(gaussians)} Gaussians need at least {smallest} bytes, more "
                         f"than max_bytes={max_bytes}: use fewer Gaussians")

    def choice(at_slope):
        bits = measurements.search(at_slope)
        return bits, measurements.file_bytes(bits) <= max_bytes

    # Bracket: at lo the choice is too big (or lo is the floor), at hi it fits.
    lo, hi = slope / MAX_SLOPE_RATIO, slope
    bits, fits = choice(lo)
    if fits:
        return bits
    best, fits = choice(hi)
    while not fits:
        if hi > slope * MAX_SLOPE_RATIO ** 2:
            # J is then all rate, yet the search stopped short of the budget.
            return measurements.shed(best, max_bytes)
        lo, hi = hi, hi * 2
        best, fits = choice(hi)
    for _ in range(BISECTION_STEPS):
        mid = math.sqrt(lo * hi)
        bits, fits = choice(mid)
        if fits:
            hi, best = mid, bits
        else:
            lo = mid
    return measurements.spend(best, max_bytes, slope / MAX_SLOPE_RATIO)
