"""The import order of ``generator/``, written down once and checked: a lower stage never
imports a higher one, every module has a stage, and no import cycle exists.

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency). ``STAGES`` lists the stages bottom-up; a package's submodules inherit the
package's stage unless listed themselves (``site`` covers ``site.pages``), and modules of
one stage may import each other. To add a module, put it in the stage of what it is.

A folder is one stage. The order follows the code, not the data flow: ``train`` and
``record`` write the store, so they sit above ``store``; ``config`` checks colormap names with
``render``; ``build`` writes the site with ``site`` (whose manifest it fills) and sizes it
with ``info``; ``record`` starts live rebuilds through ``build``. A package's private modules
(``store/_writer.py``) are imported only inside it; other stages use its face.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "generator"
ROOT = "__init__"  # the package itself (``from generator import __version__``)

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            ROOT,
            "defaults",
            "errors",
            "atomic",
            "faults",
            "resources",
            "architecture",
            "threads",
            "terminal",
        ),
    ),
    ("store", ("store",)),
    ("data", ("data",)),
    ("model", ("model",)),
    ("analysis", ("analysis",)),
    ("render", ("render",)),
    ("encode", ("encode",)),
    ("config", ("config",)),
    ("site", ("site",)),
    ("info", ("info",)),
    ("build", ("build",)),
    ("notebook", ("notebook",)),
    ("record", ("record",)),
    ("train", ("train",)),
    ("integrations", ("integrations",)),
    ("cli", ("__main__",)),
)


def stage_of(module: str, stages: Iterable[tuple[str, tuple[str, ...]]] = STAGES) -> int | None:
    """The stage number of ``generator.a.b`` (``a.b`` if listed, else ``a``), or None."""
    table = {name: number for number, (_, names) in enumerate(stages) for name in names}
    relative = module.partition(".")[2] or ROOT
    while relative:
        if relative in table:
            return table[relative]
        relative = relative.rpartition(".")[0]
    return None


def package_modules(package: Path) -> dict[str, Path]:
    """``generator.x.y`` -> its file, for every module of the package."""
    modules = {}
    for file in sorted(package.rglob("*.py")):
        parts = file.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = file
    return modules


def imported_modules(name: str, file: Path, modules: Mapping[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file.

    ``from generator.render import captions`` imports the submodule ``render.captions``;
    ``from generator.store._writer import StoreWriter`` imports ``store``. Importing a submodule
    also initialises its parent packages; that is Python's doing, not a dependency.
    """
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(file.read_text(encoding="utf-8"))
    if name == "generator":  # the root's lazy exports (``from generator import Recorder``)
        tree.body = [node for node in tree.body if not _lazy_export(node)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    inside = set()
    for target in found:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            inside.add(target)
    return inside


def _lazy_export(node: ast.stmt) -> bool:
    """The root's ``__getattr__`` and its ``if TYPE_CHECKING:`` imports: the names a user
    reaches as ``generator.X``, loaded on first use, not dependencies of the root."""
    if isinstance(node, ast.FunctionDef):
        return node.name == "__getattr__"
    return isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = package_modules(package)
    return {name: imported_modules(name, file, modules) for name, file in modules.items()}


def order_problems(
    graph: Mapping[str, set[str]], stages: tuple[tuple[str, tuple[str, ...]], ...] = STAGES
) -> list[str]:
    """One line per module without a stage and per import of a higher stage."""
    problems = []
    for module in sorted(graph):
        if stage_of(module, stages) is None:
            problems.append(f"{module} has no stage: add it to the stage list in {__name__}")
    for module, imports in sorted(graph.items()):
        here = stage_of(module, stages)
        for target in sorted(imports):
            there = stage_of(target, stages)
            if here is not None and there is not None and there > here:
                problems.append(
                    f"{module} (stage {here}, {stages[here][0]}) imports {target} "
                    f"(stage {there}, {stages[there][0]}): a lower stage never imports "
                    "a higher one"
                )
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


# -- the real package ------------------------------------------------------------------------
def test_every_module_has_a_stage_and_imports_only_lower_stages() -> None:
    problems = order_problems(import_graph(PACKAGE))
    assert not problems, "\n".join(problems)


def test_generator_has_no_import_cycle() -> None:
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(group) for group in found)


def private_imports_from_outside(package: Path) -> list[str]:
    """``file: module`` for each import of a package's private module (``store._writer``)
    from outside that package: other stages use the package's face (its ``__init__``)."""
    offenders = []
    for file in sorted(package.rglob("*.py")):
        owner = file.relative_to(package.parent).parts[:-1]
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            parts = node.module.split(".")
            private = [i for i, part in enumerate(parts) if part.startswith("_")]
            if private and tuple(parts[: private[0]]) != owner[: private[0]]:
                offenders.append(f"{file.relative_to(package.parent)}: {node.module}")
    return offenders


def test_other_stages_import_a_package_through_its_face() -> None:
    """The store's schema, backends, writer and reader are private (``store/_*.py``), so they
    can change without touching the stages that use them."""
    offenders = private_imports_from_outside(PACKAGE)
    assert not offenders, "import these from the package's face: " + ", ".join(offenders)


def test_an_import_of_a_private_module_from_another_stage_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "generator"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "site" / "paths.py", "a", encoding="utf-8") as handle:
        handle.write("\nfrom generator.store._writer import StoreWriter\n")
    assert private_imports_from_outside(copy) == [
        "generator/site/paths.py: generator.store._writer"
    ]


# -- the checker itself, on deliberate violations ---------------------------------------------
def test_a_lower_stage_importing_a_higher_one_is_reported() -> None:
    graph = {"generator.store._writer": {"generator.build.plan"}, "generator.build.plan": set()}
    assert order_problems(graph) == [
        "generator.store._writer (stage 1, store) imports generator.build.plan (stage 10, build): "
        "a lower stage never imports a higher one"
    ]


def test_a_module_without_a_stage_is_reported() -> None:
    graph = {"generator.newthing": set(), "generator.site.pages": {"generator.store._reader"}}
    assert order_problems(graph) == [
        f"generator.newthing has no stage: add it to the stage list in {__name__}"
    ]


def test_a_cycle_is_reported() -> None:
    graph = {
        "generator.a": {"generator.b"},
        "generator.b": {"generator.c"},
        "generator.c": {"generator.a"},
    }
    assert cycles(graph) == [["generator.a", "generator.b", "generator.c"]]
    assert cycles({"generator.a": {"generator.b"}, "generator.b": set()}) == []


@pytest.mark.parametrize(
    "file, line",
    [
        ("store/_schema.py", "\ndef _late():\n    from generator.build import build\n"),
        ("render/frames.py", "\nfrom ..train import run_training\n"),
    ],
)
def test_a_real_violation_in_a_copy_of_the_package_fails(
    tmp_path: Path, file: str, line: str
) -> None:
    """What a contributor would see: a lazy or relative import of a higher stage is found."""
    copy = tmp_path / "generator"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / file, "a", encoding="utf-8") as handle:
        handle.write(line)
    problems = order_problems(import_graph(copy))
    assert len(problems) == 1 and "a lower stage never imports a higher one" in problems[0]
