"""cgc, the Compact Gaussian Codec: images as a few thousand 2D Gaussians.

Public API: fit, encode, decode, Gaussians, FormatError, has_gpu, lossless."""
from cgc.codec import decode, encode
from cgc.errors import FormatError
from cgc.fit import fit
from cgc.gaussians import Gaussians


def has_gpu():
    """True when CuPy is installed and a CUDA device is usable."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CuPy raises its own CUDARuntimeError subclasses when no driver
        return False


__all__ = ["fit", "encode", "decode", "Gaussians", "FormatError", "has_gpu"]
__version__ = "0.1.0"
