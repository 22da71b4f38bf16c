"""House limits that keep each module readable in one sitting (issue 22): no module over
400 lines, no class over 250, no function over 60. A piece that outgrows them has more
than one job; split it where the jobs part, as the store's writer and the Recorder were."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "generator"
LIMITS = {"module": 400, "class": 250, "function": 60}


def sizes(package: Path) -> list[tuple[str, str, int]]:
    """``(kind, place, lines)`` of every module, class and function of ``package``."""
    found = []
    for file in sorted(package.rglob("*.py")):
        text = file.read_text(encoding="utf-8")
        place = file.relative_to(package.parent).as_posix()
        found.append(("module", place, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                kind = "class"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "function"
            else:
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            found.append((kind, f"{place}:{node.lineno} {node.name}", lines))
    return found


def over_limits(package: Path) -> list[str]:
    return [
        f"{kind} {place}: {lines} lines (limit {LIMITS[kind]})"
        for kind, place, lines in sizes(package)
        if lines > LIMITS[kind]
    ]


def test_no_module_class_or_function_is_over_its_limit() -> None:
    problems = over_limits(PACKAGE)
    assert not problems, "\n".join(problems)


def test_an_oversized_function_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "generator"
    package.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(61))
    (package / "big.py").write_text(f"def long_one():\n{body}")
    assert over_limits(package) == ["function generator/big.py:1 long_one: 62 lines (limit 60)"]
