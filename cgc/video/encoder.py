"""Encoding videos: I-frames as images, P-frames as the changes a short warm-started fit
makes to the previous frame's Gaussians, with rate control and scene cuts.

Read me first
-------------
* A group of pictures starts with an I-frame (cgc.encode of the frame).  Each P-frame
  then starts from the Gaussians the decoder holds, moved by the global motion and then
  by a motion field, a vector per cell of about 32 pixels (cgc.video.motion, each kept
  only where it brings the moved Gaussians' render nearer the frame); fits those where
  the error is above the target's, with the others held, after moving ADD_SHARE of them
  (the weakest) and as many as left the frame to where the error is; and codes what
  changed (cgc.video.pframe).  Of the candidates (no change at all, or the fit at each
  delta step of STEPS, less the updates not worth their bits), the smallest that reaches
  the target quality is kept, else the best.
* The target quality is ``psnr``, or with ``bpp`` P_OFFSET_DB under the PSNR of the
  group's I-frame, an aim that follows the P-frames' bytes.  An I-frame's rate is where a
  group of the length and P-frame share measured so far meets the mean rate asked,
  corrected by how far the frames so far are off that rate.
* A P-frame that costs more than an I-frame of its quality would (the group's I-frame's
  bytes, scaled by SLOPE_DB per doubling) is coded as an I-frame instead: a cut to a new
  scene, or content moving beyond what the P-frame's fit follows.
Choices and their measurements: docs/tuning.md, "video/encoder.py: P-frames".
"""
import math
import sys
from pathlib import Path

import numpy as np

from cgc.backends import get_backend
from cgc.image.codec import encode as encode_image, render_gaussians
from cgc.image.container import SMALLEST_FILE, unpack
from cgc.image.fit import fit, scaled_rates
from cgc.image.presets import get_preset
from cgc.image import _refine_cy
from cgc.image.prune import energy
from cgc.image.quantize import dequantise, to_attributes
from cgc.image.container import X_COLUMN, Y_COLUMN
from cgc.image.rate import SLOPE_DB
from scipy.ndimage import uniform_filter
from cgc.image.relocate import RELOCATE_SIGMA_FACTOR, place_at_errors
from cgc.imageio import to_float_image, to_uint8
from cgc.metrics import psnr_of_mse
from cgc.progress import ProgressBar
from cgc.video.container import I_FRAME, P_FRAME, pack
from cgc.video.field import NO_FIELD, cells, check_field
from cgc.video.motion import field_candidates, field_grid, fit_field, global_motion
from cgc.video.pframe import (L11_COLUMN, L22_COLUMN, MAX_ZOOM, NO_MOTION, ZOOM_ONE, State,
                              apply_p_frame, check_motion, moved_codes, pack_p_frame)
from cgc.varint import zigzag

DEFAULT_GOP = 60
DEFAULT_RATE = 30
# A P-frame's fit: this share of its preset's full-resolution steps, at this share of the
# learning rates (a continued fit, as cgc.image.grow's).
P_ITERATION_SHARE = 1.0
P_LR_SHARE = 1.0
# Share of the Gaussians moved to the largest errors in each P-frame.
ADD_SHARE = 0.02
# A Gaussian is fitted in a P-frame where the moved state's squared error, averaged over
# ACTIVE_WINDOW times the Gaussians' mean spacing, is over ACTIVE_ERROR_SHARE of the
# target quality's; the others stay as they are.
ACTIVE_WINDOW = 2.0
ACTIVE_ERROR_SHARE = 1.0
# Delta steps tried for each P-frame, finest first.
STEPS = (1, 2, 3, 4, 6, 8, 12, 16)
# Updates whose error saved is worth less than this share of their bits at the I-frame's
# rate-distortion slope are taken back (_Encoder._worth_sending); an update's flag costs
# about UPDATE_FLAG_BITS more than a kept Gaussian's.
REVERT_PRICE_SHARE = 1.0
UPDATE_FLAG_BITS = 1.0
# With a target rate, P-frames aim first at P_OFFSET_DB below their I-frame; after each,
# the aim moves by P_GAIN times the dB its bytes were off the plan (SLOPE_DB per doubling),
# from MIN_OFFSET_DB to MAX_OFFSET_DB under the I-frame.  The plan: what the rest of a
# nominal group's bytes leave each P-frame, at least MIN_P_PLAN of a frame's mean budget.
P_OFFSET_DB = 1.0
P_GAIN = 0.5
MAX_OFFSET_DB = 10.0
MIN_OFFSET_DB = -10.0
MIN_P_PLAN = 0.1
# The first I-frame's rate: that of a group of NOMINAL_GROUP frames (at most gop) whose
# P-frames take P_SHARE of its bytes each, meeting the mean rate asked; later ones plan
# with the groups' measured length and share, corrected by at most MAX_RATE_STEP's square
# root towards the rate asked.
P_SHARE = 0.3
NOMINAL_GROUP = 30
MAX_RATE_STEP = 2.0


