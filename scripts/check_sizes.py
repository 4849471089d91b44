#!/usr/bin/env python3
"""Honest sizes: no source file over 500 lines and no Rust function over 80 lines,
outside tests. Every line counts (comments and blank lines too): a reader reads them.

Rust: the lines of a file before its first top-level `#[cfg(test)]`, and each `fn` from
its first line to its closing brace; test files (under `tests/`, `*_tests.rs`) are not
counted. TypeScript: every hand-written file under ui/src (the generated bindings are
not counted). Prints each file or function over its limit and exits 1 if there is one.

Usage: check_sizes.py [ROOT]   (default: the repository this script is in)
"""

import re
import subprocess
import sys
from pathlib import Path

MAX_FILE_LINES = 500
MAX_FN_LINES = 80
GENERATED = {"ui/src/bindings.ts"}
FN_START = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?((const|async|unsafe|extern\s+\"[^\"]*\")\s+)*fn\s+(\w+)")


def code_only(text):
    """The text with comments, strings and char literals blanked (newlines kept), so
    braces and `fn` are only seen where they are code."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (i == 0 or not is_ident(text[i - 1])):
            end = text.find('"' + m.group(1), m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i : j + 1]))
            i = j + 1
        elif c == "'" and (m := re.compile(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'").match(text, i)):
            out.append(blank(m.group(0)))
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def is_ident(c):
    return c.isalnum() or c == "_"


def blank(s):
    return "".join("\n" if ch == "\n" else " " for ch in s)


def non_test_lines(lines):
    """Lines before the first top-level `#[cfg(test)]` (the tests module at the end)."""
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return lines[:i]
    return lines


def long_functions(text):
    """(name, first line (1-based), lines) of every function with a body over the limit."""
    lines = non_test_lines(code_only(text).split("\n"))
    found = []
    i = 0
    while i < len(lines):
        m = FN_START.match(lines[i])
        if not m:
            i += 1
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            for ch in lines[j] if j > i else lines[i][m.end() :]:
                if ch == "{":
                    depth, opened = depth + 1, True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not opened and depth == 0:
                    break
            else:
                if opened and depth == 0:
                    break
                j += 1
                continue
            break
        if opened:
            length = j - i + 1
            if length > MAX_FN_LINES:
                found.append((m.group(5), i + 1, length))
        # Nested functions are counted within the outer one only.
        i = j + 1 if opened else i + 1
    return found


def tracked(root, patterns):
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(set(listed))


def is_test_file(path):
    return "/tests/" in f"/{path}" or path.endswith("_tests.rs")


def problems(root):
    found = []
    for path in tracked(root, ["*.rs"]):
        if is_test_file(path):
            continue
        text = (Path(root) / path).read_text(encoding="utf-8")
        lines = non_test_lines(text.splitlines())
        if len(lines) > MAX_FILE_LINES:
            found.append(f"{path}: {len(lines)} lines before its tests (at most {MAX_FILE_LINES})")
        for name, line, length in long_functions(text):
            found.append(f"{path}:{line}: fn {name} is {length} lines (at most {MAX_FN_LINES})")
    for path in tracked(root, ["ui/src/*.ts"]):
        if path in GENERATED:
            continue
        count = len((Path(root) / path).read_text(encoding="utf-8").splitlines())
        if count > MAX_FILE_LINES:
            found.append(f"{path}: {count} lines (at most {MAX_FILE_LINES})")
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent)
    found = problems(root)
    for line in found:
        print(line)
    if found:
        print("split these into smaller functions or modules with one job each", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
