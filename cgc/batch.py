"""Batch encoding of image trees on this machine or a Dask cluster: ``cgc batch``.

``encode_tree(src, dst)`` encodes every image under ``src`` (the file extensions Pillow
reads) to the same relative path under ``dst`` with ``.cgc`` instead of the extension;
``decode_tree`` turns every ``.cgc`` under ``src`` into a PNG.  The images are tasks of a
``dask.distributed`` client: a LocalCluster of process workers sized to this machine, or
a cluster at a scheduler's address whose workers see ``src`` and ``dst`` under the same
paths as this process.  Dask is the optional extra ``cgc[batch]``; nothing here imports it
until a batch runs.

* Workers write each file to a hidden temporary name in its final directory (ending in
  TEMP_SUFFIX) and rename it when complete, so a final name never holds half a file; the
  temporary files of killed workers are removed at the start and end of every run.
* An output that exists and is whole (a .cgc whose CRC checks, a PNG Pillow reads to the
  end) is skipped, so running the same command again resumes an interrupted batch.
* A failing image does not stop the batch: every image, failed or not, gets a line in
  ``dst/manifest.jsonl``, written by this process as results arrive (FIELDS).
* Outputs are byte for byte those of serial ``cgc.encode`` calls with the same options:
  the encoder is deterministic and no output of cgc depends on its thread count.

See docs/batch.md."""
import argparse
import collections
import contextlib
import io
import json
import math
import os
import secrets
import sys
import time

MANIFEST = "manifest.jsonl"
TEMP_SUFFIX = ".cgc-partial"
INSTALL_HINT = 'pip install "cgc[batch]"'
# One manifest line per image and run, in this order; None where it does not apply.
FIELDS = ("source", "status", "source_bytes", "output", "output_bytes", "bpp", "psnr",
          "seconds", "worker", "error")
# cgc.encode's parameters that a batch passes on.
ENCODE_OPTIONS = ("n_gaussians", "iterations", "coarse_iterations", "seed", "device",
                  "max_bytes", "bpp", "quality", "psnr", "refine", "bits", "init", "fill",
                  "preset", "tune")
# Those that set the size or quality: at most one.
TARGET_OPTIONS = ("max_bytes", "bpp", "quality", "psnr")


