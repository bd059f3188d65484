"""Encoder of the static rANS blocks of .cgc versions 1 and 2 (docs/format.md, "Versions 1
and 2"), written from the spec for the tests: cgc only reads such blocks.

Block: varint n; nothing more when n == 0; else u8 prob_bits (0: the n bytes follow
verbatim), u8 k - 1, the k symbols (ascending bytes when k <= 31, else a 32-byte bitmap),
varint frequencies of all but the last symbol, u32le final encoder state, then the bytes
the encoder pushed, in the order the decoder reads them."""
import numpy as np

from cgc.lossless.model import normalize_frequencies

RANS_L = 1 << 23


def varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_with_table(data, freq, prob_bits):
    """The block of ``data`` (uint8 array) coded with ``freq`` (256 frequencies summing to
    2**prob_bits, non-zero for every symbol present)."""
    freq = [int(f) for f in freq]
    start = np.concatenate([[0], np.cumsum(freq)[:-1]]).tolist()
    symbols = [s for s in range(256) if freq[s]]
    header = bytearray(varint(len(data)))
    header += bytes([prob_bits, len(symbols) - 1])
    if len(symbols) <= 31:
        header += bytes(symbols)
    else:
        bitmap = bytearray(32)
        for s in symbols:
            bitmap[s >> 3] |= 1 << (s & 7)
        header += bitmap
    for s in symbols[:-1]:
        header += varint(freq[s])
    # rANS is last in, first out: code the symbols backwards; the pushed bytes are read
    # forwards by the decoder, so they are reversed at the end.
    state, pushed = RANS_L, bytearray()
    for s in reversed(data.tolist()):
        x_max = ((RANS_L >> prob_bits) << 8) * freq[s]
        while state >= x_max:
            pushed.append(state & 0xFF)
            state >>= 8
        state = ((state // freq[s]) << prob_bits) + state % freq[s] + start[s]
    return bytes(header) + state.to_bytes(4, "little") + bytes(reversed(pushed))


def rans_encode(data):
    """A block for ``data`` (bytes or a uint8 array): the precision (12..16) whose table and
    coded bits are estimated smallest, or the verbatim form where that is smaller."""
    data = np.frombuffer(bytes(data), np.uint8) if not isinstance(data, np.ndarray) else \
        np.ascontiguousarray(data, np.uint8)
    if data.size == 0:
        return varint(0)
    counts = np.bincount(data, minlength=256)
    present = counts > 0

    def estimate(prob_bits):
        freq = normalize_frequencies(counts, prob_bits)
        bits = -(counts[present] * np.log2(freq[present] / 2.0 ** prob_bits)).sum()
        return bits / 8 + 2 * np.count_nonzero(present), freq

    options = [(estimate(pb), pb) for pb in range(12, 17)
               if np.count_nonzero(present) <= 1 << pb]
    (_, freq), prob_bits = min(options, key=lambda option: option[0][0])
    coded = encode_with_table(data, freq, prob_bits)
    stored = varint(data.size) + b"\x00" + data.tobytes()
    return stored if len(stored) <= len(coded) else coded
