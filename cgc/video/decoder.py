"""Decoding .cgcv videos: every frame in order, or one frame by seeking to its I-frame."""
from dataclasses import dataclass

from cgc.errors import FormatError
from cgc.image.codec import render_gaussians
from cgc.image.container import VERSION as IMAGE_VERSION, unpack
from cgc.video.container import FRAME_TYPES, I_FRAME, frame_bytes, read_index
from cgc.video.pframe import State, apply_p_frame


def next_state(data, index, k, state):
    """The state after frame ``k`` of a file whose frame ``k - 1`` left ``state`` (None
    before an I-frame); FormatError naming the frame if it is damaged."""
    payload = frame_bytes(data, index, k)
    kind = index.frames[k].type
    try:
        if kind == I_FRAME:
            packed = unpack(payload)
            if packed.version != IMAGE_VERSION:
                raise FormatError(f"an I-frame must be a version-{IMAGE_VERSION} .cgc file, "
                                  f"not version {packed.version}")
            if (packed.width, packed.height) != (index.width, index.height):
                raise FormatError(f"a {packed.width}x{packed.height} I-frame in a "
                                  f"{index.width}x{index.height} video")
            return State.intra(packed)
        return apply_p_frame(state, payload, index.height, index.width, index.version)
    except FormatError as exc:
        raise FormatError(f"frame {k} ({FRAME_TYPES[kind]}): {exc}") from None


def decode(data, device="cpu", to_host=True):
    """The frames of .cgcv bytes, in order, as uint8 (H, W, 3) arrays (``to_host=False``:
    arrays of the device's module).  The file's header and index are checked now
    (FormatError); a damaged frame raises FormatError naming it when the iteration reaches
    it, after the frames before it."""
    data = bytes(data)
    index = read_index(data)
    return _frames(data, index, device, to_host)


def _frames(data, index, device, to_host):
    state = None
    for k in range(len(index.frames)):
        state = next_state(data, index, k, state)
        yield render_gaussians(state.gaussians(index.height, index.width), device,
                               to_host=to_host)


def decode_frame(data, k, device="cpu", to_host=True):
    """Frame ``k`` (0-based) of .cgcv bytes: decoded from the I-frame at or before it."""
    data = bytes(data)
    index = read_index(data)
    if isinstance(k, bool) or not isinstance(k, int) or not -len(index.frames) <= k < len(
            index.frames):
        raise ValueError(f"frame {k!r} out of range: the video has {len(index.frames)}")
    k %= len(index.frames)
    state = None
    for j in range(index.i_frame_before(k), k + 1):
        state = next_state(data, index, j, state)
    return render_gaussians(state.gaussians(index.height, index.width), device,
                            to_host=to_host)


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    rate: tuple
    frames: int
    i_frames: int
    p_frames: int
    bytes: int

    @property
    def seconds(self):
        return self.frames * self.rate[1] / self.rate[0]

    @property
    def bits_per_second(self):
        return 8 * self.bytes / self.seconds

    @property
    def bits_per_pixel(self):
        return 8 * self.bytes / (self.frames * self.width * self.height)


def info(data):
    """A :class:`VideoInfo` of .cgcv bytes (their index checked, no frame decoded)."""
    index = read_index(data)
    i_frames = sum(frame.type == I_FRAME for frame in index.frames)
    return VideoInfo(index.width, index.height, index.rate, len(index.frames), i_frames,
                     len(index.frames) - i_frames, len(data))
