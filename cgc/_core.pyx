# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled CPU core of cgc: tiled renderer, Adam with scale clamping, rANS, and the
refinement of quantised codes.

Callers are the public Python modules, which validate shapes and dtypes (C-contiguous,
float32 or float64) before calling in: the loops here run without bounds checks."""

cimport cython
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, sqrt, floor, ceil, fabs
import numpy as np
cimport numpy as np

from cgc.errors import FormatError

np.import_array()

include "_rans_core.pxi"
include "_render.pxi"
include "_adam.pxi"
include "_rans.pxi"
include "_refine.pxi"
include "_gaussian_streams.pxi"