def encode(frames, bpp=None, psnr=None, gop=DEFAULT_GOP, rate=None, preset="fast",
           device="cpu", seed=0, progress=None):
    """Encode a video to .cgcv bytes.

    ``frames``: a (T, H, W, 3) array, an iterable of (H, W, 3) arrays (uint8, or float in
    [0, 1]), or the path of a video file or a folder of images (cgc.video.io; the file's
    frame rate unless ``rate`` is given).  ``bpp``: the mean rate to aim at, in bits per
    pixel of every frame; ``psnr``: a constant quality in dB (each I-frame the smallest
    cgc.encode file reaching it, each P-frame the cheapest reaching it); exactly one.
    ``gop``: most frames from one I-frame to the next (1: every frame an I-frame).
    ``rate``: frames per second, a number or (numerator, denominator), 30 by default.
    ``preset``: the I-frames' cgc.encode preset, whose fit steps set the P-frames' too."""
    if (bpp is None) == (psnr is None):
        raise ValueError("give one of bpp and psnr")
    for name, value in (("bpp", bpp), ("psnr", psnr)):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)) or not 0 < value < math.inf):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if isinstance(gop, bool) or not isinstance(gop, (int, np.integer)) or gop < 1:
        raise ValueError(f"gop must be a positive integer, got {gop!r}")
    chosen = get_preset(preset)
    if isinstance(frames, (str, Path)):
        from cgc.video.io import read_video

        frames, file_rate = read_video(frames)
        rate = file_rate if rate is None else rate
    encoder = _Encoder(bpp, psnr, int(gop), chosen, preset, device, seed)
    coded = []
    shape = None
    bar = ProgressBar(len(frames) if hasattr(frames, "__len__") else None,
                      sys.stderr.isatty() if progress is None else progress)
    for k, frame in enumerate(frames):
        try:
            image = to_float_image(frame)
        except ValueError as exc:
            raise ValueError(f"frame {k}: {exc}") from None
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise ValueError(f"frame {k} is {image.shape[1]}x{image.shape[0]}, frame 0 "
                             f"{shape[1]}x{shape[0]}: every frame must be the same size")
        coded.append(encoder.frame(image))
        bar.update(k + 1, f"{'IP'[coded[-1][0]]} {len(coded[-1][1])} B")
    bar.close()
    if not coded:
        raise ValueError("no frames to encode")
    return pack(shape[1], shape[0], DEFAULT_RATE if rate is None else rate, coded)


