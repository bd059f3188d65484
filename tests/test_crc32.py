"""cgc.lossless._lossless_cy.crc32 (cgc/native/crc32.h): zlib.crc32's value, by carry-less multiplication or
the bitwise loop, on every length class the folding code distinguishes."""
import zlib

import numpy as np
import pytest

from cgc.lossless import _lossless_cy
from cgc.lossless import format as lformat

# Under 64 bytes (bitwise only), exactly 64, 64 + 16k (single-block folds), 64k + tail
# (every tail length 0..15), and a few long ones.
LENGTHS = list(range(0, 200)) + [255, 256, 257, 1023, 1024, 4096 + 15, 65536 + 7, 1 << 20]


@pytest.mark.parametrize("clmul", [True, False], ids=["clmul", "bitwise"])
def test_crc32_equals_zlib_on_every_length_offset_and_start_value(clmul):
    rng = np.random.default_rng(17)
    for n in LENGTHS:
        if not clmul and n > 70000:
            continue  # the bitwise loop is slow, and length classes are covered below that
        offset = int(rng.integers(0, 16))  # unaligned starts: the code loads unaligned
        data = memoryview(rng.integers(0, 256, n + offset, dtype=np.uint8).tobytes())[offset:]
        value = int(rng.integers(0, 1 << 32))
        assert _lossless_cy.crc32(data, value, clmul) == zlib.crc32(data, value), n
        assert _lossless_cy.crc32(data, 0, clmul) == zlib.crc32(data), n


def test_crc32_of_special_patterns():
    # All zeros and all ones stress the reductions differently from random bytes.
    for byte in (0x00, 0xFF, 0x80, 0x01):
        for n in (64, 80, 1000):
            data = bytes([byte]) * n
            assert _lossless_cy.crc32(data) == zlib.crc32(data)


def test_streams_use_the_fast_checksum_where_the_cpu_has_it():
    assert lformat.checksum is (_lossless_cy.crc32 if _lossless_cy.HAVE_CLMUL else zlib.crc32)


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_crc32_in_parallel_chunks_equals_zlib(threads):
    # Chunks joined by cgc_crc32_combine: lengths that split evenly and unevenly, chunks
    # shorter than 64 bytes (bitwise only), and a start value carried by the first chunk.
    rng = np.random.default_rng(23)
    for n in (1, 2, 5, 63, 64, 1000, 65536 + 3, (1 << 20) + 11):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        value = int(rng.integers(0, 1 << 32))
        for clmul in (True, False):
            assert _lossless_cy.crc32(data, value, clmul, threads) == zlib.crc32(data, value), n


def test_long_inputs_with_the_default_threads_equal_zlib():
    # From PARALLEL_CRC_BYTES on, the default sums one chunk per OpenMP thread.
    data = np.random.default_rng(29).integers(0, 256, _lossless_cy.PARALLEL_CRC_BYTES * 3 + 5,
                                              dtype=np.uint8).tobytes()
    assert _lossless_cy.crc32(data) == zlib.crc32(data)
