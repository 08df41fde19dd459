"""The package's import graph has no circles (issue 24): data and decisions flow one way, so a
module can be read, tested and replaced without the ones that use it. Lazy imports inside
functions count too: they are how the circle between the OpenVINO backend and the precision
choice (the backend timed itself to choose its own precision) used to hide."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "vsr"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (at the top or inside functions)."""
    files = {_module_name(path, package.parent): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module or ""
                # `from . import x` imports the submodule x where there is one, else a name of the package.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]  # a name inside a module: the module
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_finder_sees_a_circle_through_a_lazy_import(tmp_path):
    """The check itself: a circle closed only by an import inside a function is found."""
    package = tmp_path / "vsr"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .base import THING\n")
    (package / "sub" / "base.py").write_text("THING = 1\n")
    (package / "sub" / "a.py").write_text("from . import THING\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .a import THING\n")
    (package / "sub" / "c.py").write_text("from .b import f\n")
    assert circles(import_graph(package)) == []
    (package / "sub" / "a.py").write_text("from . import THING\n\n\ndef g():\n    from .c import f\n")
    assert circles(import_graph(package)) == [["vsr.sub.a", "vsr.sub.b", "vsr.sub.c"]]


def test_the_package_imports_in_one_direction():
    found = circles(import_graph())
    assert not found, f"import circles in vsr/: {found}"
