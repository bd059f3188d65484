"""Progressive .cgc files (format version 4, cgc.image.layers): layer counts, round trips,
every prefix, damage, streaming decode, the golden file, the layered fit and its gradient,
and the command line."""
import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import skimage.data

import cgc
from cgc.backends import get_backend
from cgc.cli import main
from cgc.errors import FormatError
from cgc.image import fit as fit_module
from cgc.image.codec import decode_gaussians, quantise_gaussians
from cgc.image.container import (HEADER, MAGIC, QUANTISER, pack, storage_order, unpack)
from cgc.image.layers import (LAYER_ENTRY, LAYER_TABLE, MAX_LAYERS, MIN_LAYER_BYTES,
                              layer_counts, pack_layers, read_layers)
from cgc.image.loss import SquaredError
from cgc.image.quantize import ATTRIBUTES, LINEAR, LOG, Quantiser
from cgc_files import golden_gaussians
from golden_files import check_golden

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "small_v4.cgc")
GOLDEN_BITS = (12, 9, 7, 8, 6, 7, 5, 2)  # as tests/golden/small.cgc
GOLDEN_COUNTS = [10, 10, 20]
TABLE = HEADER.size + QUANTISER.size * len(ATTRIBUTES)  # where the layer table starts
REGEN_HINT = ("run `python -m pytest tests/test_layers.py --regen-golden` to rewrite it, "
              "but only for an intended format change")


@pytest.fixture(scope="module")
def crop():
    image = skimage.data.astronaut()[60:124, 180:260]
    return np.ascontiguousarray(image)


@pytest.fixture(scope="module")
def layered(crop):
    """A four-layer file of a 64 x 80 crop."""
    return cgc.encode(crop, n_gaussians=120, iterations=50, progress=False, layers=4)


def random_file(seed, n=300, counts=(20, 30, 50, 200)):
    rng = np.random.default_rng(seed)
    widths = [int(b) for b in rng.integers(1, 17, len(ATTRIBUTES))]
    widths[0], widths[1] = max(widths[0], 4), max(widths[1], 4)
    codes = np.stack([rng.integers(0, 1 << b, n) for b in widths], axis=1).astype(np.uint32)
    quantisers = [Quantiser(b, LOG if k in (2, 4) else LINEAR, -3.0, 2.0)
                  for k, b in enumerate(widths)]
    return pack_layers(97, 61, quantisers, codes, counts), codes, quantisers, list(counts)


def in_key_order(codes, quantisers):
    return codes[storage_order(codes, [q.bits for q in quantisers])]


def with_header_crc(data, table_end):
    """``data`` with the header's CRC (after the layer table ending at ``table_end``)
    made valid again."""
    return data[:table_end] + struct.pack("<I", zlib.crc32(data[:table_end])) + \
        data[table_end + 4:]


# ----------------------------------------------------------------------------- layer counts

