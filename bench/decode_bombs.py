"""How fast and in how much memory cgc refuses decode bombs (cgc.limits).

Two valid .cgc files of identical whole-image Gaussians, written with
cgc.image.codec.encode_gaussians: 50,000 on 2048 x 2048 (3.7 kB) and, at the format's limits,
2**20 on 5792 x 5792 (2**25 pixels).  Each is decoded with the default limits (refused at
the header: too many Gaussians per byte) and with MAX_GAUSSIANS_PER_BYTE off (parsed, then
refused before rendering: too much work per pixel).  Reported: the median of 5 refusals
after a warm-up, and the peak memory traced during one (tracemalloc: NumPy's buffers
included).  Results: bench/results/decode_bombs.json.

    python bench/decode_bombs.py
"""
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
import cgc  # noqa: E402
from cgc import limits  # noqa: E402
from cgc.image.codec import encode_gaussians  # noqa: E402
from cgc.image.model import Gaussians  # noqa: E402
from report import revision, write_report  # noqa: E402

BOMBS = {"50000 on 2048x2048": (50_000, 2048, 700.0),
         "2**20 on 5792x5792": (1 << 20, 5792, 2000.0)}


def bomb(n, side, sigma):
    params = np.zeros((n, 8), np.float32)
    params[:, :2] = side / 2
    params[:, 2] = params[:, 4] = sigma
    params[:, 5:] = 0.001
    return encode_gaussians(Gaussians(params, side, side))


def refusal(data):
    """(median seconds, traced peak bytes, message) of cgc.decode refusing data."""
    def once():
        start = time.perf_counter()
        try:
            cgc.decode(data)
        except cgc.FormatError as exc:
            return time.perf_counter() - start, str(exc)
        raise AssertionError("the bomb was decoded")
    once()
    seconds = statistics.median(once()[0] for _ in range(5))
    tracemalloc.start()
    _, message = once()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, message


def main():
    info = revision()
    rows = []
    for name, (n, side, sigma) in BOMBS.items():
        data = bomb(n, side, sigma)
        for per_byte in (limits.MAX_GAUSSIANS_PER_BYTE, None):
            default = limits.MAX_GAUSSIANS_PER_BYTE
            limits.MAX_GAUSSIANS_PER_BYTE = per_byte
            try:
                seconds, peak, message = refusal(data)
            finally:
                limits.MAX_GAUSSIANS_PER_BYTE = default
            rows.append({"bomb": name, "bytes": len(data), "gaussians_per_byte_limit": per_byte,
                         "refused_ms": 1000 * seconds, "peak_traced_mb": peak / 2**20,
                         "message": message})
            print(f"{name} ({len(data)} B), per-byte limit {per_byte}: refused in "
                  f"{1000 * seconds:.3f} ms, {peak / 2**20:.2f} MiB traced: {message}")
    write_report(os.path.join(ROOT, "bench", "results", "decode_bombs.json"),
                 {**info, "rows": rows})


if __name__ == "__main__":
    main()
