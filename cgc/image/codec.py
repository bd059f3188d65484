"""encode / decode: glue between fitting (an over-fit pruned to the file's count), bit
allocation, quantisation, the refinement of the codes, the growth of a fit short of its
budget, and the container."""
import math

import numpy as np

from cgc.errors import FormatError
from cgc.image.allocate import allocate
from cgc.backends import get_backend
from cgc.image.container import (LAYERED_VERSION, SMALLEST_FILE, pack, peek_version,
                                 storage_order, unpack)
from cgc.image.fit import fit, is_method
from cgc.image.model import Gaussians, scaled_size
from cgc.image.grow import GROW_ITERATION_SHARE, grow
from cgc.image.layers import (MAX_LAYERS, LayerReader, check_layers, layer_counts, pack_layers,
                              read_layers, storage_order_in_layers)
from cgc.image.loss import TUNES, get_loss
from cgc.image.presets import DEFAULT_PRESET, budget_bytes, get_preset, quality_bpp
from cgc.image.prune import prune
from cgc.imageio import to_float_image, to_uint8
from cgc.metrics import psnr_of_mse
from cgc.image.quantize import DEFAULT_BITS, check_bits, dequantise, quantise
from cgc.image.refine import refine_codes
from cgc import limits
from cgc.image import rd_estimate
from cgc.image.rate import SLOPE_DB, first_budget, smallest_passing

# Default density: one Gaussian per this many pixels (6,144 for a 768x512 image).
PIXELS_PER_GAUSSIAN = 64
# What a byte budget pays for when no count is given: about BITS_PER_GAUSSIAN bits of codes
# per Gaussian plus TABLE_BYTES of header, quantisers, stream lengths and coder ends
# (measurements: docs/tuning.md, "image/codec.py: budget and Gaussian count").
BITS_PER_GAUSSIAN = 44
TABLE_BYTES = 200
# A budget-count file that fills less than FILL_SHARE of its budget is made again from a
# grown fit of at most MAX_GROWTH times the count, kept if it decodes better
# (docs/tuning.md, "image/codec.py: growth of short files").
FILL_SHARE = 0.95
MAX_GROWTH = 1.5
GROWTH_MARGIN = 0.97
# A full budget-count file decoding below DETAIL_PSNR dB (texture left) is made again from
# a fit of DETAIL_COUNT_SHARE times the count (LOW_RATE_DETAIL_COUNT_SHARE below
# LOW_RATE_BPP): such images gain more from more Gaussians than from finer widths
# (docs/tuning.md, "image/codec.py: detail count").
DETAIL_PSNR = 32.0
DETAIL_COUNT_SHARE = 1.25
LOW_RATE_DETAIL_COUNT_SHARE = 1.15
LOW_RATE_BPP = 0.4
# Where the image is predicted to decode below DETAIL_PSNR - DETAIL_MARGIN dB at the
# budget's rate, the detail count is fitted at once, skipping the budget count's fit whose
# file would be made again anyway (docs/tuning.md, "image/codec.py: detail probe").
DETAIL_MARGIN = 1.0
PROBE_MIN_PIXELS = 256 * 256
PROBE_MAX_BPP = 8.0
# Allocations tried for files that overshoot a byte budget (_encode_fitted).
ALLOCATION_TRIES = 4
# A quality target is searched up to this rate (70,000 Gaussians on a Kodak image at 44
# bits each; docs/tuning.md, "image/codec.py: quality-target range").
MAX_BPP = 8.0
# Counts this close share fits in a quality-target search (_Fitter).
REUSE_SHARE = 0.05
# A file's N Gaussians come from a fit of OVERFIT_SHARE N, pruned to N and fitted on for
# PRUNE_ITERATION_SHARE of the full-resolution steps; an earlier over-fit of up to
# PRUNE_REACH N serves as well (docs/tuning.md, "image/codec.py: over-fit and pruning").
OVERFIT_SHARE = 1.2
PRUNE_ITERATION_SHARE = 0.5
PRUNE_REACH = 1.35


