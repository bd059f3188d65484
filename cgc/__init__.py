"""cgc, the Compact Gaussian Codec: images as a few thousand 2D Gaussians.

Public API: fit, encode, encode_svg (SVG drawings), decode, decode_progressive and
layer_info (progressive files),
Gaussians, FormatError, has_gpu, the lossless codec
``cgc.lossless``, and ``cgc.limits`` (what an untrusted file may make a decoder do).  The
image codec lives in ``cgc.image``.  Importing cgc registers the .cgc format with Pillow
(``Image.open("photo.cgc")``, ``im.save("photo.cgc", bpp=0.5)``)."""
from cgc import limits, lossless
from cgc.errors import FormatError
from cgc.image.codec import decode, decode_progressive, encode
from cgc.image.layers import layer_info
from cgc.image.svg import encode_svg
from cgc.image import pillow_plugin
from cgc.image.fit import fit
from cgc.image.model import Gaussians
from cgc.kernels import has_gpu

__all__ = ["fit", "encode", "encode_svg", "decode", "decode_progressive", "layer_info",
           "Gaussians", "FormatError", "has_gpu", "lossless", "limits"]
__version__ = "0.1.0"

pillow_plugin.register()
