"""cgc, the Compact Gaussian Codec: images as a few thousand 2D Gaussians.

Public API: fit, encode, decode, Gaussians, FormatError, has_gpu, lossless."""
from cgc.codec import decode, encode
from cgc.errors import FormatError
from cgc.fit import fit
from cgc.gaussians import Gaussians
from cgc.kernels import has_gpu

__all__ = ["fit", "encode", "decode", "Gaussians", "FormatError", "has_gpu"]
__version__ = "0.1.0"
