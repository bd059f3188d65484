"""The CUDA emulation harness itself: it runs correct kernels correctly and makes planted
bugs (missing barriers, out-of-range writes, writes through const) visible."""
from pathlib import Path

import numpy as np
import pytest

import cuda_emu

pytestmark = pytest.mark.skipif(not cuda_emu.available(),
                                reason=f"{cuda_emu.CXX} not found: the CUDA emulation needs it")


@pytest.fixture(scope="module")
def module():
    return cuda_emu.load_module(Path(cuda_emu.__file__).with_name("planted_kernels.cu"))


def test_reverse_with_barrier_is_correct(module):
    data = np.arange(4 * 256, dtype=np.int32) * 7 + 3
    out = np.empty_like(data)
    module.get_function("reverse")((4,), (256,), (data, out))
    np.testing.assert_array_equal(out, data.reshape(4, 256)[:, ::-1].reshape(-1))


def test_missing_syncthreads_in_reversal_is_detected(module):
    data = np.arange(4 * 256, dtype=np.int32) * 7 + 3
    out = np.empty_like(data)
    module.get_function("reverse_no_sync")((4,), (256,), (data, out))
    # Shared memory is poisoned before each block, so reads that overtake the writes they
    # depend on see -1 instead of the value.
    assert not np.array_equal(out, data.reshape(4, 256)[:, ::-1].reshape(-1))


def test_missing_syncthreads_in_reduction_is_detected(module):
    data = np.random.default_rng(1).integers(1, 100, 4 * 256, dtype=np.int32)
    expected = data.reshape(4, 256).sum(axis=1)
    kernel = module.get_function("block_sum")
    out = np.empty(4, dtype=np.int32)
    kernel((4,), (256,), (data, out, np.int32(1)))
    np.testing.assert_array_equal(out, expected)
    kernel((4,), (256,), (data, out, np.int32(0)))
    assert not np.array_equal(out, expected)


def test_warp_intrinsics(module):
    # Two blocks of 64 threads: two warps per block, so lanes and warps are both exercised.
    data = np.arange(128, dtype=np.float32)
    down, butterfly, broadcast, up = (np.empty_like(data) for _ in range(4))
    ballot = np.empty(128, dtype=np.uint32)
    module.get_function("warp_ops")((2,), (64,), (data, down, butterfly, broadcast, ballot, up))
    warps = data.reshape(4, 32)
    np.testing.assert_array_equal(down.reshape(4, 32)[:, 0], warps.sum(axis=1))
    np.testing.assert_array_equal(butterfly.reshape(4, 32), np.repeat(warps.sum(axis=1), 32)
                                  .reshape(4, 32))
    np.testing.assert_array_equal(broadcast.reshape(4, 32), np.repeat(warps[:, 3], 32)
                                  .reshape(4, 32))
    np.testing.assert_array_equal(ballot, np.full(128, 0xAAAAAAAA, dtype=np.uint32))
    # Lane 0 has no lane below it and keeps its own value.
    expected_up = np.concatenate([warps[:, :1], warps[:, :-1]], axis=1)
    np.testing.assert_array_equal(up.reshape(4, 32), expected_up)


def test_thread_and_block_indices_cover_the_grid_once(module):
    grid, block = (3, 2, 2), (4, 2, 3)
    count = int(np.prod(grid) * np.prod(block))
    out = np.full(count, -1, dtype=np.int32)
    module.get_function("indices")(grid, block, (out,))
    np.testing.assert_array_equal(out, np.arange(count))


def test_atomic_add_loses_no_update(module):
    n = 1000
    # Integer-valued floats: every order of addition gives the same exact sum.
    data = np.arange(n, dtype=np.float32)
    bins = np.zeros(4, dtype=np.float32)
    module.get_function("histogram")((4,), (256,), (data, bins, np.int32(n)))
    np.testing.assert_array_equal(bins, [data[k::4].sum() for k in range(4)])


@pytest.mark.parametrize("offset", [-1, 16, 20])
def test_out_of_range_write_is_detected(module, offset):
    out = np.zeros(16, dtype=np.float32)
    with pytest.raises(cuda_emu.KernelMemoryError, match="argument 0 was written"):
        module.get_function("poke")((1,), (32,), (out, np.int64(offset)))


def test_in_range_write_passes_and_is_copied_back(module):
    out = np.zeros(16, dtype=np.float32)
    module.get_function("poke")((1,), (32,), (out, np.int64(15)))
    assert out[15] == 1.0 and not out[:15].any()


def test_write_through_const_is_detected(module):
    with pytest.raises(cuda_emu.KernelMemoryError, match="pointer to const"):
        module.get_function("cheat")((1,), (32,), (np.zeros(4, dtype=np.float32),))


def test_read_only_arrays_serve_const_parameters(module):
    # As CuPy uploads a read-only host array, e.g. a stream viewed from bytes.
    data = np.frombuffer((np.arange(4 * 256, dtype=np.int32) * 7 + 3).tobytes(), np.int32)
    out = np.empty_like(data)
    module.get_function("reverse")((4,), (256,), (data, out))
    np.testing.assert_array_equal(out, data.reshape(4, 256)[:, ::-1].reshape(-1))
    with pytest.raises(cuda_emu.KernelMemoryError, match="pointer to const"):
        module.get_function("cheat")((1,), (32,), (np.frombuffer(bytes(16), np.float32),))


def test_arguments_are_checked_like_the_kernel_signature(module):
    poke = module.get_function("poke")
    out = np.zeros(16, dtype=np.float32)
    # CuPy would pass a Python int as a 64-bit value whatever the parameter's type.
    with pytest.raises(TypeError, match="numpy int64 scalar"):
        poke((1,), (32,), (out, 3))
    with pytest.raises(TypeError, match="float32 array"):
        poke((1,), (32,), (out.astype(np.float64), np.int64(3)))
    with pytest.raises(TypeError, match="takes 2 arguments"):
        poke((1,), (32,), (out,))
    with pytest.raises(ValueError, match="invalid launch configuration"):
        poke((0,), (32,), (out, np.int64(3)))
    with pytest.raises(NotImplementedError):
        poke((1,), (32,), (out, np.int64(3)), shared_mem=1024)
    with pytest.raises(LookupError):
        module.get_function("missing")


def test_partly_overlapping_arguments_are_refused(module):
    data = np.zeros(512, dtype=np.int32)
    with pytest.raises(ValueError, match="partly overlap"):
        module.get_function("reverse")((1,), (256,), (data[:256], data[128:384]))
