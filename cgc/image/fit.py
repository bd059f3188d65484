"""The optimisation loop, written once for every backend.

Loss: sum of squared errors of the image clipped to [0, 1] (what a decoder shows), its
gradient passed straight through the clip: a pixel rendered above 1 where the image is
below 1 is pulled down (a mask that zeroed the gradient of clipped pixels left a 1x1
image's red stuck at 255), and one above 1 where the image is 1 costs nothing.  Other
losses (tune "ssim") lose the part of their gradient that pushes a clipped pixel further
out: nothing the decoder shows would stop it (_through_the_clip).  Adam with
one learning rate per parameter group, linearly warmed up then cosine-decayed, the
covariance eigenvalues clamped and the centres kept inside the image after every step; a
few times early on, the least active Gaussians are relocated to where the error is
(cgc/image/relocate.py).  Unless the fit is dense, a first stage fits the Gaussians to the
image at half resolution, where steps are cheaper and large moves easier (COARSE_PER_FINE).
Measurements behind the constants: docs/tuning.md."""
import logging
import math
import sys
import time

import numpy as np

from cgc.backends import get_backend
from cgc.image.model import COLUMNS, Gaussians
from cgc.imageio import to_float_image
from cgc.metrics import psnr_of_mse
from cgc.image.init import initialise
from cgc.image.loss import SquaredError, get_loss
from cgc.progress import ProgressBar
from cgc.image.relocate import relocate, relocates_by_default, relocation_steps

log = logging.getLogger("cgc.fit")

# Full-resolution steps (COARSE_PER_FINE times as many at half resolution come first): the
# middle of the quality-time curve, where a further doubling of the time buys little
# (measurements: docs/tuning.md, "image/fit.py: iterations").
DEFAULT_ITERATIONS = 600
# Coarse to fine: half-resolution steps (half_resolution) per full-resolution step, fitted
# first.  A step there costs about 0.4 of a full one and buys more than the same time spent
# at full resolution (measurements: docs/tuning.md, "image/fit.py: coarse stage").
COARSE_PER_FINE = 1.5
# Fits with fewer pixels per Gaussian at half resolution skip the coarse stage, which lost
# PSNR on them (measurements: docs/tuning.md, "image/fit.py: coarse stage").
MIN_COARSE_PIXELS_PER_GAUSSIAN = 4
# A layered fit minimises log E(whole) + LAYER_WEIGHT * sum_k log E(layers 1..k), E the
# squared error: each prefix's PSNR counts LAYER_WEIGHT times the whole's, whatever its
# level.  Weights on the errors themselves let the first, worst prefix take most of the
# pull (measurements: docs/tuning.md, "image/fit.py: layered fits").
LAYER_WEIGHT = 1.0
# Learning rates in parameter units per step: pixels for position and Cholesky factor,
# linear RGB for colour.  Position and Cholesky rates hold at every density
# (measurements: docs/tuning.md, "image/fit.py: learning rates").
DEFAULT_LR = {"position": 2.0, "cholesky": 0.6}
# The groups ``lr`` and ``lr_scale`` name: the rates above and the density-scaled colour.
LR_GROUPS = (*DEFAULT_LR, "colour")
# The colour rate is proportional to the density N / (H * W), COLOUR_LR at 5,000 Gaussians
# on a 768x512 image: a fixed rate left dense fits shrunk to the variance floor and stalled
# (measurements: docs/tuning.md, "image/fit.py: learning rates").
COLOUR_LR = 0.01
REFERENCE_PIXELS_PER_GAUSSIAN = 768 * 512 / 5000
# Denser fits than N=70,000 on Kodak are untested, and 0.3 was already worse there.
MAX_COLOUR_LR = 0.15
# Adam's beta2 of 0.95 rather than the usual 0.999: the gradients shrink by orders of
# magnitude as the fit converges, and a long second-moment memory keeps the steps small
# long after (measurements: docs/tuning.md, "image/fit.py: Adam betas").
ADAM_BETAS = (0.9, 0.95)
# Covariance eigenvalue bounds in squared pixels: below ~0.1 a Gaussian falls between pixel
# centres and stops receiving gradient; the upper bound keeps footprints within reason.
MIN_VARIANCE = 0.09
FINAL_LR_FRACTION = 0.05
# Every rate ramps up linearly over this many steps, then decays by a cosine to
# FINAL_LR_FRACTION: Adam's first steps, at full rate, scramble the initialisation
# (measurements: docs/tuning.md, "image/fit.py: warm-up, decay and bounds").
WARMUP_STEPS = 50
# Steps between checks for non-finite gradients and parameters (and the last step): each
# check reads a result back from the device, which on a GPU stalls the queue of launches.
CHECK_EVERY = 25


