"""SVG drawings as input to the image codec.

``encode_svg`` rasterises the drawing as the fit's target and starts the Gaussians from its
geometry instead of from the raster's gradient: along every outline and stroke, on the
curves and drawn out along their tangents, and evenly over the canvas for the areas in
between; colours then come from the raster, so fills, gradients and strokes get the
colours the renderer drew.  Everything after the start (fit, allocation, file, decoding
at any size) is the image codec's.

Two maintained libraries do the SVG work, from the optional ``[svg]`` extra, both
installed from wheels alone:

* resvg (Rust, through resvg-py) rasterises: it implements the static SVG specification
  closely and reads no fonts or files unless told to.  System fonts are not loaded, so
  that the target, and the file, do not depend on the machine: text is not drawn.
* svgelements parses the geometry, with transforms, groups, ``<use>`` and the shapes'
  fills and strokes resolved.

Untrusted drawings: entity declarations and references to anything outside the document
(other files, URLs, CSS imports) are refused before either library sees the text, so
nothing is read from the disk or the network; sizes are checked before rasterising."""
import gzip
import io
import os
import re
import warnings

import numpy as np

from cgc.image.container import MAX_PIXELS, MAX_SIDE
from cgc.image.init import least_squares_colours, set_colours

INSTALL_HINT = 'pip install "cgc[svg]"'
# The largest SVG read (and the most a .svgz may expand to).
MAX_SVG_BYTES = 32 << 20
# Share of the Gaussians placed along outlines and strokes; the rest spread evenly
# (measurements: docs/tuning.md, "image/svg.py: geometry start").
EDGE_SHARE = 0.7
# Sides of an outline's Gaussians: along the curve, this share of their spacing; across a
# filled shape's edge, EDGE_ACROSS pixels; across a stroke, STROKE_ACROSS of its width.
EDGE_ALONG = 0.5
EDGE_ACROSS = 0.5
STROKE_ACROSS = 0.35
# A fill's edge Gaussians sit this many pixels off the curve, every other one on either
# side, so that pairs draw its step (a Gaussian on the curve draws a ridge); a stroke's
# stay centred on it.
EDGE_OFFSET = 0.5
# Side of the Gaussians between the outlines, as a share of their mean spacing
# (init.SIGMA_FACTOR's value).
FILL_SIGMA = 0.6
# Conjugate-gradient steps towards the least-squares colours of the start
# (init.least_squares_colours).
COLOUR_STEPS = 10
# The plastic number, root of x^3 = x + 1: the R2 sequence's generator (_even_points).
PLASTIC = 1.324717957244746
# Points per curved segment (Béziers and arcs) of the polylines the outlines become.
CURVE_POINTS = 24

