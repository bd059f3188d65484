"""Compute backends: the same small interface on the CPU (Cython) and on CUDA (CuPy).

A backend provides ``xp`` (its array module), ``bin`` (a :class:`cgc.backends.bins.Bins` of
the tile size its renderer draws), ``render_forward``, ``render_backward``, ``adam_step``
and ``clamp_scales``; ``cgc.fit`` is written once against it."""
from cgc.backends.cpu import CPUBackend


def get_backend(device="cpu"):
    """Return the backend for ``device`` ("cpu" or "cuda")."""
    if device == "cpu":
        return CPUBackend()
    if device == "cuda":
        from cgc.backends.cuda import CUDABackend

        return CUDABackend()
    raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
