"""An estimate of the rate-distortion curve a JPEG 2000-like wavelet coder gets on an image,
in NumPy alone: how hard the image is to code.

The encoder asks two things of it: whether the image decodes below DETAIL_PSNR -
DETAIL_MARGIN at a budget's rate (cgc.image.codec: then the detail count is fitted at once),
and at what rate a PSNR target is reached (cgc.image.rate.first_budget: where the quality
search starts).  It models OpenJPEG with an irreversible 9/7 wavelet, colour transform and
one quality layer, but computes everything itself (elementwise float64 and integer counts;
no BLAS, no threads, no optional library), so the encoder's bytes depend on nothing but cgc.

* Transform: the irreversible colour transform and LEVELS levels of the CDF 9/7 lifting
  wavelet, symmetric extension; coefficients scaled by their synthesis norms in RGB, so one
  quantiser step costs the same RGB distortion in every subband.
* Quantiser: dead zone, step 2 ** (plane / STEPS_PER_OCTAVE), midpoint reconstruction.
* Rate: an EBCOT-like bit-plane model per 64x64 code-block: significance in JPEG 2000's nine
  neighbour contexts, the first refinement bit adaptively (Krichevsky-Trofimov code
  lengths), later refinement bits and signs at one bit; plus HEADER_BYTES.
* Distortion: the RGB MSE of the actual reconstruction, rounded and clipped to 8 bits (the
  9/7 is not orthogonal: summed coefficient errors miss single images by up to 0.4 dB).

psnr_at and bpp_at compute only the planes and the two reconstructions around their answer
(0.2 to 0.3 s for a 768x512 image); memory is about 200 bytes per pixel.  Accuracy against
Pillow's JPEG 2000 and the fitted constants: docs/tuning.md, "image/rd_estimate.py".
"""
import math

import numpy as np

# CDF 9/7 lifting steps (JPEG 2000's irreversible wavelet).
ALPHA = -1.586134342059924
BETA = -0.052980118572961
GAMMA = 0.882911075530934
DELTA = 0.443506852043971
# Decomposition levels: OpenJPEG's default of 6 resolutions.
LEVELS = 5
# RGB -> YCbCr and back: JPEG 2000's irreversible colour transform, with OpenJPEG's constants
# (written out: no LAPACK inverse, no BLAS products).
ICT = np.array([[0.299, 0.587, 0.114],
                [-0.16875, -0.33126, 0.5],
                [0.5, -0.41869, -0.08131]])
RGB_FROM_YCC = np.array([[1.0, 0.0, 1.402],
                         [1.0, -0.34413, -0.71414],
                         [1.0, 1.772, 0.0]])
# Squared RGB error per unit squared error of Y, Cb, Cr (mean over R, G, B).
COMPONENT_WEIGHTS = np.sum(RGB_FROM_YCC ** 2, axis=0) / 3.0
# Quantiser steps per octave: the curve's points (a quarter octave is about 0.75 dB).
STEPS_PER_OCTAVE = 4
# Code-block side, in coefficients (OpenJPEG's default).
BLOCK = 64
# Finest step modelled, as a plane index: 2 ** -2, far below 8-bit rounding.
FINEST_PLANE = -2 * STEPS_PER_OCTAVE
# Bytes of Pillow's JP2 file beyond the coded data: 85 bytes of boxes, main and tile headers to
# SOD (240 bytes in all, measured), 2 bytes EOC.
HEADER_BYTES = 242
# OpenJPEG's coded bits per modelled bit and its PSNR minus the model's at equal rate, in dB:
# least squares on Kodak (docs/tuning.md, "image/rd_estimate.py").
RATE_SCALE = 1.0133
PSNR_OFFSET = -0.111

# Searches compute planes down to where the rough rate is this many times the rate sought.
ROUGH_RATIO = 1.25
# Pairs (coefficient, plane) handled at once: bounds the memory of a plane computation.
PAIRS_AT_ONCE = 1 << 20
# The largest image estimated (about 800 MB of working memory); larger ones are not.
MAX_PIXELS = 1 << 22
_NEG = -30000  # plane index of zero coefficients (below every plane)


