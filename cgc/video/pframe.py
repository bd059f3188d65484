"""The decoder's state and P-frames (spec: docs/video-format.md, "P-frames").

Read me first
-------------
* The state after a frame is integer: the group's quantisers (its I-frame's) and the codes
  (N, 8) of its Gaussians in storage order (cgc.image.container.storage_order), plus, per
  Gaussian, what the last frame did to it (its mode and its code change).  Encoder and
  decoder both reach the next state through ``apply_p_frame``, so they never drift.
* A P-frame first moves every Gaussian by one global motion (a zoom and a translation, in
  codes), then gives every Gaussian of the state a mode (keep, update, remove); an updated
  Gaussian's codes change by ``step * delta`` per attribute.  Modes and zigzagged deltas
  share one range-coded stream (cgc/video/_pframe_streams.h); new Gaussians follow, coded
  as an image's seven streams with the group's widths.
* Contexts come from the reference: a Gaussian's mode is coded in the context of its mode in
  the previous frame (moving things keep moving), each delta in the context of the size of
  the same attribute's change in the previous frame.
"""
import struct
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from cgc.errors import FormatError
from cgc.image.container import (MAX_GAUSSIANS, MIN_MODELLED_BIT_COST, STREAM_LENGTH,
                                 STREAM_NAMES, X_COLUMN, Y_COLUMN, decode_codes,
                                 storage_order, stream_block, stream_lengths)
from cgc.varint import unzigzag, varint, zigzag
from cgc.video import _pframe_cy
from cgc.video.field import NO_FIELD, cells, check_field, pack_field, read_field
from cgc.image.quantize import ATTRIBUTES, dequantise
from cgc.image.model import Gaussians

KEEP, UPDATE, REMOVE = 0, 1, 2
# A Gaussian's mode in the state: what the frame that made it did (ADDED for a new one;
# an I-frame's Gaussians count as kept).
ADDED = REMOVE
# Per attribute, the width of the zigzagged deltas (0: none coded, else 1 to 16 bits) and
# the step (1 to 255 codes per delta unit), after the header's varints.
WIDTHS_AND_STEPS = struct.Struct("<8B8B")
_ATTRS = len(ATTRIBUTES)
N_ADDED_STREAMS = len(STREAM_NAMES)
MAX_DELTA_BITS = 16
MAX_STEP = 255
# Context of a delta: its attribute's previous change, zigzagged, in these classes.
CONTEXT_EDGES = np.array([0, 2, 8])
MAX_VARINT_BYTES = 5  # a 32-bit value
L11_COLUMN, L22_COLUMN = ATTRIBUTES.index("l11"), ATTRIBUTES.index("l22")
# The global motion: position codes move by a zoom about the middle of their range, then
# by x and y codes; l11 and l22 codes (log quantisers: a scale is a shift) by their own.
# The zoom is s - 1 in units of 2^-ZOOM_BITS, |s - 1| at most a half.
Motion = namedtuple("Motion", "x y zoom l11 l22")
NO_MOTION = Motion(0, 0, 0, 0, 0)
ZOOM_BITS = 16
ZOOM_ONE = 1 << ZOOM_BITS
MAX_ZOOM = ZOOM_ONE // 2
# The .cgcv version from which P-frames carry a motion field after the global motion.
FIELD_VERSION = 2


@dataclass
class State:
    """What a decoder holds after a frame (see the module's note)."""

    quantisers: list
    codes: np.ndarray   # (N, 8) uint32, storage order
    modes: np.ndarray   # (N,) uint8: KEEP, UPDATE or ADDED in the frame that made the state
    deltas: np.ndarray  # (N, 8) int32: each code's change in that frame

    @classmethod
    def intra(cls, packed):
        """The state after an I-frame (a cgc.image.container.Packed)."""
        n = packed.codes.shape[0]
        return cls(list(packed.quantisers), np.ascontiguousarray(packed.codes, np.uint32),
                   np.zeros(n, np.uint8), np.zeros((n, _ATTRS), np.int32))

    @property
    def bits(self):
        return [q.bits for q in self.quantisers]

    def gaussians(self, height, width):
        return Gaussians(dequantise(self.quantisers, self.codes), height, width)

    def __len__(self):
        return self.codes.shape[0]


def delta_contexts(previous, steps):
    """Contexts (uint8 (N, 8), 0..3) of deltas at ``steps`` (8,) of Gaussians whose codes
    changed by ``previous`` (N, 8) in the frame before."""
    moved = zigzag(np.round(np.asarray(previous, np.float64) / steps).astype(np.int64))
    return np.ascontiguousarray(np.searchsorted(CONTEXT_EDGES, moved, side="left"), np.uint8)


