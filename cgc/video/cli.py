"""``cgc encode`` and ``cgc decode`` of videos (cgc/cli.py hands them over): a video file or
a folder of images to .cgcv, and .cgcv to a video file or a folder of PNG frames."""
import os
import time

from cgc.video.container import MAGIC


def is_video_job(source, target, data=None):
    """Whether cgc encode SOURCE TARGET is a video's: TARGET ends in .cgcv or SOURCE is a
    video file or folder (cgc.video.io.is_video_path)."""
    from cgc.video.io import is_video_path

    return str(target).lower().endswith(".cgcv") or (source != "-"
                                                      and is_video_path(source))


def is_video_data(data):
    return bytes(data[:len(MAGIC)]) == MAGIC


def encode(args, source, target, write, report):
    """Encode the video at ``source`` (a path) into ``target`` with cgc encode's options."""
    import cgc.video
    from cgc.video.encoder import DEFAULT_GOP
    from cgc.video.io import read_video

    if source == "-":
        raise ValueError("a video is read from a file or a folder, not standard input")
    unsupported = [name for name, value in (("-n", args.n), ("--max-bytes", args.max_bytes),
                                            ("-q", args.quality), ("--layers", args.layers),
                                            ("--size", args.size),
                                            ("--iterations", args.iterations),
                                            ("--coarse-iterations", args.coarse_iterations))
                   if value is not None]
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)}: image options, not for videos")
    if args.bpp is None and args.psnr is None:
        raise ValueError("a video needs --bpp (a mean rate) or --psnr (a constant quality)")
    if args.output_dir is not None and target.endswith(".cgc"):
        target += "v"  # -o DIR names outputs <name>.cgc; a video's is <name>.cgcv
    frames, rate = read_video(source)
    start = time.perf_counter()
    data = cgc.video.encode(frames, bpp=args.bpp, psnr=args.psnr,
                            gop=args.gop or DEFAULT_GOP, rate=rate,
                            preset=args.preset or "fast", device=args.device,
                            seed=args.seed, progress=None if args.progress else False)
    elapsed = time.perf_counter() - start
    write(target, data)
    info = cgc.video.info(data)
    report(target, f"{info.frames} frames ({info.i_frames} I, {info.p_frames} P), "
                   f"{len(data)} bytes, {info.bits_per_pixel:.3f} bpp, "
                   f"{info.bits_per_second / 1000:.1f} kbit/s, {elapsed:.1f} s")


def decode(args, data, target, report):
    """Decode .cgcv bytes to ``target``: a video file (its codec by suffix, or --codec) or a
    folder of PNG frames (a path ending in a separator, or an existing folder)."""
    import cgc.video
    from cgc.video.io import write_video

    if args.output_dir is not None and target.endswith(".png"):
        target = target[:-len(".png")] + os.sep  # -o DIR: a folder of frames per video
    info = cgc.video.info(data)
    frames = cgc.video.decode(data, device=args.device)
    count = write_video(target, frames, info.rate, codec=args.codec)
    report(target, f"{count} frames of {info.width}x{info.height}")
