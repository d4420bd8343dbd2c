"""Print the project's import graph, its import cycles and its long functions.

    .venv/bin/python .ci/architecture.py            # summary: packages, cycles, long functions
    .venv/bin/python .ci/architecture.py --modules  # every module-to-module import edge

Imports are read with `ast`, so imports inside functions count as much as those at the top of a
module: a cycle hidden behind a function-level import is still a cycle. Only the project's own
packages are graphed; tests/ is left out (tests may import anything they test). The same
functions back tests/test_architecture.py, which keeps the rules this prints.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "analyses", "audit", "gradcam_site", "gradcam3d", "demo")
LONG_FUNCTION_LINES = 60


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the project's packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        root = REPO / package
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package_parts[: len(package_parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its body)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            # `from a.b import c` names a.b.c: keep the longest prefix that is a module.
            parts = name.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != module:
                targets.add(".".join(parts))
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(graph: dict[str, set[str]], depth: int = 2) -> dict[str, set[str]]:
    """The module graph folded to its first `depth` name parts (e.g. analyses.worker)."""
    folded: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        source = ".".join(module.split(".")[:depth])
        folded[source]
        for target in targets:
            target_folded = ".".join(target.split(".")[:depth])
            if target_folded != source:
                folded[source].add(target_folded)
    return dict(folded)


def long_functions(limit: int = LONG_FUNCTION_LINES) -> list[tuple[int, str]]:
    """(length in lines, "module:function") for every function longer than `limit` lines."""
    found = []
    for module, path in project_modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append((length, f"{module}:{node.name}"))
    return sorted(found, reverse=True)


def imported_top_level_names() -> dict[str, set[str]]:
    """Module -> the first part of every name it imports, project or not (e.g. "django", "keras")."""
    found: dict[str, set[str]] = {}
    for module, path in project_modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        names = _imported_names(tree, module, path.name == "__init__.py")
        found[module] = {name.split(".")[0] for name in names if name}
    return found


def package_imports(package: str) -> set[str]:
    """Every top-level name the modules of `package` import, the package's own name excluded."""
    names: set[str] = set()
    for module, imported in imported_top_level_names().items():
        if module.split(".")[0] == package:
            names |= imported
    return names - {package}


LONG_REASON_MARKER = "# long:"


def _long_reason_given(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A `# long: <reason>` comment line sits right above the def (or above its decorators)."""
    first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
    above = lines[first - 2].strip() if first >= 2 else ""
    return above.startswith(LONG_REASON_MARKER) and len(above) > len(LONG_REASON_MARKER)


def unexplained_long_functions(
    packages: tuple[str, ...], limit: int = LONG_FUNCTION_LINES
) -> list[tuple[int, str]]:
    """Functions of `packages` longer than `limit` lines without a `# long:` reason above them."""
    found = []
    for module, path in project_modules().items():
        if module.split(".")[0] not in packages:
            continue
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit and not _long_reason_given(lines, node):
                    found.append((length, f"{module}:{node.name}"))
    return sorted(found, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="print every module edge")
    arguments = parser.parse_args()
    graph = import_graph()
    shown = graph if arguments.modules else package_graph(graph)
    print(f"import graph ({'modules' if arguments.modules else 'packages'}):")
    for source in sorted(shown):
        print(f"  {source} -> {', '.join(sorted(shown[source])) or '(nothing)'}")
    found_cycles = cycles(graph)
    print(f"import cycles between modules: {len(found_cycles)}")
    for component in found_cycles:
        print("  " + " <-> ".join(component))
    app_cycles = cycles(package_graph(graph, depth=1))
    print(f"import cycles between top-level packages: {len(app_cycles)}")
    for component in app_cycles:
        print("  " + " <-> ".join(component))
    long = long_functions()
    print(f"functions over {LONG_FUNCTION_LINES} lines: {len(long)}")
    for length, name in long:
        print(f"  {length:4d}  {name}")


if __name__ == "__main__":
    main()
