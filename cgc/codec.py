"""encode / decode: glue between fitting, bit allocation, quantisation and the container."""
import math

import numpy as np

from cgc.allocate import allocate_bits
from cgc.bitstream import pack, raster_order, unpack
from cgc.fit import DEFAULT_ITERATIONS, fit
from cgc.gaussians import Gaussians
from cgc.imageio import to_float_image, to_uint8
from cgc.quantize import DEFAULT_BITS, check_bits, dequantise, quantise
from cgc.refine import refine_codes

# Default density: one Gaussian per this many pixels (6,144 for a 768x512 image).
PIXELS_PER_GAUSSIAN = 64
# What a byte budget pays for, to choose the Gaussian count when none is given: about
# BITS_PER_GAUSSIAN bits of codes per Gaussian (the files of bench/fit.py, format version 2,
# spend 36 to 55), plus TABLE_BYTES for the header, quantisers, CRC and each stream's length,
# state and frequency table (440 to 1,030 bytes in files of 3 to 49 KB), or a quarter of a
# smaller budget.  Counting the tables matters for small files: on 384x256 centre crops of
# kodim01 / 05 / 13 / 23 at 0.25 bpp (3,072 bytes) 46 bits per Gaussian and no reserve (534
# Gaussians) gave 22.18 dB, 409 Gaussians 23.19 dB; this rule gives 430.  On full images it
# changes little, and fewer is the safer side: kodim01 / 23 at 0.25 bpp (300 iterations)
# 23.80 / 32.10 dB with 2,457 Gaussians, 23.72 / 32.83 with 2,137, 23.47 / 32.98 with
# 1,820; at 1 bpp 27.67 / 36.18 with 9,830, 27.50 / 38.15 with 8,548, 27.07 / 38.69 with 7,281.
BITS_PER_GAUSSIAN = 46
TABLE_BYTES = 600


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


def n_gaussians_for_bytes(max_bytes, height, width):
    """The Gaussian count whose file typically fills ``max_bytes`` (at most one per pixel)."""
    reserve = min(TABLE_BYTES, max_bytes // 4)
    return max(1, min(height * width, 8 * (max_bytes - reserve) // BITS_PER_GAUSSIAN))


def encode(image, n_gaussians=None, iterations=DEFAULT_ITERATIONS, seed=0, device="cpu",
           progress=None, init="gradient", bits=None, max_bytes=None, refine=True):
    """Fit Gaussians to an image and return the .cgc bytes.

    ``image``: (H, W, 3) or (H, W) array, uint8, uint16 or float in [0, 1].  ``n_gaussians``
    defaults to one per 64 pixels, or with ``max_bytes`` to as many as typically fit.
    ``bits``: one code width (1 to 16) per attribute; by default a rate-distortion search
    picks them for this image (cgc.allocate).  ``max_bytes``: the file is at most this
    size, its widths the best the search finds within it (ValueError if the Gaussians
    cannot fit); not with ``bits``.  ``refine``: choose the codes that render best rather
    than the nearest ones (cgc.refine; the file keeps the nearest codes if the refined ones
    would exceed ``max_bytes``)."""
    image = to_float_image(image)
    height, width = image.shape[:2]
    # Argument errors before the fit, not after it.
    if bits is not None:
        bits = check_bits(bits)
        if max_bytes is not None:
            raise ValueError("give bits or max_bytes, not both")
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or (
                max_bytes < 1):
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        if n_gaussians is None:
            n_gaussians = n_gaussians_for_bytes(int(max_bytes), height, width)
    if n_gaussians is None:
        n_gaussians = default_n_gaussians(height, width)
    gaussians = fit(image, n_gaussians, iterations=iterations, seed=seed, device=device,
                    progress=progress, init=init)
    if bits is None:
        bits = allocate_bits(gaussians, image, device=device, max_bytes=max_bytes)
    codes, quantisers, _ = quantise_gaussians(gaussians, bits)
    data = pack(width, height, quantisers, codes)
    if not refine:
        return data
    refined = refine_codes(codes, quantisers, image, device=device)
    refined_data = pack(width, height, quantisers, refined[raster_order(refined)])
    if max_bytes is not None and len(refined_data) > max_bytes:
        return data
    return refined_data


def decode(data, device="cpu"):
    """Decode .cgc bytes to a uint8 (H, W, 3) image."""
    return to_uint8(decode_gaussians(data).render(device=device, clip=False))
