"""Image quality measures: PSNR, SSIM and MS-SSIM, written once for the CLI, the fit and the
encoder.

Each takes NumPy arrays, or CuPy arrays, which it measures on the GPU
with CuPy and cupyx.scipy.ndimage (the same code, with the array module chosen by the
input's type; CuPy is imported only when an input is a CuPy array)."""
import math

import numpy as np

#: SSIM's window and constants (Wang, Bovik, Sheikh and Simoncelli 2004): an 11x11 Gaussian
#: of standard deviation 1.5 (truncated at 3.5 sigma, a radius of 5, as scikit-image does),
#: K1 and K2.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_K1, SSIM_K2 = 0.01, 0.03
#: MS-SSIM's weights of the five scales, finest first (Wang, Simoncelli and Bovik 2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: The smallest side ``ssim`` accepts (one whole window), and ``ms_ssim`` (one whole window
#: at the coarsest scale, after four halvings).
SSIM_MIN_SIDE = 2 * SSIM_RADIUS + 1
MS_SSIM_MIN_SIDE = SSIM_MIN_SIDE << (len(MS_SSIM_WEIGHTS) - 1)


def psnr_of_mse(mse, data_range=1.0):
    """PSNR in dB of a mean squared error on a scale whose peak is ``data_range``; infinite
    for a zero error."""
    mse = float(mse)
    return float("inf") if mse <= 0 else 10.0 * math.log10(data_range ** 2 / mse)


def psnr(a, b, data_range=None):
    """PSNR in dB between two images of the same shape; ``data_range`` defaults to 255 for
    uint8 inputs and 1.0 otherwise."""
    xp = _array_module(a, b)
    a, b = xp.asarray(a), xp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    if data_range is None:
        data_range = 255.0 if a.dtype == np.uint8 else 1.0
    mse = xp.mean((a.astype(xp.float64) - b.astype(xp.float64)) ** 2)
    return psnr_of_mse(mse, data_range)


def ssim(a, b, data_range=None):
    """Mean SSIM of two images of the same shape, (H, W) or (H, W, C), each side at least
    ``SSIM_MIN_SIDE``; ``data_range`` defaults to 255 for uint8 inputs and 1.0 otherwise.

    The SSIM of Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
    K2 = 0.03 and population covariances, averaged over the windows that lie wholly inside
    the image (a border of ``SSIM_RADIUS`` pixels is left out, so the filter's border mode
    never shows), per channel, then over the channels: equal, in float64, to scikit-image's
    ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=-1)`` (no
    ``channel_axis`` for grayscale)."""
    xp, ndimage, x, y, data_range = _prepare(a, b, data_range, SSIM_MIN_SIDE, "ssim")
    luminance, contrast_structure = _ssim_maps(xp, ndimage, x, y, data_range)
    return float(xp.mean(luminance * contrast_structure))


def ms_ssim(a, b, data_range=None):
    """Multi-scale SSIM (Wang, Simoncelli and Bovik 2003) of two images of the same shape,
    (H, W) or (H, W, C), each side at least ``MS_SSIM_MIN_SIDE`` (176); ``data_range`` as for
    ``ssim``.

    Five scales, the image itself first; each next one is the 2x2 block average of the last,
    after dropping its last row (column) when it has an odd number of them. At each scale
    the SSIM window, constants and border of ``ssim`` give the mean contrast-structure term
    cs_j; at the coarsest, the mean SSIM (luminance times contrast-structure per window, as
    in the authors' code) stands for l_5 * cs_5. The result is the product of these five
    means, each raised to its weight in ``MS_SSIM_WEIGHTS``; a negative mean (structure
    anticorrelated at that scale) is clamped to 0 first, as common implementations do, so
    the result is 0 rather than undefined. A colour image is measured per channel and the
    channels' values averaged."""
    xp, ndimage, x, y, data_range = _prepare(a, b, data_range, MS_SSIM_MIN_SIDE, "ms_ssim")
    value = 1.0
    for scale, weight in enumerate(MS_SSIM_WEIGHTS):
        if scale:
            x, y = _halve(x), _halve(y)
        luminance, term = _ssim_maps(xp, ndimage, x, y, data_range)
        if scale == len(MS_SSIM_WEIGHTS) - 1:
            term = luminance * term
        value = value * xp.maximum(xp.mean(term, axis=(1, 2)), 0.0) ** weight
    return float(xp.mean(value))


def ssim_gradient(x, y, data_range=1.0, gradient=True):
    """(mean SSIM of ``x`` against ``y``, its gradient with respect to ``x``): the fit's SSIM
    term.  ``x`` and ``y`` are float (H, W) or (H, W, C) arrays of one type and module (NumPy
    or CuPy), each side at least SSIM_MIN_SIDE; computed in their precision, with ``ssim``'s
    window, constants and windows.  ``gradient=False``: (the same value, None), at about a
    third of the cost on the CPU.

    Each window's SSIM is a function of its moments mu_x, E[x^2] and E[xy] (mu_y, E[y^2] are
    constant); the gradient sums, over the windows, SSIM's partial derivatives in those
    moments times the window's weights.  That sum is the transposed filter of the
    derivative maps: the same symmetric kernel over the maps zero-padded to the image
    (mode "constant"), since a window wholly inside never reads the border mode."""
    xp, ndimage = _modules(x, y)
    if x.shape != y.shape or x.ndim not in (2, 3) or min(x.shape[:2]) < SSIM_MIN_SIDE:
        raise ValueError(f"ssim_gradient takes two (H, W[, C]) images of one shape, each "
                         f"side at least {SSIM_MIN_SIDE}; got {x.shape} and {y.shape}")
    if xp is not np:
        value, grad = _ssim_gradient_arrays(xp, ndimage, x, y, data_range)
        return value, (grad if gradient else None)
    # On the CPU the compiled loops (cgc._core.ssim_gradient): about 4 times as fast as the
    # array operations at Kodak's size, where this term costs more than a fit's render.
    from cgc import _core
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    cx, cy = (np.ascontiguousarray(np.moveaxis(np.atleast_3d(v), -1, 0), dtype)
              for v in (x, y))
    grad = np.empty_like(cx) if gradient else None
    value = _core.ssim_gradient(cx, cy, _window(), (SSIM_K1 * data_range) ** 2,
                                (SSIM_K2 * data_range) ** 2, grad)
    return value, (np.moveaxis(grad, 0, -1).reshape(x.shape) if gradient else None)


