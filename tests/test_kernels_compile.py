"""Every kernel module compiles with nvcc for the GPUs we target, without register spills."""
import re
import shutil
import subprocess

import pytest

from cgc.kernels import MODULES, kernel_source

NVCC = shutil.which("nvcc")
ARCHS = ("sm_80", "sm_90")
_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
# The name of each entry point, after its launch bounds if it has any.
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+'
                     r'(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(')

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH")


def resource_reports(ptxas_output):
    """{(kernel, arch): the lines ptxas printed about that kernel}."""
    reports = {}
    parts = _ENTRY.split(ptxas_output)
    for name, arch, text in zip(parts[1::3], parts[2::3], parts[3::3]):
        reports[(name, arch)] = text
    return reports


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
