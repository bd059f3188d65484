"""LEB128 varints, as the cgc.lossless streams and .cgcv P-frames write them: 7 bits a byte,
low first, the top bit set on every byte but the last.  Their readers sit with each
format's parser (cgc/native/rans.pxd's read_varint, cgc.video.pframe)."""


def varint(value):
    """The LEB128 bytes of a non-negative integer."""
    value = int(value)
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
