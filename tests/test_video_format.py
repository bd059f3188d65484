"""The .cgcv format (docs/video-format.md): container, P-frames against hand-computed states,
the golden file, and damaged files of every kind."""
import math
import os
import struct
import zlib
from fractions import Fraction

import numpy as np
import pytest

from cgc.errors import FormatError
from cgc.image.codec import encode_gaussians
from cgc.image.container import storage_order, unpack
from cgc.video import decode, decode_frame, info
from cgc.video.container import (CRC, HEADER, INDEX_ENTRY, INDEX_START, I_FRAME, MAGIC,
                                 MAX_FRAMES, P_FRAME, pack, read_index)
from cgc.video.field import NO_FIELD, Field
from cgc.video.pframe import (ADDED, KEEP, REMOVE, UPDATE, Motion, State, apply_p_frame,
                              moved_codes, pack_p_frame)
from cgc.varint import unzigzag, varint, zigzag
from cgc_files import golden_gaussians
from golden_files import check_golden

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "small.cgcv")
GOLDEN_V1 = os.path.join(os.path.dirname(__file__), "golden", "small_v1.cgcv")
# The golden file's second P-frame moves its Gaussians by a 2x2 motion field too.
GOLDEN_FIELD = Field(2, 2, (3, 2), np.array([[[1, 0], [0, -2]], [[3, 1], [0, 0]]]))
GOLDEN_BITS = (12, 9, 7, 8, 6, 7, 5, 2)  # as tests/golden/small.cgc
REGEN_HINT = ("run `python -m pytest tests/test_video_format.py --regen-golden` to rewrite "
              "it, but only for an intended format change")
WIDTH, HEIGHT = 23, 17
MOTION = ("mx", "my", "zoom", "l11", "l22")  # the P-frame's first five fields


def i_frame():
    return encode_gaussians(golden_gaussians(), GOLDEN_BITS)


def i_state():
    return State.intra(unpack(i_frame()))


def moved(state, motion):
    """The state's codes moved as docs/video-format.md says, in exact fractions here:
    positions zoomed about the middle of their range, rounded half up, then shifted; l11
    and l22 shifted and clipped."""
    mx, my, zoom, s11, s22 = motion
    levels = [q.levels for q in state.quantisers]
    scale = Fraction(65536 + zoom, 65536)
    codes = state.codes.astype(np.int64)
    for column, shift in ((0, mx), (1, my)):
        half = Fraction(levels[column], 2)
        codes[:, column] = [shift + math.floor(scale * (k - half) + half + Fraction(1, 2))
                            for k in codes[:, column]]
    for column, shift in ((2, s11), (4, s22)):
        codes[:, column] = np.clip(codes[:, column] + shift, 0, levels[column])
    return codes


def p_edit(state, seed, motion=(0, 0, 0, 0, 0)):
    """A P-frame's inputs: updates to a few Gaussians (some past their codes' range), one
    removed, two added; with the codes the test expects, worked out here by hand."""
    rng = np.random.default_rng(seed)
    n = len(state)
    levels = np.array([q.levels for q in state.quantisers])
    target = moved(state, motion)
    changed = rng.choice(n, 6, replace=False)
    target[changed] += rng.integers(-40, 41, (6, 8))
    removed = np.zeros(n, bool)
    removed[rng.choice(np.setdiff1d(np.arange(n), changed), 1)] = True
    added = rng.integers(0, levels + 1, (2, 8)).astype(np.uint32)
    return target, removed, added


def test_zigzag_round_trip():
    values = np.array([0, -1, 1, -2, 2, -32767, 32767])
    assert zigzag(values).tolist() == [0, 1, 2, 3, 4, 65533, 65534]
    assert unzigzag(zigzag(values)).tolist() == values.tolist()


