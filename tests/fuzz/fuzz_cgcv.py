"""The fuzz format ``cgcv``: .cgcv videos (docs/video-format.md), registered in
fuzz_formats.FORMATS like the other formats, whose helpers it uses (imported inside the
functions, so that either module may be imported first).

* Seeds: the golden video and small videos made without fitting: I-frames coded from
  random Gaussians with fixed code widths, P-frames from cgc.video.pframe.pack_p_frame with
  updates, removals, additions and global motions (one that moves Gaussians off the frame,
  zooms in and out), P-frames that change nothing, two groups of pictures, a one-pixel
  video, all from fixed random seeds.
* Map: the header, the index (each entry's fields and the entry as a chunk), each frame as
  a chunk; inside an I-frame, its .cgc file mapped as cgc-v3 maps it; inside a P-frame,
  its varints, delta widths and steps, and its streams.  A chunk or varint inside a frame
  has the frame's size and the later frames' offsets among its length fields.  The length
  of a P-frame stream is a varint: a one-byte one follows its stream as a u8 would (so a
  stream growing past 127 bytes garbles it), a longer one stays as it was.
* CRCs: each I-frame's whole-file CRC (or a layered one's CRCs), each frame's CRC in its
  index entry, the index's and the header's, wherever the entries say the frames are.
* Decode: the header and index (cgc.video.info), every frame in order (cgc.video.decode),
  then the last frame by seeking (decode_frame(-1), which starts at the last I-frame and
  so gets past damage before it) unless that would only repeat the sequence's work.
  Frames are rendered only while width x height x frames is at most RENDER_PIXELS; past
  that the decoder's states alone (cgc.video.decoder.next_state) are computed, so the
  parsers still see every frame."""
import zlib
from functools import lru_cache

import numpy as np

import cgc.video
from cgc.errors import FormatError
from cgc.image.codec import encode_gaussians
from cgc.image.container import MAX_GAUSSIANS, stream_names, unpack
from cgc.video.container import (CRC, HEADER, INDEX_ENTRY, INDEX_START, I_FRAME,
                                 MAX_FRAMES, P_FRAME, pack, read_index)
from cgc.video.decoder import next_state
from cgc.video.field import MAX_UNIT, Field as MotionField
from cgc.video.pframe import (MAX_ZOOM, N_ADDED_STREAMS, Motion, State, apply_p_frame,
                              moved_codes, pack_p_frame)

U32 = (1 << 32) - 1
RATES = (0, 1, 1001, 1 << 16, 1 << 31, U32)
FRAME_COUNTS = (0, 1, 2, MAX_FRAMES, MAX_FRAMES + 1, U32)
STREAM_LENGTHS = (0, 1, 2, 4, 5, 1 << 31, U32, 1 << 32)  # 2**32: not a 32-bit varint


# ----------------------------------------------------------------------------- map

