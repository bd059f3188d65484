"""cgc.lossless.checkpoint: safetensors files in, the same bytes out."""
import json
import struct

import numpy as np
import pytest

import cgc.lossless.checkpoint as checkpoint
from cgc.cli import main
from cgc.errors import FormatError
from cuda_emu.providers import Poisoned


def safetensors_file(tensors, buffer, metadata=None, pad_to=8):
    """A safetensors file from {name: (dtype, shape, begin, end)} and the raw buffer,
    written by the format's rules (header padded with spaces to a multiple of pad_to)."""
    header = {name: {"dtype": d, "shape": s, "data_offsets": [b, e]}
              for name, (d, s, b, e) in tensors.items()}
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % pad_to)
    return struct.pack("<Q", len(text)) + text + bytes(buffer)


def mixed_file():
    return mixed_checkpoint()[0]


def mixed_checkpoint():
    """(file, {name: (safetensors dtype, array)}): every dtype cgc.lossless codes, others
    it stores as bytes, an unknown one, a scalar, empty tensors, bytes no tensor covers
    (between tensors and at the end), offsets not aligned to the element size, and a
    header order unlike the buffer's."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:24, 0:40]
    smooth = np.sin(x / 5.0) + np.cos(y / 7.0)
    parts = [
        ("f32", "F32", smooth.astype("<f4")),
        ("bf16", "BF16", (smooth.astype("<f4").view("<u4") >> 16).astype("<u2")),
        ("f16", "F16", smooth.astype("<f2")),
        ("i16", "I16", (smooth * 1000).astype("<i2")),
        ("u16", "U16", (smooth * 1000 + 3000).astype("<u2").reshape(2, 12, 40)),
        ("i8", "I8", (smooth * 50).astype("i1")),
        ("u8", "U8", rng.integers(0, 256, (5, 7), dtype=np.uint8)),
        ("f64", "F64", rng.normal(size=(3, 4))),
        ("i64", "I64", np.arange(9, dtype="<i8")),
        ("flags", "BOOL", rng.integers(0, 2, 11).astype(bool)),
        ("odd", "Q7", rng.integers(0, 256, 13, dtype=np.uint8)),  # unknown: any length
        ("scalar", "F32", np.array(2.5, "<f4")),
        ("empty", "F16", np.zeros((0, 6), "<f2")),
        ("empty-cols", "U8", np.zeros((4, 0), np.uint8)),
    ]
    buffer, tensors = bytearray(), {}
    for k, (name, dtype, array) in enumerate(parts):
        if k % 3 == 1:
            buffer += rng.integers(0, 256, k, dtype=np.uint8).tobytes()  # a gap
        begin = len(buffer)
        buffer += array.tobytes()
        tensors[name] = (dtype, list(array.shape), begin, len(buffer))
    buffer += b"trailing bytes"
    tensors = dict(sorted(tensors.items(), key=lambda item: item[0]))
    data = safetensors_file(tensors, buffer, metadata={"format": "pt", "note": "test"})
    return data, {name: (dtype, array) for name, dtype, array in parts}


@pytest.fixture(scope="module")
def original():
    return mixed_file()


@pytest.fixture(scope="module")
def compressed(original):
    return checkpoint.compress(original, tile=(16, 16))


def test_round_trip_is_byte_exact(original, compressed, monkeypatch):
    # The output is allocated unwritten; poisoned, so that a byte left out would show.
    monkeypatch.setattr(checkpoint, "np", Poisoned(np))
    assert bytes(checkpoint.decompress(compressed)) == original


def test_load_gives_every_tensor(compressed):
    _, parts = mixed_checkpoint()
    tensors = checkpoint.load(compressed)
    assert sorted(tensors) == sorted(parts)
    for name, (dtype, array) in parts.items():
        loaded = tensors[name]
        if dtype == "Q7":  # not a safetensors dtype: its bytes
            array = array.reshape(-1).view(np.uint8)
        assert loaded.dtype == array.dtype and loaded.shape == array.shape, name
        assert loaded.tobytes() == array.tobytes(), name


def weights_file():
    """A safetensors file of normal weights, as float32 ("w") and as bfloat16 ("b")."""
    rng = np.random.default_rng(4)
    weights = rng.normal(0, 0.02, (256, 384)).astype("<f4")
    bf16 = (weights.view("<u4") >> 16).astype("<u2")
    return safetensors_file({"w": ("F32", [256, 384], 0, weights.nbytes),
                             "b": ("BF16", [256, 384], weights.nbytes,
                                   weights.nbytes + bf16.nbytes)},
                            weights.tobytes() + bf16.tobytes())


@pytest.mark.parametrize("tile", [None, (64, 64)])
def test_weights_shrink(tile):
    data = weights_file()
    packed = checkpoint.compress(data, tile=tile)
    # Normal weights: the exponent byte carries about 3 bits of 8, so float32 comes to
    # about 85 % and bfloat16 about 70 %; stored as bytes, they would not shrink at all.
    assert len(packed) < 0.8 * len(data)
    assert bytes(checkpoint.decompress(packed)) == data


def test_any_bytes_like_input(original, compressed):
    assert checkpoint.compress(bytearray(original), tile=(16, 16)) == compressed
    assert len(original) % 4 == 0  # so that it can be viewed as 4-byte words
    as_words = memoryview(original).cast("I")
    assert checkpoint.compress(as_words, tile=(16, 16)) == compressed
    assert bytes(checkpoint.decompress(memoryview(compressed))) == original


def test_a_file_with_no_tensors(original):
    data = safetensors_file({}, b"", metadata={"empty": "yes"})
    assert bytes(checkpoint.decompress(checkpoint.compress(data))) == data


@pytest.mark.parametrize("bad, message", [
    (b"\x05\x00\x00", "shorter than"),
    (struct.pack("<Q", 100) + b"{}", "a header of 100 bytes"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 3) + b"{x}", "not valid JSON"),
    (struct.pack("<Q", 2) + b"\xff\xfe", "not valid JSON"),
    (safetensors_file({"a": ("F32", [2], 0, 8)}, b"1234"), "outside"),
    (safetensors_file({"a": ("F32", [3], 0, 8)}, b"12345678"), "does not fill"),
    (safetensors_file({"a": ("U8", [4], 0, 4), "b": ("U8", [2], 3, 5)}, b"12345"),
     "overlap"),
    (safetensors_file({"a": ("U8", [-1], 0, 0)}, b""), "malformed"),
    (safetensors_file({"a": ("U8", [True], 0, 1)}, b"1"), "malformed"),
    (struct.pack("<Q", 12) + b'{"a": [1,2]}', "no dtype"),
])
def test_not_a_safetensors_file(bad, message):
    with pytest.raises(ValueError, match=message):
        checkpoint.compress(bad)


def test_every_truncation_raises(compressed):
    for end in range(len(compressed)):
        with pytest.raises(FormatError):
            checkpoint.decompress(compressed[:end])


def test_every_flipped_byte_raises(compressed):
    # The index has its own CRC, every stream its own.
    for at in range(len(compressed)):
        bad = bytearray(compressed)
        bad[at] ^= 0x10
        with pytest.raises(FormatError):
            checkpoint.decompress(bytes(bad))


def _index_end(data):
    """Where the index's CRC sits in a checkpoint."""
    count = struct.unpack_from("<I", data, 16)[0]
    at = 20 + 8 * count
    return at + 8 + struct.unpack_from("<Q", data, at)[0]


