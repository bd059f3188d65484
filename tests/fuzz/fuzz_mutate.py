"""Structure-aware mutations of the fuzz harness's seeds (fuzz_formats.py holds the
formats; bench/fuzz.py and tests/test_fuzz.py call ``generate``).

``generate(fmt, campaign_seed, index)`` is a pure function of its arguments (and of the
seeds, which are fixed): it picks a seed and applies one to a few mutations drawn from a
generator seeded by (format, campaign seed, index), so any input of a campaign can be made
again from its index.  Then it recomputes every CRC the format has (the whole-file CRC of
a .cgc, a stream's, a checkpoint index's and each of its streams'), except for
STALE_CRC_SHARE of the inputs, which keep the CRCs of their seed and test the checksum
path: with CRCs made valid, edits reach the parsers behind the checks.

Mutations: bit flips; bytes and integer windows set to boundary values; truncation;
extension with junk; splices of two seeds; insertion and removal of bytes; fields of the
map set to the values the spec's limits make interesting or nudged from their value;
chunks (streams, tiles, tables, records, a checkpoint's streams and JSON) resized, replaced
by chunks of the same kind from any seed of the format, swapped, removed or duplicated,
the length fields that describe them kept consistent (``Span.adjust``) or not; and per
format, edits that need its structure: a checkpoint's JSON header and list of streams, a
cgc.lossless stream's dimensions and version."""
import json
import math
import random
import struct
from typing import NamedTuple

from fuzz_formats import FLOATS, FORMATS, join_checkpoint, split_checkpoint

STALE_CRC_SHARE = 0.1
# How many mutations an input gets: mostly one, so most inputs stay close to a valid file.
MUTATION_COUNTS = (1, 1, 1, 1, 2, 2, 3, 4, 6)
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
FLOAT32_MAX = 3.4028234663852886e38


class Input(NamedTuple):
    data: bytes
    recipe: tuple  # names of the mutations applied, in order
    stale_crc: bool  # the CRCs were not recomputed after the mutations


def generate(fmt, campaign_seed, index, stale_crc=None):
    """Input ``index`` of the campaign ``campaign_seed`` of format ``fmt``; ``stale_crc``
    True or False overrides the draw of whether CRCs are left stale."""
    rng = random.Random(f"{fmt.name}/{campaign_seed}/{index}")
    data = rng.choice(fmt.seeds())
    recipe = []
    for _ in range(rng.choice(MUTATION_COUNTS)):
        mutators, weights = MUTATORS[fmt.name]
        mutate = rng.choices(mutators, weights)[0]
        data = mutate(rng, fmt, data)
        recipe.append(mutate.__name__)
    stale = rng.random() < STALE_CRC_SHARE
    if stale_crc is not None:
        stale = stale_crc
    return Input(data if stale else fmt.fix_crcs(data), tuple(recipe), stale)


# ----------------------------------------------------------------------------- helpers

def _boundaries(size):
    """Boundary integers of a field ``size`` bytes wide."""
    top = (1 << (8 * size)) - 1
    values = {0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, (1 << 31) - 1,
              1 << 31, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, top - 1, top}
    return sorted(v for v in values if v <= top)