class FitDiagnosticError(RuntimeError):
    """The optimisation produced a non-finite value."""


def default_lr(height, width, n_gaussians):
    """The learning rates ``fit`` uses for an image size and Gaussian count."""
    pixels_per_gaussian = height * width / n_gaussians
    colour = COLOUR_LR * (REFERENCE_PIXELS_PER_GAUSSIAN / pixels_per_gaussian)
    return {**DEFAULT_LR, "colour": min(colour, MAX_COLOUR_LR)}


def scaled_rates(height, width, n_gaussians, share):
    """``default_lr`` times ``share``: the rates of a continued fit (growth, pruning)."""
    return {group: share * rate for group, rate in default_lr(height, width, n_gaussians).items()}


def _check_groups(rates, what):
    unknown = set(rates) - set(LR_GROUPS)
    if unknown:
        raise ValueError(f"unknown {what} groups {sorted(unknown)}")


def _lr_per_column(lr, lr_scale, height, width, n_gaussians):
    rates = {**default_lr(height, width, n_gaussians), **lr}
    rates = {group: rate * lr_scale.get(group, 1.0) for group, rate in rates.items()}
    return np.array([rates["position"]] * 2 + [rates["cholesky"]] * 3
                    + [rates["colour"]] * 3, dtype=np.float64)


def _check_finite(xp, array, what):
    finite = xp.isfinite(array)
    if bool(finite.all()):
        return
    bad = np.argwhere(~np.asarray(finite.get() if hasattr(finite, "get") else finite))
    g, k = (int(v) for v in bad[0])
    raise FitDiagnosticError(
        f"non-finite {what} for Gaussian {g}, parameter {COLUMNS[k]} "
        f"({len(bad)} non-finite entries in all)")


def is_method(init):
    """Whether ``init`` makes parameters for any target (a method's name, or a callable
    ``init(target, n_gaussians, seed)``), rather than giving them."""
    return isinstance(init, str) or callable(init)


def _starting_params(init, target, n_gaussians, seed):
    """float32 (n_gaussians, 8) parameters: initialised by the method named ``init`` (or
    the callable ``init``) for ``target``, or a checked copy of the given array (the fit
    writes into it)."""
    if isinstance(init, str):
        return initialise(target, n_gaussians, init, seed)
    if callable(init):
        init = init(target, n_gaussians, seed)
    params = np.array(init, dtype=np.float32)
    if params.shape != (n_gaussians, 8):
        raise ValueError(f"init parameters must have shape ({n_gaussians}, 8), "
                         f"got {params.shape}")
    if not np.isfinite(params).all():
        raise ValueError("init parameters must be finite")
    return params


