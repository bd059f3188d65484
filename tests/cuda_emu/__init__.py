"""CUDA emulation on the CPU for testing the kernels in ``cgc/kernels`` without a GPU.

The same ``.cu`` source is compiled by g++ against ``cuda_emu.h`` and driven through an object
with CuPy's ``RawModule`` calling convention::

    module = cuda_emu.load_module("render")          # or a path to a .cu file
    module.get_function("render_forward")(grid, block, (array, np.int32(h), ...))

Arrays are passed by pointer and scalars must be NumPy scalars of the parameter's exact type
(CuPy would pass a Python int or float as 64-bit).  Every array is copied into a buffer with
guard zones on both sides for the launch and copied back afterwards; a kernel that writes
into a guard zone, or writes through a pointer to const, raises ``KernelMemoryError``.
See docs/cuda-emulation.md for the mapping of CUDA onto OpenMP and its limits."""
import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from cgc.kernels import MODULES, expand_source, kernel_source

HEADER = Path(__file__).resolve().with_name("cuda_emu.h")
CXX = os.environ.get("CXX", "g++")
# No -ffast-math or -march: rounding must match the reference core, which is built without
# FMA contraction; -ffp-contract=off keeps g++ from fusing where the target would allow it.
CXXFLAGS = ("-std=c++20", "-O2", "-fopenmp", "-fPIC", "-shared", "-ffp-contract=off",
            # Kernels read and write byte buffers through wider integer pointers, as CUDA
            # code does; strict aliasing would let g++ reorder those accesses.
            "-fno-strict-aliasing")
# Bytes of guard zone before and after every array; out-of-range writes further away than
# this go undetected (or crash).
GUARD = 4096
_GUARD_BYTES = np.random.default_rng(20240601).integers(0, 256, GUARD, dtype=np.uint8)
# The name of each entry point, after its launch bounds if it has any.
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+'
                     r'(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(')


class KernelMemoryError(RuntimeError):
    """A kernel wrote outside an array or through a pointer to const."""


def available():
    """True when the C++ compiler the harness needs is on PATH."""
    return shutil.which(CXX) is not None


def cache_dir():
    path = os.environ.get("CGC_CUDA_EMU_CACHE") or os.path.join(
        tempfile.gettempdir(), f"cgc-cuda-emu-{os.getuid()}")
    os.makedirs(path, exist_ok=True)
    return path


def _translation_unit(source):
    names = _KERNEL.findall(source)
    if not names:
        raise ValueError('no extern "C" __global__ kernels in the source')
    lines = [f'#include "{HEADER}"', source, '#line 1 "<cuda_emu trampolines>"']
    for name in names:
        lines.append(f'extern "C" int cuda_emu_launch_{name}(const unsigned* dims, void** args)'
                     f" {{ return cuda_emu::launch(&{name}, dims, args); }}")
        lines.append(f'extern "C" const char* cuda_emu_signature_{name}()'
                     f" {{ static const std::string s = cuda_emu::signature(&{name});"
                     " return s.c_str(); }")
    return names, "\n".join(lines) + "\n"


def _build(unit):
    key = hashlib.sha256("\0".join((unit, HEADER.read_text(), CXX) + CXXFLAGS).encode())
    target = os.path.join(cache_dir(), key.hexdigest()[:32] + ".so")
    if os.path.exists(target):
        return target
    fd, cpp = tempfile.mkstemp(suffix=".cpp", dir=cache_dir())
    with os.fdopen(fd, "w") as f:
        f.write(unit)
    partial = cpp[:-4] + ".so"
    try:
        result = subprocess.run([CXX, *CXXFLAGS, cpp, "-o", partial],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"cuda_emu: compiling failed:\n{result.stderr}")
        os.replace(partial, target)
    finally:
        for path in (cpp, partial):
            if os.path.exists(path):
                os.remove(path)
    return target


@functools.lru_cache(maxsize=None)
def _load_source(source):
    names, unit = _translation_unit(source)
    return Module(ctypes.CDLL(_build(unit)), names)


def load_module(name_or_path):
    """Compile (or fetch from the cache) a kernel module: a name from ``cgc.kernels.MODULES``
    or the path of a ``.cu`` file."""
    if name_or_path in MODULES:
        return _load_source(kernel_source(name_or_path))
    return _load_source(expand_source(name_or_path))


