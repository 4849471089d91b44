#!/usr/bin/env bash
# Builds GGML's Vulkan backend as a loadable module (GGML_BACKEND_DL) from the llama.cpp
# sources that llama-cpp-sys-2 compiles into Hearth (the same GGML, so the module fits
# the engine), and puts it, with the libggml-base it links, in DEST (beside Hearth's
# executables, where the engine looks for it). The executables never link libvulkan.
#
#   scripts/build_vulkan_module.sh DEST
#
# Debian 12's Vulkan headers (1.3.239) are too old for ggml-vulkan.cpp (it fails on
# vk::LayerSettingEXT), so the headers of Debian 13's libvulkan-dev (1.4.309, SHA-256
# pinned below) are unpacked into a private folder and only they are used; the loader
# and glslc are Debian 12's own. That glslc (2023.2) lacks the cooperative-matrix,
# integer-dot and bfloat16 GLSL extensions, so those shader variants are not built:
# the module works on every Vulkan GPU, but is slower on recent ones than a build with
# a newer shaderc (CMake's log lists what was left out).
set -euo pipefail
source "$(dirname "$0")/gpu_module_common.sh"

dest=${1:?usage: build_vulkan_module.sh DEST}
cache=${HEARTH_CACHE:-$HOME/.cache/hearth}
headers_deb=libvulkan-dev_1.4.309.0-1_amd64.deb
headers_url=${DEBIAN_MIRROR:-http://deb.debian.org/debian}/pool/main/v/vulkan-loader/$headers_deb
headers_sha256=8d329d465e16168afff58b1bd0dd6db46aac2cc3f56054a481b25a04e90b345a
headers=$cache/vulkan-headers-1.4.309

for tool in glslc cmake; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: install it (make deps does)" >&2; exit 1; }
done
[ -e /usr/include/spirv/unified1/spirv.hpp ] || [ -e /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake ] ||
    { echo "SPIRV headers are missing: apt-get install spirv-headers (make deps does)" >&2; exit 1; }

if [ ! -e "$headers/usr/include/vulkan/vulkan.hpp" ]; then
    echo "Fetching the Vulkan 1.4.309 headers (Debian 13's $headers_deb) into $headers"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    curl -fsSL --retry 3 -o "$tmp/$headers_deb" "$headers_url" ||
        { echo "could not download $headers_url: the Vulkan module needs it (set DEBIAN_MIRROR for a mirror)" >&2; exit 1; }
    echo "$headers_sha256  $tmp/$headers_deb" | sha256sum -c --quiet - ||
        { echo "$headers_deb does not have the expected SHA-256: not used" >&2; exit 1; }
    dpkg -x "$tmp/$headers_deb" "$tmp/root"
    rm -rf "$headers" && mkdir -p "$(dirname "$headers")" && mv "$tmp/root" "$headers"
fi

src=$(llama_cpp_src)
build=$cache/gpu-build/vulkan
mkdir -p "$build"

start=$(date +%s)
cmake -S "$src" -B "$build" "${GGML_MODULE_FLAGS[@]}" \
    -DGGML_VULKAN=ON \
    -DVulkan_INCLUDE_DIR="$headers/usr/include" >"$build.configure.log" 2>&1 ||
    { tail -30 "$build.configure.log" >&2; echo "configuring the Vulkan module failed (log: $build.configure.log)" >&2; exit 1; }
grep -E "not supported by glslc" "$build.configure.log" | sed 's/^-- /  shader variant left out: /' || true
cmake --build "$build" --target ggml-vulkan -j"$(nproc)" >"$build.build.log" 2>&1 ||
    { tail -30 "$build.build.log" >&2; echo "building the Vulkan module failed (log: $build.build.log)" >&2; exit 1; }

mkdir -p "$dest"
cp -P "$build"/bin/libggml-base.so* "$build/bin/libggml-vulkan.so" "$dest/"
echo "Vulkan module: $dest/libggml-vulkan.so ($(( $(date +%s) - start )) s)"
