"""How much work and memory an untrusted file may make a decoder ask for.

A few kilobytes of .cgc can hold up to 2**20 Gaussians each as large as the image (the
adaptive range coder makes repeated ones almost free): rendered, that is tens of billions of
(pixel, Gaussian) evaluations and as many (tile, Gaussian) pairs in memory.  A .cgcl stream
of S bytes may declare about 7400 S bytes of output.  Like Pillow's MAX_IMAGE_PIXELS, each
limit below is a module attribute that a program decoding trusted input may raise, or set to
None to switch the check off, process-wide.  The decoders check before they allocate or
render, in time linear in the file; refusals are cgc.FormatError."""
from cgc.errors import FormatError

#: Most Gaussians a .cgc file may hold per byte.  The adaptive range coder lets a 69 kB file
#: hold the format's 2**20 Gaussians, whose parsing alone takes a third of a second; a
#: fit's Gaussians cost over 30 bits each: at most 0.23 of them per byte (docs/tuning.md,
#: "limits.py: decode work").
MAX_GAUSSIANS_PER_BYTE = 4

#: Most Gaussians a decode may evaluate per output pixel on average: Gaussians.render_work()
#: over the output's pixels.  Real files reach 30 at most, at their size or decoded at 1/4
#: to 4 times it (docs/tuning.md, "limits.py: decode work").
MAX_OVERDRAW = 256

#: Render work (pixel, Gaussian evaluations) allowed whatever the output size, so a
#: thumbnail of a dense file, whose every Gaussian covers at least a pixel, still decodes;
#: about 0.1 s of one core.
RENDER_WORK_ALLOWANCE = 1 << 25

#: Most bytes a cgc.lossless stream or checkpoint may decode to per byte of input, beyond
#: LOSSLESS_OUTPUT_ALLOWANCE.  Real data compresses 1.1 to 4 times; constant float32
#: tensors reach 1800 (at the default tile), so a large all-zero tensor alone needs the
#: limit raised.
MAX_LOSSLESS_RATIO = 1024

#: Output bytes any cgc.lossless stream may decode to whatever its size.
LOSSLESS_OUTPUT_ALLOWANCE = 1 << 28


def _refuse(what, amount, limit_name, limit):
    raise FormatError(f"{what} ({amount}) is over cgc.limits.{limit_name} = {limit}: a "
                      f"decode bomb, or trusted input that needs the limit raised (or set "
                      f"to None)")


def check_count(n_gaussians, file_bytes):
    """FormatError when a .cgc file of ``file_bytes`` declares more than
    MAX_GAUSSIANS_PER_BYTE Gaussians per byte."""
    limit = MAX_GAUSSIANS_PER_BYTE
    if limit is not None and n_gaussians > limit * file_bytes:
        _refuse(f"a .cgc file of {file_bytes} bytes declaring {n_gaussians} Gaussians",
                f"{n_gaussians / file_bytes:.1f} per byte", "MAX_GAUSSIANS_PER_BYTE",
                MAX_GAUSSIANS_PER_BYTE)


def check_render(gaussians):
    """FormatError when rendering ``gaussians`` (cgc.Gaussians, at their size) would take
    more than MAX_OVERDRAW evaluations per output pixel and RENDER_WORK_ALLOWANCE in all."""
    if MAX_OVERDRAW is None:
        return
    pixels = gaussians.height * gaussians.width
    limit = max(MAX_OVERDRAW * pixels, RENDER_WORK_ALLOWANCE)
    work = gaussians.render_work()
    if work > limit:
        _refuse(f"rendering {len(gaussians)} Gaussians on {gaussians.width}x"
                f"{gaussians.height} pixels evaluates {work / pixels:.0f} per pixel",
                work, "MAX_OVERDRAW", MAX_OVERDRAW)


def check_expansion(output_bytes, input_bytes, what="cgc.lossless stream"):
    """FormatError when ``input_bytes`` of compressed data declare more than
    MAX_LOSSLESS_RATIO times as many output bytes and LOSSLESS_OUTPUT_ALLOWANCE in all."""
    if MAX_LOSSLESS_RATIO is None:
        return
    limit = max(MAX_LOSSLESS_RATIO * input_bytes, LOSSLESS_OUTPUT_ALLOWANCE)
    if output_bytes > limit:
        _refuse(f"a {what} of {input_bytes} bytes declaring {output_bytes} bytes of output",
                f"{output_bytes / max(input_bytes, 1):.0f} times its size",
                "MAX_LOSSLESS_RATIO", MAX_LOSSLESS_RATIO)


def trust_all():
    """Switch every limit off, process-wide: for programs that decode trusted files only
    (``cgc decode --trusted``)."""
    global MAX_GAUSSIANS_PER_BYTE, MAX_OVERDRAW, MAX_LOSSLESS_RATIO
    MAX_GAUSSIANS_PER_BYTE = MAX_OVERDRAW = MAX_LOSSLESS_RATIO = None
