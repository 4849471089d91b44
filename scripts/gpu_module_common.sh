# Sourced by build_vulkan_module.sh and build_cuda_module.sh: what every GGML backend
# module shares. It is built from the llama.cpp sources llama-cpp-sys-2 compiles into
# Hearth (the same GGML, so the module fits the engine), as a loadable module that finds
# the libraries beside it.

# The llama.cpp that llama-cpp-sys-2 builds (its version is pinned in Cargo.lock).
llama_cpp_src() {
    cargo fetch --locked >/dev/null
    local manifest
    manifest=$(cargo metadata --format-version 1 --locked --offline |
        python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "llama-cpp-sys-2"))')
    echo "$(dirname "$manifest")/llama.cpp"
}

# CMake flags for a backend module alone: no CPU backend, no llama.cpp tools.
GGML_MODULE_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_CPU=OFF -DGGML_NATIVE=OFF
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN'
)
