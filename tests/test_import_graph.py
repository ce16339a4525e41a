"""admap's modules import one another without cycles: read from the source with `ast`, nothing imported.

Imports inside functions count too, since moving an import into a function hides a cycle without
breaking it; imports under ``if TYPE_CHECKING:`` never run and do not count.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "admap"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


class ImportCollector(ast.NodeVisitor):
    """``names``: ``(dotted name, line)`` of every import that can run; for ``from a import b``, both ``a``
    and ``a.b`` (``b`` may be a module). ``package`` anchors relative imports."""

    def __init__(self, package: str):
        self.package = package.split(".")
        self.names: list[tuple[str, int]] = []

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names += [(alias.name, node.lineno) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package[: len(self.package) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        self.names += [(base, node.lineno)] + [(f"{base}.{alias.name}", node.lineno) for alias in node.names]


def imported_names(source: str, package: str) -> list[tuple[str, int]]:
    collector = ImportCollector(package)
    collector.visit(ast.parse(source))
    return collector.names


def import_graph() -> dict[str, dict[str, int]]:
    """Module to ``{imported admap module: line}``. Importing ``a.b.c`` runs ``a.b``'s ``__init__`` too, but a
    module's own enclosing packages have run before it and add no edge."""
    graph: dict[str, dict[str, int]] = {module: {} for module in MODULES}
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for name, line in imported_names(path.read_text(encoding="utf-8"), package):
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                target = ".".join(parts[:end])
                if target in MODULES and target != module and not module.startswith(f"{target}."):
                    graph[module].setdefault(target, line)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (a depth-first search that keeps its current path)."""
    finished: set[str] = set()
    for start in sorted(graph):
        if start in finished:
            continue
        path = [start]
        pending = [iter(sorted(graph[start]))]
        while pending:
            target = next(pending[-1], None)
            if target is None:
                finished.add(path.pop())
                pending.pop()
            elif target in path:
                return [*path[path.index(target) :], target]
            elif target not in finished:
                path.append(target)
                pending.append(iter(sorted(graph[target])))
    return None


def test_admap_modules_import_without_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + ", ".join(
        f"{importer} imports {imported} (line {graph[importer][imported]})"
        for importer, imported in zip(cycle, cycle[1:])
    )


def test_imports_in_functions_count_and_type_checking_ones_do_not():
    source = """
from typing import TYPE_CHECKING

from . import sibling
from ..other import name

if TYPE_CHECKING:
    from admap.hidden import Hint
else:
    import admap.shown

def later():
    from admap.lazy import thing
"""
    names = {name for name, _ in imported_names(source, "admap.stage")}
    assert {"admap.stage.sibling", "admap.other.name", "admap.shown", "admap.lazy.thing"} <= names
    assert not any(name.startswith("admap.hidden") for name in names)


def test_a_cycle_is_found_with_its_path():
    graph = {"a": {"b.c": 1}, "b": {"b.c": 1}, "b.c": {}}
    assert find_cycle(graph) is None
    graph["b.c"] = {"b": 3}
    assert find_cycle(graph) == ["b.c", "b", "b.c"]


def test_the_harness_is_imported_by_its_installed_names():
    """The folders baselines/ and experiments/ install as admap_baselines and admap_experiments: code that
    imported them by their folder names would load a second copy of each registry from a checkout's root."""
    repo = PACKAGE.parent
    folders = ("admap", "baselines", "experiments", "benchmarks", "scripts", "tests")
    offenders = [
        f"{path.relative_to(repo)}:{line} imports {name}"
        for folder in folders
        for path in (repo / folder).rglob("*.py")
        for name, line in imported_names(path.read_text(encoding="utf-8"), "outside")
        if name.split(".")[0] in ("baselines", "experiments")
    ]
    assert not offenders, offenders