# --- the wavelet ---------------------------------------------------------------------------

def _along(axis, start, stop=None, step=None):
    """An index selecting start:stop:step along ``axis`` (negative) of an array."""
    return (Ellipsis, slice(start, stop, step)) + (slice(None),) * (-1 - axis)


def _predict(d, s, coefficient, axis):
    """d[n] += coefficient * (s[n] + s[n + 1]), s mirrored past its end."""
    nd, ns = d.shape[axis], s.shape[axis]
    both = min(nd, ns - 1)
    if both > 0:
        pair = s[_along(axis, 0, both)] + s[_along(axis, 1, both + 1)]
        pair *= coefficient
        d[_along(axis, 0, both)] += pair
    if nd == ns:
        d[_along(axis, nd - 1, nd)] += (2 * coefficient) * s[_along(axis, ns - 1, ns)]


def _update(s, d, coefficient, axis):
    """s[n] += coefficient * (d[n - 1] + d[n]), d mirrored past both ends."""
    nd, ns = d.shape[axis], s.shape[axis]
    s[_along(axis, 0, 1)] += (2 * coefficient) * d[_along(axis, 0, 1)]
    if nd > 1:
        pair = d[_along(axis, 0, nd - 1)] + d[_along(axis, 1, nd)]
        pair *= coefficient
        s[_along(axis, 1, nd)] += pair
    if ns > nd:
        s[_along(axis, nd, nd + 1)] += (2 * coefficient) * d[_along(axis, nd - 1, nd)]


def analyse(x, axis):
    """9/7 analysis of x along ``axis`` (-1 or -2): (low, high), low has ceil(n / 2)
    samples; low's DC gain and high's Nyquist gain are sqrt(2) (near orthonormal)."""
    s = np.ascontiguousarray(x[_along(axis, 0, None, 2)])
    d = np.ascontiguousarray(x[_along(axis, 1, None, 2)])
    if d.shape[axis] == 0:
        return s, d
    _predict(d, s, ALPHA, axis)
    _update(s, d, BETA, axis)
    _predict(d, s, GAMMA, axis)
    _update(s, d, DELTA, axis)
    s *= LOW_GAIN
    d *= HIGH_GAIN
    return s, d


def synthesise(s, d, axis):
    """The inverse of analyse."""
    if d.shape[axis] == 0:
        return s.copy()
    s = s / LOW_GAIN
    d = d / HIGH_GAIN
    _update(s, d, -DELTA, axis)
    _predict(d, s, -GAMMA, axis)
    _update(s, d, -BETA, axis)
    _predict(d, s, -ALPHA, axis)
    shape = list(s.shape)
    shape[axis] += d.shape[axis]
    x = np.empty(shape)
    x[_along(axis, 0, None, 2)] = s
    x[_along(axis, 1, None, 2)] = d
    return x


# Gains of the unscaled lifting steps measured (with unit gains) on a constant and on an
# alternating signal: 1 / K and K / 2 of the standard up to sqrt(2).
LOW_GAIN = HIGH_GAIN = 1.0
LOW_GAIN = math.sqrt(2) / analyse(np.ones(64), -1)[0][16]
HIGH_GAIN = math.sqrt(2) / abs(analyse(np.cos(np.pi * np.arange(64)), -1)[1][16])


def forward_2d(x, levels=LEVELS):
    """Subbands of x (..., H, W): [(level, 'HL' | 'LH' | 'HH' | 'LL', array)], LL last."""
    bands, ll, level = [], x, 0
    while level < levels and min(ll.shape[-2:]) >= 2:
        level += 1
        lo, hi = analyse(ll, -1)  # horizontal
        ll, lh = analyse(lo, -2)  # vertical
        hl, hh = analyse(hi, -2)
        bands += [(level, "HL", hl), (level, "LH", lh), (level, "HH", hh)]
    bands.append((level, "LL", ll))
    return bands