class _Encoder:
    """The state of one encode: the decoder's state and the rate control's counts."""

    def __init__(self, bpp, psnr, gop, chosen, preset, device, seed):
        self.bpp, self.psnr, self.gop, self.preset = bpp, psnr, gop, preset
        self.device, self.seed = device, seed
        self.p_iterations = max(1, round(P_ITERATION_SHARE * chosen.iterations))
        self.state = None
        self.frames = 0  # frames coded
        self.spent = 0  # bytes spent
        self.i_frames = self.i_spent = self.p_spent = 0
        self.since_i = 0  # P-frames since the last I-frame
        self.i_bytes = 0
        self.i_psnr = None  # of the group's I-frame
        # The I-frames' rate: a group of NOMINAL_GROUP frames (or gop) at the mean rate,
        # its P-frames P_SHARE of its I-frame each; then set by what is spent.
        group = min(gop, NOMINAL_GROUP)
        self.i_bpp = None if bpp is None else bpp * group / (1 + (group - 1) * P_SHARE)
        self.p_plan, self.p_offset = None, P_OFFSET_DB

    def frame(self, image):
        """(type, payload) of the next frame, the state advanced past it."""
        coded = None
        if self.state is not None and self.since_i + 1 < self.gop:
            coded = self._p_frame(image)
        if coded is None:
            coded = self._i_frame(image)
        self.frames += 1
        self.spent += len(coded[1])
        if coded[0] == I_FRAME:
            self.i_frames += 1
            self.i_spent += len(coded[1])
        else:
            self.p_spent += len(coded[1])
        return coded

    def _i_frame(self, image):
        if self.psnr is not None:
            data = encode_image(image, psnr=self.psnr, preset=self.preset, device=self.device,
                                seed=self.seed)
        else:
            height, width = image.shape[:2]
            if self.frames:
                # The groups so far: their mean length and their P-frames' share of an
                # I-frame plan the next; the square root of what was meant to be spent over
                # what was corrects it towards the mean rate asked.
                group = min(self.gop, self.frames / self.i_frames)
                share = (self.p_spent / (self.frames - self.i_frames)
                         / (self.i_spent / self.i_frames)) if self.frames > self.i_frames \
                    else P_SHARE
                ratio = self.bpp * height * width * self.frames / (8 * self.spent)
                self.i_bpp = (self.bpp * group / (1 + (group - 1) * share)
                              * min(max(ratio, 1 / MAX_RATE_STEP), MAX_RATE_STEP) ** 0.5)
            budget = self.i_bpp * height * width / 8
            data = encode_image(image, max_bytes=max(SMALLEST_FILE, int(budget)),
                                preset=self.preset, device=self.device, seed=self.seed)
        self.state = State.intra(unpack(data))
        self.i_bytes = len(data)
        if self.bpp is not None:
            # What each P-frame of a nominal group may spend, the I-frame paid for.
            height, width = image.shape[:2]
            group = min(self.gop, NOMINAL_GROUP)
            frame_bytes = self.bpp * height * width / 8
            self.p_plan = max((group * frame_bytes - self.i_bytes) / max(group - 1, 1),
                              MIN_P_PLAN * frame_bytes)
        self.i_psnr = self._psnr(self.state, image)
        self.since_i = 0
        return I_FRAME, data

    def _p_frame(self, image):
        """(P_FRAME, payload), or None where an I-frame should be coded instead."""
        height, width = image.shape[:2]
        state = self.state
        # The first candidate changes nothing but the motion: static content costs a flag
        # per Gaussian.  The motion is estimated on pixels but moves quantised codes, so it
        # is kept only where it brings the reference nearer the frame than no motion does.
        # The field is judged the same way.
        estimated = self._motion(image)
        best = None
        for motion in dict.fromkeys([estimated, NO_MOTION]):
            best = self._prediction(state, image, motion, NO_FIELD, best)
        field = self._field(state, image, best)
        if field is not NO_FIELD:
            best = self._prediction(state, image, best[1], field, best)
        quality, motion, field, moved, inside, nothing, after = best
        removed, target, added = self._fit(state, image, moved, inside)
        candidates = [(nothing, after, quality)]
        for step in STEPS:
            stepped = self._worth_sending(state, image, moved, inside, target, removed, added,
                                          step)
            payload = pack_p_frame(state, stepped, removed, added, [step] * target.shape[1],
                                   motion, field)
            after = apply_p_frame(state, payload, height, width)
            candidates.append((payload, after, self._psnr(after, image)))
        # The smallest P-frame reaching the target quality, else the best one.
        passing = [c for c in candidates if c[2] >= self._target_psnr()]
        payload, after, quality = (min(passing, key=lambda c: len(c[0])) if passing
                                   else max(candidates, key=lambda c: c[2]))
        if len(payload) >= self.i_bytes * 2 ** ((quality - self.i_psnr) / SLOPE_DB):
            return None  # an I-frame of this quality would cost less: a new scene
        self.state = after
        self.since_i += 1
        if self.bpp is not None:
            # Over the plan, aim lower next time; under it, higher (P_GAIN of the gap).
            gap = SLOPE_DB * math.log2(len(payload) / self.p_plan)
            self.p_offset = min(max(self.p_offset + P_GAIN * gap, MIN_OFFSET_DB),
                                MAX_OFFSET_DB)
        return P_FRAME, payload

    def _field(self, state, image, prediction):
        """A motion field (cgc.video.field) moving the Gaussians of ``state`` towards
        ``image`` after the global motion of ``prediction`` (a ``_prediction`` without a
        field), or NO_FIELD."""
        height, width = image.shape[:2]
        quantisers = [state.quantisers[X_COLUMN], state.quantisers[Y_COLUMN]]
        made = field_grid(width, height, quantisers)
        if made is None:
            return NO_FIELD
        grid, pixels, cell_map = made
        price = self._bit_price(image)
        reference = render_gaussians(prediction[6].gaussians(height, width), self.device)
        candidates = field_candidates(reference.astype(np.float32) / 255, image, cell_map,
                                      grid.cols * grid.rows, price)
        moved, inside = prediction[3:5]
        moved = moved[inside]
        params = dequantise(state.quantisers, moved.astype(np.uint32))
        levels = np.array([q.levels for q in quantisers], np.int64)
        backend = get_backend(self.device)
        position = moved[:, [X_COLUMN, Y_COLUMN]]
        step = np.array(grid.units, np.int64)
        limits = (-(position // step), (levels - position) // step)
        vectors = fit_field(params, cells(position[:, 0], position[:, 1], grid, levels), grid,
                            image, candidates, pixels, limits, price,
                            lambda p, h, w: _render(backend, p, h, w))
        if not vectors.any():
            return NO_FIELD
        return check_field(grid._replace(vectors=vectors), levels, ValueError)

    def _prediction(self, state, image, motion, field, best):
        """(quality, motion, field, moved codes, inside mask, payload, state) of the P-frame
        that moves ``state`` by ``motion`` and ``field`` and changes nothing else, or
        ``best`` (a tuple of the same) where that predicts ``image`` no better."""
        moved, inside = moved_codes(state, motion, field)
        nothing = pack_p_frame(state, moved, np.zeros(len(state), bool),
                               np.zeros((0, 8), np.uint32), [1] * 8, motion, field)
        after = apply_p_frame(state, nothing, *image.shape[:2])
        quality = self._psnr(after, image)
        if best is not None and quality <= best[0]:
            return best
        return quality, motion, field, moved, inside, nothing, after

    def _worth_sending(self, state, image, moved, inside, target, removed, added, step):
        """``target`` with the updates at ``step`` from the ``moved`` codes that do not pay
        for their bits taken back: those whose error saved, at the group's I-frame's price
        of a bit (``_bit_price``), is less than the bits they cost (cgc.image._refine_cy.
        revert_updates).  ``moved`` and ``inside``: the state after the motion
        (cgc.video.pframe.moved_codes)."""
        levels = np.array([q.levels for q in state.quantisers], np.int64)
        delta = np.clip(np.round((target.astype(np.int64) - moved) / step), -(moved // step),
                        (levels - moved) // step).astype(np.int64)
        stepped = moved + step * delta
        kept = inside & ~removed
        changed = np.flatnonzero(kept & np.any(delta != 0, axis=1))
        if not len(changed):
            return stepped
        rows = np.flatnonzero(kept)
        params = np.concatenate([dequantise(state.quantisers, stepped[rows].astype(np.uint32)),
                                 dequantise(state.quantisers, added)])
        old = dequantise(state.quantisers, moved[changed].astype(np.uint32))
        # A code's bits: about those of an Elias gamma code of its zigzagged delta.
        zz = zigzag(delta[changed])
        saved = np.sum(np.where(zz > 0, 2 * np.floor(np.log2(zz + 1)) + 1, 0), axis=1) \
            + UPDATE_FLAG_BITS
        reverted = _refine_cy.revert_updates(params, np.searchsorted(rows, changed), old,
                                             saved.astype(np.float64), self._bit_price(image),
                                             np.ascontiguousarray(image, np.float32))
        stepped[changed[reverted.astype(bool)]] = moved[changed[reverted.astype(bool)]]
        return stepped

    def _bit_price(self, image):
        """Squared error (of [0, 1] channels, summed) a bit is worth at the group's I-frame:
        its PSNR rises by SLOPE_DB per doubling of its bits, so at D (the target's error)
        and R bits, dD/dR = D * SLOPE_DB / (10 log10(e) * R * ln 2); REVERT_PRICE_SHARE of
        that."""
        height, width = image.shape[:2]
        error = 3 * height * width * 10 ** (-self._target_psnr() / 10)
        return REVERT_PRICE_SHARE * error * SLOPE_DB / (
            10 * math.log10(math.e) * 8 * self.i_bytes * math.log(2))

    def _motion(self, image):
        """The global motion from the last decoded frame to ``image`` (a Motion in codes)."""
        height, width = image.shape[:2]
        reference = render_gaussians(self.state.gaussians(height, width), self.device)
        dx, dy, scale = global_motion(reference.astype(np.float32) / 255, image)
        zoom = int(np.clip(round((scale - 1) * ZOOM_ONE), -MAX_ZOOM, MAX_ZOOM))
        scale = 1 + zoom / ZOOM_ONE  # as the decoder will apply it
        quantisers = self.state.quantisers
        shifts = []
        # The image's zoom is about its centre, the codes' about their range's middle.
        for column, pixels, centre in ((X_COLUMN, dx, width / 2), (Y_COLUMN, dy, height / 2)):
            q = quantisers[column]
            step = (q.hi - q.lo) / q.levels if q.levels else 0.0
            middle = q.lo + q.levels * step / 2
            pixels += (1 - scale) * (centre - middle)
            shifts.append(int(round(pixels / step)) if step > 0 else 0)
        for column in (L11_COLUMN, L22_COLUMN):  # log quantisers: a scale is a shift
            q = quantisers[column]
            step = (q.hi - q.lo) / q.levels if q.levels else 0.0
            shifts.append(int(round(math.log(scale) / step)) if step > 0 else 0)
        levels = np.array([q.levels for q in quantisers])
        try:
            return check_motion((shifts[0], shifts[1], zoom, shifts[2], shifts[3]), levels,
                                ValueError)
        except ValueError:  # a motion past the codes' ranges: none
            return NO_MOTION

    def _fit(self, state, image, moved, inside):
        """(removed mask, target codes (N, 8), added codes (M, 8)) of a P-frame: from the
        state's ``moved`` codes (``inside`` the frame, cgc.video.pframe.moved_codes), the
        Gaussians where the moved state's error is over ACTIVE_ERROR_SHARE of the
        target's (the active ones) fitted with the others held still, the weakest
        ADD_SHARE of them moved to the largest errors first."""
        height, width = image.shape[:2]
        params = dequantise(state.quantisers, np.clip(moved, 0, None).astype(np.uint32))
        n = len(params)
        backend = get_backend(self.device)
        rendered = _render(backend, params[inside], height, width)
        residual = image - np.clip(rendered, 0.0, 1.0)
        error = np.square(residual, dtype=np.float64).sum(axis=2)
        spacing = math.sqrt(height * width / n)
        local = uniform_filter(error, size=max(1, round(ACTIVE_WINDOW * spacing)),
                               mode="nearest")
        x, y = params[:, 0], params[:, 1]
        removed = np.zeros(n, bool)
        target_mse = 3 * 10 ** (-self._target_psnr() / 10)  # of three channels in [0, 1]
        at = (np.clip(y, 0, height - 1).astype(np.int64), np.clip(x, 0, width - 1).astype(
            np.int64))
        active = inside & (local[at] > ACTIVE_ERROR_SHARE * target_mse)
        # As many new Gaussians as left the frame, plus the weakest ADD_SHARE moved.
        moving = min(int(ADD_SHARE * n), int(active.sum()))
        count = min(moving + int((~inside).sum()), np.count_nonzero(error))
        added = np.zeros((0, 8), np.float32)
        if count > 0 and np.isfinite(error.sum()):
            weakest = np.flatnonzero(active)[np.argsort(energy(params[active]),
                                                        kind="stable")[:moving]]
            removed[weakest], active[weakest] = True, False
            rng = np.random.default_rng([self.seed, self.frames])
            added = place_at_errors(residual, error.ravel(), count, RELOCATE_SIGMA_FACTOR
                                    * spacing, rng)
        target = moved.copy()
        if active.any() or len(added):
            still = ~active & ~removed & inside
            fixed = _render(backend, params[still], height, width)
            start = np.concatenate([params[active], added])
            fitted = fit(image, len(start), iterations=self.p_iterations, seed=self.seed,
                         init=start, lr=scaled_rates(height, width, n, P_LR_SHARE),
                         device=self.device, progress=False, relocation=False, log_every=0,
                         fixed=fixed).params
            target[active] = _codes(fitted[:int(active.sum())], state.quantisers)
            added = fitted[int(active.sum()):]
        return removed, target, _codes(added, state.quantisers)

    def _target_psnr(self):
        """A P-frame's target quality: ``psnr``, or P_OFFSET_DB below the I-frame's."""
        return self.psnr if self.psnr is not None else self.i_psnr - self.p_offset

    def _psnr(self, state, image):
        height, width = image.shape[:2]
        decoded = render_gaussians(state.gaussians(height, width), self.device)
        mse = np.mean((decoded.astype(np.float64) - to_uint8(image)) ** 2)
        return psnr_of_mse(mse, 255)


def _render(backend, params, height, width):
    """The float32 (H, W, 3) render of parameters (N, 8), N possibly 0, unclipped."""
    if not len(params):
        return np.zeros((height, width, 3), np.float32)
    return backend.to_numpy(backend.render_forward(backend.from_numpy(
        np.ascontiguousarray(params)), height, width))


def _codes(params, quantisers):
    """Codes (N, 8) of parameters under the group's quantisers (clipped to their ranges)."""
    attributes = to_attributes(params)
    return np.stack([q.quantise(attributes[:, k]) for k, q in enumerate(quantisers)],
                    axis=1).astype(np.uint32)
