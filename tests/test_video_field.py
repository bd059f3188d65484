"""The P-frames' motion field (cgc/video/field.py, docs/video-format.md "Motion field"):
its bits against a hand-computed example, the moves it makes, bad fields refused, and the
encoder's search (cgc/video/motion.py) finding a known move."""
import numpy as np
import pytest

from cgc.backends import get_backend
from cgc.errors import FormatError
from cgc.image.quantize import Quantiser
from cgc.video.field import Field, check_field, pack_field, read_field
from cgc.video.motion import field_candidates, field_grid, fit_field
from cgc.video.pframe import NO_MOTION, State, _Reader, moved_codes

LEVELS = np.array([1023, 511])  # x and y codes of 10 and 9 bits


def test_field_bits_match_a_hand_computed_example():
    # Cell 0 is predicted by the median of three missing neighbours, (0, 0): residual
    # (1, 0).  Cell 1: the median of left (1, 0) and two missing: (0, 0), residual (1, -1).
    # Zigzagged plus one: 3, 1, 3, 2; gamma codes 011 1 011 010, padded to two bytes.
    field = Field(2, 1, (3, 2), np.array([[[1, 0], [1, -1]]]))
    expected = bytes([2, 1, 3, 2, 2]) + bytes([0b01110110, 0b10000000])
    assert pack_field(field) == expected
    back = read_field(_Reader(expected), LEVELS)
    assert (back.cols, back.rows, back.units) == (2, 1, (3, 2))
    assert back.vectors.tolist() == field.vectors.tolist()


def test_fields_round_trip():
    rng = np.random.default_rng(4)
    for cols, rows in ((1, 1), (7, 3), (20, 9)):
        vectors = rng.integers(-40, 41, (rows, cols, 2))
        vectors[rng.random((rows, cols)) < 0.3] = 0
        field = Field(cols, rows, (5, 7), vectors)
        data = pack_field(field)
        reader = _Reader(data + b"tail")
        back = read_field(reader, LEVELS)
        assert reader.pos == len(data)  # reads exactly its own bytes
        assert np.array_equal(back.vectors, vectors)


def test_no_field_is_two_zero_bytes():
    assert pack_field(None) == bytes(2)
    assert read_field(_Reader(bytes(2)), LEVELS) is None


def _state(codes):
    quantisers = [Quantiser(10, 0, 0.0, 64.0), Quantiser(9, 0, 0.0, 48.0)] + [
        Quantiser(6, 0, 0.0, 1.0)] * 6
    codes = np.asarray(codes, np.uint32)
    return State(quantisers, codes, np.zeros(len(codes), np.uint8),
                 np.zeros(codes.shape, np.int32))


def test_a_field_moves_each_gaussian_by_its_cell_vector():
    # 2 x 2 cells over 1024 x codes and 512 y codes: x codes below 512 are column 0.
    state = _state([[100, 100] + [9] * 6, [600, 100] + [9] * 6, [100, 300] + [9] * 6,
                    [1020, 500] + [9] * 6])
    field = Field(2, 2, (3, 2), np.array([[[1, 0], [-2, 5]], [[0, 0], [2, 2]]]))
    codes, inside = moved_codes(state, NO_MOTION, field)
    assert codes[:, :2].tolist() == [[103, 100], [594, 110], [100, 300], [1026, 504]]
    assert inside.tolist() == [True, True, True, False]  # the last left the x range
    assert np.array_equal(codes[:, 2:], state.codes[:, 2:])


@pytest.mark.parametrize("data, message", [
    (bytes([0, 3]), "0x3 cells"),
    (bytes([2, 1, 3, 2]), "truncated"),                    # no length
    (bytes([2, 1, 3, 2, 5, 0xFF]), "truncated"),           # length past the end
    (bytes([2, 1, 3, 2, 0]), "0 bytes for 4 values"),
    (bytes([2, 1, 3, 2, 1, 0x00]), "truncated motion field"),  # zeros and no code
    (bytes([2, 1, 3, 2, 2, 0b11110000, 0]), "bytes after"),    # a byte left over
    (bytes([2, 1, 3, 2, 1, 0b11111000]), "bytes after"),       # set padding bits
    (bytes([2, 1, 0, 2, 1, 0xF0]), "units"),
    (bytes([1, 1, 1, 1, 5, 0, 0, 0, 0, 0x7F]), "bad motion field code"),  # 33 zeros
])
def test_bad_fields_are_refused(data, message):
    with pytest.raises(FormatError, match=message):
        read_field(_Reader(data), LEVELS)


