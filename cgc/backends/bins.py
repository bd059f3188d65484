"""The tile binning that a backend's ``bin`` returns and its renderers take."""
from typing import NamedTuple


class Bins(NamedTuple):
    """Gaussians binned to ``tile`` x ``tile`` pixel tiles in row-major order: tile t holds
    Gaussians ``pair_gaussian[tile_start[t]:tile_start[t + 1]]``, in increasing index.
    Each backend bins to the tile size its renderer draws (the CPU's 32, the CUDA kernels'
    16) and refuses bins of another size."""

    tile_start: object  # (n_tiles + 1,) int64
    pair_gaussian: object  # (n_pairs,) int32
    tile: int
