"""Choice of the frequency tables: contexts per byte plane and table groups per tile.

Each byte plane p is coded with tables[g * nctx + ctx], where the context ctx is a bucket of
the same element's plane p - 1 byte (for a float, the mantissa's top bits depend on the
exponent), or for plane 0 a bucket of the activity of the row above (residuals are large
where an image is busy; see cgc/lossless/_lossless_context.h), and the group g is picked
per tile (tiles of a tensor differ in scale; some rows of real checkpoints are stored at
lower precision).  A tile may also store a plane raw.
Everything is chosen by estimated coded size, table bytes included, so small inputs end up
with one table per plane and incompressible planes stay raw (which also decodes fastest)."""
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cgc.lossless._lossless_cy import RAW_GROUP, byte_plane, joint_histogram, tile_histograms

# Table precision, and the context and group counts the choice weighs
# (docs/tuning.md, "lossless/model.py: min_gain and contexts").
PROB_BITS = 12
CONTEXT_CHOICES = (1, 2, 4, 8, 16)
GROUP_CHOICES = (1, 2, 4, 8, 16)
KMEANS_ROUNDS = 6
# Bits per symbol charged to coding over storing raw: the rANS and table quantisation loss
# plus a margin that keeps near-uniform planes raw, where decoding is a copy
# (measurements: docs/tuning.md, "lossless/model.py: min_gain and contexts").
CODED_PENALTY_BITS = 0.01
_EPS = 0.02  # pseudo-count for symbols a candidate table has not seen


@dataclass
class PlaneModel:
    prob_bits: int
    nctx: int
    ngroups: int
    ctxmap: np.ndarray  # uint8[256]: previous plane's byte (plane 0: activity) -> context
    freqs: np.ndarray  # uint32[ngroups * nctx, 256], rows summing to 2**prob_bits or empty



