"""Classical codecs (JPEG, JPEG 2000, WebP and AVIF through Pillow; JPEG XL through
imagecodecs) as rate-distortion peers.

Each codec is swept over its quality knob on the same image; PSNR at a target bpp is
interpolated linearly in log(bpp) between the two nearest measured points.  A codec that
this installation lacks (available() is False) is left out by the callers, not an error."""
import io

import numpy as np
import PIL
from PIL import Image, features

try:
    import imagecodecs
except ImportError:
    imagecodecs = None

CODECS = ("jpeg", "jpeg2000", "webp", "avif", "jpegxl")
NAMES = {"jpeg": "JPEG", "jpeg2000": "JPEG 2000", "webp": "WebP", "avif": "AVIF",
         "jpegxl": "JPEG XL"}


def available(codec):
    """Whether this installation can sweep ``codec``."""
    if codec == "avif":
        return bool(features.check("avif"))
    if codec == "jpegxl":
        return imagecodecs is not None and bool(imagecodecs.JPEGXL.available)
    return codec in CODECS


def versions():
    """The codec libraries a sweep uses (None for those absent)."""
    feature = features.version  # None for a feature this Pillow lacks or does not know
    found = {"pillow": PIL.__version__, "libjpeg": feature("jpg"),
             "libjpeg_turbo": feature("libjpeg_turbo"),
             "openjpeg": feature("jpg_2000"), "libwebp": feature("webp"),
             "libavif": feature("avif"), "avif_codecs": None,
             "imagecodecs": getattr(imagecodecs, "__version__", None), "libjxl": None}
    if found["libavif"]:
        try:  # private to Pillow, but the only place naming the AV1 encoder and its version
            from PIL import _avif
            found["avif_codecs"] = _avif.codec_versions()
        except (ImportError, AttributeError):
            pass
    if available("jpegxl"):
        found["libjxl"] = imagecodecs.jpegxl_version().removeprefix("libjxl ")
    return found


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _encode(image, fmt, **kwargs):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **kwargs)
    return buf.getvalue()


def decode(codec, data):
    """The RGB image of one of ``codec``'s files."""
    if codec == "jpegxl":
        return imagecodecs.jpegxl_decode(data)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _jpegxl_sweep(image):
    # distance (butteraugli units; 1 is about visually lossless) is libjxl's own knob and
    # 25 its largest.  Effort 8: the default, 7, is up to 0.3 dB lower and stops above 0.25
    # bpp on kodim05; 9 is 1.4x slower for the same PSNR.
    return [imagecodecs.jpegxl_encode(image, distance=float(distance), effort=8)
            for distance in np.geomspace(0.1, 25.0, 26)]


def sweep(image, codec):
    """(bpp, psnr) pairs over the codec's quality range, sorted by bpp."""
    return sorted((bpp, psnr(image, decoded)) for bpp, decoded in decoded_sweep(image, codec))


def decoded_sweep(image, codec, encoded=None):
    """(bpp, decoded image) pairs over the codec's quality range, sorted by bpp; from
    ``encoded`` (an encoded_sweep of the image) where given."""
    return [(bpp, decode(codec, data))
            for bpp, data in (encoded or encoded_sweep(image, codec))]


def encoded_sweep(image, codec):
    """(bpp, file bytes) pairs over the codec's quality range, sorted by bpp."""
    pixels = image.shape[0] * image.shape[1]
    if codec == "jpeg":
        settings = [dict(quality=q, subsampling=0 if q >= 90 else 2) for q in range(2, 100, 3)]
        fmt = "JPEG"
    elif codec == "webp":
        settings = [dict(quality=q, method=6) for q in range(0, 101, 4)]
        fmt = "WEBP"
    elif codec == "jpeg2000":
        # quality_layers with quality_mode="rates" are compression ratios against 24 bpp;
        # mct=1 turns on the colour transform, which Pillow leaves off by default (without
        # it JPEG 2000 loses 2-4 dB on Kodak).
        settings = [dict(quality_mode="rates", quality_layers=[24.0 / bpp], irreversible=True,
                         mct=1)
                    for bpp in np.geomspace(0.08, 3.0, 24)]
        fmt = "JPEG2000"
    elif codec == "avif":
        # libaom tuned for PSNR, with 4:4:4 chroma: at speed 6 this is 0.2-1.4 dB above
        # Pillow's defaults (4:2:0, libavif's own tuning) at 0.25-1 bpp on kodim01/05/15/23,
        # and 4:4:4 beats 4:2:0 on each once tuned for PSNR.  Speed 4 (Pillow's default
        # is 6) adds 0.2-0.5 dB for 4-7x the time; speed 2 about 0.25 dB more for 3x again.
        settings = [dict(quality=q, subsampling="4:4:4", speed=4, advanced={"tune": "psnr"})
                    for q in range(0, 101, 4)]
        fmt = "AVIF"
    elif codec != "jpegxl":
        raise ValueError(codec)
    files = (_jpegxl_sweep(image) if codec == "jpegxl"
             else [_encode(image, fmt, **kwargs) for kwargs in settings])
    return sorted(((8.0 * len(data) / pixels, data) for data in files),
                  key=lambda point: point[0])


def measure_at(image, points, bpp, measure):
    """``measure(image, decoded)`` at ``bpp`` from a decoded_sweep: measured on the two
    points around it and interpolated linearly in log(bpp); None outside the swept range."""
    rates = [point[0] for point in points]
    if not rates[0] <= bpp <= rates[-1]:
        return None
    upper = min(max(int(np.searchsorted(rates, bpp)), 1), len(rates) - 1)
    (r0, d0), (r1, d1) = points[upper - 1], points[upper]
    v0, v1 = measure(image, d0), measure(image, d1)
    if r1 == r0:
        return float(max(v0, v1))
    t = (np.log(bpp) - np.log(r0)) / (np.log(r1) - np.log(r0))
    return float(v0 + t * (v1 - v0))


def psnr_at(points, bpp):
    """PSNR at ``bpp`` by linear interpolation in log(bpp); None outside the swept range."""
    rates = np.log([p[0] for p in points])
    values = np.array([p[1] for p in points])
    target = np.log(bpp)
    if target < rates[0] or target > rates[-1]:
        return None
    return float(np.interp(target, rates, values))


def bpp_at(points, quality):
    """The bpp at which the codec reaches PSNR ``quality``: log(bpp) interpolated linearly
    against the running maximum of the PSNRs; None outside the swept range."""
    rates = np.log([p[0] for p in points])
    values = np.maximum.accumulate([p[1] for p in points])
    if quality < values[0] or quality > values[-1]:
        return None
    return float(np.exp(np.interp(quality, values, rates)))
