#!/usr/bin/env bash
# dmr's GPU check in one go, with no network (docs/gpu.md says what it proves and what it measured):
#   1. builds llama-cpp-python into the project venv for this machine's GPU architecture only,
#      unless the venv's llama.cpp already offloads to a GPU;
#   2-5. bench/gpu_check.py: writes a random-weight 1.17 B llama with SmolLM2's tokenizer, serves it
#      with DMR_DEVICES=cuda:0, shows which process holds the GPU, and measures.
#
#   bench/gpu_check.sh [--sdist FILE] [--find-links DIR] [--vision] [--small] [--rounds N] [--tokens N]
#   bench/gpu_check.sh --cpu     # dry run of steps 2-5 on a machine without a GPU (no build)
#
# --sdist FILE       the llama-cpp-python sdist to build (default: DIR/ or .cache/sdist/
#                    llama_cpp_python-VERSION.tar.gz, VERSION from conf/constraints.txt, else pip download)
# --find-links DIR   a folder of wheels for what the build needs and the venv lacks (scikit-build-core)
# --vision           build llama.cpp's multimodal library too (images in chat); the check skips it to
#                    build faster, so a venv built by this script serves no vision models
# VENV               the project venv (default .venv)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
LLAMA_VERSION="$(sed -n 's/^llama-cpp-python==//p' conf/constraints.txt)"
# This GPU only (native), and no flash-attention kernels, NCCL, fatbin compression or curl: the
# flags that brought the build down to 205 s with 16 jobs on an H200 (docs/gpu.md).
CUDA_FLAGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=off"
CUDA_FLAGS+=" -DGGML_CUDA_COMPRESSION_MODE=none -DLLAMA_CURL=off"

CPU=0
VISION=0
SDIST=""
FIND_LINKS=""
PASS=()

die() {
    echo "gpu_check: $*" >&2
    exit 1
}

offloads() {
    "$PY" -c 'import sys, llama_cpp; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)' 2>/dev/null
}

need_nvcc() {
    if ! command -v nvcc >/dev/null; then
        for dir in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
            if [ -x "$dir/nvcc" ]; then
                PATH="$dir:$PATH"
                break
            fi
        done
    fi
    command -v nvcc >/dev/null || die "nvcc not found: install the CUDA toolkit, or put its bin/ on PATH"
}

need_cmake() {
    command -v cmake >/dev/null || die "cmake not found: the build needs CMake >= 3.24 (for CUDA architecture 'native')"
    local version
    version="$(cmake --version | sed -n '1s/^cmake version //p')"
    if [ "$(printf '%s\n3.24\n' "$version" | sort -V | head -n 1)" != "3.24" ]; then
        die "cmake $version is too old: CMAKE_CUDA_ARCHITECTURES=native needs CMake >= 3.24"
    fi
}

need_build_backend() {
    "$PY" -c 'import scikit_build_core' 2>/dev/null && return 0
    echo "installing scikit-build-core into $VENV (llama-cpp-python's build backend)"
    local links=()
    [ -n "$FIND_LINKS" ] && links=(--no-index --find-links "$FIND_LINKS")
    "$PY" -m pip install -q ${links[@]+"${links[@]}"} scikit-build-core ||
        die "scikit-build-core is missing from $VENV and pip cannot get it: pass --find-links DIR with its wheels (scikit_build_core, pathspec, packaging)"
}

find_sdist() {
    local name="llama_cpp_python-$LLAMA_VERSION.tar.gz" candidate
    if [ -n "$SDIST" ]; then
        [ -f "$SDIST" ] || die "--sdist $SDIST: no such file"
        echo "$SDIST"
        return
    fi
    for candidate in ${FIND_LINKS:+"$FIND_LINKS/$name"} ".cache/sdist/$name"; do
        if [ -f "$candidate" ]; then
            echo "$candidate"
            return
        fi
    done
    echo "no $name here: asking pip (a local index, or the network)" >&2
    "$PY" -m pip download -q --no-deps --no-binary :all: -d .cache/sdist "llama-cpp-python==$LLAMA_VERSION" >&2 ||
        die "no llama-cpp-python $LLAMA_VERSION sdist: pass --sdist FILE (fetch it where there is network: pip download --no-deps --no-binary :all: llama-cpp-python==$LLAMA_VERSION)"
    echo ".cache/sdist/$name"
}

build() {
    need_nvcc
    need_cmake
    need_build_backend
    local sdist flags log started=$SECONDS
    sdist="$(find_sdist)"
    flags="$CUDA_FLAGS"
    [ "$VISION" = 1 ] || flags+=" -DLLAVA_BUILD=off"
    log="$(mktemp /tmp/dmr-gpu-build-XXXXXX.log)"
    echo "[1/5] building llama-cpp-python $LLAMA_VERSION from $sdist for $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1) with $(nproc) jobs"
    echo "      CMAKE_ARGS=\"$flags\" (about 3.5 minutes with 16 cores; log: $log)"
    # --no-cache-dir: pip's wheel cache may hold a CPU build of the same version, which it would
    # reuse whatever CMAKE_ARGS say; --force-reinstall: the venv already has a (CPU) copy.
    if ! CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$PY" -m pip install --no-build-isolation \
        --no-deps --no-index --no-cache-dir --force-reinstall "$sdist" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "the build failed (full log: $log)"
    fi
    echo "      built in $((SECONDS - started)) s"
    offloads || die "built, but llama.cpp reports no GPU offload: look at the CUDA lines of $log"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) CPU=1 && PASS+=(--cpu) ;;
        --vision) VISION=1 ;;
        --sdist) SDIST="${2:?--sdist needs a file}" && shift ;;
        --find-links) FIND_LINKS="${2:?--find-links needs a folder}" && shift ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' && exit 0 ;;
        *) PASS+=("$1") ;;
    esac
    shift
done

[ -x "$PY" ] || die "no project venv at $VENV: run 'make install' first (or set VENV=/path/to/venv)"
if [ "$CPU" = 1 ]; then
    echo "[1/5] build: skipped (--cpu dry run: the llama-cpp-python in $VENV is used as it is)"
else
    command -v nvidia-smi >/dev/null ||
        die "nvidia-smi not found: this machine has no NVIDIA driver (dry run without a GPU: $0 --cpu)"
    nvidia-smi -L | grep -q '^GPU ' || die "nvidia-smi lists no GPU"
    if offloads; then
        echo "[1/5] build: skipped (the llama-cpp-python in $VENV already offloads to a GPU)"
    else
        build
    fi
fi
status=0
"$PY" bench/gpu_check.py ${PASS[@]+"${PASS[@]}"} || status=$?
echo "gpu_check: $([ "$status" = 0 ] && echo passed || echo FAILED) in $SECONDS s"
exit "$status"