def test_a_vector_past_the_codes_range_is_refused():
    # One cell, x moving by 400 units of 3 codes: 1200 > 1023 levels.
    data = pack_field(Field(1, 1, (3, 1), np.array([[[400, 0]]])))
    with pytest.raises(FormatError, match="beyond the codes' ranges"):
        read_field(_Reader(data), LEVELS)
    with pytest.raises(ValueError, match="beyond"):
        check_field(Field(1, 1, (3, 1), np.array([[[400, 0]]])), LEVELS, ValueError)


def test_the_search_finds_a_known_move():
    """Gaussians in the left cell of a 64 x 32 picture move 5 pixels right and 2 down in
    the target; the search's field gives those cells that move (in units of about a
    pixel) and leaves the other still."""
    rng = np.random.default_rng(7)
    backend = get_backend("cpu")

    def render(params, height, width):
        return backend.to_numpy(backend.render_forward(backend.from_numpy(
            np.ascontiguousarray(params, np.float32)), height, width))

    n = 24
    params = np.zeros((n, 8), np.float32)
    params[:, 0] = np.where(np.arange(n) < n // 2, rng.uniform(8, 24, n), rng.uniform(40, 56, n))
    params[:, 1] = rng.uniform(8, 24, n)
    params[:, 2] = params[:, 4] = rng.uniform(1.5, 3.0, n)
    params[:, 5:] = rng.uniform(0.2, 0.8, (n, 3))
    quantisers = [Quantiser(10, 0, 0.0, 64.0), Quantiser(9, 0, 0.0, 32.0)]
    grid, pixels, cell_map = field_grid(64, 32, quantisers)
    assert (grid.cols, grid.rows) == (2, 1)
    target_params = params.copy()
    target_params[:n // 2, 0] += 5 * pixels[0]
    target_params[:n // 2, 1] += 2 * pixels[1]
    target = np.clip(render(target_params, 32, 64), 0, 1)
    reference = np.clip(render(params, 32, 64), 0, 1)
    candidates = field_candidates(reference, target, cell_map, 2, price=1e-4)
    cell = (params[:, 0] >= 32).astype(np.int64)
    limits = (np.full((n, 2), -100), np.full((n, 2), 100))
    vectors = fit_field(params, cell, grid, target, candidates, pixels, limits, 1e-4, render)
    assert vectors.tolist() == [[[5, 2], [0, 0]]]


def _moving_square_clip(frames=3, step=4):
    """A still textured background with a bright square moving ``step`` pixels right per
    frame: no global motion, one local move."""
    ys, xs = np.mgrid[0:48, 0:64]
    background = np.stack([0.3 + 0.2 * np.sin(xs / 5.0), 0.4 + 0.2 * np.cos(ys / 4.0),
                           0.5 + 0.1 * np.sin((xs + ys) / 7.0)], axis=2)
    clip = []
    for k in range(frames):
        frame = background.copy()
        frame[16:32, 8 + step * k:24 + step * k] = (0.95, 0.9, 0.2)
        clip.append(frame)
    return np.array(clip)


def _p_frames_have_fields(data):
    from cgc.video.container import P_FRAME, frame_bytes, read_index

    index = read_index(data)
    found = []
    for k, frame in enumerate(index.frames):
        if frame.type == P_FRAME:
            reader = _Reader(frame_bytes(data, index, k))
            for _ in range(5):
                reader.varint("motion")
            found.append(read_field(reader, LEVELS) is not None)
    return found


def test_the_encoder_follows_a_local_move_with_a_field():
    import cgc.video

    moving = cgc.video.encode(_moving_square_clip(), psnr=32, gop=10, progress=False)
    assert _p_frames_have_fields(moving) == [True, True]
    still = cgc.video.encode(_moving_square_clip(step=0), psnr=32, gop=10, progress=False)
    assert _p_frames_have_fields(still) == [False, False]