def inverse_2d(bands):
    """The inverse of forward_2d."""
    ll = bands[-1][2]
    for level in range(bands[-1][0], 0, -1):
        hl, lh, hh = (b for lv, name, b in bands[:-1] if lv == level)
        ll = synthesise(synthesise(ll, lh, -2), synthesise(hl, hh, -2), -1)
    return ll


def _norms(levels=LEVELS, n=1024):
    """Squared norms of 1-D synthesis functions: (low after j levels, high at level j)."""
    low, high = {}, {}
    for j in range(1, levels + 1):
        for table, which in ((low, 0), (high, 1)):
            m = n >> j
            pair = [np.zeros(m), np.zeros(m)]
            pair[which][m // 2] = 1.0
            x = synthesise(*pair, -1)
            for _ in range(j - 1):
                x = synthesise(x, np.zeros_like(x), -1)
            table[j] = float(np.sum(x ** 2))
    return low, high


_NORM_LOW, _NORM_HIGH = _norms()


def band_weight(level, name):
    """Squared norm of a subband's 2-D synthesis functions."""
    if level == 0:
        return 1.0
    vertical = _NORM_HIGH[level] if name[1] == "H" else _NORM_LOW[level]
    horizontal = _NORM_HIGH[level] if name[0] == "H" else _NORM_LOW[level]
    return vertical * horizontal


# --- adaptive code lengths -----------------------------------------------------------------

def _significance_contexts():
    """JPEG 2000's significance contexts (0..8) by h * 15 + v * 5 + d, the significant
    horizontal (0..2), vertical (0..2) and diagonal (0..4) neighbours: LL/LH, HL, HH tables."""
    table = np.zeros((3, 45), np.int8)
    for h in range(3):
        for v in range(3):
            for d in range(5):
                i = h * 15 + v * 5 + d
                for row, (a, b) in ((0, (h, v)), (1, (v, h))):
                    if a == 2:
                        c = 8
                    elif a == 1:
                        c = 7 if b else (6 if d else 5)
                    elif b == 2:
                        c = 4
                    elif b == 1:
                        c = 3
                    else:
                        c = min(d, 2)
                    table[row, i] = c
                hv = h + v
                if d >= 3:
                    c = 8
                elif d == 2:
                    c = 7 if hv else 6
                elif d == 1:
                    c = 3 + min(hv, 2)
                else:
                    c = min(hv, 2)
                table[2, i] = c
    return table


_CONTEXTS = _significance_contexts()
_ORIENT = {"LL": 0, "LH": 0, "HL": 1, "HH": 2}
_N_CONTEXTS = 9
# log Gamma(n + 1) and log Gamma(n + 1/2) for counts up to a code-block's coefficients.
_LOG_FACT = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, BLOCK * BLOCK + 2)))])
_LOG_HALF = 0.5 * math.log(math.pi) + np.concatenate(
    [[0.0], np.cumsum(np.log(np.arange(1, BLOCK * BLOCK + 2) - 0.5))])


def _kt_bits(zeros, ones):
    """Krichevsky-Trofimov code length in bits of binary sequences with these counts."""
    return (math.log(math.pi) + _LOG_FACT[zeros + ones] - _LOG_HALF[zeros]
            - _LOG_HALF[ones]) / math.log(2)


# --- the model -----------------------------------------------------------------------------

def _to_ycc(image):
    """(3, H, W) YCbCr, centred on 0, of an (H, W, 3) image (elementwise, no BLAS)."""
    r, g, b = np.moveaxis(image, -1, 0).astype(np.float64) - 128.0
    return np.stack([ICT[i, 0] * r + ICT[i, 1] * g + ICT[i, 2] * b for i in range(3)])