def default_n_gaussians(height, width):
    return max(1, math.ceil(height * width / PIXELS_PER_GAUSSIAN))


def quantise_gaussians(gaussians, bits=DEFAULT_BITS, layers=None):
    """(codes in the file's order, quantisers, the dequantised Gaussians a decoder will
    see); ``layers``: the Gaussian counts of a progressive file's layers, in order."""
    quantisers, codes = quantise(gaussians.params, bits)
    widths = [q.bits for q in quantisers]
    codes = codes[storage_order(codes, widths) if layers is None
                  else storage_order_in_layers(codes, widths, layers)]
    return codes, quantisers, Gaussians(dequantise(quantisers, codes),
                                        gaussians.height, gaussians.width)


def encode_gaussians(gaussians, bits=DEFAULT_BITS):
    """Quantise (``bits``: one code width per attribute, see cgc.image.quantize.ATTRIBUTES) and
    entropy-code fitted Gaussians into .cgc bytes."""
    codes, quantisers, _ = quantise_gaussians(gaussians, bits)
    return pack(gaussians.width, gaussians.height, quantisers, codes)


def _pack(gaussians, quantisers, codes, layers):
    if layers is None:
        return pack(gaussians.width, gaussians.height, quantisers, codes)
    return pack_layers(gaussians.width, gaussians.height, quantisers, codes, layers)


def decode_gaussians(data, strict=True):
    """Parse .cgc bytes back into the dequantised Gaussians; of a progressive file, those
    of the complete layers of ``data``, which may be a prefix (cgc.image.layers)."""
    data = bytes(data)
    if peek_version(data) == LAYERED_VERSION:
        packed, _ = read_layers(data, strict=strict)
    else:
        packed = unpack(data)
    return _dequantised(packed)


def _dequantised(packed):
    """The Gaussians a decoder sees of a :class:`cgc.image.container.Packed`."""
    params = dequantise(packed.quantisers, packed.codes, packed.colour_space)
    return Gaussians(params, packed.height, packed.width)


