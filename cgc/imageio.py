"""Reading images into the float32 (H, W, 3) form the codec works on, and back to uint8.

Accepted inputs (anything Pillow reads, or arrays):
* RGB: used as is.  Grayscale (L, 1, I;16, I, F) is replicated into three equal channels.
* 16-bit and 32-bit integer images are scaled by 1/65535; float ("F") image files are
  clipped to [0, 1], float arrays must lie within it.  cgc stores 8-bit-accurate output, so extra input precision only helps the fit.
* Alpha (RGBA, LA, palette with transparency) is composited over white: cgc codes colour.
* Palette, CMYK, YCbCr and LAB images are converted to RGB by Pillow.
* Image files are turned upright by their EXIF orientation, and an embedded ICC profile is
  converted to sRGB (to_srgb).
"""
import io

import numpy as np

from cgc.errors import FormatError
from cgc.image.container import MAX_PIXELS


def to_float_image(image):
    """The codec's working form of an array image, float32 (H, W, 3) in [0, 1]: the one
    validation of ``cgc.fit``, ``cgc.encode`` and the image files read here.

    (H, W) grayscale is replicated into three channels and (H, W, 4) alpha composited over
    white; uint8 is scaled by 1/255, 16-bit and wider integers by 1/65535 (clipped);
    floats must be finite and within [0, 1].  Anything else raises ValueError."""
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / np.float32(255)
    elif array.dtype in (np.uint16, np.int32, np.uint32, np.int64):
        scaled = np.clip(array.astype(np.float64) / 65535.0, 0, 1).astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("image contains NaN or infinite values")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ValueError("float images must lie within [0, 1]")
        scaled = array.astype(np.float32)
    else:
        raise ValueError(f"unsupported image dtype {array.dtype}")
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[:, :, None], 3, axis=2)
    if scaled.ndim != 3 or scaled.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if scaled.shape[2] == 4:
        alpha = scaled[:, :, 3:]
        scaled = scaled[:, :, :3] * alpha + (1 - alpha)
    if scaled.shape[0] < 1 or scaled.shape[1] < 1:
        raise ValueError(f"image is empty ({scaled.shape[0]}x{scaled.shape[1]})")
    return np.ascontiguousarray(scaled, dtype=np.float32)


def load_image(path, name=None):
    """Read an image file (a path or a binary file object; ``name`` for messages) with
    Pillow, turned upright by its EXIF orientation; FormatError if it is not a readable
    image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = path if name is None else name
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise FormatError(f"image {name} is {width}x{height}, more than the "
                                  f"{MAX_PIXELS} pixels cgc encodes")
            img.load()
            return from_pil(ImageOps.exif_transpose(img))
    except FormatError:
        raise
    # Pillow reports malformed files through several exception types, a decompression bomb
    # among them; all of them mean the same thing here.
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError, TypeError) as exc:
        raise FormatError(f"cannot read image {name}: {exc}") from None


def from_pil(img):
    """A loaded Pillow image as cgc's float image: an embedded ICC profile converted to sRGB
    (to_srgb), palettes and other colour spaces to RGB, 16-bit kept, float ("F") pixels
    clipped to [0, 1] rather than refused."""
    img = to_srgb(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode == "LA":
        img = img.convert("RGBA")
    elif img.mode.startswith("I;16"):
        return to_float_image(np.asarray(img).astype(np.uint16))
    array = np.asarray(img)
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(array, 0, 1)
    return to_float_image(array)


def to_srgb(img):
    """``img`` with its embedded ICC profile, if any, converted to sRGB (Pillow's ImageCms,
    perceptual intent), as a colour-managed viewer shows it: cgc files hold sRGB and carry
    no profile.  Images without a profile are taken as sRGB already; so are those whose
    profile cannot be read or does not match their mode, and 16-bit and float images, which
    ImageCms does not convert."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "L", "CMYK"):
        return img
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = "RGBA" if img.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"),
                                              outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img
    if img.mode == "RGBA" and converted.mode == "RGBA":
        converted.putalpha(img.getchannel("A"))  # the transform need not carry alpha
    return converted


def to_uint8(image, xp=np):
    """float image -> uint8, clipping to [0, 1] and rounding to nearest (half to even);
    ``xp``: the image's array module (NumPy or CuPy)."""
    return xp.round(xp.clip(image, 0.0, 1.0) * 255.0).astype(xp.uint8)


def save_image(path, image_uint8, format=None):
    """Write a uint8 image with Pillow, in the format its extension names (or ``format``);
    ``path`` may be a binary file object."""
    from PIL import Image

    Image.fromarray(image_uint8).save(path, format=format)
