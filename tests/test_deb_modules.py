"""scripts/deb_modules.py packs into the .deb exactly the GPU modules that were built,
with what each needs beside it."""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "deb_modules.py"


def packed(built):
    """The .deb's files when `built` (names) are in the release folder."""
    with tempfile.TemporaryDirectory() as target:
        release = Path(target) / "release"
        release.mkdir()
        for name in built:
            (release / name).write_bytes(b"")
        env = dict(os.environ, CARGO_TARGET_DIR=target)
        out = subprocess.run([sys.executable, str(SCRIPT)], env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout)["bundle"]["linux"]["deb"]["files"]


class DebModules(unittest.TestCase):
    def test_nothing_built_packs_nothing(self):
        self.assertEqual(packed([]), {})

    def test_vulkan_is_packed_with_ggml_base(self):
        files = packed(["libggml-vulkan.so", "libggml-base.so.0"])
        self.assertEqual(
            sorted(files), ["/usr/lib/hearth/libggml-base.so.0", "/usr/lib/hearth/libggml-vulkan.so"]
        )

    def test_cuda_is_packed_with_its_runtime_and_cublas(self):
        built = ["libggml-cuda.so", "libggml-base.so.0", "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"]
        files = packed(built)
        self.assertEqual(sorted(Path(f).name for f in files), sorted(built))
        self.assertTrue(all(f.startswith("/usr/lib/hearth/") for f in files))


if __name__ == "__main__":
    unittest.main()
