"""LEB128 varints, as the cgc.lossless streams and .cgcv P-frames write them: 7 bits a byte,
low first, the top bit set on every byte but the last.  Their readers sit with each
format's parser (cgc/native/rans.pxd's read_varint, cgc.video.pframe).  Signed values are
zigzagged first (z / 2 for even z, -(z + 1) / 2 for odd), as .cgcv's are."""
import numpy as np


def varint(value):
    """The LEB128 bytes of a non-negative integer."""
    value = int(value)
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(values):
    """Signed integers as unsigned: 0, -1, 1, -2, ... to 0, 1, 2, 3, ..."""
    values = np.asarray(values, np.int64)
    return np.where(values >= 0, 2 * values, -2 * values - 1).astype(np.uint32)


def unzigzag(codes):
    codes = np.asarray(codes, np.int64)
    return np.where(codes & 1, -((codes + 1) >> 1), codes >> 1)
