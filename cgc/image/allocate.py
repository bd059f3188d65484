"""Per-image choice of the quantisers' code widths by a rate-distortion search.

Read me first
-------------
* A choice b gives one code width (1 to 16 bits) per attribute
  (cgc.image.quantize.ATTRIBUTES).  Its cost is J(b) = 10 log10 D(b) + SLOPE ln R(b): D the
  render's distortion, R the file size in bytes.  D is the mean squared error (tune
  "psnr"), or the value of the loss the fit minimised (tune "ssim": L1, L2 and 1 - SSIM),
  so that the widths are judged as the fit was.  Minimising J takes a bit
  wherever it buys more PSNR than SLOPE dB per unit of ln(bytes) would: SLOPE = 3 / ln 2 is
  3 dB per doubling of the file, about what classical codecs gain on Kodak between 0.25 and
  1 bpp, so a width is cut where the bytes it saves are worth more than the PSNR it costs.
  The exact slope is not critical
  (docs/tuning.md, "image/allocate.py: rate-distortion slope").
* The errors of different attributes are independent, so D is modelled as the unquantised
  distortion plus one increment per attribute, each measured by rendering with only that attribute
  quantised.  R is the fixed tables plus the coded streams (cgc.image.container): the
  positions stream, a function of the x and y widths together, and one stream per other
  attribute.  Those are coded in the order of the positions and in contexts of other
  attributes, so each is measured in the order of positions at ORDER_BITS bits and with its
  context attribute at its START_BITS width, which predicts the file written at the chosen
  widths to within 0.1 % (docs/tuning.md, "image/allocate.py: size model"); cgc.image.codec
  allocates again for a smaller budget when a file overshoots.
* Coordinate descent: each width moves to the best of the widths within SEARCH_REACH bits
  of it while J falls, as J is not convex in one width, and across a plateau of equal coded
  sizes in one move (else a search stops at its edge).  Increments and sizes are cached
  per (attribute, width), the positions' size per (x width, y width), separately (a size
  needs no render), so a render happens only for a width the search weighs and has not
  seen before; passes repeat until no width moves, at most MAX_PASSES times
  (docs/tuning.md, "image/allocate.py: search").
* Rate control: the cache does not depend on SLOPE, so a byte budget is met by bisecting
  on SLOPE, each step a search that costs at most a few new renders.  The searches can
  still stop at a local optimum short of the budget, so the choice is then widened one
  step at a time where a byte buys the most distortion while the file fits (``spend``); and if
  no slope fits at all, narrowed where a byte saved costs the least (``shed``).
"""
import math

import numpy as np

from cgc.backends import get_backend
from cgc.image.loss import get_loss
from cgc.image.container import (ATTRIBUTE_STREAMS, CONTEXT_ATTRIBUTE, HEADER, QUANTISER,
                           STREAM_LENGTH, STREAM_NAMES, X_COLUMN, Y_COLUMN, attribute_stream,
                           position_stream, storage_order)
from cgc.image.quantize import (ATTRIBUTES, MAX_BITS, TRANSFORM, fit_quantiser, to_attributes,
                          ycocg_to_rgb)

SLOPE = 3 / math.log(2)
# Where the search starts: within a bit or two of where it settles on Kodak fits, so that
# few widths need a render (measurements: docs/tuning.md, "image/allocate.py: search").
START_BITS = (12, 12, 8, 8, 8, 8, 6, 6)
MAX_PASSES = 4
# A move weighs every width within this many bits of the current one, as J is not convex
# in one width (measurements: docs/tuning.md, "image/allocate.py: search").
SEARCH_REACH = 3
# Rate control (max_bytes) bisects log(slope) between SLOPE / 64 (finer widths buy almost
# nothing) and SLOPE * 64**2 (J all rate: the 1-bit choice); 12 steps narrow a factor of 64
# to 0.1 % (docs/tuning.md, "image/allocate.py: rate control").
MAX_SLOPE_RATIO = 64.0
BISECTION_STEPS = 12
# Header, quantisers, stream lengths and CRC.
FIXED_BYTES = (HEADER.size + QUANTISER.size * len(ATTRIBUTES)
               + STREAM_LENGTH.size * len(STREAM_NAMES) + 4)
# Width of the position codes whose order the attribute streams are measured in
# (measurements: docs/tuning.md, "image/allocate.py: size model").
ORDER_BITS = 16


def _params(attributes):
    """float32 (N, 8) parameters from float64 attributes (YCoCg colour back to RGB)."""
    params = attributes.astype(np.float32)
    params[:, 5:8] = ycocg_to_rgb(params[:, 5:8])
    return params