class Module:
    """The kernels of one compiled source, like ``cupy.RawModule``."""

    def __init__(self, library, names):
        self._library = library
        self._names = tuple(names)

    def get_function(self, name):
        if name not in self._names:
            raise LookupError(f"no kernel named {name!r}; the module has {self._names}")
        return Function(self._library, name)


def _dims(value, what):
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"{what} must have 1 to 3 dimensions, got {value!r}")
    return [int(d) for d in dims] + [1] * (3 - len(dims))


class _Guarded:
    """One array's launch-time copy, with guard zones on both sides."""

    def __init__(self, array):
        self.array = array
        self.const = True
        size = array.nbytes
        self.buffer = np.empty(size + 2 * GUARD, dtype=np.uint8)
        self.buffer[:GUARD] = _GUARD_BYTES
        self.buffer[GUARD + size:] = _GUARD_BYTES
        self.data = self.buffer[GUARD:GUARD + size]
        self.data[:] = array.reshape(-1).view(np.uint8)

    def address(self):
        return self.buffer.ctypes.data + GUARD

    def finish(self, name, index):
        size = self.array.nbytes
        for where, zone in (("before", self.buffer[:GUARD]),
                            ("after", self.buffer[GUARD + size:])):
            bad = np.flatnonzero(zone != _GUARD_BYTES)
            if bad.size:
                raise KernelMemoryError(
                    f"{name}: argument {index} was written {where} its {size} bytes "
                    f"({bad.size} guard bytes changed)")
        original = self.array.reshape(-1).view(np.uint8)
        if self.const:
            # Left as it was (so read-only arrays can be passed where the kernel only reads).
            if not np.array_equal(self.data, original):
                raise KernelMemoryError(f"{name}: argument {index} was written through a "
                                        "pointer to const")
            return
        original[:] = self.data


class Function:
    """One kernel, called like ``cupy.RawKernel``: ``f(grid, block, args, shared_mem=0)``."""

    def __init__(self, library, name):
        self.name = name
        self._launch = getattr(library, f"cuda_emu_launch_{name}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        signature = getattr(library, f"cuda_emu_signature_{name}")
        signature.restype = ctypes.c_char_p
        self.params = tuple(signature().decode().split(",")[:-1])

    def __call__(self, grid, block, args, shared_mem=0):
        if shared_mem:
            raise NotImplementedError("dynamic shared memory is not emulated")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, "
                            f"got {len(args)}")
        guarded = {}
        holders = []
        for index, (code, arg) in enumerate(zip(self.params, args)):
            holders.append(self._convert(index, code, arg, guarded))
        pointers = np.array([h.ctypes.data for h in holders], dtype=np.uintp)
        dims = np.array(_dims(grid, "grid") + _dims(block, "block"), dtype=np.uint32)
        if self._launch(dims.ctypes.data, pointers.ctypes.data) != 0:
            raise ValueError(f"{self.name}: invalid launch configuration grid={grid!r} "
                             f"block={block!r}")
        for index, entry in guarded.items():
            entry.finish(self.name, index)

    def _convert(self, index, code, arg, guarded):
        """A 1-element array holding the parameter's value, as cuLaunchKernel expects."""
        if code.endswith("*"):
            if arg is None:
                return np.zeros(1, dtype=np.uintp)
            dtype = np.dtype(code.removeprefix("const ")[:-1])
            if not (isinstance(arg, np.ndarray) and arg.flags.c_contiguous
                    and arg.dtype == dtype):
                raise TypeError(f"{self.name}: argument {index} must be a C-contiguous "
                                f"{dtype} array, got {type(arg).__name__} "
                                f"{getattr(arg, 'dtype', '')}")
            entry = None
            for first, other in guarded.items():
                if other.array is arg or (other.array.ctypes.data == arg.ctypes.data
                                          and other.array.nbytes == arg.nbytes):
                    entry = other
                elif np.shares_memory(other.array, arg):
                    raise ValueError(f"{self.name}: arguments {first} and {index} partly "
                                     "overlap")
            if entry is None:
                entry = guarded[index] = _Guarded(arg)
            entry.const = entry.const and code.startswith("const ")
            return np.array([entry.address()], dtype=np.uintp)
        dtype = np.dtype(code)
        if not (isinstance(arg, np.generic) and arg.dtype == dtype):
            raise TypeError(f"{self.name}: argument {index} must be a numpy {dtype} scalar, "
                            f"got {type(arg).__name__}")
        return np.array([arg], dtype=dtype)