def cgcv_walk(m):
    from fuzz_formats import SIDES, Field, Span

    m.skip(4)  # magic
    m.uint(2, "cgcv.version", (0, 1, 2, 0xFFFF))
    m.uint(2, "cgcv.flags", (1, 0x8000))
    width = m.uint(4, "cgcv.width", SIDES)
    height = m.uint(4, "cgcv.height", SIDES)
    m.uint(4, "cgcv.rate.numerator", RATES)
    m.uint(4, "cgcv.rate.denominator", RATES)
    count = m.uint(4, "cgcv.frames", FRAME_COUNTS)
    m.uint(4, "cgcv.header_crc")
    entries = []
    for _ in range(min(count, (m.limit - m.pos) // INDEX_ENTRY.size)):
        at = m.pos
        m.uint(8, "cgcv.frame.offset", (0, 1, INDEX_START, 1 << 63, (1 << 64) - 1))
        size = m.uint(4, "cgcv.frame.size", (0, 1, 4, 1 << 31, U32))
        kind = m.uint(1, "cgcv.frame.type", (0, 1, 2, 0xFF))
        m.uint(3, "cgcv.frame.reserved", (1, 1 << 23))
        m.uint(4, "cgcv.frame.crc")
        m.span(at, m.pos, "cgcv.entry")
        entries.append((at, size, kind))
    m.uint(4, "cgcv.index_crc")
    start, group = m.pos, None  # group: (bits, n) of the last I-frame
    for k, (at, size, kind) in enumerate(entries):
        # The frame's size and the later frames' offsets follow the frame's size.
        adjust = ((at + 8, 4),) + tuple((later, 8) for later, _, _ in entries[k + 1:])
        m.span(start, start + size, "cgcv.i_frame" if kind == I_FRAME else "cgcv.p_frame",
               adjust)
        if kind == I_FRAME:
            fields, spans, found = len(m.fields), len(m.spans), []
            m.attempt(_i_frame_walk, start, start + size, found)
            group = found[0] if found else group
            m.fields[fields:] = [Field(*f[:5], f.adjust + adjust) if f.kind == "varint"
                                 else f for f in m.fields[fields:]]
            m.spans[spans:] = [Span(*s[:3], s.adjust + adjust) for s in m.spans[spans:]]
        else:
            specials = _p_specials(*(group or ((8,) * 8, 0)), width * height)
            m.attempt(_p_frame_walk, start, start + size, specials, adjust)
        if start + size > m.limit:
            break
        start += size


def _i_frame_walk(m, start, end, found):
    """A .cgc file at [start, end), mapped as fuzz_formats maps a whole one."""
    from fuzz_formats import _cgc_head_walk, _cgc_streams_walk

    m.pos, m.limit = start, min(end, m.limit)
    version, n, bits = _cgc_head_walk(m)
    found.append((tuple(bits), n))
    m.limit = max(m.pos, m.limit - 4)  # the CRC
    names = stream_names(bits, version if version in (1, 2) else 3)
    _cgc_streams_walk(m, names, version, n)


@lru_cache(maxsize=64)
def _p_specials(bits, n, pixels):
    """{varint name: special values} of a P-frame in a group of ``n`` Gaussians coded with
    ``bits`` in a video of ``pixels`` pixels."""
    # The global motion's fields (zigzagged varints), each limited by its codes' levels or
    # the largest zoom: the values at and past +-limit.
    levels = [(1 << min(b, 32)) - 1 for b in bits]
    limits = Motion(x=levels[0], y=levels[1], zoom=MAX_ZOOM, l11=levels[2], l22=levels[4])
    specials = {"p.motion." + name: (0, 1, 2, 2 * top - 1, 2 * top, 2 * top + 1, 2 * top + 2,
                                     U32, 1 << 32)
                for name, top in limits._asdict().items()}
    counts = (0, 1, max(n - 1, 0), n, n + 1, MAX_GAUSSIANS, U32)
    specials["p.updated"] = counts
    specials["p.removed"] = counts
    specials["p.added"] = (0, 1, max(pixels - n, 0), pixels - n + 1, MAX_GAUSSIANS,
                           MAX_GAUSSIANS + 1, U32)
    return specials


def _p_frame_walk(m, start, end, specials, adjust):
    """A P-frame at [start, end); ``adjust``: the frame's size and the later offsets."""
    m.pos, m.limit = start, min(end, m.limit)
    names = list(specials)  # the motion's five, then the counts
    for name in names[:len(Motion._fields)]:
        m.varint(name, specials[name], adjust)
    cols = m.uint(1, "p.field_cols", (0, 1, 2, 0xFF))
    rows = m.uint(1, "p.field_rows", (0, 1, 2, 0xFF))
    if cols or rows:  # a motion field: two units, its length, its bits
        for _ in range(2):
            m.varint("p.field_unit", (0, 1, 2, MAX_UNIT, MAX_UNIT + 1, U32), adjust)
        length_at = m.pos
        length = m.varint("p.field_length", STREAM_LENGTHS, adjust)
        field_adjust = ((length_at, 1),) + adjust if m.data[length_at] < 0x80 else adjust
        m.span(m.pos, m.pos + length, "cgcv.field", field_adjust)
        m.skip(length)
    for name in names[len(Motion._fields):]:
        m.varint(name, specials[name], adjust)
    for _ in range(8):
        m.uint(1, "p.delta_width", (0, 1, 8, 9, 15, 16, 17, 0xFF))
    for _ in range(8):
        m.uint(1, "p.step", (0, 1, 2, 0xFE, 0xFF))
    length_at = m.pos
    length = m.varint("p.stream_length", STREAM_LENGTHS, adjust)
    _p_stream_walk(m, length_at, length, "cgcv.modes", adjust)
    if m.pos < m.limit:  # the new Gaussians' streams, after their lengths
        length_ats, lengths = [], []
        for _ in range(N_ADDED_STREAMS):
            length_ats.append(m.pos)
            lengths.append(m.varint("p.added_length", STREAM_LENGTHS, adjust))
        for length_at, length in zip(length_ats, lengths):
            _p_stream_walk(m, length_at, length, "cgc.stream", adjust)


def _p_stream_walk(m, length_at, length, kind, adjust):
    """A stream of ``length`` bytes from here, whose length is the varint at
    ``length_at``."""
    start = m.pos
    if m.data[length_at] < 0x80:
        adjust = ((length_at, 1),) + adjust
    m.span(start, start + length, kind, adjust)
    if length:  # a range-coded stream starts with a 0 byte
        m.uint(1, "stream.first_byte", (1, 0x80))
    m.pos = start
    m.skip(length)


# ----------------------------------------------------------------------------- CRCs

def fix_cgcv_crcs(data):
    """Every CRC of a .cgcv where its header and index locate them: each I-frame's own,
    each frame's, the index's and the header's.  Never raises; what it cannot locate
    (an index past the end, a frame beyond the file) it leaves."""
    from fuzz_formats import fix_cgc_crc, fix_cgc_layer_crcs

    if len(data) < INDEX_START:
        return data
    out = bytearray(data)
    count = HEADER.unpack_from(out)[-1]
    count = min(count, (len(out) - INDEX_START) // INDEX_ENTRY.size)
    for k in range(count):
        at = INDEX_START + INDEX_ENTRY.size * k
        offset, size, kind, _, _ = INDEX_ENTRY.unpack_from(out, at)
        if offset + size > len(out):
            continue
        if kind == I_FRAME and size >= 8:
            frame = bytes(out[offset:offset + size])
            layered = frame[4:6] == b"\x04\x00"  # version 4: a CRC per part
            out[offset:offset + size] = (fix_cgc_layer_crcs if layered else fix_cgc_crc)(frame)
        crc = zlib.crc32(out[offset:offset + size])
        out[at + INDEX_ENTRY.size - 4:at + INDEX_ENTRY.size] = CRC.pack(crc)
    end = INDEX_START + INDEX_ENTRY.size * HEADER.unpack_from(out)[-1]
    if end + CRC.size <= len(out):
        out[end:end + CRC.size] = CRC.pack(zlib.crc32(out[INDEX_START:end]))
    out[HEADER.size:INDEX_START] = CRC.pack(zlib.crc32(out[:HEADER.size]))
    return bytes(out)


# ----------------------------------------------------------------------------- decode

def decode_cgcv(data):
    """The header and index, every frame in order, then the last frame by seeking, when
    the seek does more than repeat the sequence: when it starts at a later I-frame than
    the first, and, if a frame was damaged, past that frame."""
    from fuzz_formats import RENDER_PIXELS

    described = cgc.video.info(data)
    described.bits_per_second, described.bits_per_pixel  # info's arithmetic
    index = read_index(data)
    seek = index.i_frame_before(len(index.frames) - 1)  # where decode_frame(-1) starts
    render = index.width * index.height * len(index.frames) <= RENDER_PIXELS
    decoded = 0  # frames decoded in order
    try:
        for _ in cgc.video.decode(data) if render else _states(data, index, 0):
            decoded += 1
    except FormatError:
        if seek > decoded:
            _last_frame(data, index, seek, render)
        raise
    if seek > 0:
        _last_frame(data, index, seek, render)


def _last_frame(data, index, seek, render):
    if render:
        cgc.video.decode_frame(data, -1)
    else:
        for _ in _states(data, index, seek):
            pass


def _states(data, index, first):
    """The decoder's states from frame ``first`` (an I-frame) on, without rendering."""
    state = None
    for k in range(first, len(index.frames)):
        state = next_state(data, index, k, state)
        yield state.gaussians(index.height, index.width)


# ----------------------------------------------------------------------------- seeds

def cgcv_seeds():
    """The golden video and small videos of every kind of frame (module docstring)."""
    from fuzz_formats import _golden

    rng = np.random.default_rng(5150)
    small = (8, 7, 6, 6, 6, 6, 5, 5)
    wide = (16, 16, 9, 9, 9, 10, 8, 8)
    nothing = {"changed": 0, "removed": 0, "added": 0}
    return [
        _golden("small.cgcv"),
        # An I-frame alone; I P P with updates, removals, additions and motions.
        _video(rng, 23, 17, [("I", 30, small)]),
        _video(rng, 23, 17, [("I", 30, small), ("P", {}),
                             ("P", {"motion": {"x": 3, "y": -2},
                                    "steps": (1, 1, 2, 1, 1, 1, 1, 3)})]),
        # I P I P: the second group has its own widths.
        _video(rng, 31, 12, [("I", 25, small), ("P", {"changed": 8}),
                             ("I", 40, (10, 9, 7, 5, 8, 6, 6, 4)),
                             ("P", {"added": 5, "attributes": (0, 1, 5)})]),
        # A motion taking about half of the Gaussians off the frame, a P-frame that changes
        # nothing, one that only moves, one that zooms out.
        _video(rng, 20, 20, [("I", 36, small), ("P", {"motion": {"x": -128}}),
                             ("P", nothing), ("P", dict(nothing, motion={"y": 60})),
                             ("P", {"motion": {"zoom": -20000, "l11": -3, "l22": -2}})]),
        # Motion fields (.cgcv version 2): one cell, a grid, a field with a global motion.
        _video(rng, 40, 24, [("I", 40, small), ("P", {"field": (1, 1)}),
                             ("P", {"field": (5, 3), "changed": 3}),
                             ("P", {"field": (2, 2), "motion": {"x": 6, "zoom": 900}})]),
        # One pixel, one Gaussian of 1-bit codes: every frame replaces or updates it.
        _video(rng, 1, 1, [("I", 1, (1,) * 8),
                           ("P", {"changed": 0, "removed": 1, "added": 1}),
                           ("P", {"changed": 1, "removed": 0, "added": 0})]),
        # A thin image with wide codes, large deltas, steps up to 255, a zoom in.
        _video(rng, 300, 7, [("I", 50, wide),
                             ("P", {"spread": 3000, "steps": (1, 255, 7, 1, 2, 3, 1, 1)}),
                             ("P", {"spread": 40000, "motion": {
                                 "x": 5000, "y": 1, "zoom": 1500, "l11": 3, "l22": 1}})]),
    ]


def _video(rng, width, height, frames, rate=(30, 1)):
    """A .cgcv of ``frames``: ("I", Gaussian count, code widths) or ("P", options of
    ``_p_frame``)."""
    from fuzz_formats import _random_gaussians

    packed, state = [], None
    for kind, *spec in frames:
        if kind == "I":
            n, bits = spec
            payload = encode_gaussians(_random_gaussians(rng, n, height, width), bits)
            packed.append((I_FRAME, payload))
            state = State.intra(unpack(payload))
        else:
            payload = _p_frame(rng, state, **spec[0])
            packed.append((P_FRAME, payload))
            state = apply_p_frame(state, payload, height, width)
    return pack(width, height, rate, packed)


def _p_frame(rng, state, changed=6, removed=1, added=2, motion=None, steps=(1,) * 8,
             attributes=tuple(range(8)), spread=40, field=None):
    """A P-frame moving ``state`` by ``motion`` ({field: codes}, the others 0) and a
    motion field of ``field`` (cols, rows) cells of random vectors (None: no field),
    changing the codes of ``attributes`` of ``changed`` Gaussians by up to ``spread``
    (rounded to ``steps``), removing ``removed`` others and adding ``added``."""
    motion = Motion(**{name: (motion or {}).get(name, 0) for name in Motion._fields})
    n = len(state)
    levels = np.array([q.levels for q in state.quantisers], np.int64)
    if field is not None:
        cols, rows = field
        units = (max(1, int(levels[0]) // 64), max(1, int(levels[1]) // 64))
        field = MotionField(cols, rows, units, rng.integers(-4, 5, (rows, cols, 2)))
    target, _ = moved_codes(state, motion, field)
    picked = rng.permutation(n)
    edit = np.zeros((changed, 8), np.int64)
    columns = list(attributes)
    edit[:, columns] = rng.integers(-spread, spread + 1, (changed, len(columns)))
    target[picked[:changed]] += edit
    gone = np.zeros(n, bool)
    gone[picked[changed:changed + removed]] = True
    new = rng.integers(0, levels + 1, (added, 8)).astype(np.uint32)
    return pack_p_frame(state, target, gone, new, steps, motion, field)