class _Measurements:
    """Per-(attribute, width) distortion increments and coded sizes of one fit, measured
    once.  The distortion is the loss's value (cgc.image.loss): the MSE for tune "psnr"."""

    def __init__(self, gaussians, image, device, loss="psnr"):
        self.backend = get_backend(device)
        self.loss = get_loss(loss)
        self.height, self.width = gaussians.height, gaussians.width
        image = np.asarray(image, dtype=np.float32)
        if image.shape != (self.height, self.width, 3):
            raise ValueError(f"image must have shape {(self.height, self.width, 3)}, "
                             f"got {image.shape}")
        self.target = self.backend.from_numpy(np.ascontiguousarray(image))
        self.attributes = to_attributes(gaussians.params)
        self.base = self._distortion(self.attributes)
        self.increment, self.size, self.position_size, self.quantised = {}, {}, {}, {}
        fine = np.stack([self._codes(col, ORDER_BITS)[1] for col in (X_COLUMN, Y_COLUMN)], 1)
        self.order = storage_order(fine, (ORDER_BITS, ORDER_BITS))
        self.reference_codes = {}
        for source in {c for c in CONTEXT_ATTRIBUTE.values() if c is not None}:
            self.reference_codes[source] = self._codes(source, START_BITS[source])[1]

    def _distortion(self, attributes):
        xp = self.backend.xp
        params = self.backend.from_numpy(_params(attributes))
        out = self.backend.render_forward(params, self.height, self.width)
        return self.loss.value(xp, xp.clip(out, 0.0, 1.0), self.target)

    def _codes(self, col, bits):
        """(quantiser, codes) of attribute ``col`` at ``bits`` bits, made once: sizes and
        distortion increments both need them."""
        if (col, bits) not in self.quantised:
            q = fit_quantiser(self.attributes[:, col], bits, TRANSFORM[col])
            self.quantised[col, bits] = q, q.quantise(self.attributes[:, col])
        return self.quantised[col, bits]

    def _positions_bytes(self, x_bits, y_bits):
        if (x_bits, y_bits) not in self.position_size:
            self.position_size[x_bits, y_bits] = len(position_stream(
                self._codes(X_COLUMN, x_bits)[1], self._codes(Y_COLUMN, y_bits)[1],
                x_bits, y_bits))
        return self.position_size[x_bits, y_bits]

    def _attribute_bytes(self, col, bits):
        """Coded bytes of attribute ``col`` at ``bits`` bits (no render needed)."""
        if (col, bits) not in self.size:
            codes = np.zeros((len(self.attributes), len(ATTRIBUTES)), dtype=np.uint32)
            widths = list(START_BITS)
            widths[col] = bits
            codes[:, col] = self._codes(col, bits)[1]
            source = CONTEXT_ATTRIBUTE[col]
            if source is not None:
                codes[:, source] = self.reference_codes[source]
            self.size[col, bits] = len(attribute_stream(codes[self.order], col, widths))
        return self.size[col, bits]

    def increment_of(self, col, bits):
        """Distortion added by coding attribute ``col`` with ``bits`` bits (one render,
        cached)."""
        if (col, bits) not in self.increment:
            q, codes = self._codes(col, bits)
            trial = self.attributes.copy()
            trial[:, col] = q.dequantise(codes)
            self.increment[col, bits] = self._distortion(trial) - self.base
        return self.increment[col, bits]

    def distortion(self, bits):
        return self.base + sum(self.increment_of(col, b) for col, b in enumerate(bits))

    def file_bytes(self, bits):
        return (FIXED_BYTES + self._positions_bytes(bits[X_COLUMN], bits[Y_COLUMN])
                + sum(self._attribute_bytes(col, bits[col]) for col in ATTRIBUTE_STREAMS))

    def cost(self, bits, slope):
        return (10 * math.log10(max(self.distortion(bits), 1e-20))
                + slope * math.log(self.file_bytes(bits)))

    def search(self, slope):
        """Coordinate descent on J from START_BITS (see the module docstring)."""
        chosen = list(START_BITS)
        for _ in range(MAX_PASSES):
            moved = False
            for col in range(len(ATTRIBUTES)):
                while True:
                    now = chosen[col]
                    candidates = set(range(max(1, now - SEARCH_REACH),
                                           min(MAX_BITS, now + SEARCH_REACH) + 1))
                    candidates.update(w for w in (self._next_width(col, chosen, -1),
                                                  self._next_width(col, chosen, 1))
                                      if w is not None)
                    # Ties go to the wider width: on a plateau of equal size it is the best.
                    best = min(candidates,
                               key=lambda w: (self.cost(_with(chosen, col, w), slope), -w))
                    if self.cost(_with(chosen, col, best), slope) >= self.cost(chosen, slope):
                        break
                    chosen[col] = best
                    moved = True
            if not moved:
                break
        return tuple(chosen)

    def shed(self, bits, max_bytes):
        """``bits`` cut one step at a time, each where a byte saved costs the least added
        distortion, until the file fits ``max_bytes`` (which the 1-bit floor must)."""
        bits = list(bits)
        while self.file_bytes(bits) > max_bytes:
            best = None
            size = self.file_bytes(bits)
            for col, width in enumerate(bits):
                lower = self._next_width(col, bits, -1)
                if lower is None:
                    continue
                saved = size - self.file_bytes(_with(bits, col, lower))
                added = self.increment_of(col, lower) - self.increment_of(col, width)
                if saved > 0 and (best is None or added / saved < best[0]):
                    best = (added / saved, col, lower)
            if best is None:
                break
            bits[best[1]] = best[2]
        return tuple(bits)

    def spend(self, bits, max_bytes, min_slope):
        """``bits`` widened one step at a time, each where a byte buys the most distortion, while
        the file still fits ``max_bytes`` and the step lowers J at ``min_slope`` (finer
        widths buy next to nothing, and a budget left unused tells cgc.encode to grow the
        fit instead): the searches above can stop at a local optimum well short of the
        budget (a 91-Gaussian file meant for 700 bytes came out at 322)."""
        bits = list(bits)
        while True:
            best = None
            size, distortion = self.file_bytes(bits), self.distortion(bits)
            for col, width in enumerate(bits):
                higher = self._next_width(col, bits, 1)
                if higher is None:
                    continue
                trial = _with(bits, col, higher)
                new_size = self.file_bytes(trial)
                gained = self.increment_of(col, width) - self.increment_of(col, higher)
                if gained <= 0 or new_size > max_bytes:
                    continue
                if (10 * math.log10(max(distortion - gained, 1e-20) / max(distortion, 1e-20))
                        + min_slope * math.log(new_size / size)) >= 0:
                    continue
                gain = gained / max(new_size - size, 1)
                if best is None or gain > best[0]:
                    best = (gain, col, higher)
            if best is None:
                return tuple(bits)
            bits[best[1]] = best[2]

    def _next_width(self, col, bits, direction):
        """The width of attribute ``col`` a step in ``direction`` from ``bits`` leads to,
        or None past the ends.  Widths of the same file size form a plateau: the widest of
        a plateau is its best, so a step down leaves the plateau and a step up goes to its
        widest width."""
        size = self.file_bytes(bits)
        step = bits[col] + direction
        if direction < 0:
            while step >= 1 and self.file_bytes(_with(bits, col, step)) == size:
                step -= 1
        elif step <= MAX_BITS and self.file_bytes(_with(bits, col, step)) == size:
            while step + 1 <= MAX_BITS and self.file_bytes(_with(bits, col, step + 1)) == size:
                step += 1
        return step if 1 <= step <= MAX_BITS else None