def _with_crc(index, streams):
    return index + struct.pack("<I", checkpoint.checksum(index)) + streams


def test_streams_must_hold_their_segments():
    # Two tensors of the same size but other dtypes, streams swapped behind a valid CRC.
    a = np.arange(12, dtype="<f4")
    b = np.arange(24, dtype="<i2")
    data = safetensors_file({"a": ("F32", [12], 0, 48), "b": ("I16", [24], 48, 96)},
                            a.tobytes() + b.tobytes())
    packed = checkpoint.compress(data)
    end = _index_end(packed)
    count = struct.unpack_from("<I", packed, 16)[0]
    sizes = struct.unpack_from(f"<{count}Q", packed, 20)
    first = end + 4
    streams = [packed[first:first + sizes[0]], packed[first + sizes[0]:]]
    index = bytearray(packed[:end])
    struct.pack_into(f"<{count}Q", index, 20, sizes[1], sizes[0])
    with pytest.raises(FormatError, match="holds"):
        checkpoint.decompress(_with_crc(bytes(index), streams[1] + streams[0]))


@pytest.mark.parametrize("field, value, message", [
    (0, b"XGCS", "bad magic"),
    (4, struct.pack("<H", 2), "version 2"),
    (6, struct.pack("<H", 1), "flags"),
    # A file size beyond what the last stream holds: found out before the output exists.
    (8, struct.pack("<Q", 1 << 62), "holds"),
    (16, struct.pack("<I", 0xFFFFFFFF), "truncated"),
])
def test_index_fields_are_checked_before_use(compressed, field, value, message):
    end = _index_end(compressed)
    index = bytearray(compressed[:end])
    index[field:field + len(value)] = value
    with pytest.raises(FormatError, match=message):
        checkpoint.decompress(_with_crc(bytes(index), compressed[end + 4:]))