def require_distributed():
    """The ``distributed`` module, or ModuleNotFoundError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ModuleNotFoundError(f"cgc batch needs Dask (dask.distributed): "
                                  f"{INSTALL_HINT}") from None
    return distributed


def encode_tree(src, dst, *, client=None, workers=None, progress=None, **encode_options):
    """Encode every image under ``src`` to ``dst`` (same relative paths, ``.cgc``).

    ``client``: a ``dask.distributed.Client`` whose workers see ``src`` and ``dst``; by
    default a LocalCluster of ``workers`` process workers (local_cluster) runs for the
    call.  ``progress``: a bar on stderr (None: when stderr is a terminal).
    ``encode_options``: those of ``cgc.encode`` (ENCODE_OPTIONS), ``bpp`` a size budget in
    bits per pixel of each image.  Returns the manifest records of this run (FIELDS), one
    per image; an image that failed has status "failed" and its error."""
    unknown = sorted(set(encode_options) - set(ENCODE_OPTIONS))
    if unknown:
        raise TypeError(f"encode_tree() got unexpected options {', '.join(unknown)}")
    _check_options(encode_options)
    return _run_tree(_encode_file, src, dst, image_extensions(), ".cgc", encode_options,
                     client, workers, progress)


def decode_tree(src, dst, *, client=None, workers=None, progress=None, device="cpu"):
    """Decode every ``.cgc`` under ``src`` to a PNG under ``dst`` (same relative paths);
    otherwise as encode_tree."""
    return _run_tree(_decode_file, src, dst, {".cgc"}, ".png", {"device": device}, client,
                     workers, progress)


def image_extensions():
    """The file extensions (lower case, with the dot) of the formats Pillow opens, .cgc
    excepted: the inputs of encode_tree."""
    from PIL import Image

    # Importing cgc, as this module did, registered .cgc with Pillow.
    return {extension for extension, format in Image.registered_extensions().items()
            if format in Image.OPEN and extension != ".cgc"}


def cores():
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def local_cluster(workers=None, device="cpu"):
    """A LocalCluster for a batch, closed on exit: ``workers`` processes (by default one per
    core, or one for CUDA, which would otherwise hold a context per core on one GPU), each
    running one task at a time, whose compiled code shares the cores out: OMP_NUM_THREADS
    is cores // workers, unless this process's environment sets it.  Process workers
    rather than threads because one image's encode is Python as well as OpenMP loops."""
    import dask

    distributed = require_distributed()
    if workers is None:
        workers = 1 if device == "cuda" else cores()
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"the worker count must be a positive integer, got {workers!r}")
    # What Dask puts in the environment that its worker processes start with, and so reads
    # before any task runs: cgc's OpenMP runtime reads OMP_NUM_THREADS once, as it loads
    # (Dask's default is 1), and glibc reads MALLOC_TRIM_THRESHOLD_, whose Dask default
    # (65536, which also turns off glibc's adaptive mmap threshold) makes cgc.encode 10 to
    # 20 % slower.  A variable set in this process's environment wins (Dask's rule).
    environment = {"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS":
                   max(1, cores() // workers),
                   "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    # Dask's nanny writes its variables into this process's environment too: restored on
    # exit.  The scheduler's HTTP server (a dashboard where bokeh is installed) takes a
    # free port, so that batches and other clusters on this machine do not compete for
    # 8787.
    with _restored_environment(*dask.config.get("distributed.nanny.pre-spawn-environ"),
                               "MALLOC_TRIM_THRESHOLD_"), \
            dask.config.set(environment), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                     processes=True, dashboard_address=":0") as cluster:
        yield cluster


@contextlib.contextmanager
def _restored_environment(*names):
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_options(options):
    """The errors cgc.encode would raise for every image, raised once before the batch."""
    from cgc.image.presets import budget_bytes, get_preset, quality_bpp

    targets = [name for name in TARGET_OPTIONS if options.get(name) is not None]
    if len(targets) > 1:
        raise ValueError(f"give one of {', '.join(TARGET_OPTIONS)}, not "
                         f"{' and '.join(targets)}")
    if options.get("preset") is not None:
        get_preset(options["preset"])
    if options.get("quality") is not None:
        quality_bpp(options["quality"])
    if options.get("bpp") is not None:
        budget_bytes(options["bpp"], 1, 1)


def _run_tree(task, src, dst, extensions, suffix, options, client, workers, progress):
    """Run ``task(source, output, options)`` on every file of ``src`` with one of
    ``extensions``, its output under ``dst`` with ``suffix``; the records in the order the
    tasks finished."""
    if client is not None and workers is not None:
        raise ValueError("the worker count sizes a local cluster: give a client or "
                         "workers, not both")
    require_distributed()
    # Absolute paths: the workers' working directories are not this one.
    src, dst = os.path.abspath(src), os.path.abspath(dst)
    jobs = find_jobs(src, dst, extensions, suffix)
    os.makedirs(dst, exist_ok=True)
    remove_partials(dst)
    with _client(client, workers, options.get("device", "cpu")) as client:
        records = _gather(client, task, src, dst, jobs, options, progress)
    # A worker killed while writing left its temporary file; the task ran again elsewhere.
    remove_partials(dst)
    return records


def find_jobs(src, dst, extensions, suffix):
    """[(source, output)] relative paths, "/"-separated, sorted: the files under ``src``
    whose extension is one of ``extensions``, each to its path with ``suffix`` instead.
    ``dst`` is left out when it lies inside ``src``.  ValueError when ``src`` is not a
    folder, holds no such file, or two files would write one output."""
    if not os.path.isdir(src):
        raise ValueError(f"{src}: not a directory")
    jobs = []
    for folder, subfolders, files in os.walk(src):
        subfolders[:] = sorted(d for d in subfolders if os.path.join(folder, d) != dst)
        for name in sorted(files):
            stem, extension = os.path.splitext(name)
            if extension.lower() in extensions:
                relative = os.path.relpath(os.path.join(folder, stem), src)
                source = relative + extension
                jobs.append((source, relative + suffix))
    if not jobs:
        raise ValueError(f"no {'images' if suffix == '.cgc' else '.cgc files'} under {src}")
    seen = {}
    for source, output in jobs:
        if output in seen:
            raise ValueError(f"{seen[output]} and {source} would both write {output}")
        seen[output] = source
    return [(s.replace(os.sep, "/"), o.replace(os.sep, "/")) for s, o in jobs]


def remove_partials(dst):
    """Delete the temporary files (TEMP_SUFFIX) that writes interrupted under ``dst``."""
    for folder, _, files in os.walk(dst):
        for name in files:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name))


