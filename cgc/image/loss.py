"""What the fit minimises: the image-space gradient each step hands the renderer's backward
pass.  ``tune`` names one, as avifenc's ``--tune`` does: "psnr" (squared error, cgc's
historical loss) or "ssim" (the roadmap's mix of L1, L2 and 1 - SSIM)."""
from cgc.metrics import SSIM_MIN_SIDE, ssim_gradient

TUNES = ("psnr", "ssim")
#: tune="ssim"'s weights of L1, L2 and 1 - SSIM: the roadmap's, with the highest PSNR, SSIM
#: and MS-SSIM of the sets measured on the 24 Kodak images once fits stopped running past
#: the clip (measurements: docs/tuning.md, "image/loss.py: tune weights").
SSIM_TUNE_WEIGHTS = (0.2, 0.8, 0.1)


class SquaredError:
    """sum (rendered - target)^2: PSNR's loss."""
    name = "psnr"
    # At a pixel clipped to 1 its gradient 2 (1 - target) is >= 0, at 0 <= 0: it never
    # pushes a clipped pixel further out, so the fit need not check (cgc.image.fit).
    inward_at_clip = True

    def value(self, xp, rendered, target):
        """The mean squared error, as a float."""
        return float(xp.mean((rendered - target) ** 2))

    def gradient(self, xp, rendered, target):
        return 2.0 * (rendered - target)


class Perceptual:
    """l1 * mean|d| + l2 * mean d^2 + ssim * (1 - SSIM), d = rendered - target, scaled by
    the number of values so that its L2 part has SquaredError's gradient scale (the fit's
    learning rates were tuned on it).  SSIM is cgc.metrics.ssim's, per channel; an image
    with a side under SSIM_MIN_SIDE (a coarse stage of a tiny image) drops the term."""
    name = "ssim"

    def __init__(self, l1=SSIM_TUNE_WEIGHTS[0], l2=SSIM_TUNE_WEIGHTS[1],
                 ssim=SSIM_TUNE_WEIGHTS[2]):
        self.l1, self.l2, self.ssim = float(l1), float(l2), float(ssim)

    @property
    def weights(self):
        return self.l1, self.l2, self.ssim

    def value(self, xp, rendered, target):
        """The loss per value (its gradient below is this times the number of values)."""
        diff = rendered - target
        total = self.l1 * float(xp.mean(xp.abs(diff))) + self.l2 * float(xp.mean(diff * diff))
        if self.ssim and min(rendered.shape[:2]) >= SSIM_MIN_SIDE:
            total += self.ssim * (1.0 - ssim_gradient(rendered, target, gradient=False)[0])
        return total

    def gradient(self, xp, rendered, target):
        diff = rendered - target
        grad = self.l1 * xp.sign(diff) + (2.0 * self.l2) * diff
        if self.ssim and min(rendered.shape[:2]) >= SSIM_MIN_SIDE:
            _, d_ssim = ssim_gradient(rendered, target)
            grad -= (self.ssim * rendered.size) * d_ssim
        return grad


def get_loss(loss):
    """The loss object for ``loss``: a name in TUNES, or an object with ``gradient`` (what
    the fit follows) and ``value`` (what the allocation weighs)."""
    if isinstance(loss, str):
        if loss == "psnr":
            return SquaredError()
        if loss == "ssim":
            return Perceptual()
        raise ValueError(f"loss must be one of {TUNES}, not {loss!r}")
    if not all(callable(getattr(loss, name, None)) for name in ("gradient", "value")):
        raise ValueError(f"loss must be one of {TUNES} or have gradient and value methods, "
                         f"got {loss!r}")
    return loss
