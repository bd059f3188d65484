"""Progressive .cgc files (format version 4, docs/format.md "Version 4: layers"): the
Gaussians in layers, coarse to fine, each coded like a version-3 file's streams on its own
and closed by its own CRC, so that any prefix of the file holding the header and one layer
decodes, to the image of its complete layers.

Read me first
-------------
* ``pack_layers`` writes a file; ``read_layers`` reads a whole file or a prefix of one,
  layer by layer, through ``LayerReader``, which ``decode_progressive`` also feeds with the
  chunks of a stream as they arrive.
* The encoder fits the layers as nested images (cgc.fit(layers=)): layer 1 alone, layers
  1-2, ... each renders a picture of the whole image, and all of them the final one.
* A damaged layer (bad CRC or stream) ends what can be decoded: the layers before it still
  decode, and the caller is told, by FormatError (``strict``, the default) or a warning.
"""
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from cgc import limits
from cgc.errors import FormatError
from cgc.image.container import (ATTRIBUTES, HEADER, LAYERED_VERSION, QUANTISER, STREAM_LENGTH,
                                 STREAM_NAMES, Packed, check_codes, decode_codes, header,
                                 header_fields, peek_version, storage_order, stream_block, stream_lengths)

# After the quantiser table: the layer count and a reserved zero, then each layer's
# Gaussian count and size in bytes, then the CRC-32 of everything before it.  The sizes are
# in the header, under its CRC, so that a reader tells a file cut short from a damaged one.
LAYER_TABLE = struct.Struct("<HH")
LAYER_ENTRY = struct.Struct("<II")
CRC = struct.Struct("<I")
MAX_LAYERS = 64
# The smallest layer: its stream-length table, seven streams of at least 5 bytes, its CRC.
MIN_LAYER_BYTES = (STREAM_LENGTH.size + 5) * len(STREAM_NAMES) + 4
# Three layers: the first holds FIRST_LAYER_SHARE of the Gaussians (about an eighth of the
# file), and the runs of layers from the first grow by one ratio up to all of them (1/9,
# 1/3, 1).  Each layer's boundary costs bytes (which layer each Gaussian is in) and asks
# the fit for another picture: four layers cost several times three's (docs/tuning.md,
# "image/layers.py: layers").
FIRST_LAYER_SHARE = (1, 9)
DEFAULT_LAYERS = 3
_STREAMS = len(STREAM_NAMES)
_TABLE_START = HEADER.size + QUANTISER.size * len(ATTRIBUTES)


def layer_counts(n_gaussians, layers):
    """The Gaussian count of each of ``layers`` layers of ``n_gaussians``: the runs of layers
    from the first end at n * s^((layers - 1 - k) / (layers - 1)), s = FIRST_LAYER_SHARE,
    rounded down (1/9, 1/3 and all for three layers), every layer at least one Gaussian.
    Integer arithmetic alone, so that every machine splits alike."""
    n_gaussians, layers = int(n_gaussians), int(layers)
    if not 1 <= layers <= MAX_LAYERS:
        raise ValueError(f"layers must be from 1 to {MAX_LAYERS}, got {layers}")
    if n_gaussians < layers:
        raise ValueError(f"{n_gaussians} Gaussians cannot make {layers} layers")
    num, den = FIRST_LAYER_SHARE
    root = layers - 1
    ends = []
    for k in range(layers - 1):
        # The largest e with (e / n)^root <= (num / den)^(root - k).
        bound = n_gaussians ** root * num ** (root - k)
        low, high = 0, n_gaussians
        while low < high:
            mid = (low + high + 1) // 2
            if mid ** root * den ** (root - k) <= bound:
                low = mid
            else:
                high = mid - 1
        ends.append(max(k + 1, low))
    ends.append(n_gaussians)
    for k in range(layers - 2, -1, -1):  # keep every layer non-empty from the top down
        ends[k] = min(ends[k], ends[k + 1] - 1)
    return [int(c) for c in np.diff([0] + ends)]