@contextlib.contextmanager
def _client(client, workers, device):
    """The given client, or one of a local_cluster closed on exit."""
    if client is not None:
        yield client
        return
    distributed = require_distributed()
    with local_cluster(workers, device) as cluster, \
            distributed.Client(cluster, set_as_default=False) as local:
        yield local


def _gather(client, task, src, dst, jobs, options, progress):
    """Submit one task per job and append each record to the manifest as it arrives."""
    from distributed import as_completed

    from cgc.progress import ProgressBar

    # pure=False: the tasks write files, so none may be merged with or served from another;
    # a task whose worker dies is run again elsewhere by the scheduler (up to its
    # distributed.scheduler.allowed-failures).  An image's own errors are not retried: the
    # encoder is deterministic.
    submitted = client.map(task, [os.path.join(src, source) for source, _ in jobs],
                           [os.path.join(dst, output) for _, output in jobs],
                           options=options, pure=False)
    futures = dict(zip(submitted, jobs))
    bar = ProgressBar(len(jobs), enabled=sys.stderr.isatty() if progress is None
                      else progress)
    records = []
    counts = collections.Counter()
    start = time.perf_counter()
    bar.update(0)
    try:
        with open(os.path.join(dst, MANIFEST), "a", encoding="utf-8") as manifest:
            # set_as_default=False clients: as_completed must be given the loop.
            for future in as_completed(submitted, loop=client.loop):
                records.append(_record(future, *futures.pop(future), src))
                manifest.write(json.dumps(records[-1]) + "\n")
                manifest.flush()
                counts[records[-1]["status"]] += 1
                bar.update(len(records), _progress_note(counts, len(jobs), start))
    except BaseException:
        client.cancel(list(futures))  # a caller's cluster should not go on with them
        raise
    finally:
        bar.close()
    return records


def _record(future, source, output, src):
    """The manifest record of a finished task: its result, or for a task that raised (an
    unexpected error, or KilledWorker when its workers kept dying) a failure."""
    try:
        result = future.result()
    except Exception as exc:  # recorded: one image's failure does not stop the batch
        path = os.path.join(src, source)
        result = _new_record(path if os.path.exists(path) else None)
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    return {**result, "source": source, "output": output}


def _progress_note(counts, total, start):
    """Failures so far and the time left, from the rate of images actually worked on."""
    done = sum(counts.values())
    worked = done - counts["skipped"]
    note = f"{counts['failed']} failed " if counts["failed"] else ""
    if worked:
        left = (time.perf_counter() - start) / worked * (total - done)
        note += f"ETA {int(left // 60)}:{int(left % 60):02d}"
    return note


def _new_record(source):
    record = dict.fromkeys(FIELDS)
    if source is not None:
        record["source_bytes"] = os.path.getsize(source)
    return record


def _worker_address():
    from distributed import get_worker

    return get_worker().address