def half_resolution(image):
    """The (H, W, 3) float image at half size: means of 2x2 pixel blocks, an odd last row
    or column repeated.  Coarse pixel (i, j) has its centre at full-resolution
    (2j + 1, 2i + 1), so a Gaussian fitted there maps back by doubling its x, y and L."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2, 3).mean(
        axis=(1, 3), dtype=np.float64).astype(np.float32)


def default_coarse_iterations(height, width, n_gaussians, iterations):
    """Steps at half resolution before ``iterations`` at full resolution when ``fit`` is not
    told: COARSE_PER_FINE per full-resolution step, none for fits denser than
    MIN_COARSE_PIXELS_PER_GAUSSIAN at half resolution."""
    coarse_pixels = ((height + 1) // 2) * ((width + 1) // 2)
    if coarse_pixels < MIN_COARSE_PIXELS_PER_GAUSSIAN * n_gaussians:
        return 0
    return int(round(COARSE_PER_FINE * iterations))


def fit(image, n_gaussians, iterations=DEFAULT_ITERATIONS, seed=0, init="gradient", lr=None,
        device="cpu", progress=None, log_every=100, max_variance=None, relocation=None,
        coarse_iterations=None, loss="psnr", layers=None, fixed=None, lr_scale=None,
        final_lr_fraction=FINAL_LR_FRACTION):
    """Fit ``n_gaussians`` Gaussians to ``image`` and return a :class:`cgc.Gaussians`.

    ``image`` is (H, W, 3), uint8 or float in [0, 1]. The result is bit-for-bit
    deterministic for a seed on a given device (the CPU, or one GPU model with CUDA); CPU
    and CUDA fits round differently, so they do not match each other bit for bit.
    ``lr`` maps any of "position", "cholesky" (pixels per step) and "colour" (linear RGB
    per step) to a peak Adam learning rate (betas ``ADAM_BETAS``), reached after a linear
    warm-up of ``WARMUP_STEPS`` steps and cosine-decayed to ``final_lr_fraction`` of it
    (0 to 1); groups left out take :func:`default_lr` (the colour rate grows with the
    density, so at half resolution it is four times as high); given rates hold at both
    resolutions.  ``lr_scale`` maps any of the groups to a factor on its rate, given or
    default, at both resolutions (the fast preset's shorter fit takes larger steps:
    cgc.image.presets).
    ``coarse_iterations``: a first fit of this many steps to the image at half resolution
    (:func:`half_resolution`, each step less than half the cost), whose Gaussians,
    scaled up, start the ``iterations`` full-resolution steps.  By default (None)
    :func:`default_coarse_iterations` when ``init`` names a method, else none.
    ``progress`` shows a bar on a terminal (default: when stderr is a TTY); every
    ``log_every`` iterations loss, PSNR, coverage and collapsed scales go to the
    ``cgc.fit`` logger.  Gradients and parameters are checked for non-finite values every
    ``CHECK_EVERY`` iterations and at the last (:class:`FitDiagnosticError`).
    ``init`` names a method of cgc.init, or is a callable ``init(target, n_gaussians,
    seed)`` returning the (``n_gaussians``, 8) parameters for a target of any size (a
    method of the caller's, such as cgc.image.svg's start from a drawing's geometry), or
    gives the starting parameters as such an array (``Gaussians.params`` of an earlier
    fit, to continue it).
    ``max_variance``: the largest covariance eigenvalue in square pixels (default
    (max(H, W) / 3)^2; a quarter of it at half resolution).
    ``relocation`` moves the least active Gaussians to the largest errors at a few early
    steps of each stage (:mod:`cgc.image.relocate`); each move is logged too, unless
    ``log_every`` is 0.  By default (None) fits with at least 16 pixels per Gaussian at
    full resolution relocate in both stages, denser ones do not; True or False decides.
    ``loss``: "psnr" (squared error) or "ssim" (L1, L2 and 1 - SSIM), or a
    :mod:`cgc.image.loss` object.
    ``layers``: Gaussian counts adding up to ``n_gaussians``, for a progressive file: the
    image of each run of Gaussians from the first (layers 1, 1-2, 1-3 ...) is fitted too,
    its squared error in decibels at LAYER_WEIGHT of the whole image's, so that every
    prefix of the layers renders a good image (docs/tuning.md, "image/fit.py: layered
    fits").
    ``fixed``: a float (H, W, 3) image to which the Gaussians' render is added, the render
    of Gaussians held still (a render is a sum over Gaussians, so fitting some to the
    image less the render of the others is fitting them with the others in place); with
    the squared-error loss, given parameters and no layers."""
    loss = get_loss(loss)
    lr, lr_scale = dict(lr or {}), dict(lr_scale or {})
    _check_groups(lr, "learning-rate")
    _check_groups(lr_scale, "lr_scale")
    if not all(0 <= factor < math.inf for factor in lr_scale.values()):
        raise ValueError(f"lr_scale factors must be finite and non-negative, got {lr_scale}")
    if not 0 <= final_lr_fraction <= 1:  # NaN fails too
        raise ValueError(f"final_lr_fraction must be from 0 to 1, got {final_lr_fraction!r}")
    target_np = to_float_image(image)
    height, width = target_np.shape[:2]
    if fixed is not None:
        fixed = np.asarray(fixed, dtype=np.float32)
        if fixed.shape != target_np.shape or not np.isfinite(fixed).all():
            raise ValueError(f"fixed must be a finite image of shape {target_np.shape}")
        if not isinstance(loss, SquaredError) or layers is not None or is_method(init):
            raise ValueError("fixed needs the squared-error loss, no layers and given "
                             "starting parameters")
    n_gaussians = int(n_gaussians)
    if n_gaussians < 1:
        raise ValueError("n_gaussians must be at least 1")
    if n_gaussians > height * width:
        raise ValueError(f"n_gaussians ({n_gaussians}) exceeds the pixel count "
                         f"({height * width})")
    if iterations < 0:
        raise ValueError("iterations must be non-negative")
    if coarse_iterations is None:
        coarse_iterations = (default_coarse_iterations(height, width, n_gaussians, iterations)
                             if is_method(init) else 0)
    if coarse_iterations < 0:
        raise ValueError("coarse_iterations must be non-negative")
    if coarse_iterations and not is_method(init):
        raise ValueError("coarse_iterations needs init to name a method: given parameters "
                         "are at full resolution")
    if relocation is None:
        relocation = relocates_by_default(height, width, n_gaussians)
    if layers is not None:
        layers = [int(k) for k in layers]
        if min(layers, default=0) < 1 or sum(layers) != n_gaussians:
            raise ValueError(f"layers must be positive counts adding up to n_gaussians "
                             f"({n_gaussians}), got {layers}")
        loss = _Layered(loss, np.cumsum([0] + layers))
    backend = get_backend(device)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = ProgressBar(coarse_iterations + iterations, enabled=show)
    stage = _Stage(backend, seed, relocation, bar, log_every, loss, lr=lr, lr_scale=lr_scale,
                   final_lr_fraction=float(final_lr_fraction))
    if coarse_iterations:
        coarse = half_resolution(target_np)
        if n_gaussians > coarse.shape[0] * coarse.shape[1]:
            raise ValueError(f"n_gaussians ({n_gaussians}) exceeds the pixel count at half "
                             f"resolution ({coarse.shape[0] * coarse.shape[1]}): give "
                             f"coarse_iterations=0")
        params_np = stage.run(coarse, _starting_params(init, coarse, n_gaussians, seed),
                              coarse_iterations, "coarse step",
                              max_variance and max_variance / 4)
        params_np[:, :5] *= 2
    else:
        params_np = _starting_params(init, target_np, n_gaussians, seed)
    params_np = stage.run(target_np, params_np, iterations, "step", max_variance, fixed)
    bar.close()
    return Gaussians(params_np, height, width)


class _Stage:
    """The optimisation loop at one resolution; ``fit`` runs one or two of them."""

    def __init__(self, backend, seed, relocation, bar, log_every, loss, lr, lr_scale,
                 final_lr_fraction):
        self.backend = backend
        self.loss = loss
        self.lr, self.lr_scale, self.final_lr_fraction = lr, lr_scale, final_lr_fraction
        self.seed = seed
        self.relocation = relocation
        self.bar = bar
        self.log_every = log_every
        self.done = 0  # steps of earlier stages, for the progress bar

    def run(self, target_np, params_np, iterations, label, max_variance, fixed=None):
        """``params_np`` (float32 numpy) after ``iterations`` steps towards ``target_np``,
        with covariance eigenvalues up to ``max_variance`` (None: fit's default) in its
        pixels; ``fixed`` (numpy, as the target) is added to every render before it is
        clipped and compared (fit's ``fixed``)."""
        backend, xp, log_every = self.backend, self.backend.xp, self.log_every
        height, width = target_np.shape[:2]
        n_gaussians = len(params_np)
        max_var = float(max_variance or (max(height, width) / 3.0) ** 2)
        bounds = (MIN_VARIANCE, max_var)
        lr_cols = _lr_per_column(self.lr, self.lr_scale, height, width, n_gaussians)
        final = self.final_lr_fraction
        params = backend.from_numpy(params_np)
        backend.clamp_scales(params, bounds)
        target = backend.from_numpy(target_np)
        if fixed is not None:
            fixed = backend.from_numpy(fixed)
        m = xp.zeros_like(params)
        v = xp.zeros_like(params)
        relocate_at = set(relocation_steps(iterations)) if self.relocation else set()
        last_relocation = max(relocate_at, default=0)
        seed = self.seed
        relocation_rng = np.random.default_rng(None if seed is None else [seed, 1])
        activity = xp.zeros(n_gaussians, dtype=xp.float64)
        start = time.perf_counter()
        for step in range(1, iterations + 1):
            want_diag = log_every and (step % log_every == 0 or step == iterations)
            if isinstance(self.loss, _Layered):  # bins its layers itself
                rendered, grads = self.loss.step(backend, params, target)
                shown = xp.clip(rendered, 0.0, 1.0)
                if want_diag:
                    _, coverage = backend.render_forward(params, height, width, weight=True)
            else:
                bins = backend.bin(params, height, width)
                rendered = backend.render_forward(params, height, width, bins,
                                                  weight=bool(want_diag))
                if want_diag:
                    rendered, coverage = rendered
                if fixed is not None:  # the image is clipped with the held Gaussians in
                    rendered = rendered + fixed
                shown = xp.clip(rendered, 0.0, 1.0)
                grad_image = xp.ascontiguousarray(_through_the_clip(
                    xp, self.loss, rendered, target, shown).astype(params.dtype, copy=False))
                grads = backend.render_backward(params, height, width, grad_image, bins)
            check = step % CHECK_EVERY == 0 or step == iterations
            if check:
                _check_finite(xp, grads, "gradient")
            if step <= last_relocation:
                activity += xp.abs(grads[:, :2]).sum(axis=1)
            if step in relocate_at:
                moved, rows = relocate(backend.to_numpy(params),
                                       backend.to_numpy(target - shown),
                                       backend.to_numpy(activity), relocation_rng)
                if len(moved):
                    moved = backend.from_numpy(moved)
                    params[moved] = backend.from_numpy(rows)
                    grads[moved] = 0.0
                    m[moved] = 0.0
                    v[moved] = 0.0
                    backend.clamp_scales(params, bounds)
                if log_every:
                    log.info("%s %d  relocated %d Gaussians to the largest errors", label,
                             step, len(moved))
                activity[:] = 0.0
            decay = final + (1 - final) * 0.5 * (
                1 + math.cos(math.pi * (step - 1) / max(iterations, 1)))
            decay *= min(1.0, step / WARMUP_STEPS)
            backend.adam_step(params, grads, m, v, step, lr_cols * decay, betas=ADAM_BETAS,
                              var_bounds=bounds, centre_box=(width, height))
            if check:
                _check_finite(xp, params, "parameter")
            if not (self.bar.enabled or want_diag):
                continue
            mse = float(((shown - target) ** 2).mean())
            self.bar.update(self.done + step, f"PSNR {psnr_of_mse(mse):5.2f} dB")
            if want_diag:
                _log_diagnostics(backend, label, step, mse, coverage, params, bounds,
                                 time.perf_counter() - start)
        self.done += iterations
        return backend.to_numpy(params)


class _Layered:
    """A fit's loss over nested images: the whole image, and every run of layers from the
    first but the whole, in decibels (LAYER_WEIGHT).  The step's gradient is E(whole) times
    that objective's: the whole image's loss gradient plus each run's at LAYER_WEIGHT *
    E(whole) / E(run), so a plain fit's scale, which the learning rates were tuned on.  The
    Gaussians of layer j draw in the images of runs 1..k for k >= j, so their cotangent is
    the sum of those images' gradients; each layer renders and back-propagates on its own
    bins, made once a step."""

    def __init__(self, loss, bounds):
        self.loss, self.bounds = loss, [int(b) for b in bounds]

    def step(self, backend, params, target):
        """(the whole image, dL/dparams) of one step."""
        xp = backend.xp
        height, width = target.shape[:2]
        slices = list(zip(self.bounds[:-1], self.bounds[1:]))
        bins = [backend.bin(params[start:end], height, width) for start, end in slices]
        runs, total = [], None
        for (start, end), layer_bins in zip(slices, bins):
            part = backend.render_forward(params[start:end], height, width, layer_bins)
            total = part if total is None else total + part
            runs.append(total)
        grads = xp.empty_like(params)
        cotangent = whole_error = None
        for k in reversed(range(len(slices))):  # the whole image first
            shown = xp.clip(runs[k], 0.0, 1.0)
            # Squared errors as device scalars: the weights need no read-back.
            error = xp.sum((shown - target) ** 2)
            if whole_error is None:
                weight, whole_error = 1.0, error
            else:
                weight = LAYER_WEIGHT * whole_error / xp.maximum(error, 1e-30)
            grad = weight * _through_the_clip(xp, self.loss, runs[k], target, shown)
            cotangent = grad if cotangent is None else cotangent + grad
            start, end = slices[k]
            grads[start:end] = backend.render_backward(
                params[start:end], height, width,
                xp.ascontiguousarray(cotangent.astype(params.dtype)), bins[k])
        return runs[-1], grads


def _through_the_clip(xp, loss, rendered, target, shown=None):
    """``loss``'s gradient at the clipped image ``shown`` (default: ``rendered`` clipped to
    [0, 1]), passed straight through the clip to the unclipped ``rendered``, less its pushes
    further out of [0, 1] where ``rendered`` is already past the clip: those change nothing a
    decoder shows, and nothing would stop them.  Losses whose gradient never points outward
    there (``loss.inward_at_clip``, squared error's) skip the test."""
    shown = xp.clip(rendered, 0.0, 1.0) if shown is None else shown
    grad = loss.gradient(xp, shown, target)
    if getattr(loss, "inward_at_clip", False):
        return grad
    outward = ((rendered > 1.0) & (grad < 0)) | ((rendered < 0.0) & (grad > 0))
    return xp.where(outward, 0.0, grad)


def _log_diagnostics(backend, label, step, mse, coverage, params, bounds, elapsed):
    """Loss, PSNR, share of pixels with little total weight, collapsed Gaussians."""
    cov = backend.to_numpy(coverage)
    gaussians = Gaussians(backend.to_numpy(params), *cov.shape)
    eig_min = np.linalg.eigvalsh(gaussians.covariance())[:, 0]
    collapsed = int(np.count_nonzero(eig_min <= bounds[0] * 1.001))
    uncovered = float(np.mean(cov < 0.05))
    log.info("%s %d  loss %.6g  PSNR %.2f dB  uncovered %.2f%%  collapsed %d/%d  %.1f s",
             label, step, mse, psnr_of_mse(mse), 100 * uncovered, collapsed, len(gaussians), elapsed)