@pytest.mark.parametrize("step", [1, 3])
def test_p_frame_gives_the_hand_computed_state(step):
    state = i_state()
    target, removed, added = p_edit(state, seed=step)
    payload = pack_p_frame(state, target, removed, added, [step] * 8)
    after = apply_p_frame(state, payload, HEIGHT, WIDTH)
    levels = np.array([q.levels for q in state.quantisers])
    ref = state.codes.astype(np.int64)
    # Each change rounded to a multiple of the step, the largest such within [0, levels]
    # where it would leave them.
    delta = np.clip(np.round((target - ref) / step), -(ref // step), (levels - ref) // step)
    expected = ref + step * delta
    assert np.all((expected >= 0) & (expected <= levels))
    keep = ~removed
    rows = np.concatenate([expected[keep], added.astype(np.int64)])
    order = np.argsort(_keys(rows, state), kind="stable")
    assert after.codes.tolist() == rows[order].tolist()
    modes = np.where(np.any(expected != ref, axis=1), UPDATE, KEEP)[keep]
    assert after.modes.tolist() == np.concatenate([modes, [ADDED, ADDED]])[order].tolist()
    assert after.quantisers == state.quantisers
    fields = p_fields(payload)
    assert (fields["updated"], fields["removed"], fields["added"]) == (
        int((modes == UPDATE).sum()), 1, 2)


def _varint(data, pos):
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def p_fields(payload):
    """The fields of a P-frame as docs/video-format.md lays them out, read here."""
    fields, pos = {}, 0
    for name in MOTION:
        fields[name], pos = _varint(payload, pos)
    start = pos  # the motion field: cols, rows, then (if any) two units and the bits
    if payload[pos] or payload[pos + 1]:
        pos += 2
        for _ in range(2):
            _, pos = _varint(payload, pos)
        length, pos = _varint(payload, pos)
        pos += length
    else:
        pos += 2
    fields["field"] = bytes(payload[start:pos])
    for name in ("updated", "removed", "added"):
        fields[name], pos = _varint(payload, pos)
    for name in MOTION:
        fields[name] = int(unzigzag(fields[name]))
    fields["widths"] = list(payload[pos:pos + 8])
    fields["steps"] = list(payload[pos + 8:pos + 16])
    length, pos = _varint(payload, pos + 16)
    fields["stream"] = bytes(payload[pos:pos + length])
    fields["rest"] = bytes(payload[pos + length:])
    return fields


def p_payload(fields):
    """A P-frame made of ``fields`` (p_fields' dict), whatever their values."""
    return b"".join([varint(zigzag(fields[name])) for name in MOTION] + [fields["field"]]
                    + [varint(fields["updated"]), varint(fields["removed"]),
                     varint(fields["added"]), bytes(fields["widths"]),
                     bytes(fields["steps"]), varint(len(fields["stream"])),
                     fields["stream"], fields["rest"]])


def _keys(codes, state):
    """Position keys written out as docs/format.md defines them: x and y bits interleaved
    from the top, x first while it has at least as many bits left."""
    xb, yb = state.quantisers[0].bits, state.quantisers[1].bits
    keys = []
    for x, y in codes[:, :2]:
        key, xl, yl = 0, xb, yb
        while xl or yl:
            if xl >= yl:
                xl -= 1
                key = 2 * key + ((int(x) >> xl) & 1)
            else:
                yl -= 1
                key = 2 * key + ((int(y) >> yl) & 1)
        keys.append(key)
    return np.array(keys, dtype=np.uint64)


def test_motion_moves_every_gaussian_and_drops_those_leaving():
    state = i_state()
    motion = (300, -2, 3000, 2, -1)  # a zoom of 1 + 3000 / 65536, about 4.6 %
    target = moved(state, motion)
    payload = pack_p_frame(state, target, np.zeros(len(state), bool),
                           np.zeros((0, 8), np.uint32), [1] * 8, motion)
    after = apply_p_frame(state, payload, HEIGHT, WIDTH)
    levels = np.array([q.levels for q in state.quantisers])
    inside = np.all((target[:, :2] >= 0) & (target[:, :2] <= levels[:2]), axis=1)
    assert 0 < inside.sum() < len(state)
    expected = target[inside]
    assert sorted(map(tuple, after.codes.tolist())) == sorted(map(tuple, expected.tolist()))
    assert np.all(after.modes == KEEP)  # moved by the motion alone
    fields = p_fields(payload)
    assert tuple(fields[name] for name in MOTION + ("updated", "removed", "added")) == (
        300, -2, 3000, 2, -1, 0, 0, 0)


def golden_bytes():
    state = i_state()
    frames = [(I_FRAME, i_frame())]
    for k, (motion, field) in enumerate([((0, 0, 0, 0, 0), NO_FIELD),
                                         ((40, -20, 1500, 1, -1), GOLDEN_FIELD)]):
        target, removed, added = p_edit(state, seed=10 + k, motion=motion)
        target = moved_codes(state, Motion(*motion), field)[0] + (target - moved(state, motion))
        payload = pack_p_frame(state, target, removed, added, [1, 1, 2, 1, 1, 1, 1, 1],
                               motion, field)
        frames.append((P_FRAME, payload))
        state = apply_p_frame(state, payload, HEIGHT, WIDTH)
    frames.append((I_FRAME, i_frame()))
    return pack(WIDTH, HEIGHT, (30000, 1001), frames)


def test_golden_file(request):
    golden = check_golden(request, GOLDEN, golden_bytes(), REGEN_HINT)
    assert HEADER.unpack_from(golden) == (MAGIC, 2, 0, WIDTH, HEIGHT, 30000, 1001, 4)
    assert p_fields(_frame_payload(golden, 2))["field"][:2] == b"\x02\x02"
    index = read_index(golden)
    assert [f.type for f in index.frames] == [I_FRAME, P_FRAME, P_FRAME, I_FRAME]
    assert index.frames[0].offset == INDEX_START + 4 * INDEX_ENTRY.size + CRC.size
    assert bytes(golden[index.frames[0].offset:][:index.frames[0].size]) == i_frame()
    frames = list(decode(golden))
    assert len(frames) == 4 and frames[0].shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(frames[0], frames[3])  # the same I-frame twice
    described = info(golden)
    assert (described.frames, described.i_frames, described.p_frames) == (4, 2, 2)
    assert described.rate == (30000, 1001)


def test_version_1_files_still_decode():
    """Version 1's P-frames have no motion field: the version-1 golden file decodes as the
    same frames rewritten as version 2 with an empty field (two zero bytes after the global
    motion)."""
    with open(GOLDEN_V1, "rb") as f:
        old = f.read()
    assert HEADER.unpack_from(old)[1] == 1
    index = read_index(old)
    frames = []
    for k, frame in enumerate(index.frames):
        payload = _frame_payload(old, k)
        if frame.type == P_FRAME:
            pos = 0
            for _ in MOTION:
                _, pos = _varint(payload, pos)
            payload = payload[:pos] + bytes(2) + payload[pos:]
        frames.append((frame.type, payload))
    new = pack(WIDTH, HEIGHT, (30000, 1001), frames)
    assert [f.type for f in index.frames] == [I_FRAME, P_FRAME, P_FRAME, I_FRAME]
    for a, b in zip(decode(old), decode(new), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(decode_frame(old, 2), decode_frame(new, 2))


def test_seeking_decodes_as_the_sequence_does():
    data = golden_bytes()
    frames = list(decode(data))
    for k in range(len(frames)):
        assert np.array_equal(decode_frame(data, k), frames[k])
    assert np.array_equal(decode_frame(data, -1), frames[-1])
    with pytest.raises(ValueError, match="out of range"):
        decode_frame(data, len(frames))


def with_index_crc(data, count):
    end = INDEX_START + INDEX_ENTRY.size * count
    return data[:end] + CRC.pack(zlib.crc32(data[INDEX_START:end])) + data[end + 4:]


def with_frame(data, k, payload):
    """``data`` with frame ``k`` replaced by ``payload``: offsets, sizes and CRCs fixed."""
    index = read_index(data)
    frames = [(f.type, data[f.offset:f.offset + f.size]) for f in index.frames]
    frames[k] = (frames[k][0], payload)
    return pack(index.width, index.height, index.rate, frames)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_a_damaged_frame_is_named_after_the_frames_before_it(k):
    data = bytearray(golden_bytes())
    frame = read_index(bytes(data)).frames[k]
    data[frame.offset + frame.size // 2] ^= 0x10
    frames = decode(bytes(data))
    for _ in range(k):
        assert next(frames).shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(FormatError, match=f"frame {k} .*checksum"):
        next(frames)


def _frame_payload(data, k):
    frame = read_index(data).frames[k]
    return bytes(data[frame.offset:frame.offset + frame.size])


def _set(name, value):
    def edit(fields):
        fields[name] = value
    return edit


def _width(a, value):
    def edit(fields):
        fields["widths"][a] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("updated", 10 ** 6), "updated"),
    (_set("added", 10 ** 6), "count"),
    (_set("mx", 1 << 20), "motion"),
    (_set("zoom", 1 << 15 | 1), "motion"),
    (_width(0, 17), "16 bits"),
    (lambda f: f["steps"].__setitem__(2, 0), "step of 0"),
    (lambda f: f.__setitem__("stream", f["stream"][:3] + b"\xff\xff" + f["stream"][5:]),
     "stream|disagree|range"),
    (lambda f: f.__setitem__("stream", f["stream"][:-1]), "stream"),
    (lambda f: f.__setitem__("rest", f["rest"][:-1]), "truncated|invalid"),
    (lambda f: f.__setitem__("rest", f["rest"] + b"\x00"), "bytes after"),
])
def test_damaged_p_frames_with_valid_crcs_are_refused(edit, message):
    data = golden_bytes()
    fields = p_fields(_frame_payload(data, 1))
    assert fields["added"] > 0 and fields["updated"] > 0
    edit(fields)
    frames = decode(with_frame(data, 1, p_payload(fields)))
    next(frames)
    with pytest.raises(FormatError, match=f"frame 1 \\(P\\): .*({message})"):
        next(frames)


def test_p_frame_fields_are_read_as_specified():
    data = golden_bytes()
    payload = _frame_payload(data, 1)
    assert p_payload(p_fields(payload)) == payload
    with pytest.raises(FormatError, match="frame 1 \\(P\\): bad P-frame motion"):
        list(decode(with_frame(data, 1, b"\xff" * 6 + payload)))
    with pytest.raises(FormatError, match="frame 1 \\(P\\): truncated"):
        list(decode(with_frame(data, 1, payload[:4])))


def test_a_damaged_i_frame_with_valid_crcs_is_refused():
    data = golden_bytes()
    payload = _frame_payload(data, 3)  # the second I-frame
    with pytest.raises(FormatError, match="frame 3 \\(I\\)"):
        list(decode(with_frame(data, 3, bytes(payload[:-9]) + bytes(payload[-4:]))))
    other = encode_gaussians(golden_gaussians().resized(34, 46), GOLDEN_BITS)
    with pytest.raises(FormatError, match="frame 3 \\(I\\): a 46x34 I-frame"):
        list(decode(with_frame(data, 3, other)))


def test_header_and_index_are_checked_before_any_frame():
    data = golden_bytes()
    with pytest.raises(FormatError, match="magic"):
        decode(b"\x8bCGC" + data[4:])
    with pytest.raises(FormatError, match="truncated .cgcv header"):
        decode(data[:20])
    with pytest.raises(FormatError, match="header checksum"):
        decode(data[:12] + b"\x00" + data[13:])
    for cut in (len(data) - 1, INDEX_START + 30):
        with pytest.raises(FormatError, match="truncated|end at byte"):
            decode(data[:cut])
    with pytest.raises(FormatError, match="end at byte"):
        decode(data + b"\x00")


def with_header(data, **fields):
    names = ("magic", "version", "flags", "width", "height", "num", "den", "count")
    values = dict(zip(names, HEADER.unpack_from(data)))
    values.update(fields)
    head = HEADER.pack(*(values[k] for k in names))
    return head + CRC.pack(zlib.crc32(head)) + data[INDEX_START:]


@pytest.mark.parametrize("fields, message", [
    ({"version": 3}, "version 3"),
    ({"flags": 1}, "flags"),
    ({"width": 0}, "frame size"),
    ({"height": 40000}, "frame size"),
    ({"num": 0}, "rate of zero"),
    ({"count": 0}, "frame count 0"),
    ({"count": MAX_FRAMES + 1}, "frame count"),
    ({"count": MAX_FRAMES}, "truncated .cgcv index"),  # refused before any allocation
    ({"count": 3}, "index checksum"),
])
def test_absurd_headers_are_refused(fields, message):
    with pytest.raises(FormatError, match=message):
        decode(with_header(golden_bytes(), **fields))


def test_index_entries_are_checked():
    data = bytearray(golden_bytes())
    entry = INDEX_START + INDEX_ENTRY.size  # frame 1
    bad_type = bytearray(data)
    bad_type[entry + 12] = 7
    with pytest.raises(FormatError, match="frame 1: bad type"):
        decode(with_index_crc(bytes(bad_type), 4))
    p_first = bytearray(data)
    p_first[INDEX_START + 12] = P_FRAME
    with pytest.raises(FormatError, match="frame 0: bad type"):
        decode(with_index_crc(bytes(p_first), 4))
    reserved = bytearray(data)
    reserved[entry + 14] = 1
    with pytest.raises(FormatError, match="frame 1: reserved"):
        decode(with_index_crc(bytes(reserved), 4))
    bad_offset = bytearray(data)
    struct.pack_into("<Q", bad_offset, entry, 5)
    with pytest.raises(FormatError, match="frame 1: offset 5"):
        decode(with_index_crc(bytes(bad_offset), 4))


def test_writer_refuses_what_readers_would():
    frame = i_frame()
    with pytest.raises(ValueError, match="first frame"):
        pack(WIDTH, HEIGHT, 30, [(P_FRAME, b"")])
    with pytest.raises(ValueError, match="1 to"):
        pack(WIDTH, HEIGHT, 30, [])
    with pytest.raises(ValueError, match="frame rate"):
        pack(WIDTH, HEIGHT, 0, [(I_FRAME, frame)])
    with pytest.raises(ValueError, match="frame size"):
        pack(0, HEIGHT, 30, [(I_FRAME, frame)])
    state = i_state()
    with pytest.raises(ValueError, match="steps"):
        pack_p_frame(state, state.codes, np.zeros(len(state), bool), np.zeros((0, 8)),
                     [0] * 8)
    with pytest.raises(ValueError, match="motion"):
        pack_p_frame(state, state.codes, np.zeros(len(state), bool), np.zeros((0, 8)),
                     [1] * 8, (1 << 20, 0, 0, 0, 0))


def test_a_kept_frame_costs_little():
    state = i_state()
    payload = pack_p_frame(state, state.codes, np.zeros(len(state), bool),
                           np.zeros((0, 8), np.uint32), [1] * 8)
    after = apply_p_frame(state, payload, HEIGHT, WIDTH)
    assert np.array_equal(after.codes, state.codes[storage_order(state.codes, state.bits)])
    # Eight 1-byte varints (motion and counts), the two bytes of no motion field, widths
    # and steps, the stream's length and its 40 modes: the range coder's 5 bytes of ends
    # and about 5 of modes, whose models start at even odds.
    assert len(payload) <= 8 + 2 + 16 + 1 + 10
    assert not np.any(after.modes == REMOVE)
