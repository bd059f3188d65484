"""encode / decode: glue between fitting, bit allocation, quantisation and the container."""
import math

from cgc.allocate import allocate_bits
from cgc.bitstream import pack, raster_order, unpack
from cgc.fit import DEFAULT_ITERATIONS, fit
from cgc.gaussians import Gaussians
from cgc.imageio import to_float_image, to_uint8
from cgc.quantize import DEFAULT_BITS, check_bits, dequantise, quantise

# Default density: one Gaussian per this many pixels (6,144 for a 768x512 image).
PIXELS_PER_GAUSSIAN = 64


def default_n_gaussians(height, width):
    return max(1, math.ceil(height * width / PIXELS_PER_GAUSSIAN))


def quantise_gaussians(gaussians, bits=DEFAULT_BITS):
    """(codes in raster order, quantisers, the dequantised Gaussians a decoder will see)."""
    quantisers, codes = quantise(gaussians.params, bits)
    codes = codes[raster_order(codes)]
    return codes, quantisers, Gaussians(dequantise(quantisers, codes),
                                        gaussians.height, gaussians.width)


def encode_gaussians(gaussians, bits=DEFAULT_BITS):
    """Quantise (``bits``: one code width per attribute, see cgc.quantize.ATTRIBUTES) and
    entropy-code fitted Gaussians into .cgc bytes."""
    codes, quantisers, _ = quantise_gaussians(gaussians, bits)
    return pack(gaussians.width, gaussians.height, quantisers, codes)


def decode_gaussians(data):
    """Parse .cgc bytes back into the dequantised Gaussians."""
    packed = unpack(data)
    params = dequantise(packed.quantisers, packed.codes, packed.colour_space)
    return Gaussians(params, packed.height, packed.width)


def encode(image, n_gaussians=None, iterations=DEFAULT_ITERATIONS, seed=0, device="cpu",
           progress=None, init="gradient", bits=None):
    """Fit Gaussians to an image and return the .cgc bytes.

    ``image``: (H, W, 3) or (H, W) array, uint8, uint16 or float in [0, 1].  ``n_gaussians``
    defaults to one per 64 pixels.  ``bits``: one code width (1 to 16) per attribute; by
    default a rate-distortion search picks them for this image (cgc.allocate)."""
    image = to_float_image(image)
    height, width = image.shape[:2]
    if bits is not None:
        bits = check_bits(bits)  # before the fit, not after it
    if n_gaussians is None:
        n_gaussians = default_n_gaussians(height, width)
    gaussians = fit(image, n_gaussians, iterations=iterations, seed=seed, device=device,
                    progress=progress, init=init)
    if bits is None:
        bits = allocate_bits(gaussians, image, device=device)
    return encode_gaussians(gaussians, bits)


def decode(data, device="cpu"):
    """Decode .cgc bytes to a uint8 (H, W, 3) image."""
    return to_uint8(decode_gaussians(data).render(device=device, clip=False))