def _window():
    """SSIM's normalised 1D Gaussian window, as scipy.ndimage.gaussian_filter1d builds it."""
    offsets = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return weights / weights.sum()


def _ssim_gradient_arrays(xp, ndimage, x, y, data_range):
    """ssim_gradient in array operations: CuPy's path, and the CPU path's check."""
    cx, cy = (xp.moveaxis(xp.atleast_3d(v), -1, 0) for v in (x, y))
    moments = _filtered(ndimage, xp.stack([cx, cy, cx * cx, cy * cy, cx * cy]), "reflect")
    r = SSIM_RADIUS
    mx, my, mxx, myy, mxy = moments[..., r:-r, r:-r]
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    a1, a2 = 2 * mx * my + c1, 2 * (mxy - mx * my) + c2
    b1, b2 = mx * mx + my * my + c1, (mxx - mx * mx) + (myy - my * my) + c2
    s = a1 * a2 / (b1 * b2)
    # dS/dE[x^2] = -S / B2 and dS/dE[xy] = 2 S / A2; dS/dmu_x gathers the direct terms and
    # those through the variance and covariance (sigma_xx = E[x^2] - mu_x^2, ...).
    d_xx = -s / b2
    d_xy = 2 * s / a2
    d_mx = s * (2 * my / a1 - 2 * mx / b1) - 2 * mx * d_xx - my * d_xy
    full = xp.zeros((3,) + cx.shape, dtype=s.dtype)
    full[..., r:-r, r:-r] = xp.stack([d_mx, d_xx, d_xy])
    g_mx, g_xx, g_xy = _filtered(ndimage, full, "constant")
    grad = (g_mx + 2 * cx * g_xx + cy * g_xy) / s.size
    return float(xp.mean(s)), xp.moveaxis(grad, 0, -1).reshape(x.shape)


def _filtered(ndimage, stack, mode):
    """SSIM's Gaussian window over the last two axes of ``stack``."""
    for axis in (-2, -1):
        stack = ndimage.gaussian_filter1d(stack, SSIM_SIGMA, axis=axis, mode=mode,
                                          truncate=SSIM_TRUNCATE)
    return stack


def _prepare(a, b, data_range, min_side, name):
    """The array module and its ndimage for ``a`` and ``b``, both as float64 (C, H, W)
    stacks of channels, and the data range; a ValueError names what is wrong with them."""
    xp, ndimage = _modules(a, b)
    a, b = xp.asarray(a), xp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} takes (H, W) or (H, W, C) images, not shape {a.shape}")
    if min(a.shape[:2]) < min_side:
        raise ValueError(f"{name} needs images of at least {min_side}x{min_side} pixels, "
                         f"not {a.shape[0]}x{a.shape[1]}")
    if not (bool(xp.isfinite(a).all()) and bool(xp.isfinite(b).all())):
        raise ValueError(f"{name} takes finite images; these hold NaN or infinity")
    if data_range is None:
        data_range = 255.0 if a.dtype == np.uint8 else 1.0
    x, y = (xp.moveaxis(xp.atleast_3d(v).astype(xp.float64), -1, 0) for v in (a, b))
    return xp, ndimage, x, y, float(data_range)


def _array_module(a, b):
    """CuPy if either image is a CuPy array (imported only then), else NumPy."""
    if any(type(v).__module__.split(".")[0] == "cupy" for v in (a, b)):
        import cupy
        return cupy
    return np


def _modules(a, b):
    """The array module of ``a`` and ``b`` and its ndimage: cupyx.scipy.ndimage or
    scipy.ndimage (imported here, so that importing this module stays cheap)."""
    xp = _array_module(a, b)
    if xp is np:
        import scipy.ndimage
        return np, scipy.ndimage
    import cupyx.scipy.ndimage
    return xp, cupyx.scipy.ndimage


def _ssim_maps(xp, ndimage, x, y, data_range):
    """SSIM's luminance and contrast-structure maps of two (C, H, W) stacks, over the
    windows wholly inside the images."""
    # scipy's gaussian_filter, axis by axis, skipping the channels
    moments = _filtered(ndimage, xp.stack([x, y, x * x, y * y, x * y]), "reflect")
    r = SSIM_RADIUS
    mx, my, mxx, myy, mxy = moments[..., r:-r, r:-r]
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    luminance = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    contrast_structure = (2 * (mxy - mx * my) + c2) / ((mxx - mx * mx) + (myy - my * my) + c2)
    return luminance, contrast_structure


def _halve(x):
    """The 2x2 block average of a (C, H, W) stack, dropping an odd last row or column."""
    c, h, w = x.shape
    return x[:, :h // 2 * 2, :w // 2 * 2].reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
