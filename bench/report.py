"""What every bench's JSON report starts with (the code it measured) and how it is written."""
import json
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(*args):
    """Output of a git command in this checkout, or None where there is no repository."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def revision():
    """The measured revision and whether tracked files differ from it.  Call it at the start
    of a run.  A copy of the tree whose .git is missing or stale names its commit in
    CGC_REVISION."""
    given = os.environ.get("CGC_REVISION")
    return {"revision": given or git("rev-parse", "HEAD"),
            "dirty": None if given
            else bool(git("status", "--porcelain", "--untracked-files=no")),
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def write_report(path, report):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")
