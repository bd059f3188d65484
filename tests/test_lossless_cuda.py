"""The CUDA tile decoder (cgc/kernels/rans.cu) against the CPU decoder, bit for bit: through
the CUDA emulation on the CPU, and with CuPy on a GPU when one is present."""
import functools
import struct
import zlib

import numpy as np
import pytest

import cgc.lossless as lossless
import cuda_emu
from cuda_emu.providers import Poisoned
from cgc.errors import FormatError
from cgc.kernels import has_gpu
from cgc.lossless import cuda as lcuda
from cgc.lossless import format as lformat
from skimage import data as skdata

emulated = pytest.mark.skipif(not cuda_emu.available(),
                              reason=f"{cuda_emu.CXX} not found: the CUDA emulation needs it")


@pytest.fixture(scope="module")
def module():
    """rans.cu built by the CUDA emulation."""
    return cuda_emu.load_module(lcuda.KERNEL_MODULE)


def cases():
    """Small arrays covering every element width and kind, every predictor, raw planes,
    context tables, edge tiles (sizes not multiples of the tile, tiles under 32 elements)
    and predicted tiles taller than one band of 32 rows."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:45, 0:70]
    smooth = 50 * np.sin(x / 8.0) + 30 * np.cos(y / 6.0) + x
    out = []
    for predictor in lossless.PREDICTORS:
        out.append((f"int16-{predictor}", smooth.astype(np.int16), False, (16, 32),
                    (predictor,)))
    out += [
        ("uint8-noise", rng.integers(0, 256, (33, 50), dtype=np.uint8), False, (16, 16), None),
        ("int8", (smooth / 4).astype(np.int8), False, (32, 32), None),
        ("uint16", (smooth * 300 + 20000).astype(np.uint16), False, (32, 32), None),
        ("float16", (smooth / 7).astype(np.float16), False, (32, 32), None),
        ("bfloat16", (rng.normal(0, 0.05, (40, 64)).astype(np.float32).view(np.uint32)
                      >> 16).astype(np.uint16), True, (32, 64), None),
        ("float32-weights", rng.normal(0, 0.05, (40, 64)).astype(np.float32), False,
         (32, 64), None),
        ("float32-smooth", (smooth / 3).astype(np.float32), False, (32, 32), None),
        ("tiny", np.arange(5, dtype=np.uint8), False, (64, 64), None),
        # The first row of a second band predicts from the row above, read back from out.
        ("int16-two-bands", smooth.astype(np.int16), False, (45, 40), None),
        ("float32-two-bands", (smooth / 3).astype(np.float32), False, (45, 40), None),
        # Plane 0 coded with activity contexts of the row above (tiles of 33+ columns).
        ("uint8-photo", skdata.camera()[:256, :256].copy(), False, (128, 128), None),
    ]
    return out


CASES = cases()


def test_cases_include_activity_contexts():
    _, a, bf16, tile, predictors = next(c for c in CASES if c[0] == "uint8-photo")
    container = lformat.parse(lossless.encode(a, tile=tile, predictors=predictors))
    assert container.planes[0].nctx > 1


@pytest.mark.parametrize("name", ["int16-two-bands", "float32-two-bands"])
def test_cases_include_predicted_tiles_of_two_bands(name):
    _, a, bf16, tile, predictors = next(c for c in CASES if c[0] == name)
    container = lformat.parse(lossless.encode(a, tile=tile, predictors=predictors))
    assert tile[0] > 32 and (container.meta["pred"] != 0).all()


def poisoned(nbytes):
    return np.full(nbytes, 0xCC, np.uint8)


@emulated
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_emulated_kernel_matches_cpu_decoder(module, case):
    _, a, bf16, tile, predictors = case
    data = lossless.encode(a, tile=tile, bfloat16=bf16, predictors=predictors)
    container = lformat.parse(data)
    out = poisoned(a.nbytes)
    errors = lcuda.launch(module, container, np, out)
    assert not errors.any()
    assert np.array_equal(out, lossless.decode(data).reshape(-1).view(np.uint8))


@emulated
def test_emulated_kernel_reports_a_corrupt_tile(module, emulated_device):
    a = np.cumsum(np.ones((40, 64)), axis=1).astype(np.int16)
    data = bytearray(lossless.encode(a, tile=(32, 32)))
    container = lformat.parse(bytes(data))
    # Change lane 0's state of tile 1 to another in-range value and repair the CRC: only
    # the decoders' own checks (final state, stream length) can notice.
    meta_start = len(data) - len(container.data) - container.meta.nbytes
    field = meta_start + container.meta.dtype.itemsize + container.meta.dtype.fields["states"][1]
    state = struct.unpack_from("<I", data, field)[0]
    struct.pack_into("<I", data, field, state ^ 0x10)
    data[8:12] = struct.pack("<I", zlib.crc32(bytes(data[12:])))
    errors = lcuda.launch(module, lformat.parse(bytes(data)), np, poisoned(a.nbytes))
    assert np.flatnonzero(errors).tolist() == [1]
    with pytest.raises(FormatError):
        lossless.decode(bytes(data))
    for to_host in (True, False):
        with pytest.raises(FormatError, match="first: tile 1"):
            lossless.decode(bytes(data), device="cuda", to_host=to_host)


@pytest.mark.skipif(not has_gpu(), reason="no CUDA device (CuPy missing or no GPU)")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gpu_decode_matches_cpu_decoder(case):
    _, a, bf16, tile, predictors = case
    data = lossless.encode(a, tile=tile, bfloat16=bf16, predictors=predictors)
    out = np.empty_like(a)
    out.reshape(-1).view(np.uint8)[:] = 0xCC
    lossless.decode_into(data, out, device="cuda")
    assert np.array_equal(out.reshape(-1).view(np.uint8),
                          lossless.decode(data).reshape(-1).view(np.uint8))


def rgb_image():
    y, x = np.mgrid[0:21, 0:37]
    return ((x[..., None] * 5 + y[..., None] * 3 + np.array([40, 10, 70])) % 256).astype(
        np.uint8)


@pytest.fixture
def emulated_device(module, monkeypatch):
    """decode(device="cuda") on the CUDA emulation: arrays are NumPy ones, poisoned when
    made (cuda_emu.providers.Poisoned), the kernel the emulated rans.cu."""
    monkeypatch.setattr(lcuda, "decode_on_device", functools.partial(
        lcuda.decode_on_device, xp=Poisoned(np), module=module))


@emulated
@pytest.mark.parametrize("name", ["image", "bfloat16", "float32-two-bands", "tiny"])
def test_emulated_decode_through_the_public_api(emulated_device, name):
    # decode(device="cuda") hands the kernel the coded matrix (colour-difference planes for
    # an image) and undoes the layout on the device; to_host=False returns that array.
    if name == "image":
        array, data = rgb_image(), lossless.encode(rgb_image(), image=True, tile=(16, 16))
    else:
        _, array, bf16, tile, predictors = next(c for c in CASES if c[0] == name)
        data = lossless.encode(array, tile, bfloat16=bf16, predictors=predictors)
    on_device = lossless.decode(data, device="cuda", to_host=False)
    assert on_device.dtype == array.dtype and np.array_equal(on_device, array)
    assert np.array_equal(lossless.decode(data, device="cuda"), array)
    out = np.full_like(array, 0xCC if array.dtype.kind != "f" else np.nan)
    lossless.decode_into(data, out, device="cuda")
    assert np.array_equal(out, array)


@emulated
def test_emulated_decode_of_a_checkpoint(emulated_device):
    from cgc.lossless import checkpoint
    from test_checkpoint import mixed_file

    original = mixed_file()
    packed = checkpoint.compress(original, tile=(16, 16))
    assert bytes(checkpoint.decompress(packed, device="cuda")) == original
    on_cpu = checkpoint.load(packed)
    for to_host in (True, False):
        loaded = checkpoint.load(packed, device="cuda", to_host=to_host)
        assert sorted(loaded) == sorted(on_cpu)
        for name, array in on_cpu.items():
            assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
            assert loaded[name].tobytes() == array.tobytes(), name


@pytest.mark.skipif(not has_gpu(), reason="no CUDA device (CuPy missing or no GPU)")
def test_gpu_decode_of_a_checkpoint():
    from cgc.lossless import checkpoint
    from test_checkpoint import mixed_file

    original = mixed_file()
    packed = checkpoint.compress(original, tile=(16, 16))
    assert bytes(checkpoint.decompress(packed, device="cuda")) == original
    on_cpu = checkpoint.load(packed)
    on_gpu = checkpoint.load(packed, device="cuda", to_host=False)
    for name, array in on_cpu.items():
        assert type(on_gpu[name]).__module__.startswith("cupy")
        assert on_gpu[name].get().tobytes() == array.tobytes(), name


@emulated
def test_emulated_decode_of_an_empty_array(emulated_device):
    data = lossless.encode(np.zeros((0, 7), np.int16))
    on_device = lossless.decode(data, device="cuda", to_host=False)
    assert on_device.shape == (0, 7) and on_device.dtype == np.int16


def test_to_host_false_on_the_cpu_is_a_numpy_array():
    a = np.arange(40, dtype=np.int16).reshape(5, 8)
    decoded = lossless.decode(lossless.encode(a), to_host=False)
    assert isinstance(decoded, np.ndarray) and np.array_equal(decoded, a)
    with pytest.raises(ValueError, match="device must be"):
        lossless.decode(lossless.encode(a), device="tpu", to_host=False)


@pytest.mark.skipif(not has_gpu(), reason="no CUDA device (CuPy missing or no GPU)")
def test_gpu_decode_of_an_image():
    img = rgb_image()
    out = np.full_like(img, 0xCC)
    data = lossless.encode(img, image=True, tile=(16, 16))
    lossless.decode_into(data, out, device="cuda")
    assert np.array_equal(out, img)
    on_device = lossless.decode(data, device="cuda", to_host=False)
    assert type(on_device).__module__.startswith("cupy")
    assert np.array_equal(on_device.get(), img)


@emulated
def test_uploaded_arguments_serve_repeated_launches(module):
    # bench/lossless_gpu.py uploads a stream's inputs once and launches the kernel again and
    # again into the same output: every launch must rewrite every byte identically.
    a = skdata.camera()[:128, :192].copy()
    container = lformat.parse(lossless.encode(a, tile=(64, 64)))
    arguments = lcuda.kernel_arguments(container, np)
    out = poisoned(a.nbytes)
    for _ in range(2):
        assert not lcuda.launch(module, container, np, out, arguments).any()
        assert np.array_equal(out, a.reshape(-1))
        out[:] = 0xCC


@emulated
def test_emulated_kernel_reads_an_empty_table_like_the_cpu(module):
    from test_lossless import stream_through_an_empty_table

    data = stream_through_an_empty_table()
    out = poisoned(80)
    assert not lcuda.launch(module, lformat.parse(data), np, out).any()
    assert not out.any()


@emulated
def test_emulated_kernel_on_activity_contexts_raw_and_narrow_tiles(module):
    from test_lossless_simd import photo_with_noise

    a, data = photo_with_noise()
    out = poisoned(a.nbytes)
    assert not lcuda.launch(module, lformat.parse(data), np, out).any()
    assert np.array_equal(out, a.reshape(-1))
