"""Build the compiled core, with OpenMP where the compiler supports it."""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def compiles(flags, source):
    """Whether the C compiler builds ``source`` with ``flags``."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        cmd = compiler.split() + flags + [src, "-o", os.path.join(tmp, "probe")]
        return subprocess.run(cmd, capture_output=True).returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def openmp_flags():
    """Return (compile, link) flags for OpenMP, or empty lists when the compiler lacks it."""
    if os.environ.get("CGC_NO_OPENMP"):
        return [], []
    flag = "/openmp" if sys.platform == "win32" else "-fopenmp"
    probe = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"
    if not compiles([flag], probe):
        print("cgc: OpenMP not available, building the core serial", file=sys.stderr)
        return [], []
    return [flag], ([] if sys.platform == "win32" else [flag])


compile_omp, link_omp = openmp_flags()
extra_compile = compile_omp
if sys.platform != "win32":
    # No -ffast-math, and no fused multiply-adds: the CPU core is the reference the CUDA
    # kernels are checked against, and the 3-sigma cut-off test must round the same way in
    # both.  -fopenmp-simd lets the renderer's pixel loops vectorise where OpenMP itself
    # is missing.
    extra_compile = extra_compile + ["-O3", "-ffp-contract=off"]
    if not compile_omp and compiles(["-fopenmp-simd"], "int main(void){return 0;}\n"):
        extra_compile.append("-fopenmp-simd")
link = list(link_omp)
if os.environ.get("CGC_SANITIZE"):
    # AddressSanitizer and UndefinedBehaviorSanitizer for the fuzz campaigns (bench/fuzz.py):
    # any report aborts, so a finding cannot scroll by unnoticed.  Python itself is not
    # instrumented; the runtime is preloaded (bench/fuzz.py says how).
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                "-fno-omit-frame-pointer", "-g"]
    extra_compile = extra_compile + sanitize
    link = link + sanitize

# One extension per compiled domain, beside the Python that validates for it; shared native
# code (format constants, rANS, range coder, CRC-32, the tile renderer) lives in cgc/native.
EXTENSIONS = {
    "cgc.native.threads": "cgc/native/threads.pyx",
    "cgc._core": "cgc/_core.pyx",
    "cgc.image._container_cy": "cgc/image/_container_cy.pyx",
    "cgc.image._refine_cy": "cgc/image/_refine_cy.pyx",
    "cgc.lossless._lossless_cy": "cgc/lossless/_lossless_cy.pyx",
    "cgc.video._pframe_cy": "cgc/video/_pframe_cy.pyx",
}
extensions = [
    Extension(
        name,
        [source],
        include_dirs=[np.get_include(), "cgc/native", os.path.dirname(source)],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=extra_compile,
        extra_link_args=link,
    )
    for name, source in EXTENSIONS.items()
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
