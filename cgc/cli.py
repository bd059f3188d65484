"""Command line: cgc encode / decode / info / demo, and compress / decompress (lossless
safetensors checkpoints)."""
import argparse
import logging
import os
import re
import sys
import time


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
    for source, target in _jobs(args, ".cgc"):
        _encode_one(args, source, target)


def _encode_one(args, source, target):
    import cgc
    from cgc.image.presets import DEFAULT_PRESET
    from cgc.imageio import load_image
    from cgc.image.svg import is_svg, load_svg
    from cgc.video import cli as video_cli

    if video_cli.is_video_job(source, target):
        return video_cli.encode(args, source, target, _write, _report)
    if args.gop is not None:
        raise ValueError("--gop applies to videos (a .cgcv OUTPUT) only")
    data = sys.stdin.buffer.read() if source == "-" else None
    init = "gradient"
    if is_svg(source) or (data is not None and _looks_like_svg(data)):
        image, init = load_svg(source if data is None else data, args.size)
    elif args.size is not None:
        raise ValueError("--size applies to SVG input only (cgc decode --size resizes)")
    elif data is not None:
        import io

        image = load_image(io.BytesIO(data), "standard input")
    else:
        image = load_image(source)
    start = time.perf_counter()
    data = cgc.encode(image, n_gaussians=args.n, iterations=args.iterations,
                      coarse_iterations=args.coarse_iterations, seed=args.seed,
                      device=args.device, progress=None if args.progress else False,
                      max_bytes=args.max_bytes, bpp=args.bpp, quality=args.quality,
                      refine=args.refine, psnr=args.psnr, tune=args.tune,
                      preset=args.preset or DEFAULT_PRESET, layers=args.layers, init=init)
    elapsed = time.perf_counter() - start
    _write(target, data)
    h, w = image.shape[:2]
    quality = ""
    if args.metrics or args.psnr is not None:
        from cgc.imageio import to_uint8

        measured = _metrics(to_uint8(image), cgc.decode(data))
        quality = ", ".join(f"{name} {value}" if name != "PSNR" else value
                            for name, value in measured[:3 if args.metrics else 1]) + ", "
    _report(target, f"{len(data)} bytes, {8 * len(data) / (h * w):.3f} bpp, "
                    f"{quality}{elapsed:.1f} s")


def _looks_like_svg(data):
    """Whether bytes from standard input are SVG markup (or gzip-compressed .svgz)."""
    head = data[:512].lstrip()
    return data[:2] == b"\x1f\x8b" or head.startswith(b"<svg") or (
        head.startswith(b"<?xml") and b"<svg" in data[:4096])


def _jobs(args, suffix):
    """[(input, output)]: ``INPUT OUTPUT``, or with ``-o DIR`` each input to DIR/<its name
    without extension><suffix>.  "-" is standard input or output."""
    paths = args.paths
    if args.output_dir is None:
        if len(paths) != 2:
            raise ValueError(f"give INPUT OUTPUT, or INPUT... -o DIR (got {len(paths)} "
                             f"paths)")
        return [tuple(paths)]
    if "-" in paths:
        raise ValueError("standard input (-) takes one INPUT OUTPUT pair, not -o")
    if not os.path.isdir(args.output_dir):
        raise ValueError(f"-o {args.output_dir}: not a directory")
    outputs = [os.path.join(args.output_dir,
                            os.path.splitext(os.path.basename(p))[0] + suffix) for p in paths]
    if len(set(outputs)) != len(outputs):
        raise ValueError("two inputs would write the same output in -o's directory")
    return list(zip(paths, outputs))


