"""Global motion: the zoom and translation that best map the previous decoded frame onto
the next.

A P-frame moves all its Gaussians by one motion before its per-Gaussian changes (a camera's
pan or zoom costs a few numbers, not a delta per Gaussian).  The translation search
minimises the mean squared difference of the overlapping parts of the two frames (in
grey), exhaustively on a coarse copy and then within a few pixels at each finer one, and
refines the last integer estimate to a fraction of a pixel by a parabola through the
neighbouring costs.  Then zooms of SCALES about the frame's centre, each with translations
within a pixel of it, are tried on a grid of sample points."""
import numpy as np
from scipy.ndimage import map_coordinates

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
