"""Every kernel module compiles with nvcc for the GPUs we target, without register spills;
and the launch constants of the Python launchers agree with the kernels' sources."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from cgc.backends import cuda as backend_cuda
from cgc.backends.bins import Bins
from cgc.kernels import MODULES, kernel_source
from cgc.lossless import cuda as lossless_cuda

NVCC = shutil.which("nvcc")
ARCHS = ("sm_80", "sm_90")
_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
# The name of each entry point, after its launch bounds if it has any.
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+'
                     r'(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(')

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH")
# Object-like #defines and constexpr ints; their values are checked to be integer
# expressions when read (integer_constants).
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+([^\n]*?)[ \t]*$", re.M)
_CONSTEXPR = re.compile(r"\bconstexpr\s+int\s+(\w+)\s*=\s*([^;]+);")
# A kernel's launch bounds: (its maximum threads per block, its name).
_BOUNDS = re.compile(r'extern\s+"C"\s+__global__\s+void\s+__launch_bounds__\s*\('
                     r'([^,)]+)[^)]*\)\s*(\w+)\s*\(')
_INTEGER_EXPRESSION = re.compile(r"[\w\s()*/+<>-]+")
# CUDA's limit on the threads of one block, on every GPU we target.
MAX_BLOCK_THREADS = 1024


def resource_reports(ptxas_output):
    """{(kernel, arch): the lines ptxas printed about that kernel}."""
    reports = {}
    parts = _ENTRY.split(ptxas_output)
    for name, arch, text in zip(parts[1::3], parts[2::3], parts[3::3]):
        reports[(name, arch)] = text
    return reports


def _evaluate(expression, known):
    """The integer value of a C integer expression over ``known`` names, or None."""
    expression = re.sub(r"//.*|/\*.*?\*/", "", expression).strip()  # comments
    expression = re.sub(r"\bcgc::", "", expression)
    expression = re.sub(r"\b(\d+)[uUlL]+\b", r"\1", expression).replace("/", "//")
    if not expression or not _INTEGER_EXPRESSION.fullmatch(expression):
        return None
    try:
        value = eval(expression, {"__builtins__": {}}, dict(known))
    except (NameError, SyntaxError, TypeError, ZeroDivisionError):
        return None
    return value if type(value) is int else None  # not a bool from a comparison


def integer_constants(source):
    """{name: [the value of each definition, in source order]} of the #defines and
    constexpr ints of ``source`` whose values are integer expressions of earlier ones."""
    definitions = sorted([(m.start(), m.group(1), m.group(2)) for m in _DEFINE.finditer(source)]
                         + [(m.start(), m.group(1), m.group(2))
                            for m in _CONSTEXPR.finditer(source)])
    constants, known = {}, {}
    for _, name, expression in definitions:
        value = _evaluate(expression, known)
        if value is not None:
            constants.setdefault(name, []).append(value)
            known[name] = value
    return constants


def only_value(constants, name):
    values = constants.get(name)
    assert values is not None and len(values) == 1, f"{name}: defined as {values}"
    return values[0]


def launch_bounds(source, constants):
    """{kernel: its maximum threads per block} of the kernels that declare launch bounds."""
    known = {name: values[0] for name, values in constants.items() if len(values) == 1}
    bounds = {}
    for expression, kernel in _BOUNDS.findall(source):
        bounds[kernel] = _evaluate(expression, known)
        assert bounds[kernel] is not None, f"{kernel}: launch bounds {expression!r} unread"
    return bounds


def test_constant_parser():
    source = ("#define A 4  // four\n#ifndef B\n#define B (A * 8u)\n#endif\n#define C \\\n"
              "namespace cgc { constexpr int D = B / 3; }\nconstexpr int E = cgc::D + A;\n"
              'extern "C" __global__ void __launch_bounds__(A * B, 2) k(int x) {}\n')
    constants = integer_constants(source)
    assert constants == {"A": [4], "B": [32], "D": [10], "E": [14]}
    assert launch_bounds(source, constants) == {"k": 128}


def test_lossless_launch_agrees_with_rans_cu():
    # cgc/lossless/cuda.py launches rans.cu (compiled without -D: its defaults) with blocks
    # of LANES x WARPS_PER_BLOCK threads; the kernel indexes lanes by CGC_LOSSLESS_LANES
    # (cgc/native/format.h) and declares launch bounds of that many threads per block.
    source = kernel_source(lossless_cuda.KERNEL_MODULE)
    constants = integer_constants(source)
    lanes = only_value(constants, "CGC_LOSSLESS_LANES")
    warps = only_value(constants, "WARPS_PER_BLOCK")
    assert lossless_cuda.LANES == lanes
    assert lossless_cuda.WARPS_PER_BLOCK == warps
    bounds = launch_bounds(source, constants)
    assert sorted(bounds) == ["rans_decode_tiles_1", "rans_decode_tiles_2",
                              "rans_decode_tiles_4"]
    for kernel, limit in bounds.items():
        assert lanes * warps == limit, f"{kernel} allows {limit} threads a block"
    for n_tiles in sorted({1, max(1, warps - 1), warps, warps + 1, 1000}):
        grid, block = lossless_cuda.launch_shape(n_tiles)
        assert block == (lanes, warps)
        # One warp a tile: every tile has a warp, and no block is all idle warps.
        assert (grid[0] - 1) * warps < n_tiles <= grid[0] * warps


class _RecordingModule:
    """Stands in for a loaded kernel module: records each launch's block and runs nothing,
    except that prepare_gaussians puts every Gaussian on one tile (its last argument, the
    per-Gaussian tile count), so that binning goes on to its other two kernels."""

    def __init__(self, name, launches):
        self.name, self.launches = name, launches

    def get_function(self, kernel):
        def launch(grid, block, args):
            self.launches.append((self.name, kernel, tuple(block)))
            if kernel == "prepare_gaussians":
                args[-1][:] = 1
        return launch


def test_renderer_and_adam_launches_agree_with_the_kernels():
    # cgc/backends/cuda.py's TILE is common.cuh's cgc::TILE (render.cu and adam.cu include
    # it): the tile kernels run TILE x TILE blocks that stage cgc::BATCH Gaussians, one per
    # thread.  Its 1-D kernels read their block size from blockDim, so BLOCK need only be a
    # whole number of warps within every launch bound.
    constants = {name: integer_constants(kernel_source(name)) for name in ("render", "adam")}
    tile = only_value(constants["render"], "TILE")
    assert only_value(constants["adam"], "TILE") == tile == backend_cuda.TILE
    assert only_value(constants["render"], "BATCH") == tile * tile
    assert backend_cuda.BLOCK % 32 == 0
    launches = []
    backend = backend_cuda.CUDABackend(
        load_module=lambda name: _RecordingModule(name, launches), xp=np)
    height, width = 2 * tile + 1, tile + 3
    n_tiles = 3 * 2
    params = np.array([[1.0, 1.0, 1, 0, 1, 0.5, 0.5, 0.5]], dtype=np.float32)
    # One Gaussian on the first tile: the renderers draw and reduce it.
    bins = Bins(np.array([0] + [1] * n_tiles, np.int64), np.zeros(1, np.int32), tile)
    backend.render_forward(params, height, width, bins=bins)
    backend.render_backward(params, height, width, np.zeros((height, width, 3), np.float32),
                            bins=bins)
    state = [np.zeros((1, 8), np.float32) for _ in range(3)]
    backend.adam_step(params.copy(), *state, step=1, lr=np.full(8, 0.1))
    backend.clamp_scales(params.copy(), (0.25, 1e4))
    backend.bin(params, height, width)
    launched = {kernel: block for _, kernel, block in launches}
    assert launched == {"render_forward": (tile, tile), "render_backward": (tile, tile),
                        "reduce_pair_gradients": (backend_cuda.BLOCK,),
                        "adam_step": (backend_cuda.BLOCK,),
                        "clamp_scales": (backend_cuda.BLOCK,),
                        "prepare_gaussians": (backend_cuda.BLOCK,),
                        "expand_pairs": (backend_cuda.BLOCK,),
                        "tile_ranges": (backend_cuda.BLOCK,)}
    for module, kernel, block in launches:
        threads = int(np.prod(block))
        assert threads <= MAX_BLOCK_THREADS
        source = kernel_source(module)
        limit = launch_bounds(source, constants[module]).get(kernel, MAX_BLOCK_THREADS)
        assert threads <= limit, f"{kernel}: blocks of {threads} threads, bounds {limit}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """ptxas' report for every (module, arch), compiled in parallel."""
    directory = tmp_path_factory.mktemp("nvcc")
    jobs = {}
    for name in MODULES:
        source = directory / f"{name}.cu"
        # The self-contained text NVRTC receives at run time, not the file on disk.
        source.write_text(kernel_source(name))
        for arch in ARCHS:
            command = [NVCC, "-cubin", f"-arch={arch}", "-Xptxas", "-v",
                       "-Werror", "all-warnings", "-o", str(directory / f"{name}_{arch}.cubin"),
                       str(source)]
            jobs[(name, arch)] = subprocess.Popen(command, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True)
    results = {}
    for key, job in jobs.items():
        output, _ = job.communicate(timeout=300)
        results[key] = (job.returncode, output)
    return results


def test_report_parser_reads_spills():
    report = ("ptxas info    : Compiling entry function 'k' for 'sm_80'\n"
              "ptxas info    : Function properties for k\n"
              "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n")
    text = resource_reports(report)[("k", "sm_80")]
    assert _SPILLS.search(text).groups() == ("4", "12")


@pytest.mark.parametrize("name", MODULES)
def test_source_is_self_contained(name):
    # NVRTC compiles without host headers, and quoted includes are inlined by the loader.
    assert "#include" not in kernel_source(name)


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", MODULES)
def test_compiles_without_spills(compiled, name, arch):
    returncode, output = compiled[(name, arch)]
    assert returncode == 0, output
    reports = resource_reports(output)
    kernels = _KERNEL.findall(kernel_source(name))
    assert kernels
    for kernel in kernels:
        assert (kernel, arch) in reports, f"no ptxas report for {kernel}:\n{output}"
        spills = _SPILLS.search(reports[(kernel, arch)])
        assert spills is not None, reports[(kernel, arch)]
        assert spills.groups() == ("0", "0"), f"{kernel} spills registers on {arch}:\n{output}"