def _write(path, data):
    """Write bytes to a file, or to standard output for "-"."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as f:
        f.write(data)


def _report(target, text):
    """One line about what was written; on standard error when standard output holds the
    data."""
    print(f"{target}: {text}" if target != "-" else f"(stdout): {text}",
          file=sys.stderr if target == "-" else sys.stdout)


def _read(path):
    if path == "-":
        return sys.stdin.buffer.read()
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
    from cgc.video import cli as video_cli

    if args.max_bytes is not None and args.max_bytes < 1:
        raise ValueError(f"--max-bytes must be positive, got {args.max_bytes}")
    for source, target in _jobs(args, ".png"):
        data = _read(source)[:args.max_bytes]
        if video_cli.is_video_data(data):
            video_cli.decode(args, data, target, _report)
            continue
        if args.codec is not None:
            raise ValueError("--codec applies to videos (a .cgcv INPUT) only")
        image = cgc.decode(data, device=args.device, scale=args.scale, size=args.size)
        _write(target, _encoded_image(image, target))
        layers = cgc.layer_info(data)
        used = f", {layers.complete} of {layers.count} layers" if layers else ""
        _report(target, f"{image.shape[1]}x{image.shape[0]}{used}")


def _encoded_image(image, path):
    """The bytes of a uint8 image in the format Pillow picks for the path's extension (PNG
    for "-"); ValueError for an extension Pillow cannot write."""
    import io

    from PIL import Image

    from cgc.imageio import save_image

    extension = os.path.splitext(path)[1].lower()
    formats = Image.registered_extensions()
    if path != "-" and (extension not in formats or formats[extension] not in Image.SAVE):
        raise ValueError(f"cannot write {path}: no image format for the extension "
                         f"{extension!r} (use .png, .jpg, .webp, .tif ...)")
    buffer = io.BytesIO()
    save_image(buffer, image, "PNG" if path == "-" else formats[extension])
    return buffer.getvalue()


def cmd_info(args):
    from cgc.info import describe, text

    info = describe(_read(args.input))
    if args.json:
        import json

        print(json.dumps({"file": args.input, **info}, indent=2))
    else:
        print("\n".join(text(args.input, info)))


def cmd_demo(args):
    import cgc
    from cgc.imageio import load_image, save_image, to_uint8

    source = args.input or SAMPLE
    image = load_image(source)
    original = to_uint8(image)
    os.makedirs(args.out_dir, exist_ok=True)
    start = time.perf_counter()
    data = cgc.encode(image, n_gaussians=args.n, iterations=args.iterations,
                      coarse_iterations=args.coarse_iterations, seed=args.seed,
                      device=args.device, progress=None if args.progress else False,
                      tune=args.tune, preset=args.preset)
    encode_s = time.perf_counter() - start
    cgc.decode(data, device=args.device)  # warm-up, so the timing below is steady-state
    start = time.perf_counter()
    decoded = cgc.decode(data, device=args.device)
    decode_ms = 1000 * (time.perf_counter() - start)
    cgc_path = os.path.join(args.out_dir, "demo.cgc")
    png_path = os.path.join(args.out_dir, "demo-decoded.png")
    with open(cgc_path, "wb") as f:
        f.write(data)
    save_image(png_path, decoded)
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


def add_fit_options(p, unset=None):
    """The fit's options, for cgc encode and demo and, with ``unset`` as every default
    (argparse.SUPPRESS: options not given stay out of the namespace), cgc batch."""
    from cgc.image.fit import COARSE_PER_FINE
    from cgc.image.presets import DEFAULT_PRESET, PRESETS

    def default(value):
        return value if unset is None else unset

    p.add_argument("-n", type=int, default=default(None),
                   help="number of Gaussians (default: one per 64 pixels)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=default(DEFAULT_PRESET),
                   help=f"encode time against quality (default {DEFAULT_PRESET}): its fit "
                        f"steps, refinement and growth, unless given below")
    p.add_argument("--iterations", type=int, default=default(None),
                   help="fit steps at full resolution (default: the preset's)")
    p.add_argument("--coarse-iterations", type=int, default=default(None),
                   help="fit steps at half resolution before them (default: "
                        f"{COARSE_PER_FINE:g} per full-resolution step, none for very dense "
                        "fits)")
    p.add_argument("--seed", type=int, default=default(0), help="(default 0)")
    p.add_argument("--tune", choices=("psnr", "ssim"), default=default("psnr"),
                   help="what the fit minimises: squared error (psnr, the default) or a mix "
                        "of L1, L2 and 1 - SSIM (ssim)")


def build_parser():
    from cgc.image.layers import DEFAULT_LAYERS

    parser = argparse.ArgumentParser(prog="cgc", description="Compact Gaussian Codec")
    parser.add_argument("-v", "--verbose", action="store_true", help="log fit diagnostics")
    sub = parser.add_subparsers(dest="command", required=True)

    def fit_options(p):
        add_fit_options(p)
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
        p.add_argument("--no-progress", dest="progress", action="store_false")

    def paths(p, suffix):
        p.add_argument("paths", nargs="+", metavar="PATH",
                       help="INPUT OUTPUT, or with -o several INPUTs; - is standard input "
                            "or output")
        p.add_argument("-o", "--output-dir", default=None, metavar="DIR",
                       help=f"write each INPUT to DIR/<name>{suffix}")

    p = sub.add_parser("encode", help="image or SVG drawing -> .cgc; video (a file or a "
                                      "folder of images) -> .cgcv",
                       usage="cgc encode [options] INPUT OUTPUT | INPUT... -o DIR")
    paths(p, ".cgc")
    fit_options(p)
    # Images take the default preset, videos cgc.video's (fast): None tells them apart.
    p.set_defaults(preset=None)
    p.add_argument("--gop", type=int, default=None,
                   help="video: most frames from one I-frame to the next (default "
                        "60; 1 codes every frame as an image)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-bytes", type=int, default=None,
                        help="file size limit; -n then defaults to what typically fits")
    budget.add_argument("--bpp", type=float, default=None,
                        help="file size limit in bits per pixel (as --max-bytes)")
    budget.add_argument("-q", "--quality", type=float, default=None,
                        help="0 to 100, a size limit of 0.1 * 2^(q/20) bits per pixel "
                             "(0.57 at 50, 1.35 at 75): larger is bigger and better")
    budget.add_argument("--psnr", type=float, default=None,
                        help="quality target instead: the smallest file found that decodes "
                             "at least this many dB PSNR (several encodes)")
    p.add_argument("--no-refine", dest="refine", action="store_false", default=None,
                   help="store the nearest codes of the fit instead of the refined ones")
    p.add_argument("--size", type=_size, default=None, metavar="WIDTHxHEIGHT",
                   help="SVG input: rasterise at the largest size within this, keeping the "
                        "aspect ratio (default: the drawing's own size)")
    p.add_argument("--layers", type=int, nargs="?", const=DEFAULT_LAYERS, default=None,
                   metavar="K",
                   help=f"a progressive file of K layers, coarse to fine (default K "
                        f"{DEFAULT_LAYERS}: the first about 1/8 of the file), any prefix of "
                        f"which decodes")
    metrics_option(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help=".cgc -> PNG, JPEG, WebP, TIFF ... (by extension); "
                                      ".cgcv -> .mkv (lossless FFV1), .mp4, .webm, .y4m or "
                                      "DIR/ of PNG frames",
                       usage="cgc decode [options] INPUT OUTPUT | INPUT... -o DIR")
    paths(p, ".png")
    p.add_argument("--codec", default=None,
                   help="video: the output's codec, any PyAV has (default by suffix: ffv1 "
                        "for .mkv, libx264 for .mp4, libvpx-vp9 for .webm)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    resize = p.add_mutually_exclusive_group()
    resize.add_argument("--scale", type=float, default=None,
                        help="render at this factor of the encoded size (e.g. 0.25, 2)")
    resize.add_argument("--size", type=_size, default=None, metavar="WIDTHxHEIGHT",
                        help="render at this size")
    p.add_argument("--max-bytes", type=int, default=None, metavar="B",
                   help="decode only the first B bytes, as a partial download: a "
                        "progressive file gives the image of its complete layers")
    trusted_option(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="describe a .cgc file (or a cgc.lossless stream or "
                                    "checkpoint)")
    p.add_argument("input", help="the file; - is standard input")
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="encode and decode the bundled sample, print metrics")
    p.add_argument("input", nargs="?", help="image to use instead of the bundled sample")
    p.add_argument("--out-dir", default="cgc-demo")
    fit_options(p)
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

    from cgc.batch import add_parser as add_batch_parser

    add_batch_parser(sub)
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
