"""Pillow reads and writes .cgc once cgc is imported (cgc/image/pillow_plugin.py), tested
through Pillow's own calls: open, load, draft, thumbnail, convert, save."""
import io

import numpy as np
import pytest
import skimage.data
from PIL import Image, UnidentifiedImageError

import cgc
from cgc.image import codec


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skimage.data.astronaut()[90:154, 180:260])  # 64 x 80


@pytest.fixture(scope="module")
def encoded(photo):
    return cgc.encode(photo, n_gaussians=80, iterations=30, progress=False)


@pytest.fixture
def decode_sizes(monkeypatch):
    """The sizes the plugin's decoder asks cgc to render at."""
    sizes, original = [], codec.decode

    def decode(data, **kwargs):
        sizes.append(kwargs.get("size"))
        return original(data, **kwargs)
    monkeypatch.setattr(codec, "decode", decode)
    return sizes


def test_registered():
    assert Image.registered_extensions()[".cgc"] == "CGC"
    assert Image.MIME["CGC"] == "image/x-cgc"


def test_open_and_load_give_the_decoded_pixels(encoded, tmp_path):
    path = tmp_path / "photo.cgc"
    path.write_bytes(encoded)
    with Image.open(path) as im:
        assert (im.format, im.size, im.mode) == ("CGC", (80, 64), "RGB")
        assert np.array_equal(np.asarray(im), cgc.decode(encoded))
    with Image.open(io.BytesIO(encoded)) as im:
        assert np.array_equal(np.asarray(im.convert("L")),
                              np.asarray(Image.fromarray(cgc.decode(encoded)).convert("L")))


def test_draft_renders_at_the_reduced_size(encoded, decode_sizes):
    with Image.open(io.BytesIO(encoded)) as im:
        assert im.draft("RGB", (20, 10)) == ("RGB", (0, 0, 20, 16))  # both sides >= asked
        assert im.size == (20, 16)
        pixels = np.asarray(im)
    assert decode_sizes == [(16, 20)]
    assert np.array_equal(pixels, cgc.decode(encoded, size=(16, 20)))
    # No enlargement, and other modes are left to convert().
    with Image.open(io.BytesIO(encoded)) as im:
        assert im.draft("RGB", (160, 128)) is None and im.draft("L", (8, 8)) is None
        assert im.size == (80, 64)


def test_thumbnail_decodes_small_then_resamples(encoded, decode_sizes):
    with Image.open(io.BytesIO(encoded)) as im:
        im.thumbnail((20, 20))
        assert im.size == (20, 16)
    # thumbnail drafts at twice the box (its reducing_gap), 40 x 40: both sides at least
    # that is 50 x 40, rendered directly and resampled from there.
    assert decode_sizes == [(40, 50)]


def test_save_encodes_as_cgc_encode_does(photo, tmp_path):
    path = tmp_path / "saved.cgc"
    Image.fromarray(photo).save(path, bpp=1.5, n_gaussians=None, iterations=30)
    expected = cgc.encode(photo, max_bytes=int(1.5 * 64 * 80 / 8), iterations=30,
                          progress=False)
    assert path.read_bytes() == expected
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="CGC", n_gaussians=80, iterations=30)
    assert buffer.getvalue() == cgc.encode(photo, n_gaussians=80, iterations=30,
                                           progress=False)
    # A palette image goes through the same conversion as cgc encode's input files.
    Image.fromarray(photo).convert("P").save(buffer, format="CGC", n_gaussians=20,
                                             iterations=5)
    with pytest.raises(ValueError, match="bpp must be positive"):
        Image.fromarray(photo).save(io.BytesIO(), format="CGC", bpp=-1.0)


def test_bad_files(encoded):
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"not an image at all"))
    corrupt = bytearray(encoded)
    corrupt[len(corrupt) // 2] ^= 0x40
    with Image.open(io.BytesIO(bytes(corrupt))) as im:  # the header alone is read here
        assert im.size == (80, 64)
        with pytest.raises(cgc.FormatError, match="checksum"):
            im.load()


def test_absurd_header_sizes(encoded):
    # A header beyond the format's limits is refused at open, before Pillow's own pixel
    # limit or any allocation.
    header = bytearray(encoded)
    header[8:12] = (1 << 31).to_bytes(4, "little")
    with pytest.raises(cgc.FormatError, match="image size"):
        Image.open(io.BytesIO(bytes(header)))