def test_contents_lists_tensors_without_decoding(compressed, monkeypatch):
    _, parts = mixed_checkpoint()

    def no_decoding(*args):
        raise AssertionError("contents decoded a stream")

    monkeypatch.setattr("cgc.lossless._decode", no_decoding)
    file_size, tensors = checkpoint.contents(compressed)
    assert file_size == len(mixed_file())
    assert sorted(name for name, *_ in tensors) == sorted(parts)
    for name, dtype, shape, stored in tensors:
        assert (dtype, shape) == (parts[name][0], list(parts[name][1].shape))
        assert stored > 0
    # The tensors' streams and the gaps' streams make up everything after the index.
    assert sum(stored for *_, stored in tensors) < len(compressed)


def test_command_line(tmp_path, original, capsys):
    src, packed, out = (tmp_path / name for name in ("m.safetensors", "m.cgcs", "back"))
    src.write_bytes(original)
    assert main(["compress", str(src), str(packed), "--tile", "32x32"]) == 0
    assert main(["decompress", str(packed), str(out)]) == 0
    assert out.read_bytes() == original
    assert "% of" in capsys.readouterr().out
    assert main(["info", str(packed)]) == 0
    info = capsys.readouterr().out
    assert f"% of {len(original)}" in info and "tensors     14" in info
    assert "  BF16            1" in info
    assert main(["decompress", str(src), str(out)]) == 1
    assert "not a cgc.lossless checkpoint" in capsys.readouterr().err
    assert main(["compress", str(packed), str(out)]) == 1
    assert "not a safetensors file" in capsys.readouterr().err


def raw_share_of_bf16_mantissas(packed):
    """Share of the bfloat16 tensor's tiles whose low byte plane is stored raw."""
    (container,) = [c for c in checkpoint._open(packed).containers
                    if c.etype.name == "bfloat16"]
    return float(np.mean(container.meta["groups"][:, 1] == 255))


def test_min_gain_leaves_mantissas_raw(tmp_path):
    data = weights_file()
    default = checkpoint.compress(data, tile=(64, 64))
    fast = checkpoint.compress(data, tile=(64, 64), min_gain=0.1)
    # Coding the sign-and-mantissa byte of normal weights saves a little under 0.1 bit per
    # byte (it is nearly uniform), above the default threshold of 0.01 and below 0.1.
    assert raw_share_of_bf16_mantissas(default) == 0.0
    assert raw_share_of_bf16_mantissas(fast) == 1.0
    assert len(default) < len(fast) < 1.02 * len(default)
    assert bytes(checkpoint.decompress(fast)) == data
    src, packed = tmp_path / "m.safetensors", tmp_path / "m.cgcs"
    src.write_bytes(data)
    assert main(["compress", str(src), str(packed), "--tile", "64x64", "--min-gain", "0.1"]) == 0
    assert packed.read_bytes() == fast
