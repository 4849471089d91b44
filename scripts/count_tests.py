#!/usr/bin/env python3
"""Counts the tests a `make test` step ran, from its runner's output, and records
one line per step in artifacts/test-counts.txt (printed at the end of `make test`).

    count_tests.py STEP LOG     # cargo test, vitest or unittest output in LOG

It fails when the log shows no test at all (a step that ran nothing is a broken step,
not a pass) and lists every ignored Rust test with the reason its attribute gives.
"""

import re
import sys
from pathlib import Path

COUNTS = Path("artifacts/test-counts.txt")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def count(text: str) -> tuple[int, int, int, list[str]]:
    """(passed, failed, ignored, ignored test lines) from any of the three runners."""
    passed = failed = ignored = 0
    ignored_lines = []
    for line in text.splitlines():
        if m := re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line):
            passed += int(m[1])
            failed += int(m[2])
            ignored += int(m[3])
        elif re.match(r"test .* \.\.\. ignored", line):
            ignored_lines.append(line.removeprefix("test ").strip())
        elif m := re.match(r"\s*Tests\s+(?:(\d+) failed \| )?(\d+) passed", line):  # vitest
            failed += int(m[1] or 0)
            passed += int(m[2])
        elif m := re.match(r"Ran (\d+) tests? in", line):  # unittest
            passed += int(m[1])
        elif m := re.match(r"FAILED \((?:failures=(\d+))?(?:, )?(?:errors=(\d+))?", line):
            bad = int(m[1] or 0) + int(m[2] or 0)
            passed -= bad
            failed += bad
        elif m := re.match(r"OK \(skipped=(\d+)\)", line):
            passed -= int(m[1])
            ignored += int(m[1])
    return passed, failed, ignored, ignored_lines


def main() -> int:
    step, log = sys.argv[1], Path(sys.argv[2])
    passed, failed, ignored, ignored_lines = count(ANSI.sub("", log.read_text(errors="replace")))
    line = f"{step}: {passed} passed, {failed} failed, {ignored} ignored"
    COUNTS.parent.mkdir(parents=True, exist_ok=True)
    with COUNTS.open("a") as out:
        out.write(line + "\n")
        for ignored_line in ignored_lines:
            out.write(f"    ignored: {ignored_line}\n")
    print(line)
    if passed + failed == 0:
        print(f"{step}: no test ran (see {log})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