def _varint(value, padding=0):
    """LEB128 of ``value``, with ``padding`` redundant 0x80 groups (an overlong encoding)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    if padding:
        out[-1] |= 0x80
        out += b"\x80" * (padding - 1) + b"\x00"
    return bytes(out)


def _add(data, fields, delta):
    """``data`` with ``delta`` added to each little-endian unsigned (offset, size) field,
    wrapping at the field's width (fields past the end are left alone)."""
    if not delta:
        return data
    out = bytearray(data)
    for offset, size in fields:
        if offset + size <= len(out):
            value = int.from_bytes(out[offset:offset + size], "little") + delta
            out[offset:offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
    return bytes(out)


def _replace(data, start, end, new, adjust):
    """``data`` with [start, end) replaced by ``new``, its length fields following."""
    out = data[:start] + new + data[end:]
    return _add(out, adjust, len(new) - (end - start))


def replace_span(data, span, new):
    """``data`` with chunk ``span`` replaced by ``new``, its length fields following."""
    return _replace(data, span.start, span.end, new, span.adjust)


def _junk(rng, size, data):
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(size)
    if kind == 1:
        return b"\xff" * size
    if kind == 2 and len(data) > size:
        start = rng.randrange(len(data) - size)
        return data[start:start + size]
    return rng.randbytes(size)


def _pick_span(rng, fmt, data, kind=None):
    spans = fmt.layout(data).spans
    if kind is not None:
        spans = [s for s in spans if s.kind == kind]
    return rng.choice(spans) if spans else None


def _pick_field(rng, fmt, data):
    """A field, its name drawn first, so that the many table entries and tile states do
    not crowd out the few header fields."""
    fields = fmt.layout(data).fields
    if not fields:
        return None
    name = rng.choice(sorted({f.name for f in fields}))
    return rng.choice([f for f in fields if f.name == name])


def _position(rng, fmt, data):
    """An offset in ``data``: half of the time inside a chunk, where the coded bytes are."""
    span = _pick_span(rng, fmt, data) if rng.random() < 0.5 else None
    if span is not None and span.end > span.start:
        return rng.randrange(span.start, span.end)
    return rng.randrange(len(data))


def _write_field(rng, data, field, value):
    if field.kind == "f32":
        if isinstance(value, float):  # out of float32's range: the infinity it rounds to
            value = value if abs(value) <= FLOAT32_MAX else math.copysign(math.inf, value)
            new = struct.pack("<f", value)
        else:  # a bit pattern
            new = (value & 0xFFFFFFFF).to_bytes(4, "little")
        return data[:field.offset] + new + data[field.offset + 4:]
    if field.kind == "varint":
        value = value % (1 << 70)
        new = _varint(value, rng.choice((1, 2)) if rng.random() < 0.1 else 0)
        return _replace(data, field.offset, field.offset + field.size, new, field.adjust)
    new = (value % (1 << (8 * field.size))).to_bytes(field.size, "little")
    return data[:field.offset] + new + data[field.offset + field.size:]


def _field_value(data, field):
    raw = data[field.offset:field.offset + field.size]
    if field.kind == "f32":
        return struct.unpack("<f", raw)[0]
    if field.kind == "varint":
        return sum((b & 0x7F) << (7 * k) for k, b in enumerate(raw))
    return int.from_bytes(raw, "little")


# ----------------------------------------------------------------------------- bytes

def flip_bits(rng, fmt, data):
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4))):
        out[_position(rng, fmt, data)] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_bytes(rng, fmt, data):
    """1 to 4 bytes in a row set to boundary values."""
    if not data:
        return data
    at = _position(rng, fmt, data)
    out = bytearray(data)
    for k in range(at, min(at + rng.randint(1, 4), len(out))):
        out[k] = rng.choice(INTERESTING_BYTES)
    return bytes(out)


def set_window(rng, fmt, data):
    """A 2-, 4- or 8-byte window anywhere read as a little-endian integer and set to a
    boundary value: fields the map does not know of."""
    size = rng.choice((2, 4, 8))
    if len(data) < size:
        return data
    at = rng.randrange(len(data) - size + 1)
    return data[:at] + rng.choice(_boundaries(size)).to_bytes(size, "little") + data[at + size:]


def truncate(rng, fmt, data):
    if not data:
        return data
    span = _pick_span(rng, fmt, data)
    choice = rng.randrange(3)
    if choice == 0 and span is not None:  # at a chunk boundary, give or take a byte
        end = rng.choice((span.start, span.end)) + rng.randint(-2, 2)
    elif choice == 1:
        end = len(data) - rng.randint(1, 16)
    else:
        end = rng.randrange(len(data))
    return data[:max(0, min(end, len(data) - 1))]


def extend(rng, fmt, data):
    return data + _junk(rng, rng.choice((1, 2, 4, 8, 64, 1000)), data)


def splice(rng, fmt, data):
    """The start of this file and the end of another seed of its format."""
    other = rng.choice(fmt.seeds())
    at = rng.randrange(len(data) + 1)
    cut = at if rng.random() < 0.5 and at <= len(other) else rng.randrange(len(other) + 1)
    return data[:at] + other[cut:]


def insert_or_delete(rng, fmt, data):
    """Bytes inserted or removed, no length field told."""
    at = _position(rng, fmt, data) if data else 0
    size = rng.choice((1, 1, 2, 3, 4, 8, 16))
    if rng.random() < 0.5:
        return data[:at] + _junk(rng, size, data) + data[at:]
    return data[:at] + data[at + size:]