def _encode_file(source, output, options):
    """Worker task: one image to .cgc unless a whole one is there; its record."""
    import cgc
    from cgc.imageio import load_image, to_uint8
    from cgc.metrics import psnr

    record = _new_record(source)
    record["worker"] = _worker_address()
    existing = _whole_cgc(output)
    if existing is not None:
        size, (height, width) = existing
        record.update(status="skipped", output_bytes=size, bpp=_bpp(size, height, width))
        return record
    try:
        image = load_image(source)
        height, width = image.shape[:2]
        start = time.perf_counter()
        data = cgc.encode(image, progress=False, **options)
        record["seconds"] = round(time.perf_counter() - start, 3)
        write_atomic(output, data)
        quality = psnr(to_uint8(image), cgc.decode(data, device=options.get("device", "cpu")))
    except (ValueError, OSError, MemoryError) as exc:  # FormatError is a ValueError
        record.update(status="failed", error=str(exc) or type(exc).__name__)
        return record
    # An exact decode's PSNR is infinite, which JSON cannot hold: null.
    record.update(status="encoded", output_bytes=len(data), bpp=_bpp(len(data), height, width),
                  psnr=round(quality, 3) if math.isfinite(quality) else None)
    return record


def _decode_file(source, output, options):
    """Worker task: one .cgc to PNG unless a whole one is there; its record."""
    import cgc

    record = _new_record(source)
    record["worker"] = _worker_address()
    existing = _whole_image(output)
    if existing is not None:
        width, height = existing
        record.update(status="skipped", output_bytes=os.path.getsize(output),
                      bpp=_bpp(record["source_bytes"], height, width))
        return record
    try:
        with open(source, "rb") as f:
            data = f.read()
        start = time.perf_counter()
        image = cgc.decode(data, device=options["device"])
        record["seconds"] = round(time.perf_counter() - start, 3)
        png = _png_bytes(image)
        write_atomic(output, png)
    except (ValueError, OSError, MemoryError) as exc:  # FormatError is a ValueError
        record.update(status="failed", error=str(exc) or type(exc).__name__)
        return record
    record.update(status="decoded", output_bytes=len(png),
                  bpp=_bpp(len(data), *image.shape[:2]))
    return record


def _bpp(size, height, width):
    return round(8 * size / (height * width), 4)


def _whole_cgc(path):
    """(size, (height, width)) of the .cgc at ``path`` if it parses and its CRC checks,
    else None (missing, truncated or corrupt: to be made again)."""
    from cgc.image.container import unpack

    try:
        with open(path, "rb") as f:
            data = f.read()
        packed = unpack(data)
    except (OSError, ValueError):  # FormatError is a ValueError
        return None
    return len(data), (packed.height, packed.width)


def _whole_image(path):
    """(width, height) of the image at ``path`` if Pillow reads all its pixels (PNG checks
    every chunk's CRC), else None."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.size
    except (OSError, SyntaxError, ValueError):  # Pillow's ways of saying "malformed"
        return None


def _png_bytes(image):
    from cgc.imageio import save_image

    buffer = io.BytesIO()
    save_image(buffer, image, "PNG")
    return buffer.getvalue()


def write_atomic(path, data):
    """Write ``data`` to ``path`` through a temporary file in its folder, renamed over it
    once complete and on disk: a crash leaves either no file or the whole one under
    ``path``, and at most a stray temporary file (remove_partials)."""
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


# The command line.

CLI_OPTIONS = {"n": "n_gaussians", "iterations": "iterations",
               "coarse_iterations": "coarse_iterations", "seed": "seed",
               "max_bytes": "max_bytes", "bpp": "bpp", "quality": "quality", "psnr": "psnr",
               "refine": "refine", "preset": "preset", "tune": "tune"}


def add_parser(subparsers):
    """Add the ``batch`` subcommand to cgc's subparsers (cgc/cli.py)."""
    from cgc.cli import add_fit_options

    p = subparsers.add_parser(
        "batch", help="every image under a folder -> .cgc (or --decode), in parallel on "
                      "this machine or a Dask cluster",
        usage="cgc batch [options] SRC DST",
        description="Encode every image under SRC (the formats Pillow reads) to the same "
                    "relative path under DST with .cgc instead of the extension, in "
                    "parallel. Outputs that are already whole are skipped, so the same "
                    "command resumes an interrupted batch. DST/manifest.jsonl gets a line "
                    f"per image. Needs Dask: {INSTALL_HINT}.",
        epilog="With --scheduler, the cluster's workers read SRC and write DST under the "
               "same paths as this machine (shared storage) and have cgc installed.")
    p.add_argument("src", metavar="SRC", help="folder of images (of .cgc files with --decode)")
    p.add_argument("dst", metavar="DST", help="output folder, made if missing")
    p.add_argument("--decode", action="store_true",
                   help="every .cgc under SRC -> PNG under DST instead")
    # Unset encode options stay out of the namespace, so that cgc.encode's defaults apply
    # and --decode can refuse any that were given.
    unset = argparse.SUPPRESS
    fit = p.add_argument_group("encode options (as cgc encode)")
    add_fit_options(fit, unset)
    budget = fit.add_mutually_exclusive_group()
    budget.add_argument("--max-bytes", type=int, default=unset, help="file size limit")
    budget.add_argument("--bpp", type=float, default=unset,
                        help="file size limit in bits per pixel of each image")
    budget.add_argument("-q", "--quality", type=float, default=unset,
                        help="0 to 100, a size limit in bits per pixel (as cgc encode -q)")
    budget.add_argument("--psnr", type=float, default=unset,
                        help="quality target instead: the smallest file found that "
                             "decodes at least this many dB PSNR")
    fit.add_argument("--no-refine", dest="refine", action="store_false", default=unset,
                     help="store the nearest codes of the fit instead of the refined ones")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    where = p.add_argument_group("where it runs")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="processes of the local cluster (default: one per core, one "
                            "for cuda); their OpenMP threads share the cores")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on the Dask cluster of this scheduler (such as "
                            "tcp://10.0.0.5:8786) instead; its workers must see SRC and "
                            "DST under the same paths")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (it is drawn only on a terminal anyway)")
    p.set_defaults(func=cmd_batch)
    return p


