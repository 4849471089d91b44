#!/usr/bin/env bash
# Builds GGML's CUDA backend as a loadable module (GGML_BACKEND_DL) from the llama.cpp
# sources that llama-cpp-sys-2 compiles into Hearth, and puts it in DEST with the CUDA
# libraries it needs (cudart, cuBLAS), so a machine with an NVIDIA driver needs nothing
# else. No GPU is needed to build it.
#
#   scripts/build_cuda_module.sh DEST            (make cuda)
#   CUDA_ARCHS="89-real;90-real" scripts/build_cuda_module.sh DEST
#
# The toolkit comes from NVIDIA's PyPI wheels, SHA-256 pinned below, unpacked into a
# private folder (nothing is installed system-wide). Those wheels hold a whole nvcc only
# from CUDA 13 on: the CUDA 12 ones (nvidia-cuda-nvcc-cu12 12.4 to 12.9) carry ptxas and
# libnvvm but no nvcc. So the module is CUDA 13.0: it needs an NVIDIA driver of the 580
# series or newer and a Turing (RTX 20) or newer GPU; older drivers and GPUs use the
# Vulkan module instead.
#
# Compile time grows with each GPU architecture (CUDA_ARCHS, CMake's syntax). The
# default covers the GPUs people run models on: 75 (Turing, as PTX, compiled by the
# driver at first use), 80 (A100), 86 (RTX 30), 89 (RTX 40, L4, L40), 90 (H100, H200),
# 120 (RTX 50, as PTX). libcuda comes from the driver at run time: the module is built
# without CUDA's virtual-memory pool (GGML_CUDA_NO_VMM), which needs libcuda at link
# time, so GGML uses its own pool instead.
set -euo pipefail
source "$(dirname "$0")/gpu_module_common.sh"

dest=${1:?usage: build_cuda_module.sh DEST}
cache=${HEARTH_CACHE:-$HOME/.cache/hearth}
archs=${CUDA_ARCHS:-75-virtual;80-real;86-real;89-real;90-real;120-virtual}
version=13.0.88
toolkit=$cache/cuda-$version
wheels="
nvidia-cuda-nvcc==13.0.88 --hash=sha256:56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03
nvidia-nvvm==13.0.88 --hash=sha256:c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0
nvidia-cuda-crt==13.0.88 --hash=sha256:2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4
nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
nvidia-cuda-cccl==13.0.85 --hash=sha256:e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649
nvidia-cublas==13.0.2.14 --hash=sha256:0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c
"

command -v cmake >/dev/null || { echo "cmake is missing: install it (make deps does)" >&2; exit 1; }

if [ ! -x "$toolkit/bin/nvcc" ]; then
    echo "Fetching the CUDA $version toolkit from PyPI (about 530 MB of wheels) into $toolkit"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    printf '%s\n' "$wheels" >"$tmp/requirements.txt"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheels" ||
        { echo "could not download the CUDA wheels from PyPI (a proxy or mirror: PIP_INDEX_URL)" >&2; exit 1; }
    for wheel in "$tmp"/wheels/*.whl; do
        python3 -m zipfile -e "$wheel" "$tmp/root"
    done
    # A toolkit's layout: the wheels' libraries lack the unversioned names the linker
    # looks for, and CMake's FindCUDAToolkit looks in lib64.
    root=$tmp/root/nvidia/cu13
    chmod +x "$root"/bin/* "$root"/nvvm/bin/*
    for lib in cudart cublas cublasLt; do ln -s "lib$lib.so.13" "$root/lib/lib$lib.so"; done
    ln -s lib "$root/lib64"
    rm -rf "$toolkit" && mkdir -p "$(dirname "$toolkit")" && mv "$root" "$toolkit"
fi

src=$(llama_cpp_src)
build=$cache/gpu-build/cuda
mkdir -p "$build"

start=$(date +%s)
cmake -S "$src" -B "$build" "${GGML_MODULE_FLAGS[@]}" \
    -DGGML_CUDA=ON -DGGML_CUDA_NO_VMM=ON -DCMAKE_CUDA_ARCHITECTURES="$archs" \
    -DCUDAToolkit_ROOT="$toolkit" -DCMAKE_CUDA_COMPILER="$toolkit/bin/nvcc" >"$build.configure.log" 2>&1 ||
    { tail -30 "$build.configure.log" >&2; echo "configuring the CUDA module failed (log: $build.configure.log)" >&2; exit 1; }
echo "Building the CUDA module for architectures $archs (long: see the README)"
cmake --build "$build" --target ggml-cuda -j"$(nproc)" >"$build.build.log" 2>&1 ||
    { tail -30 "$build.build.log" >&2; echo "building the CUDA module failed (log: $build.build.log)" >&2; exit 1; }

mkdir -p "$dest"
cp -P "$build"/bin/libggml-base.so* "$build/bin/libggml-cuda.so" "$dest/"
cp "$toolkit"/lib/libcudart.so.13 "$toolkit"/lib/libcublas.so.13 "$toolkit"/lib/libcublasLt.so.13 "$dest/"
echo "CUDA module: $dest/libggml-cuda.so, architectures $archs ($(( $(date +%s) - start )) s)"
