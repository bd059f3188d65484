"""cgc.video: videos as Gaussians, in .cgcv files of I-frames (images) and P-frames (the
changes to the previous frame's Gaussians).  ``encode`` and ``decode`` / ``decode_frame``
are the API; ``cgc.video.io`` reads and writes video files (the [video] extra, PyAV)."""
from cgc.video.decoder import VideoInfo, decode, decode_frame, info
from cgc.video.encoder import encode

__all__ = ["encode", "decode", "decode_frame", "info", "VideoInfo"]