def storage_order_in_layers(codes, bits, counts):
    """Permutation putting codes (N, 8) in a layered file's order: layer by layer, each in
    the version-3 key order."""
    order, start = [], 0
    for count in counts:
        order.append(start + storage_order(codes[start:start + count], bits))
        start += count
    return np.concatenate(order)


def pack_layers(width, height, quantisers, codes, counts):
    """Version-4 bytes of codes (N, 8) in layer order (the first ``counts[0]`` rows are
    layer 1, and so on); each layer is stored in key order."""
    codes = check_codes(width, height, quantisers, codes)
    counts = [int(c) for c in counts]
    if not 1 <= len(counts) <= MAX_LAYERS or min(counts) < 1 or sum(counts) != len(codes):
        raise ValueError(f"need 1 to {MAX_LAYERS} layer counts, each at least 1, adding "
                         f"up to the {len(codes)} Gaussians; got {counts}")
    bits = [q.bits for q in quantisers]
    blocks, start = [], 0
    for count in counts:
        layer = codes[start:start + count]
        block = stream_block(layer[storage_order(layer, bits)], bits)
        blocks.append(block + CRC.pack(zlib.crc32(block)))
        start += count
    head = (header(LAYERED_VERSION, width, height, len(codes), quantisers)
            + LAYER_TABLE.pack(len(counts), 0)
            + b"".join(LAYER_ENTRY.pack(c, len(b)) for c, b in zip(counts, blocks)))
    return b"".join([head, CRC.pack(zlib.crc32(head))] + blocks)


@dataclass
class LayerInfo:
    """What a version-4 file, or a prefix of one, holds."""

    count: int  # layers in the file
    gaussians: list  # Gaussians per layer
    header_bytes: int  # the header, quantisers, layer table and their CRC
    ends: list  # file offset after each layer: a prefix of ends[k - 1] bytes holds k layers
    complete: int = 0  # layers wholly present and intact, from the first
    damaged: int = None  # index of the first damaged layer, if one was found

    @property
    def file_bytes(self):
        return self.ends[-1]


