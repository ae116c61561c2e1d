"""The import graph of the repository's packages, read from the source with :mod:`ast`.

``python -m tools.import_graph`` prints the README's package diagram (a Mermaid ``graph TD``
block); ``python -m tools.import_graph --update README.md`` rewrites the block between the
markers in place. ``tests/test_architecture.py`` holds the code to it: no import cycle between
packages or modules, no import inside a function, and the README showing what this prints.

Every import counts, wherever it stands in a file (module level, inside a function, under
``if TYPE_CHECKING``): a dependency is a dependency. A *unit* is a top-level package
(``sp_demo``, ``portal``, ``siths_testkit``) or, inside ``idp``, one subpackage or top-level module
(``idp.saml``, ``idp.services``).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The packages this repository ships (pyproject.toml).
ROOTS = ("idp", "sp_demo", "portal", "siths_testkit")
# The package split into units; the others are one unit each.
LAYERED_ROOT = "idp"
BEGIN_MARKER = "<!-- import-graph:begin (python -m tools.import_graph --update README.md) -->"
END_MARKER = "<!-- import-graph:end -->"

Graph = dict[str, set[str]]


@dataclass(frozen=True)
class ImportSite:
    """One import statement: in ``module`` (file ``path``, line ``line``), of ``target``."""

    module: str
    path: Path
    line: int
    target: str
    in_function: bool


def source_files(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Module name → file, for every ``.py`` file of :data:`ROOTS` under ``root``."""
    modules = {}
    for package in ROOTS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_package(module: str, modules: Mapping[str, Path]) -> bool:
    return module in modules and modules[module].name == "__init__.py"


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, modules: Mapping[str, Path]
) -> list[str]:
    """The modules an import statement loads, as names (``from pkg import mod`` → ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module if _is_package(module, modules) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    # ``from package import name``: name is a submodule when a file says so.
    submodules = [
        f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules
    ]
    return submodules or [base]


def import_sites(root: Path = REPO_ROOT) -> Iterator[ImportSite]:
    """Every import statement in the packages, in file order."""
    modules = source_files(root)
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        yield from _walk(tree, module, path, modules, in_function=False)


def _walk(
    node: ast.AST, module: str, path: Path, modules: Mapping[str, Path], *, in_function: bool
) -> Iterator[ImportSite]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            for target in _targets(child, module, modules):
                yield ImportSite(module, path, child.lineno, target, in_function)
        inner = in_function or isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        yield from _walk(child, module, path, modules, in_function=inner)


def _own(target: str) -> bool:
    return target.split(".")[0] in ROOTS


def module_graph(root: Path = REPO_ROOT) -> Graph:
    """Module → the modules of this repository it imports."""
    modules = source_files(root)
    graph: Graph = {module: set() for module in modules}
    for site in import_sites(root):
        if _own(site.target) and site.target != site.module:
            graph[site.module].add(site.target)
    return graph


def unit_of(module: str) -> str:
    """The unit a module belongs to (see the module docstring)."""
    parts = module.split(".")
    if parts[0] == LAYERED_ROOT and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def unit_graph(root: Path = REPO_ROOT) -> Graph:
    """Unit → the other units it imports."""
    graph: Graph = {}
    for module, targets in module_graph(root).items():
        edges = graph.setdefault(unit_of(module), set())
        edges.update(unit_of(target) for target in targets)
    for unit, edges in graph.items():
        edges.discard(unit)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member, each sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def transitive_reduction(graph: Mapping[str, set[str]]) -> Graph:
    """The fewest edges with the same reachability (for an acyclic graph): an edge a → c is
    left out when a reaches c through another unit anyway."""

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            node = todo.pop()
            for target in graph.get(node, ()):
                if (node, target) != skip and target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    return {
        node: {target for target in targets if target not in reachable(node, (node, target))}
        for node, targets in graph.items()
    }


def mermaid(graph: Mapping[str, set[str]]) -> str:
    """A Mermaid ``graph TD`` block (fenced) of ``graph``'s transitive reduction."""
    reduced = transitive_reduction(graph)
    lines = ["```mermaid", "graph TD"]
    for node in sorted(reduced):
        identifier = node.replace(".", "_")
        lines.append(f'    {identifier}["{node}"]')
    for node in sorted(reduced):
        for target in sorted(reduced[node]):
            lines.append(f"    {node.replace('.', '_')} --> {target.replace('.', '_')}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def readme_block(text: str) -> str:
    """What ``text`` holds between the markers (the lines after BEGIN, up to END)."""
    begin = text.index(BEGIN_MARKER) + len(BEGIN_MARKER) + 1
    return text[begin : text.index(END_MARKER, begin)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.import_graph", description=__doc__)
    parser.add_argument("--update", type=Path, help="rewrite the diagram between the markers")
    args = parser.parse_args(argv)
    graph = unit_graph()
    found = cycles(graph)
    if found:
        print(f"import cycles between packages: {found}", file=sys.stderr)
        return 1
    diagram = mermaid(graph)
    if args.update is None:
        sys.stdout.write(diagram)
        return 0
    text = args.update.read_text(encoding="utf-8")
    old = readme_block(text)
    args.update.write_text(
        text.replace(BEGIN_MARKER + "\n" + old, BEGIN_MARKER + "\n" + diagram), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
