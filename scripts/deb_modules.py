#!/usr/bin/env python3
"""Prints the Tauri configuration that packs the GPU modules `make` built into the
.deb (in /usr/lib/hearth, where the engine looks for them): `npm run deb` merges it
with --config. Only what was built is packed; the app runs without any of them.
"""

import json
import os
from pathlib import Path

target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/hearth/target")) / "release"
files = {}
for module in ("libggml-vulkan.so", "libggml-cuda.so"):
    if (target / module).is_file():
        files[f"/usr/lib/hearth/{module}"] = str(target / module)
if files:
    # The modules link GGML's base library by its soname, found beside them ($ORIGIN).
    files["/usr/lib/hearth/libggml-base.so.0"] = str((target / "libggml-base.so.0").resolve())
if "/usr/lib/hearth/libggml-cuda.so" in files:
    # The CUDA runtime and cuBLAS the module links (make cuda copies them beside it):
    # only the driver (libcuda) is the machine's own.
    for lib in ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"):
        files[f"/usr/lib/hearth/{lib}"] = str(target / lib)
print(json.dumps({"bundle": {"linux": {"deb": {"files": files}}}}))
