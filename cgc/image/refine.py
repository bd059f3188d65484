"""Refinement of quantised codes: the codes a decoder renders best, not the nearest ones.

Rounding every attribute to its nearest code throws away what the other attributes, and the
neighbouring Gaussians, could make up for.  ``refine_codes`` runs a coordinate descent on the
codes themselves against the image (``cgc.image._refine_cy.refine_codes``, read-me note in
cgc/image/_refine_cy.pyx): each Gaussian in turn takes the colour codes and the one-code-down
or -up moves of x, y, l11, l21, l22 that lower the squared error of the clipped render, with
the quantisers and code widths unchanged.  The Gaussians are visited in index order.  On a
GPU (cgc/kernels/refine.cu) a launch visits a round of them at once, a thread block per
Gaussian: rounds whose members' reaches share no pixel, any two that might share one in
index order (``_refine_cy.refine_rounds``), so the GPU takes the CPU's steps; only its sums
over a box add in another order, which can tip a near tie.
Measurements: docs/tuning.md, "image/refine.py: sweeps".
"""
import numpy as np

from cgc.image import _refine_cy
from cgc.backends import get_backend
from cgc.image.quantize import ATTRIBUTES, dequantise

# Passes over all Gaussians: the second adds a fifth of the first's gain, two more little
# at twice the time (measurements: docs/tuning.md, "image/refine.py: sweeps").
REFINE_SWEEPS = 2


def _tables(quantisers):
    """Per attribute, the dequantised value of every code (float32, decoder arithmetic),
    and each quantiser's levels, lo and step."""
    levels = np.array([q.levels for q in quantisers], dtype=np.int64)
    values = np.zeros((len(quantisers), int(levels.max()) + 1), dtype=np.float32)
    for k, q in enumerate(quantisers):
        values[k, :q.levels + 1] = q.dequantise(np.arange(q.levels + 1))
    lo = np.array([q.lo for q in quantisers], dtype=np.float64)
    step = np.array([(np.float64(q.hi) - q.lo) / q.levels for q in quantisers])
    return values, levels, lo, step


def _mse(backend, codes, quantisers, target):
    params = dequantise(quantisers, codes)
    rendered = backend.to_numpy(backend.render_forward(
        backend.from_numpy(params), target.shape[0], target.shape[1]))
    return float(np.mean((np.clip(rendered, 0.0, 1.0) - target) ** 2))


def _refine_in_rounds(backend, codes, params, tables, target, sweeps):
    """The descent on ``backend``'s device, a launch per round of each sweep; ``codes``
    (host) become the refined codes.  Returns whether any code moved."""
    height, width = target.shape[:2]
    values, levels = tables[0], tables[1]
    start = codes.copy()
    on_device = [backend.from_numpy(a) for a in (params, codes, *tables,
                                                 _refine_cy.render_planes(params, height, width),
                                                 np.moveaxis(target, 2, 0))]
    for _ in range(sweeps):
        # Rounds from this sweep's starting codes: a visit moves only its own Gaussian.
        order, starts = _refine_cy.refine_rounds(codes, params, values, levels, height, width)
        order = backend.from_numpy(order)
        for r in range(len(starts) - 1):
            backend.refine_round(*on_device, order[int(starts[r]):int(starts[r + 1])])
        params = np.ascontiguousarray(backend.to_numpy(on_device[0]))
        codes[:] = backend.to_numpy(on_device[1])
    return not np.array_equal(codes, start)


def refine_codes(codes, quantisers, image, sweeps=REFINE_SWEEPS, device="cpu"):
    """Refined copy of ``codes`` ((N, 8) uint32, one column per cgc.image.quantize.ATTRIBUTES,
    coded by ``quantisers``) for ``image`` (float (H, W, 3) in [0, 1]).

    The result is kept only if rendering it (on ``device``) gives a smaller mean squared
    error of the clipped image than ``codes`` do; otherwise ``codes`` come back unchanged."""
    codes = np.ascontiguousarray(codes, dtype=np.uint32)
    target = np.ascontiguousarray(image, dtype=np.float32)
    if codes.ndim != 2 or codes.shape[1] != len(ATTRIBUTES):
        raise ValueError(f"codes must have shape (N, {len(ATTRIBUTES)}), got {codes.shape}")
    if len(quantisers) != len(ATTRIBUTES):
        raise ValueError(f"need {len(ATTRIBUTES)} quantisers, got {len(quantisers)}")
    if target.ndim != 3 or target.shape[2] != 3 or min(target.shape[:2]) < 1:
        raise ValueError(f"image must have shape (H, W, 3), got {target.shape}")
    if not (np.isfinite(target).all() and target.min() >= 0 and target.max() <= 1):
        raise ValueError("image must be finite and within [0, 1]")
    if isinstance(sweeps, bool) or not isinstance(sweeps, (int, np.integer)) or sweeps < 0:
        raise ValueError(f"sweeps must be a non-negative integer, got {sweeps!r}")
    for q in quantisers:
        q.validate()
    values, levels, lo, step = _tables(quantisers)
    if codes.size and np.any(codes > levels):
        raise ValueError("codes out of range for their quantisers")
    refined = codes.copy()
    params = dequantise(quantisers, refined)
    backend = get_backend(device)
    if backend.name == "cpu":
        moved = _refine_cy.refine_codes(refined, params, values, levels, lo, step, target,
                                        int(sweeps))
    else:
        moved = _refine_in_rounds(backend, refined, params, (values, levels, lo, step), target,
                                  int(sweeps))
    if not moved:
        return codes
    if _mse(backend, refined, quantisers, target) < _mse(backend, codes, quantisers, target):
        return refined
    return codes
