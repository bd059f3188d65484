"""Whole safetensors checkpoints through cgc.lossless, restored byte for byte.

Read me first
-------------
* A safetensors file is an 8-byte little-endian header size N, N bytes of JSON header,
  then the data buffer.  The header maps each tensor's name to its "dtype", "shape" and
  "data_offsets" [begin, end) within the buffer; "__metadata__" holds strings.
* compress() keeps the file's first 8 + N bytes verbatim and cuts the buffer into
  segments: the tensors in order of their begin offsets, with any bytes no tensor covers
  (between tensors or after the last) as segments of their own.  Each segment is one
  cgc.lossless stream: a tensor of a dtype cgc.lossless codes (TENSOR_DTYPES) as its
  (rows, cols) matrix, anything else as its bytes.
* decompress() makes the same segments from the same header and decodes each stream into
  its place, after checking that every stream holds what its segment needs: the output
  is the input file, byte for byte.  The container layout is specified in
  docs/lossless-format.md ("Checkpoints").
"""
import itertools
import json
import struct
from typing import NamedTuple

import numpy as np

from cgc import limits
from cgc.errors import FormatError
from cgc.lossless.format import checksum, parse
from cgc.lossless.layout import check_shape, matrix_shape

MAGIC = b"CGCS"
VERSION = 1
_HEAD = struct.Struct("<4sHHQI")  # magic, version, flags, file size, stream count
_SIZE = struct.Struct("<Q")
_CRC = struct.Struct("<I")
# The safetensors library refuses headers over 100 MB; so do both directions here.
MAX_HEADER_BYTES = 100_000_000
# safetensors dtype -> (numpy dtype of the stream, bfloat16 flag); others go as bytes.
TENSOR_DTYPES = {"F32": (np.dtype("<f4"), False), "F16": (np.dtype("<f2"), False),
                 "BF16": (np.dtype("<u2"), True), "I16": (np.dtype("<i2"), False),
                 "U16": (np.dtype("<u2"), False), "I8": (np.dtype("i1"), False),
                 "U8": (np.dtype("u1"), False)}
# The other safetensors dtypes, coded as bytes: the NumPy dtype load() gives them (float8
# as its uint8 bit patterns), which also checks a tensor's extent.
OTHER_DTYPES = {"F64": np.dtype("<f8"), "I64": np.dtype("<i8"), "U64": np.dtype("<u8"),
                "I32": np.dtype("<i4"), "U32": np.dtype("<u4"), "BOOL": np.dtype("?"),
                "F8_E4M3": np.dtype("u1"), "F8_E5M2": np.dtype("u1")}


class _Segment:
    """Bytes [begin, end) of the buffer, coded as a (rows, cols) matrix of dtype; a
    tensor's segment also has its name, safetensors dtype and shape."""

    def __init__(self, begin, end, dtype=np.dtype("u1"), bfloat16=False, tensor=None):
        self.begin, self.end, self.dtype, self.bfloat16 = begin, end, dtype, bfloat16
        self.name, self.kind, self.shape = tensor or (None, None, None)
        coded_as_tensor = tensor is not None and self.kind in TENSOR_DTYPES
        self.matrix = matrix_shape(self.shape if coded_as_tensor else (end - begin,))


