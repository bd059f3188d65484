"""CUDA C++ kernels of the GPU backend and their loader.

Each ``<name>.cu`` here is one module; ``common.cuh`` holds the maths they share.  CuPy is
imported only when a module is actually loaded, so ``cgc`` imports without it."""
import functools
import re
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
# One module per .cu file, named after it.
MODULES = tuple(sorted(path.stem for path in KERNEL_DIR.glob("*.cu")))

# NVRTC options beyond the standard, per module: the refinement's float64 steps must round as
# the CPU reference's do, which is built without FMA contraction (the float32 kernels use
# the __f*_rn intrinsics instead, common.cuh).
MODULE_OPTIONS = {"refine": ("--fmad=false",)}

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def _expand(path, seen):
    """Text of ``path`` with its quoted includes inlined once each, with ``#line`` markers so
    that compiler messages name the original file and line."""
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _INCLUDE.match(line)
        if match is None:
            lines.append(line)
            continue
        included = (path.parent / match.group(1)).resolve()
        if not included.is_file():
            raise FileNotFoundError(f"{path}:{number}: no such include {match.group(1)!r}")
        if included not in seen:
            seen.add(included)
            lines.append(f'#line 1 "{included}"')
            lines.append(_expand(included, seen))
        lines.append(f'#line {number + 1} "{path}"')
    return "\n".join(lines)


def expand_source(path):
    """Self-contained source of the ``.cu`` file at ``path`` (quoted includes inlined)."""
    path = Path(path).resolve()
    return f'#line 1 "{path}"\n' + _expand(path, {path}) + "\n"


def kernel_source(name):
    """Self-contained source of the kernel module ``name`` (one of ``MODULES``)."""
    if name not in MODULES:
        raise ValueError(f"unknown kernel module {name!r}; expected one of {MODULES}")
    return expand_source(KERNEL_DIR / f"{name}.cu")


@functools.lru_cache(maxsize=None)
def load_module(name):
    """Compile the kernel module ``name`` with NVRTC and return its ``cupy.RawModule``."""
    import cupy

    return cupy.RawModule(code=kernel_source(name),
                          options=("--std=c++17",) + MODULE_OPTIONS.get(name, ()))


@functools.lru_cache(maxsize=1)
def has_gpu():
    """True when CuPy is installed and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        # CuPy missing, or present without a driver or device: all mean "no GPU".
        return False
