"""Command line: cgc encode / decode / info / demo, and compress / decompress (lossless
safetensors checkpoints)."""
import argparse
import logging
import os
import re
import sys
import time

import numpy as np

from cgc.image.container import SMALLEST_FILE
from cgc.errors import FormatError
from cgc.metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr, ssim

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "sample.png")


def _metrics(original, decoded):
    """[(name, formatted value)] of PSNR, SSIM and MS-SSIM (cgc.metrics) between two uint8
    images; MS-SSIM is "-" under its smallest size."""
    side = min(original.shape[:2])
    return [("PSNR", f"{psnr(original, decoded):.2f} dB"),
            ("SSIM", f"{ssim(original, decoded):.4f}"),
            ("MS-SSIM", f"{ms_ssim(original, decoded):.4f}" if side >= MS_SSIM_MIN_SIDE
             else "-")]


def cmd_encode(args):
    import cgc
    from cgc.imageio import load_image

    image = load_image(args.input)
    max_bytes = args.max_bytes
    if args.bpp is not None:
        if not 0 < args.bpp < 1e6:  # NaN fails too
            raise ValueError(f"--bpp must be positive and finite, got {args.bpp}")
        max_bytes = int(args.bpp * image.shape[0] * image.shape[1] / 8)
        if max_bytes < SMALLEST_FILE:
            raise ValueError(f"--bpp {args.bpp} is {max_bytes} bytes for this "
                             f"{image.shape[1]}x{image.shape[0]} image, below the smallest "
                             f".cgc file ({SMALLEST_FILE} bytes)")
    start = time.perf_counter()
    data = cgc.encode(image, n_gaussians=args.n, iterations=args.iterations,
                      coarse_iterations=args.coarse_iterations, seed=args.seed,
                      device=args.device, progress=None if args.progress else False,
                      max_bytes=max_bytes, refine=args.refine, psnr=args.psnr)
    elapsed = time.perf_counter() - start
    with open(args.output, "wb") as f:
        f.write(data)
    h, w = image.shape[:2]
    quality = ""
    if args.metrics or args.psnr is not None:
        from cgc.imageio import to_uint8

        measured = _metrics(to_uint8(image), cgc.decode(data))
        quality = ", ".join(f"{name} {value}" if name != "PSNR" else value
                            for name, value in measured[:3 if args.metrics else 1]) + ", "
    print(f"{args.output}: {len(data)} bytes, {8 * len(data) / (h * w):.3f} bpp, "
          f"{quality}{elapsed:.1f} s")


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror}") from None


def _pair(text, form, example):
    """The two integers of an option written AxB, in that order (argparse's error names
    ``form`` and ``example`` otherwise)."""
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected {form}, such as {example}, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _size(text):
    """--size WIDTHxHEIGHT as the (height, width) that cgc.decode takes."""
    width, height = _pair(text, "WIDTHxHEIGHT", "384x256")
    return height, width


def cmd_decode(args):
    import cgc
    from cgc.imageio import save_png

    image = cgc.decode(_read(args.input), device=args.device, scale=args.scale,
                       size=args.size)
    save_png(args.output, image)
    print(f"{args.output}: {image.shape[1]}x{image.shape[0]}")


def cmd_info(args):
    from cgc.image.container import VERSION_1_NAMES, unpack
    from cgc.lossless import checkpoint, format as lossless_format
    from cgc.image.quantize import ATTRIBUTES

    data = _read(args.input)
    if data[:4] == lossless_format.MAGIC:
        _lossless_info(args.input, data, lossless_format.parse(data))
        return
    if data[:4] == checkpoint.MAGIC:
        _checkpoint_info(args.input, data, *checkpoint.contents(data))
        return
    packed = unpack(data)
    n = packed.codes.shape[0]
    pixels = packed.width * packed.height
    print(f"file        {args.input}")
    print(f"size        {len(data)} bytes")
    print(f"image       {packed.width}x{packed.height}")
    print(f"gaussians   {n}")
    print(f"bpp         {8 * len(data) / pixels:.4f}")
    print(f"bits/gauss  {8 * len(data) / n:.2f}")
    print(f"version     {packed.version}")
    names = VERSION_1_NAMES if packed.version == 1 else ATTRIBUTES
    print("code bits   " + " ".join(f"{name}={q.bits}"
                                     for name, q in zip(names, packed.quantisers)))
    print("streams (bytes):")
    for name, size in packed.stream_sizes.items():
        print(f"  {name:<12}{size:>8}")


