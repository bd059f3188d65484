"""Fuzz campaigns over every cgc file format (docs/fuzzing.md says how to run them and what
to do with a finding).

    python bench/fuzz.py --format cgc-v3 --count 1000000 --workers 2 --seed 1 --out DIR
    python bench/fuzz.py --format all --count 20000 --out DIR --results
    python bench/fuzz.py --sanitized ...      # extensions built with CGC_SANITIZE=1
    python bench/fuzz.py --format cgcl --seed 1 --dump 970 --out DIR    # input 970's bytes
    python bench/fuzz.py --format cgcl --replay FILE [--minimise]       # one file again

Formats: cgc-v1, cgc-v2, cgc-v3, cgc-v4 (cgc.decode), cgcl (cgc.lossless.decode), cgcs
(cgc.lossless.checkpoint's contents, decompress and load) and cgcv (cgc.video.decode and
decode_frame).  Inputs are structure-aware mutations of fixed seeds with their CRCs
recomputed (tests/fuzz/fuzz_mutate.py): input k is a function of the format, --seed and k.
An input passes when decoding returns or raises cgc.FormatError; a finding is any other
exception, a crash (a signal, a sanitizer report) or a hang (--timeout seconds on one
input).

Workers are subprocesses, each running a range of indices on one thread
(OMP_NUM_THREADS=1: the inputs are small and the workers are the parallelism).  Before each
decode a worker writes the index into a state file that the runner maps too, so a worker
that dies (a signal, a sanitizer abort, faulthandler ending it on a hang) loses nothing:
the runner makes the input it died on again, saves it as a finding and starts a worker on
the rest of the range.  Findings go to --out: FORMAT-SHA256PREFIX.bin (the input) and
.txt (what happened) for the first --keep of each kind and place, and one JSON line each
in findings.jsonl.  At the end summary.json (and with --results
bench/results/fuzz_FORMAT.json) gives the revision, the outcome counts, inputs per second
and the slowest input, with its peak memory measured alone in a fresh process (ru_maxrss
less that of a process doing all but the decode)."""
import argparse
import collections
import faulthandler
import glob
import hashlib
import importlib.util
import json
import mmap
import os
import re
import struct
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
TESTS = os.path.join(ROOT, "tests")
sys.path[:0] = [ROOT, TESTS, os.path.join(TESTS, "fuzz")]

from report import revision, write_report  # noqa: E402  (bench/report.py)

FORMAT_NAMES = ("cgc-v1", "cgc-v2", "cgc-v3", "cgc-v4", "cgcl", "cgcs", "cgcv")
FINDING_KINDS = ("exception", "crash", "sanitizer", "hang")
SANITIZER_OPTIONS = {
    # Python's own allocations look like leaks; any report must end the worker.
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:abort_on_error=1",
    # Python objects from malloc, so that AddressSanitizer sees reads past a bytes object.
    "PYTHONMALLOC": "malloc",
}


