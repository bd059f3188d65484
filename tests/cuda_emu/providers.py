"""Ways to run the CUDA backend in tests: the CPU emulation always (when g++ is present) and
CuPy on a real GPU when one is present.  Arrays the backend allocates with ``empty`` are
poisoned, so a kernel that leaves part of an output unwritten fails the comparison."""
import numpy as np
import pytest

import cuda_emu
from cgc.backends.cuda import CUDABackend
from cgc.kernels import has_gpu

PROVIDERS = [
    pytest.param("emulated", marks=pytest.mark.skipif(
        not cuda_emu.available(), reason=f"{cuda_emu.CXX} not found: the CUDA emulation "
                                         "needs it")),
    pytest.param("cupy", marks=pytest.mark.skipif(
        not has_gpu(), reason="no CUDA device (CuPy missing or no GPU)")),
]


class Poisoned:
    """Array module ``xp`` whose ``empty`` and ``empty_like`` return garbage-filled arrays:
    NaN for floating point (it survives any sum), 0xcc bytes otherwise."""

    def __init__(self, xp):
        self._xp = xp
        self.__name__ = xp.__name__

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def _poison(self, array):
        if array.dtype.kind == "f":
            array.fill(np.nan)
        else:
            array.view(self._xp.uint8).fill(0xCC)
        return array

    def empty(self, *args, **kwargs):
        return self._poison(self._xp.empty(*args, **kwargs))

    def empty_like(self, *args, **kwargs):
        return self._poison(self._xp.empty_like(*args, **kwargs))


def make_backend(provider):
    if provider == "emulated":
        return CUDABackend(load_module=cuda_emu.load_module, xp=Poisoned(np))
    import cupy

    return CUDABackend(xp=Poisoned(cupy))


def route_cuda(monkeypatch, module, provider):
    """Make ``module.get_backend("cuda")`` return ``make_backend(provider)``, so that code
    asked for ``device="cuda"`` (a fit, an allocation) runs on this provider."""
    def get_backend(device):
        assert device == "cuda"
        return make_backend(provider)

    monkeypatch.setattr(module, "get_backend", get_backend)
