"""Video files in and out: PyAV (the [video] extra) for .mp4, .mkv, .webm, .y4m, .avi and
.mov, and folders of images (cgc.imageio) with no extra at all.

PyAV wraps FFmpeg's demuxers, decoders and encoders; writing our own readers for those
containers would be a project of its own, so the extra is the one dependency here."""
import os
from fractions import Fraction

import numpy as np

from cgc.imageio import load_image, save_image, to_uint8

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".y4m", ".avi", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm")
# What ``write_video`` uses for each container when no codec is named: lossless FFV1 in
# Matroska, otherwise a common codec of that container.
DEFAULT_CODECS = {".mkv": "ffv1", ".mp4": "libx264", ".webm": "libvpx-vp9", ".avi": "ffv1",
                  ".mov": "libx264", ".y4m": "rawvideo"}


def is_video_path(path):
    """Whether ``path`` names a video this module reads or writes: a folder, or a file with
    a video suffix."""
    return os.path.isdir(path) or str(path).lower().endswith(VIDEO_SUFFIXES)


def _av():
    try:
        import av
    except ImportError:
        raise ImportError("reading and writing video files needs PyAV: pip install "
                          "'cgc[video]' (a folder of images needs nothing more)") from None
    return av


def read_video(path):
    """(iterator of uint8 (H, W, 3) frames, frame rate as a Fraction or None) of a video
    file or of a folder of images (its image files in name order; no rate)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        names = sorted(name for name in os.listdir(path)
                       if name.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise ValueError(f"no images in the folder {path}")
        return (to_uint8(load_image(os.path.join(path, name))) for name in names), None
    av = _av()
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot open {path} as a video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate

    def frames():
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        finally:
            container.close()

    return frames(), Fraction(rate) if rate else None


def write_video(path, frames, rate, codec=None, options=None):
    """Write uint8 (H, W, 3) frames to a video file (codec by default from DEFAULT_CODECS,
    or any encoder PyAV has, with its ``options``) or, for a path ending in a separator or
    naming a folder, to PNG files frame_000000.png, ... in it.  Returns the frame count."""
    path = os.fspath(path)
    if path.endswith(os.sep) or os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        count = 0
        for count, frame in enumerate(frames, 1):
            save_image(os.path.join(path, f"frame_{count - 1:06d}.png"), frame)
        return count
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"unknown video suffix {suffix!r}: use one of "
                         f"{', '.join(VIDEO_SUFFIXES)} or a folder")
    av = _av()
    codec = codec or DEFAULT_CODECS[suffix]
    count = 0
    with av.open(path, "w") as container:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(*rate) if isinstance(
                    rate, tuple) else Fraction(rate).limit_denominator(1 << 16))
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = _pixel_format(codec)
                stream.options = dict(options or {})
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")
                                        .reformat(format=stream.pix_fmt)):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return count


def _pixel_format(codec):
    """FFV1 and raw video keep RGB exactly (lossless); other codecs take 4:2:0 YUV."""
    return {"ffv1": "bgr0", "rawvideo": "yuv420p"}.get(codec, "yuv420p")