# ----------------------------------------------------------------------------- fields

def set_field(rng, fmt, data):
    """A field set to a value its limits make interesting, or a boundary integer."""
    field = _pick_field(rng, fmt, data)
    if field is None:
        return data
    if field.kind == "f32":
        candidates = list(FLOATS) + [0x7F800001, 0xFFC00000]  # signalling and negative NaN
    else:
        width = 9 if field.kind == "varint" else field.size
        candidates = list(field.special) * 2 + _boundaries(width)
    return _write_field(rng, data, field, rng.choice(candidates))


def nudge_field(rng, fmt, data):
    """A field moved from its value: by one or a few, doubled, halved, negated."""
    field = _pick_field(rng, fmt, data)
    if field is None:
        return data
    value = _field_value(data, field)
    if field.kind == "f32":
        value = rng.choice((value * 2, value / 2, -value, value + 1, value - 1))
        return _write_field(rng, data, field, value)
    value = rng.choice((value + 1, value - 1, value + rng.randint(2, 16),
                        value - rng.randint(2, 16), value * 2, value // 2, -value))
    return _write_field(rng, data, field, value)


# ----------------------------------------------------------------------------- chunks

def resize_chunk(rng, fmt, data):
    """A chunk grown or shrunk inside (bytes cut, inserted or repeated), its length fields
    following."""
    span = _pick_span(rng, fmt, data)
    if span is None:
        return data
    content = data[span.start:span.end]
    at = rng.randint(0, len(content))
    size = rng.choice((1, 1, 2, 4, 16, len(content) // 2 + 1))
    kind = rng.randrange(4)
    if kind == 0:
        new = content[:at] + content[at + size:]
    elif kind == 1:
        new = content[:at] + _junk(rng, size, data) + content[at:]
    elif kind == 2:
        new = content[:at] + content[at:at + size] * rng.choice((2, 3)) + content[at + size:]
    else:
        new = content[:at]
    return replace_span(data, span, new)


def replace_chunk(rng, fmt, data):
    """A chunk replaced by one of the same kind from this file or another seed (or by
    nothing), its length fields following."""
    span = _pick_span(rng, fmt, data)
    if span is None:
        return data
    if rng.random() < 0.1:
        new = b""
    else:
        source = data if rng.random() < 0.5 else rng.choice(fmt.seeds())
        other = _pick_span(rng, fmt, source, span.kind)
        if other is None:
            return data
        new = source[other.start:other.end]
    return replace_span(data, span, new)


def swap_chunks(rng, fmt, data):
    """Two chunks of one kind swapped, the later first so that the earlier stays put."""
    span = _pick_span(rng, fmt, data)
    if span is None:
        return data
    other = _pick_span(rng, fmt, data, span.kind)
    first, second = sorted((span, other))
    if first.end > second.start:  # the same chunk, or nested ones
        return data
    a, b = data[first.start:first.end], data[second.start:second.end]
    data = replace_span(data, second, a)
    return replace_span(data, first, b)


def drop_or_repeat_chunk(rng, fmt, data):
    """A chunk removed or repeated, its length fields left as they were."""
    span = _pick_span(rng, fmt, data)
    if span is None:
        return data
    content = data[span.start:span.end]
    if rng.random() < 0.5:
        return data[:span.start] + data[span.end:]
    return data[:span.end] + content + data[span.end:]


# ----------------------------------------------------------------------------- per format

def edit_dimensions(rng, fmt, data):
    """A cgc.lossless stream with a dimension added or removed (ndim following, or not)."""
    if len(data) < 13 or data[4] not in (1, 2):
        return data
    shape_at = 13 if data[4] == 2 else 12
    ndim = data[6]
    at = shape_at + 8 * rng.randint(0, ndim)
    if rng.random() < 0.5 or ndim == 0:
        dim = rng.choice((0, 1, 2, 1 << 32, (1 << 64) - 1)).to_bytes(8, "little")
        data, ndim = data[:at] + dim + data[at:], ndim + 1
    else:
        at = min(at, shape_at + 8 * (ndim - 1))
        data, ndim = data[:at] + data[at + 8:], ndim - 1
    if rng.random() < 0.9:
        data = data[:6] + bytes((ndim % 256,)) + data[7:]
    return data


def change_version(rng, fmt, data):
    """A cgc.lossless stream turned into the other version: the layout byte removed (2 to
    1) or a layout byte added (1 to 2)."""
    if len(data) < 13 or data[4] not in (1, 2):
        return data
    if data[4] == 2:
        return data[:4] + b"\x01" + data[5:12] + data[13:]
    return data[:4] + b"\x02" + data[5:12] + bytes((rng.choice((0, 1, 2)),)) + data[12:]


# Values a JSON header's numbers and strings are set to.
JSON_VALUES = (0, 1, 2, -1, 1 << 31, 1 << 32, 1 << 63, 1 << 64, 10 ** 30, True, False, 1.5,
               "3", None, [], {})
DTYPES = ("F32", "F16", "BF16", "I16", "U16", "I8", "U8", "F64", "I64", "U64", "I32", "U32",
          "BOOL", "F8_E4M3", "F8_E5M2", "Q7", "", 7)


def edit_json(rng, fmt, data):
    """A checkpoint's safetensors header edited as JSON (a tensor's dtype, shape or
    offsets changed, a tensor removed, duplicated or made a non-object, the metadata
    changed, the whole header replaced; now and then the text cut short or nested past
    any parser's depth), its size following; the file size follows too, so that the
    buffer keeps its size, except now and then."""
    parts, header = _parsed(data)
    if header is None:
        return data
    _edit_header(rng, header)
    text = json.dumps(header).encode()
    if rng.random() < 0.05:
        text = text[:rng.randrange(len(text) + 1)] + _junk(rng, 2, text)
    elif rng.random() < 0.02:
        depth = rng.choice((1000, 100_000))
        text = text[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    return _with_header(rng, parts, text)


def _parsed(data):
    """(the checkpoint's parts, its JSON header as a dict), or (None, None)."""
    parts = split_checkpoint(data)
    if parts is None:
        return None, None
    try:
        header = json.loads(parts.header)
    except (ValueError, RecursionError):
        return None, None
    return (parts, header) if isinstance(header, dict) else (None, None)


def _with_header(rng, parts, text):
    file_size = parts.file_size
    if rng.random() < 0.9:
        file_size = max(0, file_size + len(text) - len(parts.header))
    return join_checkpoint(parts._replace(header=text, file_size=file_size))


def reshape_tensor(rng, fmt, data):
    """A tensor given a new shape in the JSON and in its stream's header together, so that
    the checkpoint stays consistent up to the decode: an empty tensor a dimension of up to
    2**64 - 1, a matrix its elements as one row."""
    parts, header = _parsed(data)
    if header is None:
        return data
    segments = _tensor_segments(header, parts.file_size - 8 - len(parts.header))
    if not segments or len(segments) != len(parts.streams):
        return data
    k = rng.choice([k for k, name in enumerate(segments) if name is not None] or [0])
    entry = header.get(segments[k])
    stream = parts.streams[k]
    if not isinstance(entry, dict) or len(stream) < 29 or stream[4] != 2 or stream[6] != 2:
        return data
    rows, cols = struct.unpack_from("<QQ", stream, 13)
    if rows * cols == 0:
        huge = rng.choice(((1 << 62) + 1, 1 << 63, (1 << 64) - 1))
        shape, matrix = ([0, huge], (0, huge)) if rng.random() < 0.5 else ([huge, 0], (0, 0))
    elif rows * cols < 1 << 64:
        shape, matrix = [rows * cols], (1, rows * cols)
    else:
        return data
    entry["shape"] = shape
    streams = list(parts.streams)
    streams[k] = stream[:13] + struct.pack("<QQ", *matrix) + stream[29:]
    return _with_header(rng, parts._replace(streams=streams), json.dumps(header).encode())


def _tensor_segments(header, buffer_size):
    """The names of the segments of a checkpoint's buffer in order (None for bytes no
    tensor covers), or None for a header whose tensors are not well formed."""
    try:
        tensors = sorted(((e["data_offsets"][0], e["data_offsets"][1], name)
                          for name, e in header.items() if name != "__metadata__"),
                         key=lambda t: (t[0], t[1]))
    except (TypeError, KeyError, IndexError):
        return None
    names, at = [], 0
    for begin, end, name in tensors:
        if not (isinstance(begin, int) and isinstance(end, int)):
            return None
        if begin > at:
            names.append(None)
        names.append(name)
        at = max(at, end)
    return names + [None] if at < buffer_size else names


def _edit_header(rng, header):
    names = [k for k in header if k != "__metadata__"]
    op = rng.randrange(9)
    if op == 8 or not names:
        header["__metadata__"] = rng.choice(({"k": "v"}, {"k": 5}, [], "text", None))
        return
    name = rng.choice(names)
    entry = header[name]
    if op == 0:
        del header[name]
    elif op == 1:
        header[name + "'"] = json.loads(json.dumps(entry))  # overlaps the original
    elif op == 2:
        header[name] = rng.choice(JSON_VALUES)
    elif not isinstance(entry, dict):
        return
    elif op == 3:
        entry["dtype"] = rng.choice(DTYPES)
    elif op == 4 and isinstance(entry.get("shape"), list):
        shape = entry["shape"]
        if shape and rng.random() < 0.6:
            shape[rng.randrange(len(shape))] = rng.choice(JSON_VALUES[:13])
        elif shape and rng.random() < 0.5:
            shape.pop(rng.randrange(len(shape)))
        else:
            shape.insert(rng.randint(0, len(shape)), rng.choice((0, 1, 2, 1 << 40)))
    elif op == 5 and isinstance(entry.get("data_offsets"), list):
        offsets = entry["data_offsets"]
        if offsets and rng.random() < 0.7:
            k = rng.randrange(len(offsets))
            offsets[k] = rng.choice(JSON_VALUES[:12] + (offsets[k] + 1, offsets[k] - 1))
        else:
            entry["data_offsets"] = offsets[::-1] + offsets[:rng.randint(0, 1)]
    elif op == 6:
        entry.pop(rng.choice(("dtype", "shape", "data_offsets")), None)
    else:
        entry[rng.choice(("dtype", "shape", "data_offsets"))] = rng.choice(JSON_VALUES)


def mutate_stream(rng, fmt, data):
    """One of a checkpoint's streams mutated as a cgcl file (its CRC is fixed with the
    checkpoint's), its size following."""
    span = _pick_span(rng, fmt, data, "cgcs.stream")
    if span is None:
        return data
    inner = FORMATS["cgcl"]
    mutators, weights = MUTATORS[inner.name]
    mutate = rng.choices(mutators, weights)[0]
    new = mutate(rng, inner, data[span.start:span.end])
    return replace_span(data, span, new)


def edit_streams(rng, fmt, data):
    """A checkpoint's streams: one removed, repeated, swapped with another, or replaced by
    a stream of another seed, the count and sizes following."""
    parts = split_checkpoint(data)
    if parts is None:
        return data
    streams = list(parts.streams)
    op = rng.randrange(4)
    k = rng.randrange(len(streams)) if streams else 0
    if op == 0 and streams:
        del streams[k]
    elif op == 1 and streams:
        streams.insert(k, streams[k])
    elif op == 2 and len(streams) > 1:
        j = rng.randrange(len(streams))
        streams[k], streams[j] = streams[j], streams[k]
    else:
        other = split_checkpoint(rng.choice(fmt.seeds()))
        if other.streams:
            replacement = rng.choice(other.streams)
            streams[k:k + 1] = [replacement]
    return join_checkpoint(parts._replace(streams=streams))


_GENERIC = ((flip_bits, 10), (set_bytes, 8), (set_window, 4), (truncate, 4), (extend, 3),
            (splice, 3), (insert_or_delete, 3), (set_field, 22), (nudge_field, 10),
            (resize_chunk, 10), (replace_chunk, 10), (swap_chunks, 3),
            (drop_or_repeat_chunk, 3))
_EXTRA = {"cgcl": ((edit_dimensions, 3), (change_version, 1)),
          "cgcs": ((mutate_stream, 60), (edit_json, 15), (edit_streams, 5),
                   (reshape_tensor, 3))}
MUTATORS = {name: tuple(zip(*(_GENERIC + _EXTRA.get(name, ()))))
            for name in ("cgc-v1", "cgc-v2", "cgc-v3", "cgc-v4", "cgcl", "cgcs", "cgcv")}
