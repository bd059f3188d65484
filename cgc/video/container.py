"""The .cgcv container: header, frame index, frames (spec: docs/video-format.md).

Read me first
-------------
* Little-endian.  HEADER (magic, version, flags, width, height, frame rate as a fraction,
  frame count) and its CRC-32; the index, one INDEX_ENTRY (offset, size, type, CRC-32 of
  the frame's bytes) per frame, and the index's CRC-32; then the frames, back to back.
* An I-frame is a whole .cgc image file (version 3); a P-frame is cgc.video.pframe's
  payload, decoded against the state the frame before it left.  The first frame is an
  I-frame, so any frame is reached by decoding from the I-frame at or before it.
* ``read_index`` checks magic, version, both CRCs and every offset and size against the
  file's length before anything else is read or allocated.
"""
import struct
import zlib
from dataclasses import dataclass

from cgc.errors import FormatError
from cgc.image.container import MAX_PIXELS, MAX_SIDE

MAGIC = b"\x8bCGV"
# Version 2 added the P-frames' motion field (cgc.video.field); version 1 still reads.
VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER = struct.Struct("<4sHHIIIII")  # magic, version, flags, width, height, rate, frames
INDEX_ENTRY = struct.Struct("<QIB3sI")  # offset, size, type, 3 reserved bytes, CRC-32
RESERVED = bytes(3)
CRC = struct.Struct("<I")
I_FRAME, P_FRAME = 0, 1
FRAME_TYPES = {I_FRAME: "I", P_FRAME: "P"}
# A million frames is over nine hours at 30 frames/s; the index of a file declaring more
# is not read.
MAX_FRAMES = 1 << 20
INDEX_START = HEADER.size + CRC.size


@dataclass(frozen=True)
class Frame:
    offset: int
    size: int
    type: int
    crc: int


@dataclass(frozen=True)
class Index:
    width: int
    height: int
    rate: tuple  # frames per second as (numerator, denominator)
    frames: list  # of Frame
    version: int = VERSION

    def i_frame_before(self, k):
        """The index of the I-frame at or before frame ``k``."""
        while self.frames[k].type != I_FRAME:
            k -= 1
        return k


def check_rate(rate):
    """``rate`` (a number, or (numerator, denominator)) as two positive 32-bit ints."""
    from fractions import Fraction

    try:
        fraction = Fraction(*rate) if isinstance(rate, tuple) else Fraction(rate)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"frame rate must be a positive number, got {rate!r}") from None
    fraction = fraction.limit_denominator(1 << 16)
    if fraction <= 0 or fraction.numerator >= 1 << 32:
        raise ValueError(f"frame rate must be a positive number, got {rate!r}")
    return fraction.numerator, fraction.denominator


def check_size(width, height, error):
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and width * height <= MAX_PIXELS):
        raise error(f"frame size {width}x{height} out of range (at most {MAX_SIDE} a side "
                    f"and {MAX_PIXELS} pixels)")


def pack(width, height, rate, frames):
    """.cgcv bytes of ``frames``, a list of (type, payload bytes), the first an I-frame."""
    check_size(width, height, ValueError)
    numerator, denominator = check_rate(rate)
    if not 1 <= len(frames) <= MAX_FRAMES:
        raise ValueError(f"a video holds 1 to {MAX_FRAMES} frames, got {len(frames)}")
    if frames[0][0] != I_FRAME:
        raise ValueError("the first frame must be an I-frame")
    head = HEADER.pack(MAGIC, VERSION, 0, width, height, numerator, denominator, len(frames))
    offset = INDEX_START + INDEX_ENTRY.size * len(frames) + CRC.size
    entries = []
    for kind, payload in frames:
        if kind not in FRAME_TYPES:
            raise ValueError(f"unknown frame type {kind!r}")
        entries.append(INDEX_ENTRY.pack(offset, len(payload), kind, RESERVED,
                                        zlib.crc32(payload)))
        offset += len(payload)
    index = b"".join(entries)
    return b"".join([head, CRC.pack(zlib.crc32(head)), index, CRC.pack(zlib.crc32(index))]
                    + [payload for _, payload in frames])


def read_index(data):
    """The :class:`Index` of a whole .cgcv file (FormatError if any of it is invalid)."""
    if len(data) < len(MAGIC) or bytes(data[:len(MAGIC)]) != MAGIC:
        raise FormatError("not a .cgcv file (bad magic)")
    if len(data) < INDEX_START:
        raise FormatError("truncated .cgcv header")
    magic, version, flags, width, height, numerator, denominator, count = \
        HEADER.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported .cgcv version {version} (this reader knows "
                          f"{', '.join(map(str, READABLE_VERSIONS))})")
    if CRC.unpack_from(data, HEADER.size)[0] != zlib.crc32(data[:HEADER.size]):
        raise FormatError("header checksum mismatch: the file is corrupt")
    if flags:
        raise FormatError(f"unknown header flags {flags:#x}")
    check_size(width, height, FormatError)
    if numerator == 0 or denominator == 0:
        raise FormatError("a frame rate of zero")
    if not 1 <= count <= MAX_FRAMES:
        raise FormatError(f"frame count {count} out of range (1 to {MAX_FRAMES})")
    end = INDEX_START + INDEX_ENTRY.size * count
    if end + CRC.size > len(data):
        raise FormatError(f"truncated .cgcv index ({count} frames need {end + CRC.size} "
                          f"bytes, the file has {len(data)})")
    if CRC.unpack_from(data, end)[0] != zlib.crc32(data[INDEX_START:end]):
        raise FormatError("index checksum mismatch: the file is corrupt")
    frames = []
    offset = end + CRC.size
    for k in range(count):
        offset_k, size, kind, reserved, crc = INDEX_ENTRY.unpack_from(
            data, INDEX_START + INDEX_ENTRY.size * k)
        frame = Frame(offset_k, size, kind, crc)
        if reserved != RESERVED:
            raise FormatError(f"frame {k}: reserved index bytes are not zero")
        if frame.type not in FRAME_TYPES or (k == 0 and frame.type != I_FRAME):
            raise FormatError(f"frame {k}: bad type {frame.type}")
        if frame.offset != offset:
            raise FormatError(f"frame {k}: offset {frame.offset}, expected {offset}")
        offset += frame.size
        frames.append(frame)
    if offset != len(data):
        raise FormatError(f"the frames end at byte {offset}, the file at {len(data)}: "
                          f"truncated or padded")
    return Index(width, height, (numerator, denominator), frames, version)


def frame_bytes(data, index, k):
    """Frame ``k``'s payload, its CRC checked."""
    frame = index.frames[k]
    payload = bytes(data[frame.offset:frame.offset + frame.size])
    if zlib.crc32(payload) != frame.crc:
        raise FormatError(f"frame {k} ({FRAME_TYPES[frame.type]}): checksum mismatch, the "
                          f"frame is corrupt")
    return payload
