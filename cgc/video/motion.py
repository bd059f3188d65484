"""Global motion: the zoom and translation that best map the previous decoded frame onto
the next.

A P-frame moves all its Gaussians by one motion before its per-Gaussian changes (a camera's
pan or zoom costs a few numbers, not a delta per Gaussian).  The translation search
minimises the mean squared difference of the overlapping parts of the two frames (in
grey), exhaustively on a coarse copy and then within a few pixels at each finer one, and
refines the last integer estimate to a fraction of a pixel by a parabola through the
neighbouring costs.  Then zooms of SCALES about the frame's centre, each with translations
within a pixel of it, are tried on a grid of sample points.

What moves within the picture is followed by a motion field (cgc.video.field): candidate
shifts per cell by block matching on pixels (``field_candidates``), then chosen by the
render of the Gaussians they move (``fit_field``).  A cell's Gaussians move together,
and Gaussians reach across cells, so a shift that matches the pixels can move the
Gaussians badly; only their render tells."""
import numpy as np
from scipy.ndimage import map_coordinates

from cgc.video.field import MAX_CELLS_SIDE, MAX_UNIT, Field, cells, prediction, vector_bits

# Most motion searched, in pixels per frame along each axis.
MAX_MOTION = 64
# The coarse search runs on copies reduced until their smaller side is under this.
COARSE_SIDE = 48
# Candidate shifts must keep this share of each frame overlapping.
MIN_OVERLAP = 0.5
# Zooms tried (s, the scale of the next frame's content against the previous), the
# translations tried with each (pixels about the translation found alone), and the
# spacing of the sample points that judge them (pixels).
SCALES = np.round(np.arange(0.97, 1.0301, 0.005), 4)
NUDGES = np.arange(-1.0, 1.01, 0.5)
SAMPLE_SPACING = 4
# The motion field (field_grid, field_candidates): cells of about this many pixels a side,
# each moved by up to this many pixels along each axis.
FIELD_CELL = 32
FIELD_REACH = 24
# Candidates kept per cell from the pixels' block matching, and passes over the cells
# judging them by the Gaussians' render (fit_field).
FIELD_CANDIDATES = 4
FIELD_SWEEPS = 1


def _grey(image):
    return np.asarray(image, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _halve(image):
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    image = image[:h, :w]
    return 0.25 * (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2]
                   + image[1::2, 1::2])