def normalize_frequencies(counts, prob_bits):
    """Scale symbol counts to integer frequencies summing to 2**prob_bits.

    Every symbol with a non-zero count gets frequency >= 1.  Rounding is corrected greedily
    by the smallest increase in coded size, which keeps the loss against the empirical
    entropy to a small fraction of a percent."""
    counts = np.asarray(counts, dtype=np.int64)
    total_prob = 1 << prob_bits
    present = np.flatnonzero(counts)
    if present.size == 0:
        raise ValueError("no symbols to model")
    if present.size > total_prob:
        raise ValueError("more distinct symbols than probability slots")
    c = counts[present].astype(np.float64)
    freq = np.maximum(1, np.floor(c * total_prob / c.sum() + 0.5)).astype(np.int64)
    excess = int(freq.sum()) - total_prob
    while excess != 0:
        if excess > 0:
            # Cost in bits of taking one slot from each symbol that can spare one.
            cost = np.where(freq > 1, c * np.log2(freq / np.maximum(freq - 1, 1)), np.inf)
            step = min(excess, max(1, excess // present.size))
            order = np.argsort(cost, kind="stable")[:step]
            order = order[np.isfinite(cost[order])]
            freq[order] -= 1
            excess -= order.size
        else:
            gain = c * np.log2((freq + 1) / freq)
            step = min(-excess, max(1, -excess // present.size))
            order = np.argsort(-gain, kind="stable")[:step]
            freq[order] += 1
            excess += order.size
    out = np.zeros(counts.shape[0], dtype=np.uint32)
    out[present] = freq
    return out

def plane_symbols(resid, nbytes, p):
    """Byte p (0: most significant) of every residual, as a uint8 matrix."""
    out = np.empty(resid.shape, np.uint8)
    byte_plane(resid, nbytes, p, out)
    return out


def _entropy_bits(counts):
    """Order-0 code length in bits of each row of counts."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(counts > 0, counts * np.log2(total / np.where(counts > 0, counts, 1)),
                         0.0)
    return terms.sum(axis=-1)


def _table_bytes(counts):
    """Approximate serialised size of the table for each row of counts (format.py)."""
    counts = np.asarray(counts, dtype=np.float64)
    k = (counts > 0).sum(axis=-1)
    total = np.maximum(counts.sum(axis=-1, keepdims=True), 1)
    expected = counts * (1 << PROB_BITS) / total
    varints = np.where(counts > 0, np.where(expected < 128, 1, 2), 0).sum(axis=-1)
    return np.where(k > 0, 2 + np.minimum(k, 32) + varints, 1)


def _context_map(prev, sym):
    """Rank context input bytes (the previous plane's, or the activity) by how much knowing
    them saves, and return the best map."""
    joint = np.empty(65536, np.int64)
    joint_histogram(prev, sym, joint)
    joint = joint.reshape(256, 256).astype(np.float64)
    rowsum = joint.sum(axis=1)
    marginal = joint.sum(axis=0)
    # Saving of giving a byte its own context: its count times KL(P(sym|prev) || P(sym)).
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = joint * marginal.sum() / (rowsum[:, None] * marginal[None, :])
        gain = np.where(joint > 0, joint * np.log2(np.where(joint > 0, ratio, 1)), 0).sum(1)
    order = np.argsort(-gain, kind="stable")
    best_map, best_bits = np.zeros(256, np.uint8), None
    for nctx in CONTEXT_CHOICES:
        ctxmap = np.zeros(256, np.uint8)
        ctxmap[order[:nctx - 1]] = np.arange(1, nctx, dtype=np.uint8)
        # Contexts 1.. hold one input byte each, context 0 the rest.
        own = joint[order[:nctx - 1]]
        counts = np.concatenate([(marginal - own.sum(axis=0))[None, :], own])
        bits = _entropy_bits(counts).sum() + 8 * _table_bytes(counts).sum()
        if best_bits is None or bits < best_bits:
            best_map, best_bits = ctxmap, bits
    return best_map, int(best_map.max()) + 1


def _products(a, b):
    """a @ b.T without BLAS: these products are small, and waking a BLAS thread pool for
    them left its threads spinning against the codec's OpenMP threads (on 2 cores the
    encoder ran at half speed and decodes timed right after it slowed down)."""
    return np.einsum("ij,kj->ik", a, b, optimize=False)


def _assign(hist, sizes, centres, penalty):
    """Best group (or raw) per tile and the tiles' costs in bits, for the given centres."""
    smoothed = centres + _EPS
    nctx = smoothed.shape[1] // 256
    per_ctx = smoothed.reshape(len(centres), nctx, 256)
    logq = np.log2(per_ctx / per_ctx.sum(axis=2, keepdims=True)).reshape(len(centres), -1)
    cost = -_products(hist, logq) + penalty * sizes[:, None]
    choice = np.argmin(cost, axis=1)
    best = cost[np.arange(len(hist)), choice]
    raw = 8.0 * sizes
    choice = np.where(raw <= best, -1, choice)
    return choice, np.minimum(raw, best)


def _cluster(hist, sizes, ngroups, init, penalty):
    """k-means over tile histograms with code length as the distance."""
    centres = init
    for _ in range(KMEANS_ROUNDS):
        choice, _ = _assign(hist, sizes, centres, penalty)
        used = np.unique(choice[choice >= 0])
        if not used.size:
            return choice, centres[:0]
        # Sums of whole counts: exact in float64 whatever the order of the additions.
        centres = np.stack([hist[choice == g].sum(axis=0) for g in used])
    choice, _ = _assign(hist, sizes, centres, penalty)
    return choice, centres


def _split(hist, sizes, choice, centres, limit):
    """Seed up to limit centres: the raw tiles add the one that its own table would compress
    most, then each group adds its worst-fitting tile.  Without the former, tiles that no
    group fits (another predictor's residuals, say) would stay raw at every group count."""
    smoothed = centres + _EPS
    nctx = smoothed.shape[1] // 256
    per_ctx = smoothed.reshape(len(centres), nctx, 256)
    logq = np.log2(per_ctx / per_ctx.sum(axis=2, keepdims=True)).reshape(len(centres), -1)
    seeds = [centres]
    raw = np.flatnonzero(choice < 0)
    if raw.size:
        own = _entropy_bits(hist[raw].reshape(raw.size, nctx, 256)).sum(axis=1)
        seeds.append(hist[raw[np.argmin(own / np.maximum(sizes[raw], 1))]][None, :])
    for g in range(len(centres)):
        members = np.flatnonzero(choice == g)
        if members.size > 1:
            fit = -_products(hist[members], logq[g:g + 1])[:, 0] / np.maximum(sizes[members], 1)
            seeds.append(hist[members[np.argmax(fit)]][None, :])
    return np.concatenate(seeds)[:limit]


def _groups(hist, sizes, penalty):
    """Choose the table groups for one plane: returns (estimated bits, per-tile group or
    -1)."""
    # Per-tile choices ignore table bytes, so all-raw must be a candidate of its own: small
    # inputs would otherwise pay a whole table to shave a few bits off a near-uniform plane.
    best = (8.0 * sizes.sum() + 8, np.full(len(hist), -1))
    centres = hist.sum(axis=0, keepdims=True)
    choice, cost = _assign(hist, sizes, centres, penalty)
    bits = cost.sum() + 8 * _group_table_bytes(hist, choice, 1)
    if bits < best[0]:
        best = (bits, choice)
    for ngroups in GROUP_CHOICES[1:]:
        if ngroups > len(hist):
            break
        seeds = _split(hist, sizes, choice, centres, ngroups)
        choice, centres = _cluster(hist, sizes, ngroups, seeds, penalty)
        if len(centres) == 0:
            break
        _, cost = _assign(hist, sizes, centres, penalty)
        bits = cost.sum() + 8 * _group_table_bytes(hist, choice, len(centres))
        if bits < best[0]:
            best = (bits, choice)
    return best


def _group_table_bytes(hist, choice, ngroups):
    nctx = hist.shape[1] // 256
    total = 0
    for g in range(ngroups):
        counts = hist[choice == g].sum(axis=0).reshape(nctx, 256)
        total += _table_bytes(counts).sum()
    return total


def build(resid, sym0, activity, nbytes, tile, min_gain=CODED_PENALTY_BITS):
    """Plane models and the (ntiles, nbytes) uint8 group of each tile and plane; sym0 holds
    the plane-0 symbols (plane_symbols(resid, nbytes, 0)), activity their context inputs
    (cgc.lossless._lossless_cy.activity_map); a tile's plane is coded only where that saves more than
    min_gain bits per byte over storing it raw, and a plane has several contexts only where
    they save min_gain bits per byte."""
    rows, cols = resid.shape
    th, tw = tile
    tiles_x = -(-cols // tw) if cols else 0
    ntiles = -(-rows // th) * tiles_x if rows else 0
    groups = np.full((ntiles, nbytes), RAW_GROUP, dtype=np.uint8)
    planes = []
    if ntiles == 0:
        for _ in range(nbytes):
            planes.append(PlaneModel(PROB_BITS, 1, 0, np.zeros(256, np.uint8),
                                     np.zeros((0, 256), np.uint32)))
        return planes, groups
    heights = np.minimum(th, rows - np.arange(0, rows, th))
    widths = np.minimum(tw, cols - np.arange(0, cols, tw))
    sizes = (heights[:, None] * widths[None, :]).ravel().astype(np.float64)
    prev = activity
    for p in range(nbytes):
        sym = sym0 if p == 0 else plane_symbols(resid, nbytes, p)
        ctxmap, nctx, hist, choice = _plane_choice(prev, sym, tile, sizes, ntiles, min_gain)
        used = np.unique(choice[choice >= 0])
        renumber = np.full(max(int(choice.max()) + 1, 1), RAW_GROUP, dtype=np.int64)
        renumber[used] = np.arange(used.size)
        groups[:, p] = np.where(choice >= 0, renumber[np.maximum(choice, 0)], RAW_GROUP)
        freqs = np.zeros((used.size * nctx, 256), np.uint32)
        for g, old in enumerate(used):
            counts = hist[choice == old].sum(axis=0).reshape(nctx, 256)
            for c in range(nctx):
                if counts[c].any():
                    freqs[g * nctx + c] = normalize_frequencies(counts[c], PROB_BITS)
        planes.append(PlaneModel(PROB_BITS, nctx, int(used.size), ctxmap, freqs))
        prev = sym
    return planes, groups


def _plane_choice(prev, sym, tile, sizes, ntiles, penalty):
    """Context map, context count, tile histograms and tile groups of one plane.  Several
    contexts must save penalty bits per symbol over one, counted after the choice of tile
    groups, which often capture the same variation (bfloat16 word embeddings of
    all-MiniLM-L6-v2: activity contexts looked worth over 0.02 bits per exponent alone,
    under 0.01 beside 11 groups, and the model decoded 18 % slower with them, as a
    one-context plane looks no context up)."""
    best = None
    ctxmap, nctx = _context_map(prev, sym)
    for ctxmap, nctx in [(ctxmap, nctx)] + ([(np.zeros(256, np.uint8), 1)] if nctx > 1 else []):
        hist = np.empty((ntiles, nctx * 256))
        tile_histograms(prev, sym, ctxmap, nctx, tile[0], tile[1], hist)
        bits, choice = _groups(hist, sizes, penalty)
        bits += penalty * sym.size * (nctx > 1)
        if best is None or bits < best[0]:
            best = (bits, ctxmap, nctx, hist, choice)
    return best[1:]


@dataclass
class CodingTables:
    """The plane models flattened into the arrays the encoder and decoders index.  Built
    for every decoded tensor, so kept to a few array operations: a model checkpoint has
    dozens of tensors of a few hundred elements, whose decode this cost dominated."""
    tbase: np.ndarray  # int32[P]: first table of each plane
    nctx: np.ndarray  # int32[P]
    prob_bits: np.ndarray  # uint8[P]
    ctxmap: np.ndarray  # uint8[P, 256]
    freq: np.ndarray  # uint32[T, 256]

    @cached_property
    def start(self):
        """uint32[T, 256]: exclusive prefix sums of freq (the encoder reads them)."""
        return (np.cumsum(self.freq, axis=1, dtype=np.uint32) - self.freq).astype(np.uint32)

    @cached_property
    def freq_start(self):
        """uint32[T, 256]: start << 16 | (freq - 1) of each symbol, the CUDA decoder's one
        load per decoded symbol.  Both fit 16 bits (freq <= 2**16 with at most 16 probability
        bits); a symbol of frequency 0 is never decoded, and its entry is left arbitrary."""
        return (self.start << 16) | ((self.freq - 1) & 0xFFFF)

    @cached_property
    def lookup(self):
        """uint8[T, 2**max(prob_bits)]: slot -> symbol.  Built on first use: only the CUDA
        decoder reads it (the CPU decoder builds its own tables in C), and a loop over the
        tables costs more than decoding a small tensor."""
        lookup = np.zeros((len(self.freq), 1 << int(self.prob_bits.max())), np.uint8)
        symbols = np.arange(256, dtype=np.uint8)
        for t in range(len(self.freq)):
            row = np.repeat(symbols, self.freq[t])
            lookup[t, :row.size] = row
        return lookup


def coding_tables(planes):
    """The flattened tables.  An empty table (a context no tile of its group had) decodes,
    as docs/lossless-format.md specifies, like one that gives symbol 0 every slot: written
    out here, so that every decoder built on these arrays behaves the same on streams that
    use one."""
    counts = [len(p.freqs) for p in planes]
    tbase = [0]
    for n in counts[:-1]:
        tbase.append(tbase[-1] + n)
    if sum(counts):
        freq = np.concatenate([p.freqs for p in planes]).astype(np.uint32, copy=False)
    else:
        freq = np.zeros((1, 256), np.uint32)
    filled = freq.any(axis=1)
    if not filled.all():
        row_bits = [p.prob_bits for p, n in zip(planes, counts) for _ in range(n)] or [PROB_BITS]
        for t in np.flatnonzero(~filled):
            freq[t, 0] = 1 << row_bits[t]
    return CodingTables(np.array(tbase, np.int32), np.array([p.nctx for p in planes], np.int32),
                        np.array([p.prob_bits for p in planes], np.uint8),
                        np.array([p.ctxmap for p in planes], np.uint8), freq)
