"""The size check of `make lint` (scripts/check_sizes.py) on made-up trees."""

import importlib.util
import subprocess
import tempfile
import unittest
from pathlib import Path

spec = importlib.util.spec_from_file_location("check_sizes", Path(__file__).parent.parent / "scripts" / "check_sizes.py")
check_sizes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_sizes)


def function(name, body_lines, indent=""):
    body = "".join(f"{indent}    let x{i} = {i};\n" for i in range(body_lines))
    return f"{indent}pub fn {name}() {{\n{body}{indent}}}\n"


class LongFunctions(unittest.TestCase):
    def test_a_function_is_counted_from_its_first_line_to_its_closing_brace(self):
        self.assertEqual(check_sizes.long_functions(function("ok", 78)), [])
        self.assertEqual(check_sizes.long_functions(function("long", 79)), [("long", 1, 81)])

    def test_braces_in_strings_chars_and_comments_are_not_code(self):
        tricky = (
            'fn tricky() {\n    let s = "}}}";\n    let r = r#"}"#;\n    let c = \'}\';\n'
            "    // }\n    /* } */\n    let l: &'static str = s;\n}\n"
        )
        self.assertEqual(check_sizes.long_functions(tricky + function("long", 85)), [("long", 9, 87)])

    def test_declarations_without_a_body_and_tests_are_not_counted(self):
        text = "trait T {\n    fn declared(&self);\n}\n" + "#[cfg(test)]\nmod tests {\n" + function("a_test", 200, "    ") + "}\n"
        self.assertEqual(check_sizes.long_functions(text), [])

    def test_methods_inside_impl_blocks_are_counted(self):
        text = "impl S {\n" + function("method", 90, "    ") + "}\n"
        self.assertEqual(check_sizes.long_functions(text), [("method", 2, 92)])


class Tree(unittest.TestCase):
    def test_files_over_the_limit_are_named_and_tests_and_bindings_are_not(self):
        with tempfile.TemporaryDirectory() as root:
            subprocess.run(["git", "init", "-q", root], check=True)
            files = {
                "src/big.rs": "// x\n" * 501,
                "src/fine.rs": "// x\n" * 300 + "#[cfg(test)]\nmod tests {}\n" + "// t\n" * 900,
                "crate/tests/big_test.rs": "// x\n" * 900,
                "ui/src/bindings.ts": "// x\n" * 900,
                "ui/src/view.ts": "// x\n" * 600,
            }
            for path, text in files.items():
                (Path(root) / path).parent.mkdir(parents=True, exist_ok=True)
                (Path(root) / path).write_text(text)
            found = check_sizes.problems(root)
            self.assertEqual(len(found), 2, found)
            self.assertTrue(found[0].startswith("src/big.rs: 501 lines"), found)
            self.assertTrue(found[1].startswith("ui/src/view.ts: 600 lines"), found)

    def test_this_repository_holds_to_its_sizes(self):
        self.assertEqual(check_sizes.problems(str(Path(__file__).parent.parent)), [])


if __name__ == "__main__":
    unittest.main()
