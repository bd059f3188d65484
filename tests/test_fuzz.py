"""A short fuzz campaign per file format, the saved regression inputs, and checks that the
mutations reach the parsers (harness: tests/fuzz/, campaigns: bench/fuzz.py,
docs/fuzzing.md).  An input passes when decoding returns or raises cgc.FormatError."""
import ctypes
import faulthandler
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fuzz"))
from fuzz_formats import CRC_REJECTION, FORMATS, REGRESSIONS, outcome  # noqa: E402
from fuzz_mutate import generate  # noqa: E402

SEED = 1
COUNT = 5000  # inputs per format: 2 to 4 s each on one core
STALE_COUNT = 300
HANG_SECONDS = 60


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Decode on one thread, as bench/fuzz.py's workers do: the inputs are small, and on a
    busy machine a team of threads per decode costs far more than it saves."""
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
    except OSError:  # no GNU OpenMP: nothing to set
        yield
        return
    threads = gomp.omp_get_max_threads()
    gomp.omp_set_num_threads(1)
    yield
    gomp.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def campaigns():
    """{format: [(input, outcome)]}, run once for the tests below."""
    runs = {}

    def run(name):
        if name not in runs:
            fmt = FORMATS[name]
            runs[name] = [(made, outcome(fmt, made.data))
                          for made in (generate(fmt, SEED, k) for k in range(COUNT))]
        return runs[name]
    return run


@pytest.mark.parametrize("name", FORMATS)
def test_an_input_is_a_function_of_its_index(name):
    # Seeds made again come out the same, and so do the inputs made from them.
    fmt = FORMATS[name]
    assert tuple(fmt.make_seeds()) == fmt.seeds()
    again = [generate(fmt, SEED, k) for k in range(50)]
    assert again == [generate(fmt, SEED, k) for k in range(50)]
    assert len({made.data for made in again}) > 40


@pytest.mark.parametrize("name", FORMATS)
def test_short_campaign_has_no_findings(name, campaigns):
    findings = [(k, result) for k, (_, result) in enumerate(campaigns(name))
                if result.kind == "exception"]
    if findings:
        index, first = findings[0]
        pytest.fail(f"{len(findings)} of {COUNT} {name} inputs (campaign seed {SEED}) raised "
                    f"something else than FormatError; first: index {index}, "
                    f"{first.signature}: {first.message}\n{first.report}")


@pytest.mark.parametrize("name", FORMATS)
def test_mutations_reach_the_parsers(name, campaigns):
    # With CRCs recomputed, few inputs stop at the checksum, and many go on to decode or
    # to be rejected for what they hold.
    fresh = [result for made, result in campaigns(name) if not made.stale_crc]
    at_crc = sum(r.kind == "format_error" and bool(CRC_REJECTION.search(r.message))
                 for r in fresh)
    decoded = sum(r.kind == "ok" for r in fresh)
    reasons = {re.sub(r"[\d.]+", "#", r.message)[:40] for r in fresh
               if r.kind == "format_error"}
    assert at_crc < len(fresh) / 3, f"{at_crc} of {len(fresh)} stopped at a CRC"
    assert decoded > 0.02 * len(fresh), f"only {decoded} of {len(fresh)} decoded"
    assert len(reasons) >= 15, sorted(reasons)


@pytest.mark.parametrize("name", FORMATS)
def test_a_stale_crc_is_rejected(name):
    fmt = FORMATS[name]
    stale = [made.data for made in (generate(fmt, SEED, k, stale_crc=True)
                                    for k in range(STALE_COUNT))
             if fmt.fix_crcs(made.data) != made.data]  # edits the CRCs cover
    results = [outcome(fmt, data) for data in stale]
    passed = [r for r in results if r.kind != "format_error"]
    at_crc = sum(bool(CRC_REJECTION.search(r.message)) for r in results)
    assert len(stale) > STALE_COUNT / 2
    assert not passed, f"{len(passed)} inputs with a stale CRC not rejected: {passed[:3]}"
    assert at_crc > len(stale) / 2, f"only {at_crc} of {len(stale)} rejected at the CRC"


def _regression_inputs():
    if not os.path.isdir(REGRESSIONS):
        return []
    return sorted(os.path.join(name, file) for name in os.listdir(REGRESSIONS)
                  if name in FORMATS
                  for file in os.listdir(os.path.join(REGRESSIONS, name))
                  if not file.startswith("."))


@pytest.mark.parametrize("path", _regression_inputs())
def test_regression_input_decodes_or_raises_format_error(path):
    # Inputs that once made a decoder crash, hang or raise something else (README.md).
    name = os.path.dirname(path)
    with open(os.path.join(REGRESSIONS, path), "rb") as f:
        data = f.read()
    # A hang ends the test run with a traceback rather than stalling it.
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        result = outcome(FORMATS[name], data)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert result.kind != "exception", f"{path}: {result.signature}\n{result.report}"
