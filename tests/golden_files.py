"""The golden files' check, shared by the tests that pin a format (tests/golden/): rewrite
a file only under ``pytest --regen-golden``, otherwise compare the bytes made now with it."""
import os

import pytest


def check_golden(request, path, data, hint):
    """The bytes of golden file ``path`` (rewritten first with ``data`` under
    --regen-golden); fails the test, naming the first differing byte, unless they equal
    ``data``.  ``hint`` says how to regenerate and when."""
    if request.config.getoption("--regen-golden"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    if not os.path.exists(path):
        pytest.fail(f"golden file {path} is missing; {hint}")
    with open(path, "rb") as f:
        golden = f.read()
    if data != golden:
        first = next((i for i, (a, b) in enumerate(zip(data, golden)) if a != b),
                     min(len(data), len(golden)))
        pytest.fail(f"the encoder no longer produces {path} ({len(data)} bytes vs "
                    f"{len(golden)}, first difference at byte {first}); {hint}")
    return golden
