"""Attribute quantisers and their inverses.

Each of the eight attributes gets a uniform scalar quantiser with ``bits`` bits over
[lo, hi], applied either to the value itself ("linear") or to its logarithm ("log", for the
positive diagonal Cholesky entries, whose useful range spans two decades: a linear 8-bit
step over that range would be coarser than the smallest Gaussians).  lo and hi are stored in
the file as float32, so dequantisation is reproducible bit for bit."""
from dataclasses import dataclass

import numpy as np

from cgc.gaussians import COLUMNS

LINEAR, LOG = 0, 1
TRANSFORMS = {LINEAR: "linear", LOG: "log"}
# Bound on |lo| and |hi|: far beyond any fitted attribute, and small enough that the
# dequantised values and the renderer's arithmetic on them stay finite.
MAX_ABS_VALUE = 1e9

# Attribute -> (bits, transform).  Positions: 16-bit fixed point; the rest 8-bit.
DEFAULT_SCHEME = {
    "x": (16, LINEAR), "y": (16, LINEAR),
    "l11": (8, LOG), "l21": (8, LINEAR), "l22": (8, LOG),
    "r": (8, LINEAR), "g": (8, LINEAR), "b": (8, LINEAR),
}


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
        if self.bits not in (8, 16):
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


def quantise(params, scheme=None):
    """Return (quantisers, codes): one Quantiser and one uint32 code column per attribute."""
    scheme = scheme or DEFAULT_SCHEME
    params = canonical_cholesky(params)
    quantisers, codes = [], []
    for k, name in enumerate(COLUMNS):
        bits, transform = scheme[name]
        q = fit_quantiser(params[:, k], bits, transform)
        quantisers.append(q)
        codes.append(q.quantise(params[:, k]))
    return quantisers, np.stack(codes, axis=1)


def dequantise(quantisers, codes):
    """Inverse of :func:`quantise`: float32 (N, 8) parameters."""
    return np.ascontiguousarray(np.stack(
        [q.dequantise(codes[:, k]) for k, q in enumerate(quantisers)], axis=1))