def check_motion(motion, levels, error):
    """``motion`` as a Motion of ints, within the codes' ranges (``error`` otherwise)."""
    motion = Motion(*(int(m) for m in motion))
    if (abs(motion.x) > levels[X_COLUMN] or abs(motion.y) > levels[Y_COLUMN]
            or abs(motion.zoom) > MAX_ZOOM or abs(motion.l11) > levels[L11_COLUMN]
            or abs(motion.l22) > levels[L22_COLUMN]):
        raise error(f"motion {tuple(motion)} beyond the codes' ranges")
    return motion


def moved_codes(state, motion, field=NO_FIELD):
    """(codes, inside): the state's codes (N, 8) as int64 moved by ``motion`` (a Motion)
    and then by ``field`` (a cgc.video.field.Field, or NO_FIELD), and the mask of those
    whose positions stay within their codes' range.  The others have left the frame: a
    P-frame removes them before its modes, which are of the Gaussians inside alone.

    A position code k of L levels becomes round(s (k - L / 2) + L / 2) plus the shift,
    s = 1 + zoom / 2^16, in integers (the halves rounding up), then moves by its cell's
    vector times the field's units; l11 and l22 codes (log quantisers) shift by their own
    counts, clipped to their range; the rest stay."""
    levels = np.array([q.levels for q in state.quantisers], np.int64)
    codes = state.codes.astype(np.int64)
    inside = np.ones(len(codes), bool)
    scale = ZOOM_ONE + motion.zoom
    for column, shift in ((X_COLUMN, motion.x), (Y_COLUMN, motion.y)):
        k, top = codes[:, column], levels[column]
        codes[:, column] = shift + ((scale * (2 * k - top) + ZOOM_ONE * top + ZOOM_ONE)
                                    >> (ZOOM_BITS + 1))
    if field is not NO_FIELD:
        cell = cells(codes[:, X_COLUMN], codes[:, Y_COLUMN], field, levels[[X_COLUMN,
                                                                            Y_COLUMN]])
        moves = field.vectors.reshape(-1, 2)[cell] * np.array(field.units, np.int64)
        codes[:, X_COLUMN] += moves[:, 0]
        codes[:, Y_COLUMN] += moves[:, 1]
    for column in (X_COLUMN, Y_COLUMN):
        inside &= (codes[:, column] >= 0) & (codes[:, column] <= levels[column])
    for column, shift in ((L11_COLUMN, motion.l11), (L22_COLUMN, motion.l22)):
        codes[:, column] = np.clip(codes[:, column] + shift, 0, levels[column])
    return codes, inside