def _segments(header_bytes, buffer_size, error):
    """The segments of a buffer of ``buffer_size`` bytes under this JSON header; ``error``
    (ValueError or FormatError) for a header that is not a valid safetensors one."""
    try:
        header = json.loads(bytes(header_bytes))
    except (UnicodeDecodeError, ValueError, RecursionError):  # nesting past the stack too
        raise error("the safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise error("the safetensors header is not a JSON object")
    tensors = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = entry["dtype"], entry["shape"]
            begin, end = entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise error(f"tensor {name!r}: no dtype, shape and data_offsets pair") from None
        if not (isinstance(dtype, str) and isinstance(shape, list)
                and all(type(v) is int and v >= 0 for v in shape + [begin, end])):
            raise error(f"tensor {name!r}: malformed dtype, shape or data_offsets")
        if not begin <= end <= buffer_size:
            raise error(f"tensor {name!r}: data_offsets [{begin}, {end}] outside the "
                        f"{buffer_size}-byte buffer")
        count = int(np.prod(shape, dtype=object)) if shape else 1
        known = TENSOR_DTYPES[dtype][0] if dtype in TENSOR_DTYPES else OTHER_DTYPES.get(dtype)
        # A dtype cgc does not know is kept as bytes: its shape is never used.
        problem = known is not None and check_shape(shape, known.itemsize)
        if problem:
            raise error(f"tensor {name!r}: {problem}")
        if known is not None and count * known.itemsize != end - begin:
            raise error(f"tensor {name!r}: {shape} {dtype} does not fill data_offsets "
                        f"[{begin}, {end}]")
        tensors.append((begin, end, name, dtype, shape))
    segments, at = [], 0
    for begin, end, name, dtype, shape in sorted(tensors, key=lambda t: (t[0], t[1])):
        if begin < at:
            raise error("tensors overlap in the safetensors buffer")
        if begin > at:
            segments.append(_Segment(at, begin))
        coding = TENSOR_DTYPES.get(dtype, (np.dtype("u1"), False))
        segments.append(_Segment(begin, end, *coding, tensor=(name, dtype, shape)))
        at = end
    if at < buffer_size:
        segments.append(_Segment(at, buffer_size))
    return segments


def _split(file_bytes):
    """(prefix: the size field and JSON header, header bytes, data buffer) of a
    safetensors file, as memoryviews."""
    view = memoryview(file_bytes).cast("B")
    if len(view) < 8:
        raise ValueError("not a safetensors file: shorter than its 8-byte header size")
    (header_size,) = _SIZE.unpack_from(view)
    if header_size > min(MAX_HEADER_BYTES, len(view) - 8):
        raise ValueError(f"not a safetensors file: a header of {header_size} bytes")
    prefix = view[:8 + header_size]
    return prefix, prefix[8:], view[8 + header_size:]


def compress(file_bytes, tile=None, min_gain=None):
    """The bytes of a safetensors file (bytes-like) as a cgc.lossless checkpoint.

    ``tile`` and ``min_gain`` (None: its default) as for cgc.lossless.encode; for the
    fastest GPU decoding, 64 x 64 tiles and min_gain=0.1, at about 2 points of size on
    bfloat16 weights (docs/tuning.md, "lossless/checkpoint.py: GPU-fast setting").
    ValueError if the bytes are not a safetensors file."""
    from cgc.lossless import encode

    options = {} if min_gain is None else {"min_gain": min_gain}
    prefix, header, buffer = _split(file_bytes)
    streams = []
    for segment in _segments(header, len(buffer), ValueError):
        values = np.frombuffer(buffer[segment.begin:segment.end], segment.dtype)
        streams.append(encode(values.reshape(segment.matrix), tile,
                              bfloat16=segment.bfloat16, **options))
    file_size = len(prefix) + len(buffer)
    index = _HEAD.pack(MAGIC, VERSION, 0, file_size, len(streams)) + b"".join(
        _SIZE.pack(len(s)) for s in streams) + bytes(prefix)
    return index + _CRC.pack(checksum(index)) + b"".join(streams)


class _Checkpoint(NamedTuple):
    """A validated checkpoint, nothing decoded yet."""
    prefix: memoryview  # the safetensors file's first 8 + N bytes
    file_size: int
    segments: list
    containers: list  # the segments' parsed streams
    stream_sizes: list


def _open(data):
    """Validate a checkpoint (_Checkpoint)."""
    view = memoryview(data).cast("B")
    if len(view) < _HEAD.size + 8 + _CRC.size:
        raise FormatError("truncated cgc.lossless checkpoint")
    magic, version, flags, file_size, count = _HEAD.unpack_from(view)
    if magic != MAGIC:
        raise FormatError("not a cgc.lossless checkpoint (bad magic)")
    if version != VERSION:
        raise FormatError(f"unsupported cgc.lossless checkpoint version {version}")
    if flags:
        raise FormatError(f"unknown checkpoint flags {flags:#x}")
    at = _HEAD.size + _SIZE.size * count
    if at + 8 + _CRC.size > len(view):
        raise FormatError(f"truncated checkpoint: {count} streams announced")
    sizes = np.frombuffer(view[_HEAD.size:at], "<u8")
    (header_size,) = _SIZE.unpack_from(view, at)
    if header_size > min(MAX_HEADER_BYTES, len(view) - at - 8 - _CRC.size):
        raise FormatError(f"truncated checkpoint: a header of {header_size} bytes")
    end = at + 8 + header_size
    (crc,) = _CRC.unpack_from(view, end)
    if checksum(view[:end]) != crc:
        raise FormatError("cgc.lossless checkpoint CRC mismatch")
    if file_size < 8 + header_size:
        raise FormatError(f"file size {file_size} below its header's {8 + header_size}")
    segments = _segments(view[at + 8:end], file_size - 8 - header_size, FormatError)
    if len(segments) != count:
        raise FormatError(f"{count} streams for {len(segments)} segments")
    offsets = list(itertools.accumulate(map(int, sizes), initial=end + _CRC.size))
    if offsets[-1] != len(view):
        raise FormatError("stream sizes disagree with the checkpoint's size")
    containers = []
    for segment, start, stop in zip(segments, offsets[:-1], offsets[1:]):
        container = parse(view[start:stop])
        expected = (segment.dtype, segment.bfloat16, segment.matrix)
        found = (container.etype.storage, container.etype.name == "bfloat16",
                 tuple(container.shape))
        if found != expected:
            raise FormatError(f"the stream of bytes [{segment.begin}, {segment.end}) holds "
                              f"{found}, not {expected}")
        containers.append(container)
    return _Checkpoint(view[at:end], file_size, segments, containers, [int(v) for v in sizes])


def contents(data):
    """(the safetensors file's size, [(name, safetensors dtype, shape, stored bytes)] of
    its tensors in buffer order), from a checkpoint validated as decompress does but not
    decoded."""
    checkpoint = _open(data)
    return checkpoint.file_size, [
        (segment.name, segment.kind, segment.shape, size)
        for segment, size in zip(checkpoint.segments, checkpoint.stream_sizes)
        if segment.name is not None]


def decompress(data, device="cpu"):
    """The safetensors file a checkpoint was made from, as a uint8 NumPy array of its bytes
    (bytes-like: write it to a file as it is); ``device`` as for cgc.lossless.decode.
    FormatError for malformed or corrupt input."""
    from cgc.lossless import _decode

    checkpoint = _open(data)
    limits.check_expansion(checkpoint.file_size, memoryview(data).nbytes, "checkpoint")
    prefix_size = len(checkpoint.prefix)
    out = np.empty(checkpoint.file_size, np.uint8)  # every byte is written below
    out[:prefix_size] = checkpoint.prefix
    buffer = out.data[prefix_size:]
    for segment, container in zip(checkpoint.segments, checkpoint.containers):
        target = np.frombuffer(buffer[segment.begin:segment.end], segment.dtype)
        _decode(container, target.reshape(segment.matrix), device)
    return out


def load(data, device="cpu", to_host=True):
    """The tensors of a checkpoint by name, each an array of its dtype and shape: BF16 as
    its uint16 bit patterns, float8 as uint8, a dtype safetensors does not define as its
    bytes (uint8, 1-D).  With device="cuda" and to_host=False they are CuPy arrays left on
    the GPU.  FormatError for malformed or corrupt input."""
    from cgc.lossless import _decoded

    checkpoint = _open(data)
    limits.check_expansion(checkpoint.file_size, memoryview(data).nbytes, "checkpoint")
    tensors = {}
    for segment, container in zip(checkpoint.segments, checkpoint.containers):
        if segment.name is None:
            continue
        # _open checked that the stream holds the segment's (rows, cols) matrix.
        values = _decoded(container, device, to_host)
        if segment.kind in TENSOR_DTYPES:
            values = values.reshape(segment.shape)
        elif segment.kind in OTHER_DTYPES:
            values = values.reshape(-1).view(OTHER_DTYPES[segment.kind]).reshape(segment.shape)
        else:
            values = values.reshape(-1)
        tensors[segment.name] = values
    return tensors
