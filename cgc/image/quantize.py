"""Attribute quantisers and their inverses.

The eight coded attributes are x, y, l11, l21, l22 and the colour in YCoCg (Y, Co, Cg):
most of a Gaussian's colour is in Y, and the small Co and Cg take fewer bits than R, G and B
would at the same error (a rate-distortion search picks the widths:
cgc/image/allocate.py).  Each attribute gets a uniform scalar quantiser with 1 to 16 bits
over [lo, hi], applied either to the value itself ("linear") or to its logarithm ("log", for
the positive diagonal Cholesky entries, whose useful range spans two decades: a linear step
over that range would be coarser than the smallest Gaussians).  lo and hi are stored in the
file as float32 and the inverse colour transform runs in float32, so dequantisation is
reproducible bit for bit.
Background: docs/tuning.md, "image/quantize.py: widths and colour space".

Files of format version 1 hold R, G, B instead of Y, Co, Cg (``colour_space="rgb"``)."""
from dataclasses import dataclass

import numpy as np

LINEAR, LOG = 0, 1
TRANSFORMS = {LINEAR: "linear", LOG: "log"}
# Bound on |lo| and |hi|: far beyond any fitted attribute, and small enough that the
# dequantised values and the renderer's arithmetic on them stay finite.
MAX_ABS_VALUE = 1e9

MAX_BITS = 16

# The coded attributes, in column order, and the transform of each.
ATTRIBUTES = ("x", "y", "l11", "l21", "l22", "Y", "Co", "Cg")
TRANSFORM = (LINEAR, LINEAR, LOG, LINEAR, LOG, LINEAR, LINEAR, LINEAR)
# Widths used when no search chose them (encode_gaussians without them): version 1's, fine
# enough for any image, with positions in steps of half a pixel over a 32,768-pixel side.
DEFAULT_BITS = (16, 16, 8, 8, 8, 8, 8, 8)

# YCoCg: Y = (R + 2G + B) / 4, Co = (R - B) / 2, Cg = (-R + 2G - B) / 4, inverted below.
RGB_TO_YCOCG = np.array([[0.25, 0.5, 0.25], [0.5, 0.0, -0.5], [-0.25, 0.5, -0.25]])


@dataclass(frozen=True)
class Quantiser:
    """Uniform quantiser of one attribute: code k in [0, 2**bits) maps to
    lo + k * (hi - lo) / (2**bits - 1) in the transformed domain."""

    bits: int
    transform: int
    lo: float
    hi: float

    @property
    def levels(self):
        return (1 << self.bits) - 1

    def validate(self):
        """Raise ValueError if the parameters could not have come from ``fit_quantiser``."""
        if not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"unsupported quantiser width {self.bits} bits")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown quantiser transform {self.transform}")
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.lo <= self.hi
                and max(abs(self.lo), abs(self.hi)) <= MAX_ABS_VALUE):
            raise ValueError(f"invalid quantiser range [{self.lo}, {self.hi}]")
        if self.transform == LOG and abs(self.hi) > 80:
            raise ValueError("log quantiser range out of bounds")

    def quantise(self, values):
        t = np.asarray(values, dtype=np.float64)
        if self.transform == LOG:
            t = np.log(t)
        step = (np.float64(self.hi) - self.lo) / self.levels
        if step == 0:
            return np.zeros(t.shape, dtype=np.uint32)
        return np.clip(np.round((t - self.lo) / step), 0, self.levels).astype(np.uint32)

    def dequantise(self, codes):
        lo, hi = np.float32(self.lo), np.float32(self.hi)
        step = (hi - lo) / np.float32(self.levels)
        t = lo + np.asarray(codes, dtype=np.float32) * step
        return (np.exp(t) if self.transform == LOG else t).astype(np.float32)


def fit_quantiser(values, bits, transform):
    """Quantiser spanning the values' range (in the transformed domain), with float32 ends."""
    values = np.asarray(values, dtype=np.float64)
    if transform == LOG:
        if np.any(values <= 0):
            raise ValueError("log quantiser needs positive values")
        values = np.log(values)
    if not np.isfinite(values).all() or np.abs(values).max() > MAX_ABS_VALUE:
        raise ValueError("attribute values must be finite and within +-1e9")
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"quantiser width must be 1 to {MAX_BITS} bits, got {bits}")
    lo = np.float32(values.min())
    hi = np.float32(values.max())
    # float32 rounding may cut the range inward; widen by one ulp so no value clips.
    if lo > values.min():
        lo = np.nextafter(lo, np.float32(-np.inf))
    if hi < values.max():
        hi = np.nextafter(hi, np.float32(np.inf))
    return Quantiser(bits, transform, float(lo), float(hi))


def canonical_cholesky(params):
    """Cholesky factors with l11 > 0 and l22 > 0 (the same covariance), as a copy.

    L and L·diag(±1, ±1) give the same L L^T; fixing the signs lets the log quantiser apply."""
    params = np.array(params, dtype=np.float32, copy=True)
    flip_col0 = params[:, 2] < 0
    params[flip_col0, 2] *= -1
    params[flip_col0, 3] *= -1
    params[:, 4] = np.abs(params[:, 4])
    return params


def to_attributes(params):
    """float64 (N, 8) attributes in ``ATTRIBUTES`` order: canonical Cholesky, YCoCg colour."""
    attributes = canonical_cholesky(params).astype(np.float64)
    attributes[:, 5:8] = attributes[:, 5:8] @ RGB_TO_YCOCG.T
    return attributes


def ycocg_to_rgb(ycocg):
    """float32 (N, 3) RGB from float32 (N, 3) YCoCg, the decoder's exact arithmetic."""
    y, co, cg = (np.asarray(ycocg[:, k], dtype=np.float32) for k in range(3))
    return np.stack([y + co - cg, y + cg, y - co - cg], axis=1)


def check_bits(bits):
    """``bits`` as a tuple of ints, after checking it gives a width of 1 to 16 bits to each
    attribute (ValueError otherwise)."""
    bits = tuple(bits)
    if len(bits) != len(ATTRIBUTES):
        raise ValueError(f"bits must give one width per attribute ({len(ATTRIBUTES)}), "
                         f"got {len(bits)}")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not (
                1 <= b <= MAX_BITS):
            raise ValueError(f"code widths must be integers from 1 to {MAX_BITS}, got {b!r}")
    return tuple(int(b) for b in bits)


def fit_quantisers(attributes, bits):
    """One quantiser per column of ``to_attributes`` output, with the given widths."""
    return [fit_quantiser(attributes[:, k], b, TRANSFORM[k])
            for k, b in enumerate(check_bits(bits))]


def quantise(params, bits=DEFAULT_BITS):
    """Return (quantisers, codes): one Quantiser and one uint32 code column per attribute."""
    attributes = to_attributes(params)
    quantisers = fit_quantisers(attributes, bits)
    codes = np.stack([q.quantise(attributes[:, k]) for k, q in enumerate(quantisers)], axis=1)
    return quantisers, codes


def dequantise(quantisers, codes, colour_space="ycocg"):
    """Inverse of :func:`quantise`: float32 (N, 8) parameters (``colour_space="rgb"`` for the
    colour columns of a version-1 file)."""
    params = np.stack([q.dequantise(codes[:, k]) for k, q in enumerate(quantisers)], axis=1)
    if colour_space == "ycocg":
        params[:, 5:8] = ycocg_to_rgb(params[:, 5:8])
    elif colour_space != "rgb":
        raise ValueError(f"unknown colour space {colour_space!r}")
    return np.ascontiguousarray(params, dtype=np.float32)