def main():
    args = _arguments()
    if args.sanitized:
        _enter_sanitized_environment()
    if args.worker:
        _work(args)
    elif args.replay:
        sys.exit(_replay(args))
    elif args.dump is not None:
        _dump(args)
    else:
        _campaigns(args)


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=FORMAT_NAMES + ("all",), default="all")
    parser.add_argument("--count", type=int, default=20000, help="inputs per format")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1, help="campaign seed")
    parser.add_argument("--out", default="fuzz-out")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds one input may take before it counts as a hang")
    parser.add_argument("--keep", type=int, default=5,
                        help="inputs saved per kind and place of finding, per worker")
    parser.add_argument("--sanitized", action="store_true",
                        help="run on extensions built with CGC_SANITIZE=1")
    parser.add_argument("--results", action="store_true",
                        help="also write bench/results/fuzz_FORMAT.json")
    parser.add_argument("--dump", type=int, metavar="INDEX",
                        help="write input INDEX of --format and --seed to --out")
    parser.add_argument("--replay", metavar="FILE", help="decode FILE as --format")
    parser.add_argument("--minimise", action="store_true",
                        help="with --replay: shrink a file that raises a finding, keeping "
                             "its signature, and write FILE.min")
    # Internal: a worker's range and state file; a replay that stops short of decoding.
    parser.add_argument("--worker", nargs=3, metavar=("START", "STOP", "STATE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if (args.worker or args.replay or args.dump is not None) and args.format == "all":
        parser.error("name one --format")
    return args


# ----------------------------------------------------------------------------- sanitizers

def _enter_sanitized_environment():
    """Check that cgc's extensions are sanitized, then run this script again with the
    sanitizer runtime preloaded (Python is not instrumented, so it must come first)."""
    if os.environ.get("LD_PRELOAD", "").endswith("libasan.so"):
        return
    package = importlib.util.find_spec("cgc").submodule_search_locations[0]
    libraries = glob.glob(os.path.join(package, "**", "*.so"), recursive=True)
    plain = [lib for lib in libraries if not _imports_asan(lib)]
    if not libraries or plain:
        sys.exit(f"--sanitized: {len(plain)} of {len(libraries)} extensions in {package} are "
                 f"not built with AddressSanitizer; build them with "
                 f"CGC_SANITIZE=1 pip install -e . (docs/fuzzing.md)")
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip()
    if not os.path.isabs(libasan):
        sys.exit("--sanitized: gcc does not know where libasan.so is")
    env = dict(os.environ, LD_PRELOAD=libasan, **SANITIZER_OPTIONS)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def _imports_asan(library):
    symbols = subprocess.run(["nm", "-D", "--undefined-only", library], capture_output=True,
                             text=True, check=True).stdout
    return re.search(r"\b__asan_init\b", symbols) is not None


# ----------------------------------------------------------------------------- workers

class State:
    """A worker's progress in a small file that the worker and the runner both map: the
    index being decoded (-1 between inputs), the outcome counts and the slowest input.
    Written around every decode, so it survives the worker."""

    LAYOUT = struct.Struct("<qqqqqd")  # decoding, ok, format errors, exceptions, slowest, s

    def __init__(self, path, create=False):
        if create:
            with open(path, "wb") as f:
                f.write(self.LAYOUT.pack(-1, 0, 0, 0, -1, 0.0))
        with open(path, "r+b") as f:
            self.map = mmap.mmap(f.fileno(), self.LAYOUT.size)

    def read(self):
        decoding, ok, errors, exceptions, slowest, seconds = self.LAYOUT.unpack(self.map)
        return {"decoding": decoding, "ok": ok, "format_error": errors,
                "exception": exceptions, "slowest_index": slowest, "slowest_s": seconds}

    def begin(self, index):
        struct.pack_into("<q", self.map, 0, index)

    def end(self, kind, index, seconds):
        _, ok, errors, exceptions, slowest, slowest_s = self.LAYOUT.unpack(self.map)
        ok += kind == "ok"
        errors += kind == "format_error"
        exceptions += kind == "exception"
        if seconds > slowest_s:
            slowest, slowest_s = index, seconds
        self.map[:] = self.LAYOUT.pack(-1, ok, errors, exceptions, slowest, slowest_s)


def _work(args):
    """Run inputs [START, STOP): a worker subprocess."""
    from fuzz_formats import FORMATS, outcome
    from fuzz_mutate import generate

    start, stop, state_path = int(args.worker[0]), int(args.worker[1]), args.worker[2]
    fmt = FORMATS[args.format]
    fmt.seeds()
    state = State(state_path)
    saved = collections.Counter()
    faulthandler.enable()  # a fatal signal's Python traceback goes to the log
    for index in range(start, stop):
        data = generate(fmt, args.seed, index).data
        state.begin(index)
        faulthandler.dump_traceback_later(args.timeout, exit=True)
        began = time.perf_counter()
        result = outcome(fmt, data)
        seconds = time.perf_counter() - began
        faulthandler.cancel_dump_traceback_later()
        state.end(result.kind, index, seconds)
        if result.kind == "exception":
            _record(args, index, data, "exception", result.signature, result.report, saved)


def _record(args, index, data, kind, signature, report, saved):
    """One finding: a line in findings.jsonl, and the input and its report for the first
    --keep of its signature."""
    digest = hashlib.sha256(data).hexdigest()
    name = f"{args.format}-{digest[:16]}"
    if saved[signature] < args.keep:
        saved[signature] += 1
        with open(os.path.join(args.out, name + ".bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(args.out, name + ".txt"), "w") as f:
            f.write(f"format {args.format}, campaign seed {args.seed}, index {index}\n"
                    f"finding ({kind}): {signature}\n\n{report}")
    line = {"format": args.format, "seed": args.seed, "index": index, "kind": kind,
            "signature": signature, "sha256": digest, "file": name + ".bin"}
    with open(os.path.join(args.out, "findings.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")


# ----------------------------------------------------------------------------- runner

class Slot:
    """One worker's share of the indices, run by as many worker processes as it takes: a
    process that dies leaves its input to the runner and the rest to the next one."""

    def __init__(self, args, number, start, stop):
        self.args, self.next, self.stop = args, start, stop
        base = os.path.join(args.out, f".{args.format}-worker{number}")
        self.state_path, self.log_path = base + ".state", base + ".log"
        self.state = State(self.state_path, create=True)
        open(self.log_path, "w").close()
        self.process, self.log_start = None, 0

    def launch(self):
        args = self.args
        command = [sys.executable, os.path.abspath(__file__), "--format", args.format,
                   "--seed", str(args.seed), "--out", args.out, "--timeout", str(args.timeout),
                   "--keep", str(args.keep),
                   "--worker", str(self.next), str(self.stop), self.state_path]
        self.log_start = os.path.getsize(self.log_path)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log,
                                            env=dict(os.environ, OMP_NUM_THREADS="1"))

    def log(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return f.read().decode("utf-8", "replace")


def _campaigns(args):
    os.makedirs(args.out, exist_ok=True)
    names = FORMAT_NAMES if args.format == "all" else (args.format,)
    info = revision()
    reports = []
    for name in names:
        args.format = name
        report = {**info, **_campaign(args)}
        reports.append(report)
        _print_summary(report)
        if args.results:
            write_report(os.path.join(BENCH, "results", f"fuzz_{name}.json"), report)
    summary = reports[0] if len(reports) == 1 else {"campaigns": reports}
    write_report(os.path.join(args.out, "summary.json"), summary)


def _campaign(args):
    """One format's campaign: workers over [0, --count), crashed inputs saved here."""
    from fuzz_formats import FORMATS
    from fuzz_mutate import generate

    fmt = FORMATS[args.format]
    bounds = [args.count * k // args.workers for k in range(args.workers + 1)]
    slots = [Slot(args, k, bounds[k], bounds[k + 1]) for k in range(args.workers)]
    states = [slot.state for slot in slots]
    crashes, saved = collections.Counter(), collections.Counter()
    findings_at = _findings_size(args)
    began = time.monotonic()
    while slots:
        for slot in slots:
            if slot.process is None:
                slot.launch()
        time.sleep(0.05)
        for slot in list(slots):
            code = slot.process.poll()
            if code is None:
                continue
            slot.process = None
            if code == 0:
                slots.remove(slot)
                continue
            index = slot.state.read()["decoding"]
            if index < 0:  # died between inputs: the harness, not the decoder
                sys.exit(f"worker failed outside a decode (exit {code}):\n{slot.log()[-4000:]}")
            kind, signature = _classify(slot.log(), code)
            crashes[kind] += 1
            data = generate(fmt, args.seed, index).data
            _record(args, index, data, kind, signature, slot.log(), saved)
            slot.next = index + 1
            if slot.next >= slot.stop:
                slots.remove(slot)
    seconds = time.monotonic() - began
    return _summary(args, fmt, [state.read() for state in states], crashes, seconds,
                    _signatures(args, findings_at))


def _summary(args, fmt, states, crashes, seconds, signatures):
    from fuzz_mutate import generate

    findings = {kind: crashes[kind] for kind in FINDING_KINDS}
    findings["exception"] = sum(s["exception"] for s in states)
    slowest = max(states, key=lambda s: s["slowest_s"])
    summary = {
        "format": args.format, "seed": args.seed, "count": args.count,
        "workers": args.workers, "timeout_s": args.timeout, "sanitized": args.sanitized,
        "seconds": round(seconds, 2), "inputs_per_second": round(args.count / seconds, 1),
        "outcomes": {"ok": sum(s["ok"] for s in states),
                     "format_error": sum(s["format_error"] for s in states),
                     "findings": findings},
        "signatures": signatures,
    }
    if slowest["slowest_index"] >= 0:
        data = generate(fmt, args.seed, slowest["slowest_index"]).data
        summary["slowest"] = {"index": slowest["slowest_index"],
                              "seconds": round(slowest["slowest_s"], 4),
                              "bytes": len(data),
                              "peak_memory_mib": _peak_memory_mib(args, data)}
    return summary


def _findings_size(args):
    path = os.path.join(args.out, "findings.jsonl")
    return os.path.getsize(path) if os.path.exists(path) else 0


def _signatures(args, start):
    """{signature: {kind, count, lowest index, its file}} of the findings written to
    findings.jsonl from byte ``start`` on (those of this campaign)."""
    path = os.path.join(args.out, "findings.jsonl")
    found = {}
    if os.path.exists(path):
        with open(path) as f:
            f.seek(start)
            for line in map(json.loads, f):
                entry = found.setdefault(line["signature"], {
                    "kind": line["kind"], "count": 0, "index": line["index"],
                    "file": line["file"]})
                entry["count"] += 1
                if line["index"] < entry["index"]:
                    entry.update(index=line["index"], file=line["file"])
    return found


def _classify(log, code):
    """(kind, signature) of a worker that died: a hang (faulthandler's timeout), a sanitizer
    report, or another crash, with the innermost place in cgc the log names."""
    if "Timeout (" in log:
        return "hang", f"hang at {_python_place(log)}"
    match = re.search(r"ERROR: AddressSanitizer: ([\w-]+)|runtime error: ([^\n]*)", log)
    if match:
        what = re.sub(r"0x[0-9a-f]+", "ADDRESS", match.group(1) or match.group(2))
        frame = re.search(r"#\d+ 0x[0-9a-f]+ in (\S+) (\S*cgc/\S+)", log)
        where = f"{frame.group(1)} {_relative(frame.group(2))}" if frame else _python_place(log)
        return "sanitizer", f"{what} in {where}"
    what = f"signal {-code}" if code < 0 else f"exit status {code}"
    return "crash", f"{what} at {_python_place(log)}"


def _python_place(log):
    """The innermost frame in cgc of the traceback faulthandler wrote (most recent first)."""
    match = re.search(r'File "(\S*cgc/[^"]+)", line (\d+)', log)
    return f"{_relative(match.group(1))}:{match.group(2)}" if match else "unknown place"


def _relative(path):
    return path[path.rindex("cgc/"):] if "cgc/" in path else path


def _peak_memory_mib(args, data):
    """Peak memory of decoding ``data`` alone: ru_maxrss of a fresh process that decodes
    it, less that of one that does all but the decode."""
    path = os.path.join(args.out, f"slowest-{args.format}.bin")
    with open(path, "wb") as f:
        f.write(data)
    command = [sys.executable, os.path.abspath(__file__), "--format", args.format,
               "--replay", path]
    peaks = []
    for extra in ([], ["--baseline"]):
        process = subprocess.Popen(command + extra, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL,
                                   env=dict(os.environ, OMP_NUM_THREADS="1"))
        _, _, usage = os.wait4(process.pid, 0)
        peaks.append(usage.ru_maxrss)  # KiB on Linux
    # Two runs of the same process differ by a few hundred KiB: a decode that allocates
    # less than that reads as 0.
    return round(max(peaks[0] - peaks[1], 0) / 1024, 1)


def _print_summary(report):
    outcomes = report["outcomes"]
    print(f"{report['format']}: {report['count']} inputs in {report['seconds']} s "
          f"({report['inputs_per_second']}/s): {outcomes['ok']} ok, "
          f"{outcomes['format_error']} FormatError, findings {outcomes['findings']}")
    for signature, entry in report["signatures"].items():
        print(f"  {entry['count']} x {signature} (index {entry['index']}, {entry['file']})")
    if "slowest" in report:
        slowest = report["slowest"]
        print(f"  slowest: index {slowest['index']}, {slowest['seconds']} s, "
              f"{slowest['peak_memory_mib']} MiB")


# ----------------------------------------------------------------------------- one input

def _replay(args):
    """Decode one file; 0 when it passes, 1 for a finding.  --baseline: all but the
    decode (the reference for peak memory)."""
    from fuzz_formats import FORMATS, outcome

    with open(args.replay, "rb") as f:
        data = f.read()
    if args.baseline:
        return 0
    fmt = FORMATS[args.format]
    result = outcome(fmt, data)
    print(f"{result.kind}: {result.signature or result.message}")
    if result.report:
        print(result.report)
    if args.minimise and result.kind == "exception":
        smaller = _minimised(fmt, data, result.signature)
        with open(args.replay + ".min", "wb") as f:
            f.write(smaller)
        print(f"{len(data)} -> {len(smaller)} bytes: {args.replay}.min")
    return int(result.kind == "exception")


def _minimised(fmt, data, signature):
    """A smaller file with the same finding: chunks emptied (their length fields
    following), then byte ranges cut from halves down to single bytes, CRCs fixed each
    time; greedy, so not the smallest, but cheap."""
    from fuzz_formats import outcome
    from fuzz_mutate import replace_span

    def same(candidate):
        return outcome(fmt, fmt.fix_crcs(candidate)).signature == signature

    shrunk = True
    while shrunk:  # the map changes with every cut: map again after each
        shrunk = False
        for span in sorted(fmt.layout(data).spans, key=lambda s: s.start - s.end):
            candidate = replace_span(data, span, b"")
            if len(candidate) < len(data) and same(candidate):
                data, shrunk = candidate, True
                break
    size = len(data) // 2
    while size:
        start = 0
        while start < len(data):
            candidate = data[:start] + data[start + size:]
            if same(candidate):
                data = candidate
            else:
                start += size
        size //= 2
    return fmt.fix_crcs(data)


def _dump(args):
    from fuzz_formats import FORMATS
    from fuzz_mutate import generate

    made = generate(FORMATS[args.format], args.seed, args.dump)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.format}-seed{args.seed}-{args.dump}.bin")
    with open(path, "wb") as f:
        f.write(made.data)
    print(f"{path}: {len(made.data)} bytes, mutations {', '.join(made.recipe)}"
          f"{', CRCs stale' if made.stale_crc else ''}")


if __name__ == "__main__":
    main()
