"""Streams of .cgc versions 1 and 2 (read only; spec: docs/format.md, "Versions 1 and 2").

Gaussians in raster order of their quantised (y, x); per attribute in ``STREAM_ORDER``, its
codes (y as differences of consecutive codes) as one byte stream when at most 8 bits wide,
else two (high bits, then the low byte); each stream one static rANS block
(cgc._container_cy.rans_decode).  Version 1 has fixed widths and R, G, B colour."""
import numpy as np

from cgc.image import _container_cy
from cgc.errors import FormatError
from cgc.image.quantize import ATTRIBUTES

# Attribute columns in stream order: y first, as differences of consecutive codes.
STREAM_ORDER = (1, 0, 2, 3, 4, 5, 6, 7)
VERSION_1_BITS = (16, 16, 8, 8, 8, 8, 8, 8)
VERSION_1_NAMES = ("x", "y", "l11", "l21", "l22", "r", "g", "b")


def stream_names(bits, version):
    """Names of the streams of a version 1 or 2 file with these code widths."""
    attribute_names = VERSION_1_NAMES if version == 1 else ATTRIBUTES
    names = []
    for col in STREAM_ORDER:
        name = "y_delta" if col == 1 else attribute_names[col]
        names += [name + "_hi", name + "_lo"] if bits[col] > 8 else [name]
    return names


def decode_codes(blocks, names, quantisers, n, version):
    """(N, 8) uint32 codes from the rANS ``blocks`` (one per name of ``names``)."""
    bits = [q.bits for q in quantisers]
    streams = []
    for name, block in zip(names, blocks):
        out = np.empty(n, dtype=np.uint8)
        try:
            _container_cy.rans_decode(block, out)
        except FormatError as exc:
            raise FormatError(f"stream {name}: {exc}") from None
        streams.append(out)
    codes = np.empty((n, len(ATTRIBUTES)), dtype=np.uint32)
    next_stream = iter(streams)
    for col in STREAM_ORDER:
        values = next(next_stream).astype(np.int64)
        if bits[col] > 8:
            values = (values << 8) | next(next_stream)
        if col == 1:
            values = np.cumsum(values)
            if values[-1] > quantisers[1].levels:
                raise FormatError("y positions overflow their quantiser")
        elif values.max() > quantisers[col].levels:
            label = (VERSION_1_NAMES if version == 1 else ATTRIBUTES)[col]
            raise FormatError(f"{label} codes exceed their {bits[col]}-bit quantiser")
        codes[:, col] = values
    return codes
