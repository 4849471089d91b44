"""The test counter of `make test` (scripts/count_tests.py) on each runner's output."""

import importlib.util
import unittest
from pathlib import Path

spec = importlib.util.spec_from_file_location("count_tests", Path(__file__).parent.parent / "scripts" / "count_tests.py")
count_tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(count_tests)


class CountTests(unittest.TestCase):
    def test_cargo_sums_every_binary_and_lists_the_ignored(self):
        log = """
running 2 tests
test a ... ok
test bindings::export ... ignored, writes ui/src/bindings.ts
test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
running 3 tests
test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s
"""
        self.assertEqual(count_tests.count(log), (3, 1, 1, ["bindings::export ... ignored, writes ui/src/bindings.ts"]))

    def test_vitest(self):
        self.assertEqual(count_tests.count("      Tests  84 passed (84)\n")[:3], (84, 0, 0))
        self.assertEqual(count_tests.count("      Tests  1 failed | 83 passed (84)\n")[:3], (83, 1, 0))

    def test_unittest(self):
        self.assertEqual(count_tests.count("Ran 4 tests in 80.1s\n\nOK\n")[:3], (4, 0, 0))
        self.assertEqual(count_tests.count("Ran 4 tests in 80.1s\n\nFAILED (failures=1, errors=1)\n")[:3], (2, 2, 0))
        self.assertEqual(count_tests.count("Ran 4 tests in 1s\n\nOK (skipped=1)\n")[:3], (3, 0, 1))

    def test_nothing_ran_is_zero(self):
        self.assertEqual(count_tests.count("error: could not compile\n")[:3], (0, 0, 0))


if __name__ == "__main__":
    unittest.main()