_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_HREF = re.compile(rb"""\bhref\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)
_URL = re.compile(rb"""url\(\s*["']?\s*([^)"'\s]*)""", re.IGNORECASE)
_IMPORT = re.compile(rb"@import", re.IGNORECASE)


def _libraries():
    try:
        import resvg_py
        import svgelements
    except ImportError:
        raise ModuleNotFoundError(f"SVG input needs resvg-py and svgelements: "
                                  f"{INSTALL_HINT}") from None
    return resvg_py, svgelements


def is_svg(path):
    """Whether ``path`` names an SVG by its extension (.svg or .svgz)."""
    return isinstance(path, (str, os.PathLike)) and str(path).lower().endswith((".svg",
                                                                               ".svgz"))


def read_svg(svg):
    """The markup of ``svg`` (a path, the bytes of a .svg or .svgz, or markup as str),
    checked by ``check_references``."""
    if isinstance(svg, str) and svg.lstrip().startswith("<"):
        data = svg.encode("utf-8")
    elif isinstance(svg, (bytes, bytearray, memoryview)):
        data = bytes(svg)
    else:
        size = os.path.getsize(svg)
        if size > MAX_SVG_BYTES:
            raise ValueError(f"{svg}: {size} bytes, larger than the {MAX_SVG_BYTES} an SVG "
                             f"may have")
        with open(svg, "rb") as f:
            data = f.read()
    if data[:2] == b"\x1f\x8b":  # .svgz: expanded up to the limit, no further
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                data = f.read(MAX_SVG_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise ValueError(f"not a valid .svgz: {exc}") from None
    if len(data) > MAX_SVG_BYTES:
        raise ValueError(f"the SVG is larger than {MAX_SVG_BYTES} bytes")
    check_references(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the SVG is not UTF-8 text: {exc}") from None


def check_references(data):
    """ValueError for markup that declares entities or names anything outside itself: an
    href or url() other than a fragment (#id) or data: URI, or a CSS @import."""
    if _ENTITY.search(data):
        raise ValueError("SVG entity declarations are refused (they can expand without "
                         "bound)")
    targets = [m.group(2) for m in _HREF.finditer(data)]
    targets += [m.group(1) for m in _URL.finditer(data)]
    for target in targets:
        target = target.strip()
        if not (target.startswith(b"#") or target.lower().startswith(b"data:")):
            raise ValueError(f"the SVG refers to {target.decode('utf-8', 'replace')!r}: "
                             f"cgc does not read files or URLs an SVG names")
    if _IMPORT.search(data):
        raise ValueError("the SVG imports a style sheet: cgc does not read files or URLs "
                         "an SVG names")


class Drawing:
    """An SVG's size in its own pixels and its outlines: ``(points (k, 2), stroke_width)``
    polylines in those pixels, stroke_width 0 for a filled shape's edge."""

    def __init__(self, width, height, outlines):
        self.width, self.height, self.outlines = width, height, outlines

    def output_size(self, size=None):
        """(height, width) to rasterise at: the drawing's own, or the largest within
        ``size`` (height, width) with its aspect ratio."""
        if size is None:
            height, width = round(self.height), round(self.width)
        else:
            if np.ndim(size) != 1 or len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be (height, width), got {size!r}")
            scale = min(size[0] / self.height, size[1] / self.width)
            height, width = round(self.height * scale), round(self.width * scale)
        height, width = max(1, int(height)), max(1, int(width))
        if max(height, width) > MAX_SIDE or height * width > MAX_PIXELS:
            raise ValueError(f"the drawing would be {width}x{height} pixels: at most "
                             f"{MAX_SIDE} a side and {MAX_PIXELS} pixels (give a smaller "
                             f"size)")
        return height, width


def parse(markup):
    """The :class:`Drawing` of SVG markup (ValueError if it is not a drawing)."""
    _, svgelements = _libraries()
    try:
        svg = svgelements.SVG.parse(io.StringIO(markup), reify=True)
        width, height = float(svg.width), float(svg.height)
    except Exception as exc:  # the parser's errors have no common base beyond Exception
        raise ValueError(f"not a valid SVG: {exc}") from None
    if not (0 < width < 1e7 and 0 < height < 1e7):
        raise ValueError(f"the SVG's size {width} x {height} is not a drawing's")
    outlines, skipped = [], set()
    for element in svg.elements():
        if isinstance(element, svgelements.Shape):
            outlines += _outlines(element, svgelements)
        elif isinstance(element, svgelements.Text):
            skipped.add("text (no fonts are loaded, so it is not drawn)")
        elif isinstance(element, svgelements.SVGImage):
            skipped.add("embedded images (drawn, but their Gaussians start evenly)")
    for what in sorted(skipped):
        warnings.warn(f"SVG {what}", RuntimeWarning, stacklevel=3)
    return Drawing(width, height, outlines)


def _visible(paint):
    return paint is not None and paint.value is not None and paint.alpha > 0


def _outlines(element, svgelements):
    """Polylines of a shape's subpaths, each with its stroke width (0: a fill's edge)."""
    stroke = _visible(element.stroke) and (element.stroke_width or 0) > 0
    if not (stroke or _visible(element.fill)):
        return []
    width = float(getattr(element, "implicit_stroke_width", element.stroke_width)) \
        if stroke else 0.0
    polylines, points = [], []
    for segment in svgelements.Path(element).segments():
        if isinstance(segment, svgelements.Move):
            if len(points) > 1:
                polylines.append(np.array(points))
            points = [_complex(segment.end)] if segment.end is not None else []
            continue
        if segment.start is None or segment.end is None:
            continue
        if not points:
            points = [_complex(segment.start)]
        if isinstance(segment, (svgelements.Line, svgelements.Close)):
            points.append(_complex(segment.end))
        else:
            curve = np.asarray(segment.npoint(np.linspace(0.0, 1.0, CURVE_POINTS + 1)[1:]),
                               dtype=np.float64)
            points += list(curve[:, 0] + 1j * curve[:, 1])
    if len(points) > 1:
        polylines.append(np.array(points))
    return [(np.column_stack([p.real, p.imag]), width) for p in polylines
            if np.isfinite(p).all()]


def _even_points(n, width, height, rng):
    """x, y of n points spread evenly over the canvas for any n: the R2 low-discrepancy
    sequence (Roberts; steps of 1/g and 1/g^2 in each coordinate, g the plastic number),
    shifted at random.  Uniform random points left holes that rendered black in the
    start."""
    shift = rng.uniform(0, 1, 2)
    index = np.arange(n)
    return (((shift[0] + index / PLASTIC) % 1.0) * width,
            ((shift[1] + index / PLASTIC ** 2) % 1.0) * height)


def _complex(point):
    return complex(float(point.x), float(point.y))


def rasterise(markup, height, width):
    """The drawing on white at (height, width): uint8 (H, W, 3)."""
    resvg_py, _ = _libraries()
    from PIL import Image

    try:
        png = resvg_py.svg_to_bytes(svg_string=markup, width=int(width), height=int(height),
                                    background="#ffffff", skip_system_fonts=True)
    except ValueError as exc:
        raise ValueError(f"the SVG could not be rasterised: {exc}") from None
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


class GeometryStart:
    """The fit's start for a drawing (an ``init`` callable of cgc.fit): EDGE_SHARE of the
    Gaussians along its outlines, spaced evenly by length, long side along the tangent,
    on a stroke's centre line or in pairs either side of a fill's edge; the rest evenly
    over the canvas (_even_points); colours from the target (cgc.image.init.set_colours),
    then COLOUR_STEPS steps towards the least-squares colours.  Scales the drawing to the
    target's size, so the coarse stage's half-size target works too."""

    def __init__(self, drawing, edge_share=EDGE_SHARE):
        self.drawing, self.edge_share = drawing, float(edge_share)

    def __call__(self, target, n_gaussians, seed):
        height, width = target.shape[:2]
        scale = np.array([width / self.drawing.width, height / self.drawing.height])
        rng = np.random.default_rng([seed, 3])
        starts, steps, across, offset = [], [], [], []
        for points, stroke in self.drawing.outlines:
            points = points * scale
            step = np.diff(points, axis=0)
            keep = np.hypot(*step.T) > 1e-9
            count = int(keep.sum())
            starts.append(points[:-1][keep])
            steps.append(step[keep])
            across.append(np.full(count, max(
                EDGE_ACROSS, STROKE_ACROSS * stroke * float(np.sqrt(scale.prod()))) if stroke
                else EDGE_ACROSS))
            offset.append(np.full(count, 0.0 if stroke else EDGE_OFFSET))
        lengths = np.hypot(*np.concatenate(steps).T) if steps else np.zeros(0)
        total = float(lengths.sum())
        n_edge = min(n_gaussians, round(self.edge_share * n_gaussians)) if total > 0 else 0
        params = np.zeros((n_gaussians, 8), dtype=np.float64)
        if n_edge:
            params[:n_edge] = self._along(np.concatenate(starts), np.concatenate(steps),
                                          lengths, np.concatenate(across),
                                          np.concatenate(offset), n_edge, rng)
        n_fill = n_gaussians - n_edge
        if n_fill:
            params[n_edge:, 0], params[n_edge:, 1] = _even_points(n_fill, width, height, rng)
            params[n_edge:, 2] = params[n_edge:, 4] = FILL_SIGMA * np.sqrt(
                height * width / n_fill)
        params[:, 0] = np.clip(params[:, 0], 0, width)
        params[:, 1] = np.clip(params[:, 1], 0, height)
        params = params.astype(np.float32)
        image = np.asarray(target, dtype=np.float32)
        set_colours(params, image)
        params[:, 5:] = least_squares_colours(params, image, COLOUR_STEPS)
        return params

    @staticmethod
    def _along(starts, steps, lengths, across, offset, n, rng):
        """(n, 8) Gaussians spread evenly by length over the segments (stratified), every
        other one on either side of its segment, ``offset`` pixels off it."""
        ends = np.cumsum(lengths)
        total = ends[-1]
        u = (np.arange(n) + rng.uniform(0, 1, n)) * (total / n)
        k = np.minimum(np.searchsorted(ends, u, side="right"), len(lengths) - 1)
        t = np.clip((u - (ends[k] - lengths[k])) / lengths[k], 0, 1)
        centre = starts[k] + t[:, None] * steps[k]
        tangent = steps[k] / lengths[k][:, None]
        side = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * offset[k]
        centre += side[:, None] * np.column_stack([-tangent[:, 1], tangent[:, 0]])
        along = np.maximum(EDGE_ALONG * total / n, EDGE_ACROSS)
        # Covariance along^2 t t' + across^2 n n' (n the normal), and its Cholesky factor.
        a2, c2 = along ** 2, across[k] ** 2
        sxx = a2 * tangent[:, 0] ** 2 + c2 * tangent[:, 1] ** 2
        syy = a2 * tangent[:, 1] ** 2 + c2 * tangent[:, 0] ** 2
        sxy = (a2 - c2) * tangent[:, 0] * tangent[:, 1]
        l11 = np.sqrt(sxx)
        l21 = sxy / l11
        l22 = np.sqrt(np.maximum(syy - l21 ** 2, 1e-6))
        params = np.zeros((n, 8))
        params[:, 0], params[:, 1] = centre[:, 0], centre[:, 1]
        params[:, 2], params[:, 3], params[:, 4] = l11, l21, l22
        return params


STARTS = ("geometry", "raster")


def load_svg(svg, size=None, start="geometry"):
    """(target uint8 (H, W, 3), the fit's start) of a drawing, rasterised at its own size
    or the largest within ``size`` (height, width) with its aspect ratio.  ``start``:
    "geometry" (GeometryStart) or "raster" (the gradient-sampled start of any image)."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, not {start!r}")
    markup = read_svg(svg)
    drawing = parse(markup)
    height, width = drawing.output_size(size)
    image = rasterise(markup, height, width)
    return image, (GeometryStart(drawing) if start == "geometry" else "gradient")


def encode_svg(svg, size=None, start="geometry", **options):
    """.cgc bytes of an SVG drawing (a path, bytes, or markup): rasterised at its own size
    or within ``size`` (height, width), fitted from ``start`` (see load_svg); the other
    options are cgc.encode's."""
    from cgc.image.codec import encode

    if "init" in options:
        raise TypeError("encode_svg's start option replaces init")
    image, init = load_svg(svg, size, start)
    return encode(image, init=init, **options)
