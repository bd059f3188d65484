#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go, on a machine with CuPy, Cython and a C
# compiler: build the extensions in place, run the whole test suite (its CuPy cases run where
# a GPU is present), then bench/rans_launch.py, bench/lossless_gpu.py and bench/gpu.py.  Each
# step has a time limit and a failed step does not stop the next; logs and JSON reports go to
# OUT_DIR (default bench/results).
# STREAMS_DIR holds cgc.lossless files to time as well (bench/checkpoint_streams.py writes
# the all-MiniLM-L6-v2 checkpoint's).
#
#     bash bench/gpu_all.sh [OUT_DIR] [KODAK_DIR] [STREAMS_DIR]
set -u
out=${1:-bench/results}
kodak=${2:-../shared/data/kodak}
streams=()
if [ -n "${3:-}" ]; then
    streams=(--streams "$3"/*.cgcl)
fi
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu \
    --format=csv 2>&1 | tee "$out/gpu_info.txt"
"$python" -c "import sys, cupy, numpy, Cython; print('python', sys.version.split()[0],
    'cupy', cupy.__version__, 'numpy', numpy.__version__, 'cython', Cython.__version__)" \
    2>&1 | tee -a "$out/gpu_info.txt"

start=$SECONDS
if ! "$python" setup.py build_ext --inplace -j 4 >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log"
    exit 1
fi
echo "build: $((SECONDS - start)) s"

start=$SECONDS
timeout 150 "$python" -m pytest -q -rs -p no:cacheprovider >"$out/gpu_tests.log" 2>&1
echo "tests: exit $? in $((SECONDS - start)) s"
grep -E "passed|failed|error|SKIPPED|FAILED" "$out/gpu_tests.log" | tail -30

start=$SECONDS
timeout 110 "$python" bench/rans_launch.py --out "$out/rans_launch.json" "${streams[@]}" 2>&1
echo "rans_launch: $((SECONDS - start)) s"

start=$SECONDS
timeout 130 "$python" bench/lossless_gpu.py --out "$out/lossless_gpu.json" "${streams[@]}" 2>&1 \
    | tee "$out/lossless_gpu.log"
echo "lossless_gpu: $((SECONDS - start)) s"

start=$SECONDS
timeout 280 "$python" bench/gpu.py --kodak "$kodak" --out "$out/gpu.json" 2>&1 \
    | tee "$out/gpu.log"
echo "gpu: $((SECONDS - start)) s"
