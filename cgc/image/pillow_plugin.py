"""Pillow reads and writes .cgc: ``Image.open("photo.cgc")``, ``im.save("x.cgc", quality=60)``.

Registered when cgc is imported (Pillow has no entry point through which an installed
package registers a format by itself; pillow-heif and pillow-avif-plugin register on import
too).  Decoding goes through a Pillow PyDecoder, so it happens on ``load()``, at the size
the image has then: ``draft("RGB", (w, h))``, which ``thumbnail`` calls, renders the
Gaussians at the reduced size directly instead of decoding at full size and resampling."""
import math

from PIL import Image, ImageFile

from cgc.image.container import HEADER, MAGIC, check_limits

FORMAT = "CGC"
#: Options of ``Image.save(..., format="CGC")``, passed to cgc.encode: one of ``quality``
#: (0 to 100, as ``cgc encode -q``), ``bpp`` (bits per pixel), ``max_bytes`` and ``psnr``;
#: ``preset``, ``tune``, ``n_gaussians``, ``iterations``, ``seed``.
SAVE_OPTIONS = ("quality", "bpp", "max_bytes", "psnr", "preset", "tune", "n_gaussians",
                "iterations", "seed")


def _accept(prefix):
    return prefix[:len(MAGIC)] == MAGIC


def _tile(size):
    extents = (0, 0) + tuple(size)
    tile = getattr(ImageFile, "_Tile", None)  # a named tuple from Pillow 11, a tuple before
    return tile(FORMAT, extents, 0, None) if tile else (FORMAT, extents, 0, None)


def _set(image, mode, size):
    image._size = size
    if isinstance(getattr(Image.Image, "mode", None), property):  # Pillow >= 10.1
        image._mode = mode
    else:
        image.mode = mode


class CgcImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "Compact Gaussian Codec"

    def _open(self):
        from cgc.errors import FormatError

        head = self.fp.read(HEADER.size)
        if len(head) < HEADER.size or not _accept(head):
            raise SyntaxError("not a .cgc file")
        _, version, _, width, height, n = HEADER.unpack(head)
        check_limits(width, height, n, FormatError)  # the rest is checked on load()
        self.info["version"] = version
        self.encoded_size = (width, height)
        _set(self, "RGB", (width, height))
        self.tile = [_tile(self.size)]

    def draft(self, mode, size):
        """Decode at the smallest size with both sides at least ``size``'s, keeping the
        aspect ratio (no enlargement); returns (mode, box) as Pillow's JPEG plugin does:
        the whole encoded image maps onto the whole drafted one."""
        if size is None or mode not in (None, "RGB") or self.tile == []:
            return None
        width, height = self.encoded_size
        scale = max(size[0] / width, size[1] / height)
        if scale >= 1:
            return None
        drafted = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
        _set(self, "RGB", drafted)
        self.tile = [_tile(drafted)]
        return "RGB", (0, 0) + drafted


class CgcDecoder(ImageFile.PyDecoder):
    """Decodes the whole file, read from the start, at the tile's size."""
    _pulls_fd = True

    def decode(self, buffer):
        from cgc.image.codec import decode

        self.fd.seek(0)
        data = self.fd.read()
        pixels = decode(data, size=(self.state.ysize, self.state.xsize))
        self.set_as_raw(pixels.tobytes(), "RGB")
        return -1, 0


def _save(image, fp, filename):
    from cgc.image.codec import encode
    from cgc.imageio import from_pil

    options = {k: v for k, v in image.encoderinfo.items() if k in SAVE_OPTIONS}
    fp.write(encode(from_pil(image), progress=False, **options))


def register():
    """Register the .cgc format with Pillow (cgc does on import; calling again is harmless)."""
    Image.register_open(FORMAT, CgcImageFile, _accept)
    Image.register_decoder(FORMAT, CgcDecoder)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".cgc")
    Image.register_mime(FORMAT, "image/x-cgc")
