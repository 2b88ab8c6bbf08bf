"""No class over 600 lines and no function over 120 lines in the package, except the ones named
below, which issue 24 splits (the list can only shrink: a fixed entry must be deleted).

``python tests/test_shape.py`` prints the five longest classes and functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "descriptron_sam2pal"

MAX_CLASS_LINES = 600
MAX_FUNCTION_LINES = 120

#: Today's offenders, ``file:Qualified.name`` (issue 24 splits them by reason to change).
LONG_CLASSES: set[str] = set()  # none left (issue 24)
LONG_FUNCTIONS: set[str] = set()


def definitions(kind: type | tuple[type, ...]) -> dict[str, int]:
    """``file:Qualified.name`` -> lines (def line to last line) of every ``kind`` node in the package."""
    sizes = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()

        def visit(node: ast.AST, where: list[str], rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = where + [child.name]
                    if isinstance(child, kind):
                        sizes[f"{rel}:{'.'.join(name)}"] = child.end_lineno - child.lineno + 1
                    visit(child, name)
                else:
                    visit(child, where)

        visit(ast.parse(path.read_text(encoding="utf-8")), [])
    return sizes


def classes() -> dict[str, int]:
    return definitions(ast.ClassDef)


def functions() -> dict[str, int]:
    return definitions((ast.FunctionDef, ast.AsyncFunctionDef))


def longest(sizes: dict[str, int], n: int = 5) -> list[tuple[str, int]]:
    return sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:n]


def test_the_measure_is_real():
    sizes = functions()
    assert sizes["plugin.py:register"] >= 3 and "plugin.py:Sam2PalPlugin.__init__" in sizes
    assert classes()["plugin.py:Sam2PalPlugin"] > sizes["plugin.py:Sam2PalPlugin.__init__"]


def test_no_class_over_600_lines_but_the_named_ones():
    too_long = {name for name, lines in classes().items() if lines > MAX_CLASS_LINES}
    assert sorted(too_long - LONG_CLASSES) == [], "split it by reason to change"
    assert sorted(LONG_CLASSES - too_long) == [], "short enough now (or gone): delete it"


def test_no_function_over_120_lines_but_the_named_ones():
    too_long = {name for name, lines in functions().items() if lines > MAX_FUNCTION_LINES}
    assert sorted(too_long - LONG_FUNCTIONS) == [], "split it into named steps"
    assert sorted(LONG_FUNCTIONS - too_long) == [], "short enough now (or gone): delete it"


if __name__ == "__main__":
    for title, sizes in (("classes", classes()), ("functions", functions())):
        print(f"longest {title}:")
        for name, lines in longest(sizes):
            print(f"  {lines:5d}  {name}")