def _lossless_info(path, data, container):
    from cgc.lossless._lossless_cy import PREDICTORS

    names = {code: name for name, code in PREDICTORS.items()}
    original = int(np.prod(container.shape, dtype=np.int64)) * container.etype.nbytes
    print(f"file        {path}")
    print(f"size        {len(data)} bytes, {100 * len(data) / max(original, 1):.2f} % of "
          f"{original}")
    print(f"array       {container.etype.name} {container.shape}")
    print(f"tiles       {len(container.meta)} of {container.tile[0]}x{container.tile[1]}")
    used = np.bincount(container.meta["pred"])
    print("predictors  " + " ".join(f"{names.get(code, code)}={count}"
                                    for code, count in enumerate(used) if count))


def _checkpoint_info(path, data, file_size, tensors):
    print(f"file        {path}")
    print(f"size        {len(data)} bytes, {100 * len(data) / max(file_size, 1):.2f} % of "
          f"{file_size}")
    print(f"tensors     {len(tensors)}")
    print("by dtype    tensors  stored bytes")
    by_dtype = {}
    for _, kind, _, stored in tensors:
        count, total = by_dtype.get(kind, (0, 0))
        by_dtype[kind] = (count + 1, total + stored)
    for kind, (count, total) in sorted(by_dtype.items()):
        print(f"  {kind:<10}{count:>7}  {total:>12}")


def cmd_demo(args):
    import cgc
    from cgc.imageio import load_image, save_png, to_uint8

    source = args.input or SAMPLE
    image = load_image(source)
    original = to_uint8(image)
    os.makedirs(args.out_dir, exist_ok=True)
    start = time.perf_counter()
    data = cgc.encode(image, n_gaussians=args.n, iterations=args.iterations,
                      coarse_iterations=args.coarse_iterations, seed=args.seed,
                      device=args.device, progress=None if args.progress else False)
    encode_s = time.perf_counter() - start
    cgc.decode(data, device=args.device)  # warm-up, so the timing below is steady-state
    start = time.perf_counter()
    decoded = cgc.decode(data, device=args.device)
    decode_ms = 1000 * (time.perf_counter() - start)
    cgc_path = os.path.join(args.out_dir, "demo.cgc")
    png_path = os.path.join(args.out_dir, "demo-decoded.png")
    with open(cgc_path, "wb") as f:
        f.write(data)
    save_png(png_path, decoded)
    h, w = original.shape[:2]
    print(f"input    {source if args.input else 'bundled sample'} ({w}x{h})")
    for name, value in _metrics(original, decoded)[:3 if args.metrics else 2]:
        print(f"{name:<9}{value}")
    print(f"bpp      {8 * len(data) / (w * h):.3f} ({len(data)} bytes)")
    print(f"encode   {encode_s:.1f} s")
    print(f"decode   {decode_ms:.1f} ms")
    print(f"wrote    {cgc_path}, {png_path}")


def _tile(text):
    """--tile ROWSxCOLS as the (rows, cols) that cgc.lossless takes."""
    return _pair(text, "ROWSxCOLS", "64x64")


def cmd_compress(args):
    from cgc.lossless.checkpoint import compress

    original = _read(args.input)
    start = time.perf_counter()
    data = compress(original, tile=args.tile, min_gain=args.min_gain)
    elapsed = time.perf_counter() - start
    with open(args.output, "wb") as f:
        f.write(data)
    print(f"{args.output}: {len(data)} bytes, {100 * len(data) / max(len(original), 1):.2f} % "
          f"of {len(original)}, {elapsed:.1f} s")


