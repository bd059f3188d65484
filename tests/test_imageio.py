"""cgc.imageio: load_image on every Pillow mode the codec promises to accept, its errors,
and to_uint8."""
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from cgc.errors import FormatError
from cgc.imageio import load_image, to_uint8

RNG_SEED = 11


@pytest.fixture
def rgb_array():
    return np.random.default_rng(RNG_SEED).integers(0, 256, (9, 13, 3), dtype=np.uint8)


def check_float_image(image, shape):
    assert image.dtype == np.float32
    assert image.shape == shape
    assert image.flags.c_contiguous
    assert np.all(image >= 0) and np.all(image <= 1)


def test_rgb(tmp_path, rgb_array):
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb_array).save(path)
    image = load_image(str(path))
    check_float_image(image, (9, 13, 3))
    np.testing.assert_array_equal(image, rgb_array.astype(np.float32) / np.float32(255))
    assert np.array_equal(to_uint8(image), rgb_array)  # loading then to_uint8 is lossless


def test_grayscale_l(tmp_path):
    gray = np.random.default_rng(RNG_SEED).integers(0, 256, (7, 5), dtype=np.uint8)
    path = tmp_path / "l.png"
    Image.fromarray(gray, mode="L").save(path)
    image = load_image(path)
    check_float_image(image, (7, 5, 3))
    assert np.array_equal(image[:, :, 0], image[:, :, 1])
    assert np.array_equal(image[:, :, 0], image[:, :, 2])
    np.testing.assert_array_equal(to_uint8(image[:, :, 0]), gray)