def pack_p_frame(state, target, removed, added, steps, motion=NO_MOTION, field=NO_FIELD):
    """P-frame bytes taking ``state`` moved by ``motion`` (a Motion) and ``field`` (a
    cgc.video.field.Field, or NO_FIELD) towards
    ``target``: codes (N, 8) for its Gaussians (same order; the GOP's quantisers), of
    which the ``removed`` mask goes (and those the motion takes off the frame,
    ``moved_codes``), plus ``added`` codes (M, 8).  Each attribute's change is rounded to
    a multiple of its ``steps`` entry (1 to MAX_STEP codes) and kept within the codes'
    range; a Gaussian whose changes all round to zero is kept as it is."""
    steps = np.asarray(steps, np.int64)
    if steps.shape != (_ATTRS,) or steps.min() < 1 or steps.max() > MAX_STEP:
        raise ValueError(f"steps must be {_ATTRS} integers from 1 to {MAX_STEP}")
    levels = np.array([q.levels for q in state.quantisers], np.int64)
    motion = check_motion(motion, levels, ValueError)
    field = check_field(field, levels[[X_COLUMN, Y_COLUMN]], ValueError)
    ref, inside = moved_codes(state, motion, field)
    ref = ref[inside]
    delta = np.round((np.asarray(target, np.int64)[inside] - ref) / steps).astype(np.int64)
    # Within the codes' range and within MAX_DELTA_BITS zigzagged.
    limit = (1 << (MAX_DELTA_BITS - 1)) - 1
    delta = np.clip(delta, np.maximum(-(ref // steps), -limit),
                    np.minimum((levels - ref) // steps, limit))
    removed = np.asarray(removed, bool)[inside]
    modes = np.where(removed, REMOVE, np.where(np.any(delta != 0, axis=1), UPDATE, KEEP))
    updated = modes == UPDATE
    zz = np.where(updated[:, None], zigzag(delta), 0).astype(np.uint32)
    widths = [int(zz[:, a].max()).bit_length() if len(zz) else 0 for a in range(_ATTRS)]
    stream = _pframe_cy.p_encode(modes.astype(np.uint8), state.modes[inside],
                                 delta_contexts(state.deltas[inside], steps), zz, widths)
    added = np.asarray(added, np.uint32).reshape(-1, _ATTRS)
    parts = [varint(zigzag(m)) for m in motion] + [pack_field(field)]
    parts += [varint(int(updated.sum())), varint(int(removed.sum())), varint(len(added)),
              WIDTHS_AND_STEPS.pack(*widths, *(int(s) for s in steps)), varint(len(stream)),
              stream]
    if len(added):
        block = stream_block(added[storage_order(added, state.bits)], state.bits)
        lengths = stream_lengths(block, 0, N_ADDED_STREAMS)
        parts += [varint(length) for length in lengths]
        parts.append(block[STREAM_LENGTH.size * N_ADDED_STREAMS:])
    return b"".join(parts)


class _Reader:
    """Reads a P-frame's fields in order; FormatError past its end."""

    def __init__(self, payload):
        self.payload, self.pos = payload, 0

    def varint(self, what):
        value = 0
        for k in range(MAX_VARINT_BYTES):
            if self.pos >= len(self.payload):
                raise FormatError(f"truncated P-frame ({what})")
            byte = self.payload[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << (7 * k)
            if not byte & 0x80:
                if value >= 1 << 32:
                    break
                return value
        raise FormatError(f"bad P-frame {what}: not a 32-bit varint")

    def take(self, size, what):
        if size > len(self.payload) - self.pos:
            raise FormatError(f"truncated P-frame ({what}: {size} bytes, "
                              f"{len(self.payload) - self.pos} left)")
        self.pos += size
        return self.payload[self.pos - size:self.pos]


def apply_p_frame(state, payload, height, width, version=FIELD_VERSION):
    """The state after P-frame ``payload`` of a .cgcv file of ``version`` (FormatError if
    it is not a valid one for ``state``).  Version 1's P-frames have no motion field."""
    reader = _Reader(bytes(payload))
    motion = [int(unzigzag(reader.varint("motion"))) for _ in Motion._fields]
    levels = np.array([q.levels for q in state.quantisers], np.int64)
    field = (read_field(reader, levels[[X_COLUMN, Y_COLUMN]]) if version >= FIELD_VERSION
             else NO_FIELD)
    n_updated, n_removed, n_added = (reader.varint(what)
                                     for what in ("updates", "removals", "additions"))
    fields = WIDTHS_AND_STEPS.unpack(reader.take(WIDTHS_AND_STEPS.size, "widths"))
    widths, steps = fields[:_ATTRS], np.array(fields[_ATTRS:], np.int64)
    motion = check_motion(motion, levels, FormatError)
    codes, inside = moved_codes(state, motion, field)
    n = int(inside.sum())
    if n_updated + n_removed > n:
        raise FormatError(f"{n_updated} updated and {n_removed} removed of {n} Gaussians")
    count = n - n_removed + n_added
    if not 1 <= count <= min(MAX_GAUSSIANS, height * width):
        raise FormatError(f"Gaussian count {count} out of range for {width}x{height}")
    if max(widths) > MAX_DELTA_BITS or steps.min() < 1:
        raise FormatError("delta width over 16 bits or a step of 0")
    stream = reader.take(reader.varint("stream length"), "modes and deltas")
    # Each mode takes at least two modelled bits, each delta its width's.
    least = 2 * n + n_updated * sum(widths)
    if 8 * (len(stream) + 8) < least * MIN_MODELLED_BIT_COST:
        raise FormatError(f"the mode and delta stream is too short for {n} Gaussians")
    modes, zz = _pframe_cy.p_decode(stream, state.modes[inside],
                                    delta_contexts(state.deltas[inside], steps), list(widths))
    if (np.count_nonzero(modes == UPDATE) != n_updated
            or np.count_nonzero(modes == REMOVE) != n_removed):
        raise FormatError("P-frame modes disagree with its counts")
    updated = modes == UPDATE
    delta = np.where(updated[:, None], unzigzag(zz) * steps, 0)
    codes = codes[inside] + delta
    if np.any(codes < 0) or np.any(codes > levels):
        raise FormatError("a P-frame delta takes a code out of its range")
    kept = modes != REMOVE
    parts_codes, parts_modes = [codes[kept]], [modes[kept]]
    parts_deltas = [delta[kept].astype(np.int32)]
    if n_added:
        lengths = [reader.varint("stream length") for _ in range(N_ADDED_STREAMS)]
        blocks = [reader.take(length, "new Gaussians") for length in lengths]
        parts_codes.append(decode_codes(blocks, state.bits, n_added).astype(np.int64))
        parts_modes.append(np.full(n_added, ADDED, np.uint8))
        parts_deltas.append(np.zeros((n_added, _ATTRS), np.int32))
    if reader.pos != len(reader.payload):
        raise FormatError(f"{len(reader.payload) - reader.pos} bytes after the P-frame")
    codes = np.concatenate(parts_codes).astype(np.uint32)
    order = storage_order(codes, state.bits)
    return State(state.quantisers, np.ascontiguousarray(codes[order]),
                 np.concatenate(parts_modes).astype(np.uint8)[order],
                 np.ascontiguousarray(np.concatenate(parts_deltas)[order]))
