"""Encoder presets, time against quality, and the quality scale (-q) as a rate.

A preset sets the options of ``cgc.encode`` that trade encode time for quality; an option
given explicitly wins over its preset's value.  Times and PSNR of each preset on the 24
Kodak images are in docs/tuning.md ("image/presets.py: presets") and the README."""
import math
import numbers
from dataclasses import dataclass

from cgc.image.fit import DEFAULT_ITERATIONS, FINAL_LR_FRACTION


@dataclass(frozen=True)
class Preset:
    iterations: int  # full-resolution fit steps (cgc.fit; coarse steps follow them)
    overfit: bool  # fit more Gaussians than the file keeps and prune (codec.OVERFIT_SHARE)
    refine: bool  # choose the codes that render best (cgc.image.refine)
    fill: bool  # grow or densify a budget's fit that is short or poor (codec._encode_count)
    # The first fit's learning rates: factors on cgc.fit's (lr_scale) and the fraction of
    # them its cosine decay ends at (final_lr_fraction).
    lr_scale: tuple = ()
    final_lr_fraction: float = FINAL_LR_FRACTION


PRESETS = {
    # Skips every stage that costs a second fit or a search over codes.  Its 100 steps end
    # far from convergence, where larger steps to the end buy more than a settled finish:
    # +0.28 dB on Kodak at 0.5 bpp, better on every image (docs/tuning.md,
    # "image/presets.py: presets").
    "fast": Preset(iterations=100, overfit=False, refine=False, fill=False,
                   lr_scale=(("cholesky", 1.5), ("colour", 1.5)), final_lr_fraction=0.35),
    "balanced": Preset(iterations=DEFAULT_ITERATIONS, overfit=True, refine=True, fill=True),
    # Each doubling of the steps buys about 0.1 dB (docs/tuning.md, "image/fit.py:
    # iterations").
    "high": Preset(iterations=2 * DEFAULT_ITERATIONS, overfit=True, refine=True, fill=True),
    "ultra": Preset(iterations=4 * DEFAULT_ITERATIONS, overfit=True, refine=True, fill=True),
}
DEFAULT_PRESET = "balanced"

# -q / quality= picks the rate, as cwebp's and avifenc's do through their quantisers:
# quality q in [0, 100] is a budget of QUALITY_BPP_AT_0 * 2 ** (q / QUALITY_PER_DOUBLING)
# bits per pixel (0.1 at q 0, 0.57 at 50, 1.35 at 75, 3.2 at 100), one encode and no
# search.  Each 20 steps of q double the budget, and a file fills 95 to 100 % of its
# budget, so sizes grow with q (measured: docs/tuning.md, "image/presets.py: quality").
QUALITY_BPP_AT_0 = 0.1
QUALITY_PER_DOUBLING = 20.0
MAX_QUALITY = 100


def get_preset(name):
    """The Preset called ``name`` (ValueError naming the choices otherwise)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
    return PRESETS[name]


def quality_bpp(quality):
    """Bits per pixel of quality ``quality`` (a number from 0 to 100)."""
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not (
            0 <= quality <= MAX_QUALITY):  # NaN fails too
        raise ValueError(f"quality must be a number from 0 to {MAX_QUALITY}, got "
                         f"{quality!r}")
    return QUALITY_BPP_AT_0 * 2.0 ** (quality / QUALITY_PER_DOUBLING)


def budget_bytes(bpp, height, width):
    """The byte budget of ``bpp`` bits per pixel for an image of this size."""
    if isinstance(bpp, bool) or not isinstance(bpp, numbers.Real) or not (
            0 < bpp < math.inf):
        raise ValueError(f"bpp must be positive and finite, got {bpp!r}")
    return int(bpp * height * width / 8)