def _with(bits, col, width):
    """``bits`` with attribute ``col`` at ``width``."""
    changed = list(bits)
    changed[col] = width
    return changed


def allocate(gaussians, image, device="cpu", slope=SLOPE, max_bytes=None, loss="psnr"):
    """(code widths, a tuple with one per attribute, minimising the cost J above for these
    Gaussians fitted to ``image`` (float32 (H, W, 3) in [0, 1]); the size model's bytes
    for them, from which a caller learns the model's error on the written file).

    With ``max_bytes`` the file must fit in that many bytes: the widths are those of the
    smallest slope (down to ``slope / MAX_SLOPE_RATIO``) whose choice fits, found by
    bisection, so that spare bytes buy precision and a tight budget sheds it where it costs
    least; then widened while it fits (``_Measurements.spend``).  ValueError if even 1-bit
    codes do not fit.  ``loss``: the distortion D, a name or object of cgc.image.loss."""
    if not (isinstance(slope, (int, float)) and 0 < slope < math.inf):
        raise ValueError(f"slope must be a positive finite number, got {slope!r}")
    measurements = _Measurements(gaussians, image, device, loss)

    def with_size(bits):
        return bits, measurements.file_bytes(bits)

    if max_bytes is None:
        return with_size(measurements.search(slope))
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
        return with_size(bits)
    best, fits = choice(hi)
    while not fits:
        if hi > slope * MAX_SLOPE_RATIO ** 2:
            # J is then all rate, yet the search stopped short of the budget.
            return with_size(measurements.shed(best, max_bytes))
        lo, hi = hi, hi * 2
        best, fits = choice(hi)
    for _ in range(BISECTION_STEPS):
        mid = math.sqrt(lo * hi)
        bits, fits = choice(mid)
        if fits:
            hi, best = mid, bits
        else:
            lo = mid
    return with_size(measurements.spend(best, max_bytes, slope / MAX_SLOPE_RATIO))