def cmd_batch(args):
    """cgc batch: prints a summary line; an image that failed makes it raise ValueError,
    which cgc's CLI reports as one error line with exit status 1."""
    if args.scheduler is not None and args.workers is not None:
        raise ValueError("--workers sizes the local cluster; with --scheduler the "
                         "cluster's own workers run the batch")
    options = {CLI_OPTIONS[name]: value for name, value in vars(args).items()
               if name in CLI_OPTIONS}
    if args.decode and options:
        raise ValueError("--decode takes no encode options (-n, --iterations ...)")
    try:
        require_distributed()
    except ImportError as exc:
        raise ValueError(str(exc)) from None
    start = time.perf_counter()
    with _scheduler_client(args.scheduler) as client:
        common = dict(client=client, workers=args.workers,
                      progress=None if args.progress else False)
        if args.decode:
            records = decode_tree(args.src, args.dst, device=args.device, **common)
        else:
            records = encode_tree(args.src, args.dst, device=args.device, **options, **common)
    print(_summary(args.dst, records, time.perf_counter() - start, args.decode))
    failed = sum(record["status"] == "failed" for record in records)
    if failed:
        raise ValueError(f"{failed} of {len(records)} images failed (see "
                         f"{os.path.join(args.dst, MANIFEST)})")


@contextlib.contextmanager
def _scheduler_client(address):
    """A client of the scheduler at ``address``, or None (encode_tree's local cluster)."""
    if address is None:
        yield None
        return
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        yield client


def _summary(dst, records, seconds, decode):
    done = "decoded" if decode else "encoded"
    counts = {status: sum(record["status"] == status for record in records)
              for status in (done, "skipped", "failed")}
    worked = counts[done] + counts["failed"]
    rate = f", {60 * worked / seconds:.1f} images/min" if worked and seconds > 0 else ""
    return (f"{dst}: {len(records)} images, "
            + ", ".join(f"{count} {status}" for status, count in counts.items())
            + f", {seconds:.1f} s{rate}")


def main(argv=None):
    """``cgc batch`` as a program of its own (``python -m cgc.batch SRC DST ...``), its
    errors reported as cgc's CLI reports them."""
    from cgc.cli import main as cli_main

    return cli_main(["batch", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    # The tasks must reach the workers as cgc.batch's functions, not this __main__'s.
    from cgc.batch import main as batch_main

    sys.exit(batch_main())
