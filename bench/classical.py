"""Classical codecs (JPEG, JPEG 2000, WebP through Pillow) as rate-distortion peers.

Each codec is swept over its quality knob on the same image; PSNR at a target bpp is
interpolated linearly in log(bpp) between the two nearest measured points."""
import io

import numpy as np
from PIL import Image


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _roundtrip(image, fmt, **kwargs):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **kwargs)
    size = buf.tell()
    buf.seek(0)
    return size, np.asarray(Image.open(buf).convert("RGB"))


def sweep(image, codec):
    """(bpp, psnr) pairs over the codec's quality range, sorted by bpp."""
    pixels = image.shape[0] * image.shape[1]
    points = []
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
    else:
        raise ValueError(codec)
    for kwargs in settings:
        size, decoded = _roundtrip(image, fmt, **kwargs)
        points.append((8.0 * size / pixels, psnr(image, decoded)))
    return sorted(points)


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
