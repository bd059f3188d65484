"""cgc, the Compact Gaussian Codec: images as a few thousand 2D Gaussians.

Public API: fit, encode, decode, Gaussians, FormatError, has_gpu, and the lossless codec
``cgc.lossless``.  The image codec lives in ``cgc.image``."""
from cgc import lossless
from cgc.errors import FormatError
from cgc.image.codec import decode, encode
from cgc.image.fit import fit
from cgc.image.model import Gaussians
from cgc.kernels import has_gpu

__all__ = ["fit", "encode", "decode", "Gaussians", "FormatError", "has_gpu", "lossless"]
__version__ = "0.1.0"
