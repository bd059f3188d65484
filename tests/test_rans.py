"""The rANS blocks of .cgc versions 1 and 2: exact round trips through the decoder cgc
ships and the tests' encoder (tests/rans_blocks.py), efficiency, corruption."""
import numpy as np
import pytest

from cgc import FormatError
from cgc.image._container_cy import rans_decode
from rans_blocks import rans_encode


def roundtrip(data):
    data = np.asarray(data, dtype=np.uint8)
    block = rans_encode(data)
    out = np.full(data.size, 0xCC, dtype=np.uint8)  # poison: unwritten bytes would show
    rans_decode(block, out)
    np.testing.assert_array_equal(out, data)
    return block


def skewed(rng, n):
    return np.minimum(rng.geometric(0.2, n) - 1, 255).astype(np.uint8)


CASES = {
    "empty": lambda rng: np.zeros(0, np.uint8),
    "one symbol": lambda rng: np.array([0xCC], np.uint8),
    "one symbol x 100k": lambda rng: np.full(100_000, 7, np.uint8),
    "all 256 symbols": lambda rng: np.arange(256, dtype=np.uint8),
    "all 256 shuffled x 100": lambda rng: rng.permutation(np.repeat(np.arange(256), 100)),
    "uniform random": lambda rng: rng.integers(0, 256, 100_000).astype(np.uint8),
    "skewed random": lambda rng: skewed(rng, 200_000),
    "two symbols, one rare": lambda rng: (rng.random(50_000) < 1e-3).astype(np.uint8) * 255,
    "31 distinct (list table)": lambda rng: rng.integers(0, 31, 5000).astype(np.uint8) * 8,
    "32 distinct (bitmap table)": lambda rng: rng.integers(0, 32, 5000).astype(np.uint8) * 8,
}


@pytest.mark.parametrize("name", CASES)
def test_roundtrip(name):
    roundtrip(CASES[name](np.random.default_rng(len(name))))


def test_constant_stream_costs_almost_nothing():
    assert len(roundtrip(np.full(200_000, 7, np.uint8))) < 16


def test_incompressible_data_is_stored():
    data = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8)
    assert len(roundtrip(data)) <= data.size + 4


def test_within_half_percent_of_empirical_entropy():
    data = skewed(np.random.default_rng(1), 1 << 17)
    counts = np.bincount(data, minlength=256)
    p = counts[counts > 0] / data.size
    entropy_bytes = -(counts[counts > 0] * np.log2(p)).sum() / 8
    size = len(roundtrip(data))
    assert size <= entropy_bytes * 1.005, (size, entropy_bytes)


def test_wrong_length_and_corruption_raise_format_error():
    rng = np.random.default_rng(2)
    data = skewed(rng, 3000)
    block = bytearray(rans_encode(data))
    with pytest.raises(FormatError):
        rans_decode(bytes(block), np.empty(2999, np.uint8))
    for cut in range(len(block)):
        with pytest.raises(FormatError):
            rans_decode(bytes(block[:cut]), np.empty(data.size, np.uint8))
    # Any corruption must give FormatError or, rarely, different output: never a crash.
    detected = 0
    for pos in range(len(block)):
        bad = bytearray(block)
        bad[pos] ^= 0x5A
        out = np.empty(data.size, np.uint8)
        try:
            rans_decode(bytes(bad), out)
        except FormatError:
            detected += 1
        else:
            assert not np.array_equal(out, data) or bytes(bad) == bytes(block)
    # The final-state check catches nearly every corrupted payload byte.
    assert detected >= 0.95 * len(block)


def test_table_validation():
    block = bytearray(rans_encode(np.array([1, 2, 2, 3] * 100, np.uint8)))
    # Layout: varint n (2 bytes for 400), prob_bits, k - 1, symbols...
    bad_bits = bytearray(block)
    bad_bits[2] = 11
    with pytest.raises(FormatError, match="precision"):
        rans_decode(bytes(bad_bits), np.empty(400, np.uint8))
    unsorted = bytearray(block)
    unsorted[4], unsorted[5] = unsorted[5], unsorted[4]
    with pytest.raises(FormatError, match="ascending"):
        rans_decode(bytes(unsorted), np.empty(400, np.uint8))