def n_gaussians_for_bytes(max_bytes, height, width):
    """The Gaussian count whose file typically fills ``max_bytes`` (at most one per pixel)."""
    reserve = min(TABLE_BYTES, max_bytes)
    return max(1, min(height * width, 8 * (max_bytes - reserve) // BITS_PER_GAUSSIAN))


def grown_count(n_gaussians, file_bytes, max_bytes, height, width):
    """The Gaussian count whose file should fill ``max_bytes``, given that ``n_gaussians``
    made a file of ``file_bytes``: the same bytes per Gaussian beyond the tables' reserve,
    at most MAX_GROWTH times as many, never more than one per pixel."""
    reserve = min(TABLE_BYTES, max_bytes)
    ratio = GROWTH_MARGIN * (max_bytes - reserve) / max(file_bytes - reserve, 1)
    return min(height * width, max(n_gaussians, int(n_gaussians * min(MAX_GROWTH, ratio))))


def _encode_fitted(gaussians, image, bits, max_bytes, refine, device, layers=None,
                   tune="psnr"):
    """Bytes of fitted Gaussians: widths (given or allocated), codes (refined if asked).

    The allocation sizes streams in an order and contexts close to the file's, not equal
    to them, and the widths are sized for the nearest codes, which refined ones may code a
    little larger.  A file over ``max_bytes`` is made again from widths allocated for a
    smaller budget, up to ALLOCATION_TRIES times; then the nearest codes of the first
    widths that fitted are kept.  The smaller budget is the size the allocation predicted
    for the widths less the file's overshoot, so that the model's error on those widths,
    and what refinement adds, are both made room for (a smaller budget by the overshoot
    alone can keep the widths: docs/tuning.md, "image/codec.py: budget overshoot")."""
    fallback = None
    budget = max_bytes
    counts = None if layers is None else layer_counts(len(gaussians), layers)
    for _ in range(ALLOCATION_TRIES):
        if bits is None:
            try:
                chosen, predicted = allocate(gaussians, image, device=device, max_bytes=budget,
                                             loss=tune)
            except ValueError:
                if fallback is None and budget == max_bytes:  # the caller's budget is too small
                    raise
                break
        else:
            chosen = bits
        codes, quantisers, _ = quantise_gaussians(gaussians, chosen, counts)
        data = _pack(gaussians, quantisers, codes, counts)
        if max_bytes is None or len(data) <= max_bytes:
            if not refine:
                return data
            fallback = fallback or data
            refined = refine_codes(codes, quantisers, image, device=device)
            data = _pack(gaussians, quantisers, refined, counts)
            if max_bytes is None or len(data) <= max_bytes:
                return data
        if bits is not None:  # fixed widths: nothing to allocate again
            break
        budget = min(budget, predicted) - max(1, len(data) - max_bytes)
    if fallback is None:
        raise ValueError(f"{len(gaussians)} Gaussians did not fit max_bytes={max_bytes}: "
                         f"use fewer Gaussians")
    return fallback


def _mse(data, image, device):
    """Mean squared error of the decoded 8-bit image, in 8-bit units."""
    decoded = decode(data, device=device).astype(np.float64)
    return float(np.mean((decoded - 255.0 * image) ** 2))


def _decoded_loss(data, image, device, loss):
    """``loss``'s value on the decoded image (as fits see it: float in [0, 1])."""
    decoded = decode(data, device=device).astype(np.float32) / np.float32(255.0)
    return loss.value(np, decoded, np.asarray(image, dtype=np.float32))


class _Fitter:
    """The fits of one ``encode`` call, with its fit options.  A count's fit is an over-fit
    pruned to it (OVERFIT_SHARE), made once: a count within REUSE_SHARE of a fit already
    made takes that fit (the last steps of a quality-target search move the budget, and so
    the count, by a few per cent), and an over-fit of up to PRUNE_REACH times the count is
    pruned again rather than made anew."""

    def __init__(self, image, iterations, seed, device, progress, init, coarse_iterations,
                 tune="psnr", overfit=True, layers=None, schedule=None):
        self.image, self.iterations, self.seed, self.device = image, iterations, seed, device
        self.progress, self.init, self.coarse_iterations = progress, init, coarse_iterations
        self.tune = tune
        self.overfit_share = OVERFIT_SHARE if overfit else 1.0
        self.layers = layers  # a progressive file's layer count, or None
        # A preset's rates for the first fits (lr_scale, final_lr_fraction): growth and
        # pruning continue a fit at rates of their own.
        self.schedule = schedule or {}
        self.made = []
        self.overfits = []

    def fit(self, n_gaussians):
        near = [g for g in self.made if abs(len(g) - n_gaussians) <= REUSE_SHARE * n_gaussians]
        if near:
            return min(near, key=lambda g: abs(len(g) - n_gaussians))
        height, width = self.image.shape[:2]
        over = min(height * width, math.ceil(self.overfit_share * n_gaussians))
        steps = round(PRUNE_ITERATION_SHARE * self.iterations)
        if over <= n_gaussians or steps < 1 or not is_method(self.init):
            # Nothing to prune, no steps to settle, or given starting Gaussians to fit.
            gaussians = self._fit(n_gaussians)
        else:
            sources = [g for g in self.overfits
                       if n_gaussians < len(g) <= PRUNE_REACH * n_gaussians]
            if sources:
                source = min(sources, key=lambda g: abs(len(g) - over))
            else:
                source = self._fit(over)
                self.overfits.append(source)
            gaussians = prune(source, self.image, n_gaussians, steps, seed=self.seed,
                              device=self.device, progress=self.progress, loss=self.tune,
                              layers=self.counts(n_gaussians))
        self.made.append(gaussians)
        return gaussians

    def _fit(self, n_gaussians):
        return fit(self.image, n_gaussians, iterations=self.iterations, seed=self.seed,
                   device=self.device, progress=self.progress, init=self.init,
                   coarse_iterations=self.coarse_iterations, loss=self.tune,
                   layers=self.counts(n_gaussians), **self.schedule)

    def counts(self, n_gaussians):
        """The Gaussians of each layer of a fit of ``n_gaussians`` (None: no layers)."""
        return None if self.layers is None else layer_counts(n_gaussians, self.layers)

    def grow(self, gaussians, n_gaussians):
        return grow(gaussians, self.image, n_gaussians,
                    round(GROW_ITERATION_SHARE * self.iterations), seed=self.seed,
                    device=self.device, progress=self.progress, loss=self.tune,
                    layers=self.counts(n_gaussians))


def encode(image, n_gaussians=None, iterations=None, seed=0, device="cpu",
           progress=None, init="gradient", bits=None, max_bytes=None, refine=None, fill=None,
           coarse_iterations=None, psnr=None, tune="psnr", preset=DEFAULT_PRESET, bpp=None,
           quality=None, layers=None):
    """Fit Gaussians to an image and return the .cgc bytes.

    ``image``: (H, W, 3) or (H, W) array, uint8, uint16 or float in [0, 1].  ``n_gaussians``
    defaults to one per 64 pixels, or with ``max_bytes`` to as many as typically fit; they
    come from a fit of OVERFIT_SHARE times as many, pruned to the count and fitted on for
    PRUNE_ITERATION_SHARE of ``iterations`` more steps (cgc.image.prune.prune).
    ``iterations`` and ``coarse_iterations``: the fit's steps at full and at half
    resolution (cgc.fit; the default coarse count follows the density).
    ``bits``: one code width (1 to 16) per attribute; by default a rate-distortion search
    picks them for this image (cgc.image.allocate).  ``max_bytes``: the file is at most this
    size, its widths the best the search finds within it (ValueError if the Gaussians
    cannot fit); not with ``bits``.  ``psnr``: instead of a size, a quality: the smallest
    file found whose decoded image is at least this many dB from ``image`` (as 8-bit RGB),
    by encoding at several budgets (cgc.image.rate: 3 to 6 encodes on Kodak, of which the
    last reuse fits); ValueError if no budget up to MAX_BPP bits per pixel reaches it; not
    with ``n_gaussians``, ``bits`` or ``max_bytes``.  ``refine``: choose the codes that
    render best rather than the nearest ones (cgc.refine; the file keeps the nearest codes
    if the refined ones would exceed ``max_bytes``).  ``fill``: when the count came from
    ``max_bytes`` and the file fills less than FILL_SHARE of it, grow the fit (cgc.image.grow);
    when it is full but decodes below DETAIL_PSNR dB, fit again with more Gaussians
    (DETAIL_COUNT_SHARE times as many, fewer at low rates); either file is kept only if it
    decodes better.  ``tune``: what the fits minimise (cgc.image.loss): "psnr", squared
    error, or "ssim", the mix of L1, L2 and 1 - SSIM, or a cgc.image.loss object (other
    weights: ``Perceptual(l1, l2, ssim)``); bit allocation (cgc.image.allocate) and
    the choice between a fit and its refit judge by that loss too; refinement and the size
    and quality searches judge by squared error.
    ``preset``: "fast", "balanced", "high" or "ultra" (cgc.image.presets.PRESETS), the
    defaults of ``iterations``, ``refine``, ``fill``, whether to over-fit and prune, and
    the first fit's learning rates.
    ``bpp``: ``max_bytes`` given in bits per pixel of this image.  ``quality``: 0 to 100,
    a rate of cgc.image.presets.quality_bpp bits per pixel.  At most one of ``max_bytes``,
    ``bpp``, ``quality`` and ``psnr``.  ``layers``: a progressive file (format version 4) of
    this many layers, coarse to fine (1 to MAX_LAYERS; cgc.image.layers.DEFAULT_LAYERS is
    3), whose every prefix holding whole layers decodes; the fits weigh the image of each
    run of layers from the first too (cgc.fit(layers=)).  None: a version-3 file."""
    image = to_float_image(image)
    height, width = image.shape[:2]
    # Argument errors before the fit, not after it.
    chosen = get_preset(preset)
    iterations = chosen.iterations if iterations is None else iterations
    refine = chosen.refine if refine is None else refine
    fill = chosen.fill if fill is None else fill
    targets = [name for name, value in (("max_bytes", max_bytes), ("bpp", bpp),
                                        ("quality", quality), ("psnr", psnr))
               if value is not None]
    if len(targets) > 1:
        raise ValueError(f"give one of max_bytes, bpp, quality and psnr, not "
                         f"{' and '.join(targets)}")
    if quality is not None:
        bpp = quality_bpp(quality)
    if bpp is not None:
        if bits is not None:
            raise ValueError(f"give bits or {targets[0]}, not both")
        max_bytes = budget_bytes(bpp, height, width)
        if max_bytes < SMALLEST_FILE:
            raise ValueError(f"{targets[0]}={bpp if quality is None else quality} is "
                             f"{max_bytes} bytes for this {width}x{height} image, below the "
                             f"smallest .cgc file ({SMALLEST_FILE} bytes)")
    if bits is not None:
        bits = check_bits(bits)
        if max_bytes is not None:
            raise ValueError("give bits or max_bytes, not both")
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or (
                max_bytes < 1):
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        if max_bytes < SMALLEST_FILE:
            raise ValueError(f"max_bytes={max_bytes} is below the smallest .cgc file "
                             f"({SMALLEST_FILE} bytes)")
    if psnr is not None:
        if isinstance(psnr, bool) or not isinstance(psnr, (int, float, np.integer,
                                                           np.floating)) or not psnr > 0 \
                or not math.isfinite(psnr):
            raise ValueError(f"psnr must be a positive number of dB, got {psnr!r}")
        given = [name for name, value in (("n_gaussians", n_gaussians), ("bits", bits),
                                          ("max_bytes", max_bytes)) if value is not None]
        if given:
            raise ValueError(f"give psnr or {given[0]}, not both")
    try:
        get_loss(tune)
    except ValueError:
        raise ValueError(f"tune must be one of {TUNES} or a cgc.image.loss object, not "
                         f"{tune!r}") from None
    if layers is not None:
        if isinstance(layers, bool) or not isinstance(layers, (int, np.integer)) or not (
                1 <= layers <= MAX_LAYERS):
            raise ValueError(f"layers must be an integer from 1 to {MAX_LAYERS}, got "
                             f"{layers!r}")
        layers = int(layers)
    fitter = _Fitter(image, iterations, seed, device, progress, init, coarse_iterations, tune,
                     chosen.overfit, layers,
                     {"lr_scale": dict(chosen.lr_scale),
                      "final_lr_fraction": chosen.final_lr_fraction})
    if psnr is not None:
        return _encode_to_psnr(image, float(psnr), fitter, refine, fill)
    count_from_budget = max_bytes is not None and n_gaussians is None
    if count_from_budget:
        n_gaussians = n_gaussians_for_bytes(int(max_bytes), height, width)
    elif n_gaussians is None:
        n_gaussians = default_n_gaussians(height, width)
    data, _ = _encode_count(image, n_gaussians, fitter, bits, max_bytes, refine,
                            fill and count_from_budget)
    return data


def _encode_count(image, n_gaussians, fitter, bits, max_bytes, refine, fill, detailed=None):
    """``encode`` once the count is known; ``fill``: the count came from ``max_bytes``, and
    a short or poor file may be made again (see ``encode``).  ``detailed``: whether the
    budget count's file would decode below DETAIL_PSNR - DETAIL_MARGIN dB, where the caller
    knows better than the estimate.  Returns (file, its decoded MSE in 8-bit units,
    or None where no decision needed it)."""
    height, width = image.shape[:2]
    device = fitter.device
    fill = fill and round(GROW_ITERATION_SHARE * fitter.iterations) > 0  # fits to make again
    if fill and (_clearly_detailed(image, max_bytes) if detailed is None else detailed):
        count = _detail_count(n_gaussians, max_bytes, height, width)
        if count > n_gaussians:
            try:
                return _encode_fitted(fitter.fit(count), image, bits, max_bytes, refine,
                                      device, fitter.layers, fitter.tune), None
            except ValueError:  # the detail count does not fit the budget
                pass
    gaussians = fitter.fit(n_gaussians)
    data = _encode_fitted(gaussians, image, bits, max_bytes, refine, device, fitter.layers,
                          fitter.tune)
    if not fill:
        return data, None
    mse = _mse(data, image, device)
    if len(data) < FILL_SHARE * max_bytes:
        count = grown_count(n_gaussians, len(data), max_bytes, height, width)
        candidate = fitter.grow(gaussians, count)
    elif psnr_of_mse(mse, 255) < DETAIL_PSNR:
        count = _detail_count(n_gaussians, max_bytes, height, width)
        if count <= n_gaussians:
            return data, mse
        candidate = fitter.fit(count)
    else:
        return data, mse
    if candidate is None:
        return data, mse
    try:
        candidate_data = _encode_fitted(candidate, image, bits, max_bytes, refine, device,
                                        fitter.layers, fitter.tune)
    except ValueError:  # the new count does not fit the budget even at 1-bit codes
        return data, mse
    candidate_mse = _mse(candidate_data, image, device)
    if fitter.tune == "psnr":
        better = candidate_mse < mse
    else:  # judged by the loss the fits minimised
        loss = get_loss(fitter.tune)
        better = (_decoded_loss(candidate_data, image, device, loss)
                  < _decoded_loss(data, image, device, loss))
    if better:
        return candidate_data, candidate_mse
    return data, mse


def _detail_count(n_gaussians, max_bytes, height, width):
    """The Gaussian count of a detailed image's file (see DETAIL_PSNR)."""
    low_rate = 8 * max_bytes < LOW_RATE_BPP * height * width
    share = LOW_RATE_DETAIL_COUNT_SHARE if low_rate else DETAIL_COUNT_SHARE
    return min(height * width, int(n_gaussians * share))


def _clearly_detailed(image, max_bytes):
    """Whether a wavelet coder is estimated to decode ``image`` below DETAIL_PSNR -
    DETAIL_MARGIN dB at the rate of ``max_bytes`` (cgc.image.rd_estimate; False, the slower
    path to the same file, for images too small or too large to judge and for rates beyond
    PROBE_MAX_BPP)."""
    pixels = image.shape[0] * image.shape[1]
    bpp = 8 * max_bytes / pixels
    if not PROBE_MIN_PIXELS <= pixels <= rd_estimate.MAX_PIXELS or bpp > PROBE_MAX_BPP:
        return False
    # The same decision as psnr_at(image, bpp) < the threshold, at a cost independent of bpp.
    return rd_estimate.bpp_at(to_uint8(image), DETAIL_PSNR - DETAIL_MARGIN) > bpp


def _encode_to_psnr(image, target, fitter, refine, fill):
    """The smallest file found that decodes at ``target`` dB or more (cgc.image.rate)."""
    height, width = image.shape[:2]
    pixels = height * width
    made = {}  # budget -> PSNR of its file

    def detailed(budget):
        """From the nearest budget's file, SLOPE_DB per doubling: whether this budget's file
        decodes below DETAIL_PSNR - DETAIL_MARGIN (docs/tuning.md, "image/codec.py: detail
        probe")."""
        if not made:
            return None
        nearest = min(made, key=lambda b: abs(math.log(b / budget)))
        expected = made[nearest] + SLOPE_DB * math.log2(budget / nearest)
        return expected < DETAIL_PSNR - DETAIL_MARGIN

    def encode_at(budget):
        count = n_gaussians_for_bytes(budget, height, width)
        data, mse = _encode_count(image, count, fitter, None, budget, refine, fill,
                                  detailed(budget))
        if mse is None:
            mse = _mse(data, image, fitter.device)
        made[budget] = psnr_of_mse(mse, 255)
        return data, made[budget]

    high = max(SMALLEST_FILE, TABLE_BYTES + math.ceil(MAX_BPP * pixels / 8))
    data, _, _ = smallest_passing(encode_at, target, first_budget(to_uint8(image), target),
                                  SMALLEST_FILE, high)
    return data


def decode(data, device="cpu", scale=None, size=None, to_host=True, strict=True):
    """Decode .cgc bytes to a uint8 (H, W, 3) image, by default of the encoded size; with
    ``to_host=False`` an array of the device's module (CuPy for "cuda"), left there.

    ``size=(height, width)``, or ``scale`` (a factor; the size is rounded), renders the
    Gaussians onto another grid instead (cgc.Gaussians.resized): enlarged, the model is
    sampled more finely; reduced, each output pixel is close to the mean of the pixels it
    covers.  A progressive file (``encode(layers=)``) may be cut short anywhere after its
    first layer: the image is that of its complete layers (``cgc.layer_info`` says how
    many).  A damaged layer raises FormatError, or with ``strict=False`` gives the image of
    the layers before it, with a RuntimeWarning."""
    if scale is not None and size is not None:
        raise ValueError("give scale or size, not both")
    return render_gaussians(decode_gaussians(data, strict), device, scale, size, to_host)


def render_gaussians(gaussians, device="cpu", scale=None, size=None, to_host=True):
    """Decoded Gaussians to a uint8 image, as ``decode`` renders them (the render's work
    checked against cgc.limits first)."""
    if scale is not None:
        size = scaled_size(gaussians.height, gaussians.width, scale)
    if size is not None:
        if isinstance(size, (str, bytes)) or np.ndim(size) != 1 or len(size) != 2:
            raise ValueError(f"size must be (height, width), got {size!r}")
        gaussians = gaussians.resized(*size)
    limits.check_render(gaussians)
    image = gaussians.render(device=device, clip=False, to_host=to_host)
    return to_uint8(image) if to_host else to_uint8(image, get_backend(device).xp)


def decode_progressive(chunks, device="cpu", scale=None, size=None, to_host=True,
                       strict=True):
    """Decode a .cgc file arriving in pieces: ``chunks`` is an iterable of bytes (a socket's
    reads, a file read in blocks).  Yields (layers, image) each time a progressive file's
    layers complete: the image of its first ``layers`` layers, as ``decode`` gives it with
    the same options; when several complete in one chunk, only the image of all of them.
    A version 1-3 file yields once, (1, image), when it has all come.  A damaged layer
    raises FormatError after the images of the layers before it (``strict=False``: a
    RuntimeWarning, and the iteration ends); so do chunks that end before the file does."""
    if scale is not None and size is not None:
        raise ValueError("give scale or size, not both")
    received = bytearray()
    reader = None
    shown = 0
    for chunk in chunks:
        received += chunk
        if reader is None:
            version = peek_version(received)
            if version is None:
                continue
            if version != LAYERED_VERSION:
                reader = False
        if reader is False:
            continue
        reader = reader or LayerReader()
        complete = reader.advance(received)
        if complete > shown:
            shown = complete
            yield complete, render_gaussians(_dequantised(reader.packed()), device, scale,
                                             size, to_host)
        if reader.info is not None and reader.info.damaged is not None:
            check_layers(reader, strict)
            return
    if reader is False or (reader is None and received):
        yield 1, decode(bytes(received), device, scale, size, to_host)
        return
    info = reader.info if reader else None
    if info is None or info.complete < info.count:
        have = 0 if info is None else info.complete
        total = "?" if info is None else info.count
        raise FormatError(f"the stream ended after {len(received)} bytes, {have} of "
                          f"{total} layers")
    if len(received) != info.ends[-1]:
        raise FormatError(f"{len(received) - info.ends[-1]} bytes after the last layer")