def cmd_decompress(args):
    from cgc.lossless.checkpoint import decompress

    start = time.perf_counter()
    data = decompress(_read(args.input), device=args.device)
    elapsed = time.perf_counter() - start
    with open(args.output, "wb") as f:
        f.write(data)
    print(f"{args.output}: {len(data)} bytes, {elapsed:.2f} s")


def build_parser():
    from cgc.image.fit import COARSE_PER_FINE, DEFAULT_ITERATIONS

    parser = argparse.ArgumentParser(prog="cgc", description="Compact Gaussian Codec")
    parser.add_argument("-v", "--verbose", action="store_true", help="log fit diagnostics")
    sub = parser.add_subparsers(dest="command", required=True)

    def fit_options(p, iterations):
        p.add_argument("-n", type=int, default=None,
                       help="number of Gaussians (default: one per 64 pixels)")
        p.add_argument("--iterations", type=int, default=iterations,
                       help="fit steps at full resolution")
        p.add_argument("--coarse-iterations", type=int, default=None,
                       help="fit steps at half resolution before them (default: "
                            f"{COARSE_PER_FINE:g} per full-resolution step, none for very "
                            "dense fits)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
        p.add_argument("--no-progress", dest="progress", action="store_false")

    p = sub.add_parser("encode", help="image -> .cgc")
    p.add_argument("input")
    p.add_argument("output")
    fit_options(p, DEFAULT_ITERATIONS)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-bytes", type=int, default=None,
                        help="file size limit; -n then defaults to what typically fits")
    budget.add_argument("--bpp", type=float, default=None,
                        help="file size limit in bits per pixel (as --max-bytes)")
    budget.add_argument("--psnr", type=float, default=None,
                        help="quality target instead: the smallest file found that decodes "
                             "at least this many dB PSNR (several encodes)")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="store the nearest codes of the fit instead of the refined ones")
    metrics_option(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help=".cgc -> PNG")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    resize = p.add_mutually_exclusive_group()
    resize.add_argument("--scale", type=float, default=None,
                        help="render at this factor of the encoded size (e.g. 0.25, 2)")
    resize.add_argument("--size", type=_size, default=None, metavar="WIDTHxHEIGHT",
                        help="render at this size")
    trusted_option(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="describe a .cgc file (or a cgc.lossless stream or "
                                    "checkpoint)")
    p.add_argument("input")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="encode and decode the bundled sample, print metrics")
    p.add_argument("input", nargs="?", help="image to use instead of the bundled sample")
    p.add_argument("--out-dir", default="cgc-demo")
    fit_options(p, DEFAULT_ITERATIONS)
    metrics_option(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("compress", help="safetensors checkpoint -> .cgcs (lossless)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--tile", type=_tile, default=None, metavar="ROWSxCOLS",
                   help="cgc.lossless tile (default 128x512; 64x64 for GPU decoding)")
    p.add_argument("--min-gain", type=float, default=None, metavar="BITS",
                   help="bits per byte that coding a tile's byte plane must save over "
                        "storing it raw (default 0.01; 0.1 leaves float mantissas raw, "
                        "faster to decode)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help=".cgcs -> the safetensors checkpoint, byte for byte")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    trusted_option(p)
    p.set_defaults(func=cmd_decompress)
    return parser


def metrics_option(p):
    p.add_argument("--metrics", action="store_true",
                   help="print PSNR, SSIM and MS-SSIM of the decoded file against the input")


def trusted_option(p):
    p.add_argument("--trusted", action="store_true",
                   help="decode whatever work or memory the file asks for (cgc.limits off: "
                        "only for files from a trusted source)")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "trusted", False):
        from cgc import limits

        limits.trust_all()
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args.func(args)
    except (FormatError, ValueError, OSError) as exc:
        print(f"cgc: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
