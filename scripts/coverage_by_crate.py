#!/usr/bin/env python3
"""Line coverage per crate from `cargo llvm-cov report --json --summary-only`.

Reads the JSON export (llvm-cov's format: data[0].files[] with summary.lines) on stdin
or from the path given, groups files by crate (src-tauri/crates/NAME, the desktop shell
in src-tauri/src), and prints a Markdown table and one JSON line per crate. Test files
(tests/) are left out: what counts is the code the tests cover.
"""

import json
import sys
from collections import defaultdict


def crate_of(path: str) -> str | None:
    parts = path.replace("\\", "/").split("/")
    if "tests" in parts or "benches" in parts:
        return None
    for i, part in enumerate(parts):
        if part == "crates" and i + 1 < len(parts) and i > 0 and parts[i - 1] == "src-tauri":
            return parts[i + 1]
        if part == "src-tauri" and i + 1 < len(parts) and parts[i + 1] == "src":
            return "desktop"
    return None


def main() -> int:
    return main_from(sys.argv[1:])


def main_from(args: list[str]) -> int:
    if args:
        with open(args[0]) as f:
            report = json.load(f)
    else:
        report = json.load(sys.stdin)
    lines = defaultdict(lambda: [0, 0])
    for entry in report["data"][0]["files"]:
        crate = crate_of(entry["filename"])
        if crate is None:
            continue
        summary = entry["summary"]["lines"]
        lines[crate][0] += summary["covered"]
        lines[crate][1] += summary["count"]
    print("| crate | lines covered | lines | coverage |")
    print("|---|---|---|---|")
    total = [0, 0]
    for crate in sorted(lines):
        covered, count = lines[crate]
        total[0] += covered
        total[1] += count
        print(f"| {crate} | {covered} | {count} | {100 * covered / max(count, 1):.1f}% |")
    print(f"| all | {total[0]} | {total[1]} | {100 * total[0] / max(total[1], 1):.1f}% |")
    for crate in sorted(lines):
        covered, count = lines[crate]
        print(json.dumps({"bench": "coverage", "crate": crate, "lines": count, "covered": covered,
                          "percent": round(100 * covered / max(count, 1), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