def test_layer_counts():
    # Runs of layers from the first end at n / 9, n / 3, n for three layers, at n / 9,
    # n * 9^(-2/3), n * 9^(-1/3), n for four (rounded down), each layer at least one.
    assert layer_counts(9, 3) == [1, 2, 6]
    assert layer_counts(90, 3) == [10, 20, 60]
    assert layer_counts(4400, 3) == [488, 978, 2934]
    assert layer_counts(1000, 4) == [111, 120, 249, 520]  # ends 111, 231, 480
    assert layer_counts(100, 2) == [11, 89]
    assert layer_counts(1000, 1) == [1000]
    assert layer_counts(4, 4) == [1, 1, 1, 1]
    assert layer_counts(5, 4) == [1, 1, 1, 2]
    for n in range(6, 300):  # every layer non-empty, the first at most a ninth
        for layers in (2, 3, 5):
            counts = layer_counts(n, layers)
            assert sum(counts) == n and min(counts) >= 1
            assert counts[0] <= max(1, n // 9)
    for n, layers in ((3, 4), (10, 0), (100, MAX_LAYERS + 1)):
        with pytest.raises(ValueError):
            layer_counts(n, layers)


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_file_round_trip(seed):
    data, codes, quantisers, counts = random_file(seed)
    packed = unpack(data)
    assert packed.version == 4 and packed.layers == counts
    assert packed.quantisers == quantisers
    start = 0
    for count in counts:  # each layer's codes, in key order
        expected = in_key_order(codes[start:start + count], quantisers)
        np.testing.assert_array_equal(packed.codes[start:start + count], expected)
        start += count
    assert sum(packed.stream_sizes.values()) < len(data)


def test_every_prefix(layered):
    info = cgc.layer_info(layered)
    assert info.count == 4 and info.gaussians == [13, 14, 30, 63]
    assert info.ends[-1] == info.file_bytes == len(layered) and info.complete == 4
    whole = unpack(layered)
    for cut in range(len(layered) + 1):
        prefix = layered[:cut]
        complete = sum(end <= cut for end in info.ends)
        if complete == 0:
            with pytest.raises(FormatError):
                read_layers(prefix)
            continue
        packed, seen = read_layers(prefix)
        assert seen.complete == complete and packed.layers == info.gaussians[:complete]
        n = sum(packed.layers)
        np.testing.assert_array_equal(packed.codes, whole.codes[:n])
    with pytest.raises(FormatError, match="truncated .cgc file: 3 of 4 layers"):
        unpack(layered[:-1])
    with pytest.raises(FormatError, match="1 bytes after the last layer"):
        cgc.decode(layered + b"\0")


def test_a_prefix_decodes_as_a_file_of_its_layers(crop, layered):
    """The image of k layers equals the decode of a version-3 file holding the same
    codes: the renderer sees the same Gaussians."""
    info = cgc.layer_info(layered)
    whole = unpack(layered)
    for k, end in enumerate(info.ends, 1):
        n = sum(info.gaussians[:k])
        single = pack(80, 64, whole.quantisers, whole.codes[:n])
        # The same Gaussians, summed in another order (the version-3 file sorts them all
        # by key): within the format's one level (docs/format.md, "Conformance").
        difference = cgc.decode(layered[:end]).astype(int) - cgc.decode(single)
        assert np.abs(difference).max() <= 1 and np.mean(difference != 0) < 1e-3
        assert cgc.layer_info(layered[:end]).complete == k
    # More layers, a better image: the fit weighs every prefix.
    quality = [cgc.metrics.psnr(crop, cgc.decode(layered[:end])) for end in info.ends]
    assert quality == sorted(quality), quality


def test_layered_fit_makes_prefixes_that_are_pictures(crop):
    counts = layer_counts(120, 4)
    layered = cgc.fit(crop, 120, iterations=50, progress=False, layers=counts)
    plain = cgc.fit(crop, 120, iterations=50, progress=False)
    backend = get_backend("cpu")

    def quality(gaussians, n):
        image = backend.render_forward(np.ascontiguousarray(gaussians.params[:n]), 64, 80)
        return cgc.metrics.psnr(crop, np.round(255 * np.clip(image, 0, 1)).astype(np.uint8))

    # The first eighth of a plain fit draws a fraction of the picture; a layered fit's
    # first layer draws all of it, coarsely (measured 5.2 and 20.4 dB).
    assert quality(layered, counts[0]) > quality(plain, counts[0]) + 10
    # ... at a cost to the whole (measured 27.41 and 28.18 dB; 120 Gaussians and 50 steps
    # leave little to share; the Kodak files at 0.5 bpp lose 0.23 dB on average).
    assert quality(layered, 120) > quality(plain, 120) - 1.0


def test_layered_gradient_matches_finite_differences():
    """_Layered's step is E(whole) times the gradient of log E(layers 1-2) + w log E(layer
    1), E the sum of squared errors: against central differences of that objective, all in
    float64 (the renderer computes in the parameters' type)."""
    rng = np.random.default_rng(5)
    height, width, n = 10, 12, 6
    params = np.column_stack([
        rng.uniform(2, 10, n), rng.uniform(2, 8, n), rng.uniform(1.5, 3, n),
        rng.uniform(-0.5, 0.5, n), rng.uniform(1.5, 3, n), rng.uniform(0.05, 0.2, (n, 3))])
    target = rng.uniform(0.3, 0.7, (height, width, 3))  # away from the clip at 0 and 1
    backend = get_backend("cpu")
    layered = fit_module._Layered(SquaredError(), [0, 2, n])
    _, grads = layered.step(backend, params, target)

    def errors(p):
        first = backend.render_forward(np.ascontiguousarray(p[:2]), height, width)
        whole = backend.render_forward(np.ascontiguousarray(p), height, width)
        return (np.sum((np.clip(first, 0, 1) - target) ** 2),
                np.sum((np.clip(whole, 0, 1) - target) ** 2))

    def loss(p):
        first, whole = errors(p)
        return fit_module.LAYER_WEIGHT * np.log(first) + np.log(whole)

    numeric = np.zeros_like(params)
    h = 1e-6  # small enough that no pixel crosses a 3-sigma cut-off in between
    for i in range(n):
        for j in range(8):
            up, down = params.copy(), params.copy()
            up[i, j] += h
            down[i, j] -= h
            numeric[i, j] = (loss(up) - loss(down)) / (2 * h)
    numeric *= errors(params)[1]
    # float64 rounding of sums of ~100 terms, divided by 2h: about 1e-8 relative.
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


# ----------------------------------------------------------------------------- damage

def test_a_damaged_layer_keeps_the_layers_before_it(layered):
    info = cgc.layer_info(layered)
    starts = [info.header_bytes] + info.ends[:-1]
    for k, (start, end) in enumerate(zip(starts, info.ends)):
        for at in (start, (start + end) // 2, end - 1):  # length table, streams, CRC
            bad = bytearray(layered)
            bad[at] ^= 0x10
            bad = bytes(bad)
            with pytest.raises(FormatError, match=f"layer {k + 1} of 4"):
                cgc.decode(bad)
            assert cgc.layer_info(bad).damaged == k
            if k == 0:
                with pytest.raises(FormatError):
                    cgc.decode(bad, strict=False)
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                image = cgc.decode(bad, strict=False)
            assert f"the {k} layer" in str(caught[0].message)
            np.testing.assert_array_equal(image, cgc.decode(layered[:info.ends[k - 1]]))


def test_bad_headers(layered):
    info = cgc.layer_info(layered)
    table_end = info.header_bytes - 4
    entries = TABLE + LAYER_TABLE.size

    def edited(at, packed):
        data = layered[:at] + packed + layered[at + len(packed):]
        return with_header_crc(data, table_end)

    cases = {
        "no layers": edited(TABLE, LAYER_TABLE.pack(0, 0)),
        "reserved": edited(TABLE, LAYER_TABLE.pack(4, 1)),
        "too many": edited(TABLE, LAYER_TABLE.pack(MAX_LAYERS + 1, 0)),
        "counts": edited(entries, LAYER_ENTRY.pack(info.gaussians[0] + 1,
                                                   info.ends[0] - info.header_bytes)),
        "size": edited(entries, LAYER_ENTRY.pack(info.gaussians[0], MIN_LAYER_BYTES - 1)),
        "header crc": layered[:table_end] + b"\0\0\0\0" + layered[table_end + 4:],
        "cut in the header": layered[:table_end],
    }
    for name, data in cases.items():
        with pytest.raises(FormatError):
            cgc.decode(data)
        with pytest.raises(FormatError):
            list(cgc.decode_progressive([data]))
    # A layer table that claims more bytes than the file has: a prefix, not damage, so
    # the whole-file reader says truncated.
    longer = edited(entries + LAYER_ENTRY.size * 3, LAYER_ENTRY.pack(info.gaussians[3], 10 ** 6))
    with pytest.raises(FormatError, match="truncated"):
        unpack(longer)


# ----------------------------------------------------------------------------- streaming

@pytest.mark.parametrize("chunk", [1, 7, 97, 10 ** 6])
def test_decode_progressive(layered, chunk):
    info = cgc.layer_info(layered)
    chunks = (layered[i:i + chunk] for i in range(0, len(layered), chunk))
    seen = list(cgc.decode_progressive(chunks))
    expected = [4] if chunk >= len(layered) else [1, 2, 3, 4]
    assert [k for k, _ in seen] == expected
    for k, image in seen:
        np.testing.assert_array_equal(image, cgc.decode(layered[:info.ends[k - 1]]))


def test_decode_progressive_ends_and_damage(layered, crop):
    info = cgc.layer_info(layered)
    cut = layered[:info.ends[1] + 5]
    seen = []
    with pytest.raises(FormatError, match="ended after .* 2 of 4 layers"):
        split = info.ends[0] + 1
        for k, _ in cgc.decode_progressive([cut[:split], cut[split:]]):
            seen.append(k)
    assert seen == [1, 2]
    bad = bytearray(layered)
    bad[info.ends[2] + 3] ^= 1
    seen = []
    with pytest.raises(FormatError, match="layer 4 of 4"):
        split = info.ends[1]
        for k, _ in cgc.decode_progressive([bytes(bad[:split]), bytes(bad[split:])]):
            seen.append(k)
    assert seen == [2, 3]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        lenient = list(cgc.decode_progressive([bytes(bad)], strict=False))
    assert [k for k, _ in lenient] == [3]
    # A version-3 file comes whole, once; resized as asked.
    single = cgc.encode(crop, n_gaussians=40, iterations=5, progress=False)
    pieces = [single[i:i + 50] for i in range(0, len(single), 50)]
    [(k, image)] = list(cgc.decode_progressive(pieces, scale=0.5))
    assert k == 1
    np.testing.assert_array_equal(image, cgc.decode(single, scale=0.5))
    with pytest.raises(FormatError):
        list(cgc.decode_progressive([single[:-1]]))
    with pytest.raises(FormatError):
        list(cgc.decode_progressive([]))


# ----------------------------------------------------------------------------- golden file

def golden_bytes():
    gaussians = golden_gaussians()
    counts = GOLDEN_COUNTS  # the format's, not the encoder's choice of counts
    codes, quantisers, _ = quantise_gaussians(gaussians, GOLDEN_BITS, counts)
    return pack_layers(gaussians.width, gaussians.height, quantisers, codes, counts)


def test_golden_file(request):
    golden = check_golden(request, GOLDEN, golden_bytes(), REGEN_HINT)
    assert HEADER.unpack_from(golden) == (MAGIC, 4, 0, 23, 17, 40)
    assert LAYER_TABLE.unpack_from(golden, TABLE) == (3, 0)
    counts = [LAYER_ENTRY.unpack_from(golden, TABLE + 4 + 8 * k)[0] for k in range(3)]
    assert counts == [10, 10, 20]
    # The golden Gaussians of the version-3 golden file, in the layers' order.
    source = golden_gaussians()
    decoded = decode_gaussians(golden)
    start = 0
    for count in counts:
        np.testing.assert_allclose(np.sort(decoded.params[start:start + count, 0]),
                                   np.sort(source.params[start:start + count, 0]),
                                   atol=23 / 4095)
        start += count


# ----------------------------------------------------------------------------- API and CLI

def test_encode_arguments(crop):
    for bad in (0, MAX_LAYERS + 1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="layers must be an integer"):
            cgc.encode(crop, n_gaussians=20, iterations=1, progress=False, layers=bad)
    with pytest.raises(ValueError, match="cannot make 8 layers"):
        cgc.encode(crop, n_gaussians=5, iterations=1, progress=False, layers=8)
    assert cgc.layer_info(cgc.encode(crop, n_gaussians=20, iterations=1,
                                     progress=False)) is None


def test_budget_holds_with_layers(crop):
    data = cgc.encode(crop, max_bytes=900, iterations=20, progress=False, layers=3)
    assert len(data) <= 900 and cgc.layer_info(data).count == 3


def test_command_line(crop, tmp_path, capsys):
    from PIL import Image

    source = tmp_path / "crop.png"
    Image.fromarray(crop).save(source)
    out = tmp_path / "crop.cgc"
    assert main(["encode", str(source), str(out), "-n", "60", "--iterations", "20",
                 "--layers", "--no-progress"]) == 0
    data = out.read_bytes()
    info = cgc.layer_info(data)
    assert info.count == 3 and info.gaussians == [6, 14, 40]
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layers (Gaussians, first bytes that decode them):" in printed
    assert f"  {1:<3}{info.gaussians[0]:>8}{info.ends[0]:>10}" in printed
    png = tmp_path / "part.png"
    assert main(["decode", str(out), str(png), "--max-bytes", str(info.ends[1])]) == 0
    assert "2 of 3 layers" in capsys.readouterr().out
    part = np.asarray(Image.open(png))
    np.testing.assert_array_equal(part, cgc.decode(data[:info.ends[1]]))
    assert main(["decode", str(out), str(png), "--max-bytes", "50"]) == 1
    assert "truncated" in capsys.readouterr().err


def test_pillow_opens_progressive_files(layered):
    from PIL import Image

    with Image.open(io.BytesIO(layered)) as image:
        assert image.format == "CGC" and image.size == (80, 64)
        np.testing.assert_array_equal(np.asarray(image), cgc.decode(layered))
    with Image.open(io.BytesIO(layered)) as image:
        image.thumbnail((40, 40))
        assert image.size == (40, 32)
