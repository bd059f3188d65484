"""Write the all-MiniLM-L6-v2 checkpoint as cgc.lossless streams for bench/lossless_gpu.py.

A GPU machine may have no network and no room to carry the 91 MB checkpoint, so the streams
are made here: each variant of bench/lossless.py (fp32 as shipped, bf16 truncated, int8
per-channel quantised) with all its tensors flattened and stacked as one (rows, 384) array
(every tensor's size is a multiple of the hidden width 384), encoded with 64x64 tiles and
written as DIR/minilm-<variant>[-partK].cgcl.  Variants whose stream would exceed --max-mb
are cut into row blocks, each a stream of its own, so that any one file stays small enough
to copy.  `python bench/lossless_gpu.py --streams DIR/*.cgcl` times their GPU decode and
checks it against the CPU decoder.

    python bench/checkpoint_streams.py [--out DIR] [--max-mb 40] [--variants bf16 int8 fp32]
"""
import argparse
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cgc.lossless as lossless  # noqa: E402
from lossless import load_variants  # noqa: E402  (bench/lossless.py, beside this script)

WIDTH = 384
TILE = (64, 64)


def stacked(tensors):
    """The tensors' elements in order, as one (rows, WIDTH) array."""
    flat = np.concatenate([np.ascontiguousarray(t).reshape(-1) for t in tensors])
    if flat.size % WIDTH:
        raise ValueError(f"{flat.size} elements are not a multiple of {WIDTH}")
    return flat.reshape(-1, WIDTH)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="checkpoint-streams")
    parser.add_argument("--max-mb", type=float, default=40.0)
    parser.add_argument("--variants", nargs="+", default=["bf16", "int8", "fp32"])
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    variants = load_variants()
    for name in args.variants:
        array = stacked(variants[name])
        whole = lossless.encode(array, tile=TILE, bfloat16=name == "bf16")
        parts = math.ceil(len(whole) / (args.max_mb * 1e6))
        # Row blocks of whole tiles, so that the parts tile exactly like the whole stream.
        tile_rows = math.ceil(array.shape[0] / TILE[0])
        step = TILE[0] * math.ceil(tile_rows / parts)
        blocks = [array[i:i + step] for i in range(0, array.shape[0], step)]
        for k, block in enumerate(blocks):
            data = whole if len(blocks) == 1 else lossless.encode(
                block, tile=TILE, bfloat16=name == "bf16")
            suffix = "" if len(blocks) == 1 else f"-part{k + 1}"
            path = os.path.join(args.out, f"minilm-{name}{suffix}.cgcl")
            with open(path, "wb") as f:
                f.write(data)
            print(f"{path}: {block.shape[0]} x {WIDTH} {block.dtype}, {len(data) / 1e6:.1f} MB "
                  f"({100 * len(data) / block.nbytes:.2f} %)")


if __name__ == "__main__":
    main()