def _cost(reference, frame, dx, dy):
    """Mean squared difference between frame(x, y) and reference(x - dx, y - dy) where both
    exist; inf where they overlap too little."""
    h, w = frame.shape
    if (h - abs(dy)) * (w - abs(dx)) < MIN_OVERLAP * h * w:
        return np.inf
    f = frame[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    r = reference[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return float(np.mean(np.square(f - r)))


def _best(reference, frame, centre, reach):
    costs = {}
    for dy in range(centre[1] - reach, centre[1] + reach + 1):
        for dx in range(centre[0] - reach, centre[0] + reach + 1):
            costs[dx, dy] = _cost(reference, frame, dx, dy)
    return min(costs, key=lambda k: (costs[k], abs(k[0]) + abs(k[1]), k)), costs


def global_motion(reference, frame):
    """(dx, dy, s), floats: ``frame`` (H, W, 3) is close to ``reference`` zoomed by s about
    the frame's centre, then moved by dx to the right and dy down; (0.0, 0.0, 1.0) where
    nothing moved, or frames too small to search."""
    dx, dy = _translation(reference, frame)
    return _zoom(_grey(reference), _grey(frame), dx, dy)


def _translation(reference, frame):
    pyramid = [(_grey(reference), _grey(frame))]
    while min(pyramid[-1][1].shape) >= 2 * COARSE_SIDE:
        pyramid.append(tuple(_halve(image) for image in pyramid[-1]))
    scale = 2 ** (len(pyramid) - 1)
    reach = min(MAX_MOTION // scale + 1, min(pyramid[-1][1].shape) // 2)
    if reach < 1:
        return 0.0, 0.0
    best, costs = _best(*pyramid[-1], (0, 0), reach)
    for level in range(len(pyramid) - 2, -1, -1):
        best, costs = _best(*pyramid[level], (2 * best[0], 2 * best[1]), 2)
    return tuple(float(best[axis]) + _parabola(costs, best, axis) for axis in (0, 1))


def _zoom(reference, frame, dx, dy):
    """The best of SCALES with translations within NUDGES of (dx, dy), by the mean squared
    difference at sample points whose source lies inside the reference; (dx, dy, 1.0)
    unless a zoom does better than the translation alone."""
    h, w = frame.shape
    ys, xs = np.mgrid[SAMPLE_SPACING // 2:h:SAMPLE_SPACING, SAMPLE_SPACING // 2:w:SAMPLE_SPACING]
    ys, xs = ys.ravel().astype(np.float64), xs.ravel().astype(np.float64)
    if len(ys) < 16:
        return dx, dy, 1.0
    values = frame[ys.astype(int), xs.astype(int)]
    cy, cx = (h - 1) / 2, (w - 1) / 2

    def cost(s, tx, ty):
        sy, sx = (ys - cy - ty) / s + cy, (xs - cx - tx) / s + cx
        inside = (sy >= 0) & (sy <= h - 1) & (sx >= 0) & (sx <= w - 1)
        if inside.sum() < MIN_OVERLAP * len(ys):
            return np.inf
        sampled = map_coordinates(reference, [sy[inside], sx[inside]], order=1)
        return float(np.mean(np.square(sampled - values[inside])))

    best = (cost(1.0, dx, dy), 1.0, dx, dy)
    for s in SCALES:
        for ny in NUDGES:
            for nx in NUDGES:
                candidate = (cost(s, dx + nx, dy + ny), s, dx + nx, dy + ny)
                if candidate[0] < best[0]:
                    best = candidate
    return best[2], best[3], float(best[1])


def _parabola(costs, best, axis):
    """Sub-pixel offset of the minimum of the parabola through the costs at the best shift
    and its two neighbours along ``axis`` (0 where a neighbour is missing or flat)."""
    step = (1, 0) if axis == 0 else (0, 1)
    before = costs.get((best[0] - step[0], best[1] - step[1]), np.inf)
    after = costs.get((best[0] + step[0], best[1] + step[1]), np.inf)
    curvature = before - 2 * costs[best] + after
    if not np.isfinite(curvature) or curvature <= 0:
        return 0.0
    return float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5))


def field_grid(width, height, quantisers):
    """(grid, unit pixels (2,), cell of each pixel (H, W)) of a motion field over
    ``quantisers`` (x's and y's): ``grid`` a cgc.video.field.Field of cells of about
    FIELD_CELL pixels, units of about a pixel in codes and no moves yet; None where the
    codes cannot carry one."""
    cols = int(np.clip(round(width / FIELD_CELL), 1, MAX_CELLS_SIDE))
    rows = int(np.clip(round(height / FIELD_CELL), 1, MAX_CELLS_SIDE))
    units, pixels, centres = [], [], []
    for q, size in ((quantisers[0], width), (quantisers[1], height)):
        step = (q.hi - q.lo) / q.levels if q.levels else 0.0
        if step <= 0 or min(width, height) < 4:
            return None
        units.append(int(np.clip(round(1 / step), 1, MAX_UNIT)))
        pixels.append(units[-1] * step)
        # The code of each pixel's centre.
        centres.append(np.round((np.arange(size) + 0.5 - q.lo) / step).astype(np.int64))
    grid = Field(cols, rows, tuple(units), np.zeros((rows, cols, 2), np.int64))
    levels = [q.levels for q in quantisers]
    return grid, np.array(pixels), cells(centres[0][None, :], centres[1][:, None], grid, levels)


def field_candidates(reference, frame, cell, n_cells, price, count=FIELD_CANDIDATES):
    """Candidate shifts (n_cells, count + 1, 2), whole pixels, of each cell of ``cell``
    (H, W) moving ``reference`` towards ``frame`` (both (H, W, 3) in [0, 1]): the
    ``count`` best by squared error plus ``price`` times the bits of their vector, on
    halved copies at even shifts of up to FIELD_REACH, then the best of those moved by up
    to a pixel at full size.  Block matching on pixels; the Gaussians' own move is judged
    by ``fit_field``."""
    reference = np.asarray(reference, np.float32)
    frame = np.asarray(frame, np.float32)
    h, w = frame.shape[:2]
    half_ref, half_frame = _halve(reference), _halve(frame)
    half_cell = cell[:half_frame.shape[0] * 2:2, :half_frame.shape[1] * 2:2].ravel()
    reach = FIELD_REACH // 2
    padded = np.pad(half_ref, ((reach, reach), (reach, reach), (0, 0)), mode="edge")
    hh, ww = half_frame.shape[:2]
    shifts, costs = [], []
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            moved = padded[reach - dy:reach - dy + hh, reach - dx:reach - dx + ww]
            error = np.bincount(half_cell, np.square(moved - half_frame).sum(axis=2).ravel(),
                                n_cells)
            shifts.append((2 * dx, 2 * dy))
            costs.append(4 * error + price * vector_bits(np.array([2 * dx, 2 * dy])))
    shifts, costs = np.array(shifts), np.array(costs)  # (S, 2), (S, n_cells)
    order = np.argsort(costs, axis=0, kind="stable")[:count].T  # (n_cells, count)
    coarse = shifts[order]
    # The best, moved by up to a pixel at full size.
    reach = FIELD_REACH + 1
    padded = np.pad(reference, ((reach, reach), (reach, reach), (0, 0)), mode="edge")
    ys, xs = np.mgrid[0:h, 0:w]
    best_cost = np.full(n_cells, np.inf)
    best = coarse[:, 0].copy()
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            vx, vy = coarse[:, 0, 0] + ox, coarse[:, 0, 1] + oy
            moved = padded[ys + reach - vy[cell], xs + reach - vx[cell]]
            cost = np.bincount(cell.ravel(), np.square(moved - frame).sum(axis=2).ravel(),
                               n_cells) + price * vector_bits(np.stack([vx, vy], axis=1))
            better = cost < best_cost
            best_cost[better] = cost[better]
            best[better] = np.stack([vx, vy], axis=1)[better]
    return np.concatenate([best[:, None], coarse], axis=1)


def fit_field(params, cell, grid, frame, candidates, pixels, limits, price, render):
    """Vectors (rows, cols, 2) of ``grid`` (a cgc.video.field.Field), in units of
    ``pixels`` (x's and y's) each, for the Gaussians ``params`` (N, 8) of row-major cells
    ``cell`` (N,), moving their render towards ``frame``
    (H, W, 3).  Each cell in turn, FIELD_SWEEPS times over, takes the one of its
    ``candidates`` (pixels), no move, and its neighbours' vectors, whose render of the
    whole set (each cell's Gaussians rendered in a window by ``render(params, height,
    width)``, unclipped, added: the render is their sum), clipped, has the least squared
    error plus ``price`` times its vector's bits against its prediction.
    ``limits``: the least and most units (N, 2) each Gaussian may move and stay in the
    codes' range; a vector taking one out is not tried (it would drop the Gaussian)."""
    h, w = frame.shape[:2]
    frame = np.asarray(frame, np.float32)
    picture = render(params, h, w).astype(np.float32)
    rows, cols = grid.rows, grid.cols
    n_cells = rows * cols
    vectors = np.zeros((rows, cols, 2), np.int64)
    reach = int(np.ceil(FIELD_REACH + 1 + np.max(pixels)))
    order = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[order], np.arange(n_cells + 1))
    half_w = 3 * np.abs(params[:, 2])
    half_h = 3 * np.hypot(params[:, 3], params[:, 4])
    windows = {}
    for c in range(n_cells):
        members = order[starts[c]:starts[c + 1]]
        if not len(members):
            continue
        x0 = int(np.clip(np.floor(np.min(params[members, 0] - half_w[members])) - reach, 0, w))
        x1 = int(np.clip(np.ceil(np.max(params[members, 0] + half_w[members])) + reach, 0, w))
        y0 = int(np.clip(np.floor(np.min(params[members, 1] - half_h[members])) - reach, 0, h))
        y1 = int(np.clip(np.ceil(np.max(params[members, 1] + half_h[members])) + reach, 0, h))
        if x1 > x0 and y1 > y0:
            windows[c] = (members, x0, x1, y0, y1, limits[0][members].max(axis=0),
                          limits[1][members].min(axis=0))
    units = np.round(candidates / pixels).astype(np.int64)

    def drawn(members, x0, x1, y0, y1, vector):
        moved = params[members].copy()
        moved[:, 0] += vector[0] * pixels[0] - x0
        moved[:, 1] += vector[1] * pixels[1] - y0
        return render(moved, y1 - y0, x1 - x0).astype(np.float32)

    for _ in range(FIELD_SWEEPS):
        for c, (members, x0, x1, y0, y1, least, most) in windows.items():
            target = frame[y0:y1, x0:x1]
            r, k = divmod(c, cols)
            current = drawn(members, x0, x1, y0, y1, vectors[r, k])
            rest = picture[y0:y1, x0:x1] - current
            tried = {tuple(v) for v in units[c]} | {(0, 0), tuple(vectors[r, k])}
            for dr, dk in ((0, -1), (-1, 0), (0, 1), (1, 0)):
                if 0 <= r + dr < rows and 0 <= k + dk < cols:
                    tried.add(tuple(vectors[r + dr, k + dk]))
            guess = prediction(vectors, r, k)
            best = None
            for vector in sorted(tried):
                vector = np.array(vector, np.int64)
                if np.any(np.abs(vector * pixels) > reach) or np.any(vector < least) or np.any(
                        vector > most):
                    continue
                new = current if np.array_equal(vector, vectors[r, k]) else drawn(
                    members, x0, x1, y0, y1, vector)
                cost = float(np.sum(np.square(np.clip(rest + new, 0, 1) - target))) \
                    + price * vector_bits(vector - guess)
                if best is None or cost < best[0]:
                    best = (cost, vector, new)
            vectors[r, k] = best[1]
            picture[y0:y1, x0:x1] = rest + best[2]
    return vectors