def _to_rgb(ycc):
    """(3, H, W) RGB of a YCbCr image from _to_ycc."""
    y, cb, cr = ycc
    return np.stack([RGB_FROM_YCC[i, 0] * y + RGB_FROM_YCC[i, 1] * cb
                     + RGB_FROM_YCC[i, 2] * cr for i in range(3)]) + 128.0


class _Model:
    """One image's subbands and the plane costs computed so far."""

    def __init__(self, image):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
        self.image = np.moveaxis(image, -1, 0).astype(np.float64)  # (3, H, W)
        self.pixels = image.shape[0] * image.shape[1]
        m = STEPS_PER_OCTAVE
        # Scaled magnitudes u of every coefficient, band after band, in one array; per band
        # (level, name, view of u (3, h, w), signs, scales).
        self.bands = []
        bands = forward_2d(_to_ycc(image))
        total = sum(b.size for _, _, b in bands)
        self.u = u_all = np.empty(total)
        at = 0
        for level, name, coefs in bands:
            scales = np.sqrt(band_weight(level, name) * COMPONENT_WEIGHTS)[:, None, None]
            u = u_all[at:at + coefs.size].reshape(coefs.shape)
            np.multiply(np.abs(coefs), scales, out=u)
            self.bands.append((level, name, u, np.signbit(coefs), scales))
            at += coefs.size
        with np.errstate(divide="ignore"):
            lg = np.log2(u_all)
        lg *= m
        k = np.maximum(np.floor(lg), _NEG).astype(np.int32)
        lg -= m * math.log2(3)
        j3 = np.maximum(np.floor(lg), _NEG).astype(np.int32)
        # Per band: k padded with _NEG (for neighbours), the 3x3 neighbourhood's maximum,
        # code-block numbers and tops, and each coefficient's place in the padded arrays.
        padded_size = sum(b.shape[0] * (b.shape[1] + 2) * (b.shape[2] + 2) for _, _, b in bands)
        self.padded_k = np.full(padded_size, _NEG, np.int32)
        big = np.empty(total, np.int32)
        self.blocks = np.empty(total, np.int32)
        self.positions = np.empty(total, np.int32)
        self.strides = np.empty(total, np.int32)
        tops, orients = [], []
        at = padded_at = n_blocks = 0
        for level, name, u, _, _ in self.bands:
            c, h, w = u.shape
            size = u.size
            kb = k[at:at + size].reshape(c, h, w)
            kp = self.padded_k[padded_at:padded_at + c * (h + 2) * (w + 2)].reshape(
                c, h + 2, w + 2)
            kp[:, 1:-1, 1:-1] = kb
            bb = big[at:at + size].reshape(c, h, w)
            bb[...] = kb
            for dy in (0, 1, 2):
                for dx in (0, 1, 2):
                    np.maximum(bb, kp[:, dy:dy + h, dx:dx + w], out=bb)
            nby, nbx = -(-h // BLOCK), -(-w // BLOCK)
            self.blocks[at:at + size].reshape(c, h, w)[...] = (
                n_blocks + np.arange(c)[:, None, None] * (nby * nbx)
                + (np.arange(h) // BLOCK)[None, :, None] * nbx
                + (np.arange(w) // BLOCK)[None, None, :])
            grid = np.full((c, nby * BLOCK, nbx * BLOCK), _NEG, np.int32)
            grid[:, :h, :w] = kb
            tops.append(grid.reshape(c, nby, BLOCK, nbx, BLOCK).max(axis=(2, 4)).ravel())
            orients.append(np.full(c * nby * nbx, _ORIENT[name], np.int8))
            self.positions[at:at + size].reshape(c, h, w)[...] = (
                padded_at + np.arange(c)[:, None, None] * ((h + 2) * (w + 2))
                + np.arange(1, h + 1)[None, :, None] * (w + 2)
                + np.arange(1, w + 1)[None, None, :])
            self.strides[at:at + size] = w + 2
            at += size
            padded_at += kp.size
            n_blocks += c * nby * nbx
        self.k = k
        self.n_blocks = n_blocks
        self.block_top = np.concatenate(tops)
        self.block_orient = np.concatenate(orients)
        # Planes: FINEST_PLANE .. top (the highest plane with a significant coefficient).
        self.top = max(int(k.max()), FINEST_PLANE)
        self.base = FINEST_PLANE - 1
        n_planes = self.top - self.base + 1 + 2 * m
        # A coefficient's pairs end at its neighbourhood's top, or its block's.
        self.last = np.minimum(big, self.block_top[self.blocks])
        block_base = self.blocks * n_planes

        def at_least(values):
            """[block, plane - base]: coefficients with value >= plane."""
            index = np.clip(values, self.base, self.base + n_planes - 1)
            index += block_base - self.base
            counts = np.bincount(index, minlength=n_blocks * n_planes)
            counts = counts.reshape(n_blocks, n_planes)
            return np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]

        self.k_at_least = at_least(k)
        self.j3_at_least = at_least(j3)
        # Coefficients whose 3x3 neighbourhood has nothing significant at a plane.
        self.quiet = self.k_at_least[:, :1] - at_least(big)
        # Energy of the coefficients zeroed at each plane (k below it).
        index = np.clip(k, self.base - 1, self.base + n_planes - 2) - (self.base - 1)
        energy = np.bincount(index, weights=u_all * u_all, minlength=n_planes)
        self.zeroed = np.cumsum(energy)[:n_planes]
        self.plane_bits = {}  # plane -> bits of its significance and refinement decisions
        self.lowest = self.top + 1  # planes >= lowest are in plane_bits
        self.mse = {}

    def compute_planes(self, low):
        """Plane costs for planes low .. self.lowest - 1."""
        high = self.lowest - 1
        if low > high:
            return
        m = STEPS_PER_OCTAVE
        n = high - low + 1
        # Pairs (coefficient, plane): planes where a coefficient is not significant one
        # octave up and something in its neighbourhood (itself included) is significant.
        first = np.maximum(self.k - (m - 1), low)
        counts = np.minimum(self.last, high) - first + 1
        chosen = np.flatnonzero(counts > 0)
        counts = counts[chosen]
        ends = np.cumsum(counts)
        tally = np.zeros(n * self.n_blocks * _N_CONTEXTS * 2, np.int64)
        # At most PAIRS_AT_ONCE pairs at a time (memory), in coefficient order (locality).
        cuts = np.searchsorted(ends, np.arange(PAIRS_AT_ONCE, int(ends[-1]) if ends.size else 0,
                                               PAIRS_AT_ONCE))
        for part in np.split(np.arange(chosen.size), cuts):
            if part.size:
                tally += self._tally(low, n, chosen[part], first[chosen[part]], counts[part])
        tally = tally.reshape(n, self.n_blocks, _N_CONTEXTS, 2)
        planes = np.arange(low, high + 1)
        columns = planes - self.base
        tally[:, :, 0, 0] += self.quiet[:, columns].T
        started = self.block_top[None, :] >= planes[:, None]
        significance = _kt_bits(tally[..., 0], tally[..., 1]).sum(axis=2)
        # First refinement: significant one octave up, not two; its bit: u >= 3 steps.
        once = self.k_at_least[:, columns + m]
        twice = self.k_at_least[:, columns + 2 * m]
        ones = self.j3_at_least[:, columns] - twice
        refinement = _kt_bits(once - twice - ones, ones) + twice
        bits = np.where(started.T, significance.T + refinement, 0.0).sum(axis=0)
        for p, b in zip(planes, bits):
            self.plane_bits[int(p)] = float(b)
        self.lowest = low

    def _tally(self, low, n, chosen, first, counts):
        """Counts of (plane - low, block, context, significant) over the pairs of coefficients
        ``chosen``, from plane ``first`` on, ``counts`` planes each."""
        total = int(counts.sum())
        start = np.cumsum(counts) - counts
        plane = (np.repeat(first - start, counts)
                 + np.arange(total, dtype=np.int64)).astype(np.int32)
        where = np.repeat(self.positions[chosen], counts)
        stride = np.repeat(self.strides[chosen], counts)
        kp = self.padded_k
        h = (kp[where - 1] >= plane).astype(np.int8) + (kp[where + 1] >= plane)
        up, down = where - stride, where + stride
        v = (kp[up] >= plane).astype(np.int8) + (kp[down] >= plane)
        d = ((kp[up - 1] >= plane).astype(np.int8) + (kp[up + 1] >= plane)
             + (kp[down - 1] >= plane) + (kp[down + 1] >= plane))
        blocks = np.repeat(self.blocks[chosen], counts)
        context = _CONTEXTS[self.block_orient[blocks], h * 15 + v * 5 + d]
        bit = kp[where] >= plane
        key = (((plane - low) * self.n_blocks + blocks) * _N_CONTEXTS + context) * 2 + bit
        return np.bincount(key, minlength=n * self.n_blocks * _N_CONTEXTS * 2)

    def bits(self, plane):
        """Modelled bits of the coded data at step 2 ** (plane / STEPS_PER_OCTAVE)."""
        self.compute_planes(plane)
        signs = int(self.k_at_least[:, plane - self.base].sum())
        chain = range(plane, self.top + 1, STEPS_PER_OCTAVE)
        return signs + sum(self.plane_bits[p] for p in chain)

    def bpp(self, plane):
        """JPEG 2000's bits per pixel at this plane: coded bits and headers."""
        return (RATE_SCALE * self.bits(plane) + 8 * HEADER_BYTES) / self.pixels

    def psnr(self, plane):
        """PSNR of the 8-bit reconstruction at this plane's step, plus PSNR_OFFSET."""
        if plane not in self.mse:
            step = 2.0 ** (plane / STEPS_PER_OCTAVE)
            value = np.floor(self.u / step)
            value = np.where(value > 0, (value + 0.5) * step, 0.0)
            bands, at = [], 0
            for level, name, u, negative, scales in self.bands:
                band = value[at:at + u.size].reshape(u.shape)
                band /= scales
                np.negative(band, out=band, where=negative)
                bands.append((level, name, band))
                at += u.size
            y, cb, cr = inverse_2d(bands)
            total = 0.0
            for c in range(3):  # the decoder's 8-bit output against the image
                out = (RGB_FROM_YCC[c, 0] * y + RGB_FROM_YCC[c, 1] * cb
                       + RGB_FROM_YCC[c, 2] * cr + 128.0)
                np.round(out, out=out)
                np.clip(out, 0, 255, out=out)
                out -= self.image[c]
                np.square(out, out=out)
                total += float(out.sum())
            self.mse[plane] = total / (3 * self.pixels)
        mse = self.mse[plane]
        return (float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)) + PSNR_OFFSET

    def rough_bpp(self):
        """bpp at every plane (index plane - base) with the significance decisions costed
        without contexts: above the model's rates, so a search for a rate starts at or above
        the plane it needs."""
        m = STEPS_PER_OCTAVE
        once = self.k_at_least[:, m:]
        candidates = self.k_at_least[:, :1] - once
        ones = self.k_at_least[:, :-m] - once
        started = self.block_top[:, None] >= np.arange(self.base, self.base + ones.shape[1])
        cost = np.where(started, _kt_bits(candidates - ones, ones), 0.0).sum(axis=0)
        cost = cost + self.k_at_least[:, m:].sum(axis=0)  # refinement bits
        chained = cost.copy()
        for i in range(len(cost) - 1 - m, -1, -1):
            chained[i] += chained[i + m]
        signs = self.k_at_least[:, :len(cost)].sum(axis=0)
        return (RATE_SCALE * (signs + chained) + 8 * HEADER_BYTES) / self.pixels

    def rough_psnr(self):
        """PSNR at every plane (index plane - base) from the weighted coefficient errors,
        without reconstructing: zeroed coefficients' energy plus step ** 2 / 12 for the others,
        plus 8-bit rounding."""
        planes = np.arange(self.base, self.base + self.zeroed.size)
        steps = 2.0 ** (planes / STEPS_PER_OCTAVE)
        significant = self.k_at_least.sum(axis=0)[:planes.size]
        mse = (self.zeroed + significant * steps ** 2 / 12) / self.pixels + 1 / 12
        return 10 * np.log10(255.0 ** 2 / mse) + PSNR_OFFSET


def estimate_curve(image, max_bpp=12.0):
    """(bpp, PSNR) arrays, bpp increasing: the model's points for ``image`` ((H, W, 3) uint8),
    one per quarter octave of step, from the coarsest step that codes anything to max_bpp (or
    the finest step modelled)."""
    model = _Model(image)
    rates, qualities = [], []
    for plane in range(model.top, FINEST_PLANE - 1, -1):
        rates.append(model.bpp(plane))
        qualities.append(model.psnr(plane))
        if rates[-1] >= max_bpp:
            break
    return np.array(rates), np.array(qualities)


def _between(x, x0, x1, y0, y1):
    """Linear interpolation at x between (x0, y0) and (x1, y1)."""
    return y0 if x1 == x0 else y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def _first_plane(model, rough, reach):
    """The coarsest plane whose rough value reaches ``reach``, within the modelled planes."""
    at = np.flatnonzero(rough[:model.top - model.base + 1] >= reach)
    plane = model.base + int(at[-1]) if at.size else FINEST_PLANE
    return min(max(plane, FINEST_PLANE), model.top)


def psnr_at(image, bpp):
    """The model's PSNR (JPEG 2000's, in dB) for ``image`` ((H, W, 3) uint8) at ``bpp`` bits
    per pixel: estimate_curve's points around ``bpp``, linear in log(bpp); the end points
    beyond them."""
    model = _Model(image)
    # Rough rates run 1.05 to 1.5 times the model's (median 1.2, Kodak 0.1 to 3 bpp): planes
    # are computed down to where the rough rate is ROUGH_RATIO times bpp, at once.
    plane = _first_plane(model, model.rough_bpp(), ROUGH_RATIO * bpp)
    model.compute_planes(plane)
    while model.bpp(plane) < bpp and plane > FINEST_PLANE:
        plane -= 1
        model.compute_planes(max(plane - 1, FINEST_PLANE))
    while plane < model.top and model.bpp(plane + 1) >= bpp:
        plane += 1
    if plane == model.top or model.bpp(plane) < bpp:
        return model.psnr(plane)
    return _between(math.log(bpp), math.log(model.bpp(plane + 1)), math.log(model.bpp(plane)),
                    model.psnr(plane + 1), model.psnr(plane))


def bpp_at(image, psnr):
    """The bits per pixel at which the model (JPEG 2000) reaches ``psnr`` dB on ``image``
    ((H, W, 3) uint8): log(bpp) linear in PSNR between estimate_curve's points around it (the
    first point from the coarse end at or above ``psnr`` and the one before); the end points
    beyond them."""
    model = _Model(image)
    # Rough PSNRs are within about a plane of the reconstructions': start there, and compute
    # the planes one further at once.
    plane = _first_plane(model, model.rough_psnr(), psnr)
    model.compute_planes(max(plane - 1, FINEST_PLANE))
    while model.psnr(plane) < psnr and plane > FINEST_PLANE:
        plane -= 1
    while plane < model.top and model.psnr(plane + 1) >= psnr:
        plane += 1
    if plane == model.top or model.psnr(plane) < psnr:
        return model.bpp(plane)
    return math.exp(_between(psnr, model.psnr(plane + 1), model.psnr(plane),
                             math.log(model.bpp(plane + 1)), math.log(model.bpp(plane))))