def test_rgba_composited_over_white(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)      # fully transparent: white, whatever its colour
    rgba[0, 1] = (10, 20, 30, 255)    # opaque: its colour
    rgba[0, 2] = (0, 0, 0, 102)       # 40 % black over white: 0.6
    rgba[1, :] = (200, 100, 0, 51)    # 20 %: 0.2 * c + 0.8
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = load_image(path)
    check_float_image(image, (2, 3, 3))
    np.testing.assert_allclose(image[0, 0], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(image[0, 1], np.array([10, 20, 30]) / 255, atol=1e-6)
    np.testing.assert_allclose(image[0, 2], [0.6, 0.6, 0.6], atol=1e-6)
    expected = 0.2 * np.array([200, 100, 0]) / 255 + 0.8
    np.testing.assert_allclose(image[1], np.broadcast_to(expected, (3, 3)), atol=1e-6)


def palette_image():
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 17, 34, 51] + [0] * (256 - 4) * 3
    index = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 3, 3]], dtype=np.uint8)
    img = Image.fromarray(index, mode="L").convert("P")
    img.putpalette(palette)
    img.paste(Image.fromarray(index, mode="L"))  # indices, not luminance
    assert np.array_equal(np.asarray(img), index)
    colours = np.array(palette[:12], dtype=np.float64).reshape(4, 3) / 255
    return img, index, colours


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_palette_without_transparency(tmp_path, fmt):
    img, index, colours = palette_image()
    path = tmp_path / f"p.{fmt}"
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == "P"  # the file really is a palette image
    image = load_image(path)
    check_float_image(image, (3, 4, 3))
    np.testing.assert_allclose(image, colours[index], atol=1e-6)


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_palette_with_transparency(tmp_path, fmt):
    img, index, colours = palette_image()
    path = tmp_path / f"pt.{fmt}"
    img.save(path, transparency=3)  # palette entry 3 is transparent
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    image = load_image(path)
    check_float_image(image, (3, 4, 3))
    expected = colours[index].copy()
    expected[index == 3] = 1.0  # transparent over white
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_16_bit_grayscale(tmp_path):
    values = np.array([[0, 1, 255, 256], [32768, 65534, 65535, 12345]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # stored with 16 bits, not reduced to L
    image = load_image(path)
    check_float_image(image, (2, 4, 3))
    expected = values.astype(np.float64) / 65535
    for c in range(3):
        np.testing.assert_allclose(image[:, :, c], expected, rtol=0, atol=1e-7)
    # The extra precision survives: 255 and 256 differ, as do 0 and 1.
    assert image[0, 2, 0] < image[0, 3, 0] and image[0, 0, 0] < image[0, 1, 0]


def test_bilevel_mode_1(tmp_path):
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    path = tmp_path / "one.png"
    Image.fromarray(bits).convert("1").save(path)
    with Image.open(path) as check:
        assert check.mode == "1"
    image = load_image(path)
    check_float_image(image, (2, 3, 3))
    np.testing.assert_array_equal(image, np.repeat(bits[:, :, None], 3, 2).astype(np.float32))


def test_la_composited_over_white(tmp_path):
    la = np.array([[[0, 0], [0, 255], [100, 128]]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    image = load_image(path)
    a = 128 / 255
    np.testing.assert_allclose(image[0, :, 0], [1.0, 0.0, a * 100 / 255 + 1 - a], atol=1e-6)


def test_non_image_and_empty_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (text, empty, tmp_path / "missing.png", tmp_path):
        with pytest.raises(FormatError):
            load_image(path)


def test_truncated_png(tmp_path, rgb_array):
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb_array).save(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.png"
    for length in (8, 16, 33, len(data) // 2):
        cut.write_bytes(data[:length])
        with pytest.raises(FormatError):
            load_image(cut)


def png_chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def test_decompression_bomb_header_is_a_format_error(tmp_path):
    # A 77-byte PNG declaring 100000 x 100000 pixels: Pillow refuses it with its own
    # DecompressionBombError (an Exception, not an OSError), which must still come out as
    # FormatError so that the CLI reports it as one line.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b""))
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(FormatError):
        load_image(path)


def test_short_ihdr_chunk_is_a_format_error(tmp_path):
    # IHDR claiming 12 bytes instead of 13 (CRC recomputed so only the length is wrong):
    # Pillow raises a plain ValueError("Truncated IHDR chunk").
    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)[:12]
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")
    path = tmp_path / "short.png"
    path.write_bytes(data)
    with pytest.raises(FormatError):
        load_image(path)


@pytest.mark.parametrize("fmt", ["png", "tiff", "bmp"])
def test_every_flipped_byte_gives_an_image_or_format_error(tmp_path, fmt, monkeypatch):
    # load_image promises FormatError for anything Pillow cannot read; corrupt files must
    # never leak Pillow's internal exceptions (ValueError, TypeError, ...) instead.
    # A flipped TIFF height byte declares a 16M x 8 image that Pillow would happily load
    # (seconds, gigabytes as float32); a low bomb limit turns such sizes into Pillow's
    # DecompressionBombError, which load_image must report as FormatError like any other.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4096)
    src = tmp_path / f"src.{fmt}"
    Image.fromarray(np.random.default_rng(RNG_SEED).integers(
        0, 256, (8, 8, 3), dtype=np.uint8)).save(src)
    data = src.read_bytes()
    path = tmp_path / f"flip.{fmt}"
    problems = []
    for i in range(len(data)):
        for mask in (0xFF, 0x01):
            flipped = bytearray(data)
            flipped[i] ^= mask
            path.write_bytes(flipped)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Pillow warns on odd tags / sizes
                    image = load_image(path)
            except FormatError:
                continue
            except Exception as exc:
                problems.append((i, mask, f"{type(exc).__name__}: {exc}"[:100]))
                continue
            if not (image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3):
                problems.append((i, mask, f"returned {image.dtype} {image.shape}"))
    by_kind = {}
    for i, mask, what in problems:  # one example per exception type keeps the report short
        by_kind.setdefault(what.split(":")[0], (i, mask, what))
    assert not problems, f"{len(problems)} corrupt files escaped: {list(by_kind.values())}"


def test_to_uint8_rounding_and_clipping():
    k = np.arange(256, dtype=np.float64)
    # Exact levels come back exactly, from float32 and float64.
    for dtype in (np.float32, np.float64):
        assert np.array_equal(to_uint8((k / 255).astype(dtype)), k.astype(np.uint8))
    # Rounding to nearest, away from ties.
    np.testing.assert_array_equal(to_uint8((k[:-1] + 0.4) / 255), k[:-1])
    np.testing.assert_array_equal(to_uint8((k[:-1] + 0.6) / 255), k[:-1] + 1)
    # Clipping: out-of-range values saturate instead of wrapping around.
    out = to_uint8(np.array([-1e6, -0.5, -1e-9, 1 + 1e-9, 1.5, 1e6, np.inf, -np.inf]))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 0, 255, 255, 255, 255, 0])
    # Shape preserved.
    assert to_uint8(np.zeros((3, 2, 3), np.float32)).shape == (3, 2, 3)


def linear_srgb_profile():
    """An ICC v2 RGB display profile written here from the ICC specification: sRGB's
    primaries (adapted to D50) with linear tone curves, so a pixel value v stands for the
    linear light v / 255 and its sRGB encoding is known in closed form."""
    def s15(value):
        return struct.pack(">i", round(value * 65536))

    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    name = b"linear sRGB\0"
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(78)),
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141))]
    tags += [(sig, b"curv" + bytes(8)) for sig in (b"rTRC", b"gTRC", b"bTRC")]  # identity
    tags.append((b"cprt", b"text" + bytes(4) + b"none\0"))
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + bytes(4) + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + bytes(12) + b"acsp" + bytes(28) + s15(0.9642) + s15(1.0)
              + s15(0.8249) + bytes(48))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def srgb_encoded(linear):
    """The sRGB transfer function (IEC 61966-2-1) of linear light in [0, 1], as 0..255."""
    linear = np.asarray(linear, np.float64)
    return 255 * np.where(linear <= 0.0031308, 12.92 * linear,
                          1.055 * linear ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_icc_profile_converted_to_srgb(tmp_path, mode):
    values = np.array([[[32, 128, 200]]], np.uint8).repeat(4, 0).repeat(4, 1)
    image = Image.fromarray(values)
    if mode == "RGBA":
        image.putalpha(255)  # opaque: compositing over white leaves the colour
    path = tmp_path / "linear.png"
    image.save(path, icc_profile=linear_srgb_profile())
    loaded = to_uint8(load_image(path))
    # Linear grey levels keep the neutral axis: each channel maps alone.  2 levels: the
    # profile's 16.16 primaries and the colour engine's 8-bit rounding.
    assert np.abs(loaded[0, 0].astype(float) - srgb_encoded(values[0, 0] / 255)).max() <= 2
    plain = tmp_path / "plain.png"
    image.save(plain)
    assert np.array_equal(to_uint8(load_image(plain))[..., :3], values)  # no profile: as is


def test_unreadable_icc_profile_is_ignored(tmp_path, rgb_array):
    path = tmp_path / "bad_icc.png"
    Image.fromarray(rgb_array).save(path, icc_profile=b"not a profile" * 20)
    assert np.array_equal(to_uint8(load_image(path)), rgb_array)


@pytest.mark.parametrize("orientation, turn", [(1, lambda a: a),
                                               (3, lambda a: np.rot90(a, 2)),
                                               (6, lambda a: np.rot90(a, -1)),
                                               (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_applied(tmp_path, rgb_array, orientation, turn):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "oriented.png"
    Image.fromarray(rgb_array).save(path, exif=exif)
    assert np.array_equal(to_uint8(load_image(path)), turn(rgb_array))
