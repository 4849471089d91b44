"""The per-crate coverage table of `make coverage` (scripts/coverage_by_crate.py)."""

import importlib.util
import io
import json
import tempfile
import unittest
from contextlib import redirect_stdout
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "coverage_by_crate", Path(__file__).parent.parent / "scripts" / "coverage_by_crate.py"
)
coverage_by_crate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(coverage_by_crate)


def file(name: str, covered: int, count: int) -> dict:
    return {"filename": name, "summary": {"lines": {"covered": covered, "count": count}}}


class CoverageByCrate(unittest.TestCase):
    def test_files_are_grouped_by_crate_and_tests_left_out(self):
        self.assertEqual(coverage_by_crate.crate_of("/w/src-tauri/crates/store/src/db.rs"), "store")
        self.assertEqual(coverage_by_crate.crate_of("/w/src-tauri/src/commands/chat.rs"), "desktop")
        self.assertIsNone(coverage_by_crate.crate_of("/w/src-tauri/crates/store/tests/hostile.rs"))
        self.assertIsNone(coverage_by_crate.crate_of("/root/.cargo/registry/src/x/serde/src/lib.rs"))

    def test_the_table_sums_lines_per_crate(self):
        report = {
            "data": [
                {
                    "files": [
                        file("/w/src-tauri/crates/store/src/db.rs", 80, 100),
                        file("/w/src-tauri/crates/store/src/export.rs", 10, 20),
                        file("/w/src-tauri/crates/core/src/paths.rs", 5, 10),
                        file("/w/src-tauri/crates/core/tests/x.rs", 0, 50),
                    ]
                }
            ]
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(report, f)
        out = io.StringIO()
        with redirect_stdout(out):
            coverage_by_crate.main_from([f.name])
        text = out.getvalue()
        self.assertIn("| store | 90 | 120 | 75.0% |", text)
        self.assertIn("| core | 5 | 10 | 50.0% |", text)
        self.assertIn("| all | 95 | 130 | 73.1% |", text)
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        self.assertEqual([(l["crate"], l["percent"]) for l in lines], [("core", 50.0), ("store", 75.0)])
