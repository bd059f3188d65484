"""Shared pytest configuration: only the --regen-golden switch (fixtures live in the test
files that use them, so parallel authors of tests cannot clash here)."""


def pytest_addoption(parser):
    parser.addoption(
        "--regen-golden", action="store_true", default=False,
        help="rewrite tests/golden/*.cgc from the current encoder instead of checking them "
             "(only after an intended format change; review and commit the new files)")