class LayerReader:
    """Reads a version-4 file layer by layer as its bytes arrive: ``advance(data)`` with
    the bytes so far (each call's data extends the last) decodes every layer completed
    since; ``codes()`` are those of the complete layers."""

    def __init__(self):
        self.info = None
        self.fields = None
        self._layers = []  # codes (n, 8) of each complete layer
        self.pos = 0
        self.damage = None  # what was wrong with the damaged layer
        self.stream_sizes = dict.fromkeys(STREAM_NAMES, 0)  # of the complete layers

    def advance(self, data):
        """Decode the layers ``data`` (the file's first bytes) completes; returns the number
        of complete layers.  FormatError for a bad header; a damaged layer stops the
        reading and is recorded in ``info.damaged``."""
        if self.info is None and not self._read_header(data):
            return 0
        info = self.info
        bits = [q.bits for q in self.fields[4]]
        while info.complete < info.count and info.damaged is None:
            end = info.ends[info.complete]
            if end > len(data):
                break
            k = info.complete
            try:
                self._layers.append(self._read_layer(data, end, bits, k))
            except FormatError as exc:
                info.damaged = k
                self.damage = str(exc)
                break
            info.complete += 1
            self.pos = end
        return info.complete

    def _read_header(self, data):
        if peek_version(data) not in (None, LAYERED_VERSION):
            raise FormatError("not a progressive .cgc file (version 4)")
        if len(data) < _TABLE_START + LAYER_TABLE.size:
            return False
        count, reserved = LAYER_TABLE.unpack_from(data, _TABLE_START)
        entries_at = _TABLE_START + LAYER_TABLE.size
        end = entries_at + LAYER_ENTRY.size * count + CRC.size
        if len(data) < end:
            return False
        (stored,) = CRC.unpack_from(data, end - CRC.size)
        if zlib.crc32(bytes(data[:end - CRC.size])) != stored:
            raise FormatError("checksum mismatch in the .cgc header: the file is corrupt")
        self.fields = header_fields(bytes(data[:end]))
        n = self.fields[3]
        if reserved != 0 or not 1 <= count <= MAX_LAYERS:
            raise FormatError(f"invalid layer table: {count} layers (1 to {MAX_LAYERS}), "
                              f"reserved field {reserved}")
        entries = [LAYER_ENTRY.unpack_from(data, entries_at + LAYER_ENTRY.size * k)
                   for k in range(count)]
        counts = [c for c, _ in entries]
        if min(counts) < 1 or sum(counts) != n:
            raise FormatError(f"the layers' Gaussian counts {counts} do not add up to the "
                              f"header's {n}")
        if min(size for _, size in entries) < MIN_LAYER_BYTES:
            raise FormatError(f"a layer is shorter than the smallest layer "
                              f"({MIN_LAYER_BYTES} bytes)")
        self.info = LayerInfo(count, counts, end,
                              [int(e) for e in end + np.cumsum([s for _, s in entries])])
        self.pos = end
        return True

    def _read_layer(self, data, end, bits, k):
        block = bytes(data[self.pos:end - CRC.size])
        (stored,) = CRC.unpack_from(data, end - CRC.size)
        if zlib.crc32(block) != stored:
            raise FormatError(f"checksum mismatch in layer {k + 1} of {self.info.count}")
        limits.check_count(sum(self.info.gaussians[:k + 1]), end)
        lengths = stream_lengths(block, 0, _STREAMS)
        at = STREAM_LENGTH.size * _STREAMS
        if at + sum(lengths) != len(block):
            raise FormatError(f"layer {k + 1} of {self.info.count}: stream lengths disagree "
                              f"with its size")
        for name, length in zip(STREAM_NAMES, lengths):
            self.stream_sizes[name] += length
        blocks = []
        for length in lengths:
            blocks.append(block[at:at + length])
            at += length
        try:
            return decode_codes(blocks, bits, self.info.gaussians[k])
        except FormatError as exc:
            raise FormatError(f"layer {k + 1} of {self.info.count}: {exc}") from None

    def packed(self):
        """A :class:`Packed` of the complete layers (``layers``: their counts)."""
        version, width, height, _, quantisers = self.fields
        codes = np.concatenate(self._layers) if self._layers else np.empty((0, 8), np.uint32)
        return Packed(version, width, height, quantisers, codes, dict(self.stream_sizes),
                      layers=self.info.gaussians[:self.info.complete])


def read_layers(data, whole=False, strict=True):
    """(Packed of the complete layers, LayerInfo) of a version-4 file or prefix ``data``.

    ``whole``: ``data`` must be the whole file (every layer, nothing after).  Otherwise a
    prefix holding the header and at least one layer is enough.  A damaged layer raises
    FormatError when ``strict``; else it warns, and the layers before it are returned."""
    reader = LayerReader()
    reader.advance(data)
    info = reader.info
    if info is None:
        raise FormatError("truncated .cgc header: the file ends before its layer table")
    check_layers(reader, strict)
    if info.complete == 0:
        raise FormatError(f"the file holds no complete layer (of {info.count})")
    if whole and info.complete < info.count:
        raise FormatError(f"truncated .cgc file: {info.complete} of {info.count} layers")
    if info.damaged is None and len(data) > info.ends[-1]:
        raise FormatError(f"{len(data) - info.ends[-1]} bytes after the last layer")
    return reader.packed(), info


def check_layers(reader, strict):
    """FormatError (``strict``) or a warning for a damaged layer the reader met."""
    info = reader.info
    if info.damaged is None:
        return
    message = (f"{reader.damage}; the image is that of the {info.damaged} layer"
               f"{'s' if info.damaged != 1 else ''} before it")
    if strict or info.damaged == 0:
        raise FormatError(reader.damage)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def layer_info(data):
    """The :class:`LayerInfo` of a progressive file or a prefix of one (None for .cgc
    versions 1 to 3, which have no layers); damage is reported in ``damaged``, not
    raised."""
    data = bytes(data)
    version = peek_version(data)
    if version is None:
        raise FormatError("truncated .cgc header")
    if version != LAYERED_VERSION:
        return None
    reader = LayerReader()
    reader.advance(data)
    if reader.info is None:
        raise FormatError("truncated .cgc header: the file ends before its layer table")
    return reader.info
