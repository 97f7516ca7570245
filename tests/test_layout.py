"""The package's shape: wings that do not import each other backwards, no import cycle, small
modules, and no private name used across modules (read from the source with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "core_rerank"
MAX_LINES = 440  # "about 400": the reranker class is one idea and sits just above


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(imported core_rerank module, names taken from it, at module level?) for each import."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            if target.startswith("core_rerank"):
                # `from . import x` imports the module core_rerank.x
                modules = [f"{target}.{n}" for n in names if _exists(f"{target}.{n}")] or [target]
                for module in modules:
                    found.append((module, names if module == target else [], id(node) in top_level))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("core_rerank"):
                    found.append((alias.name, [], id(node) in top_level))
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent / Path(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_import_cycle_not_even_through_function_level_imports():
    # A lazy import inside a function still ties two modules' ideas together, so it counts.
    modules = _modules()
    graph = {
        name: {target for target, _, _top in _imports(path) if target in modules and target != name}
        for name, path in modules.items()
    }
    # a submodule importing its own package's __init__ is how packages work, not a cycle of ideas
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(target) :] + [target]))
            if target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_detection_and_the_engine_do_not_import_evaluation_or_the_cli():
    for name, path in _modules().items():
        targets = {target for target, _, _ in _imports(path)}
        if name.startswith("core_rerank.detection"):
            assert not any(t.startswith("core_rerank.evaluation") for t in targets), name
        if not name.startswith(("core_rerank.cli", "core_rerank.serving")):
            assert not any(t.startswith("core_rerank.cli") for t in targets), name


def test_no_private_name_is_imported_from_another_module():
    offenders = [
        f"{name}: {target}.{imported}"
        for name, path in _modules().items()
        for target, names, _ in _imports(path)
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert offenders == []


def test_every_module_is_small():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    assert {name: size for name, size in sizes.items() if size > MAX_LINES} == {}
    assert len(sizes) > 20  # the walk found the package


MAX_FUNCTION_LINES = 100


def test_no_function_is_longer_than_100_lines():
    roots = [PACKAGE, PACKAGE.parent / "integrations"]
    long = {}
    for path in (p for root in roots for p in sorted(root.rglob("*.py"))):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE.parent)}:{node.name}"] = length
    assert long == {}


def test_the_cycle_check_sees_function_level_imports(tmp_path):
    # The cycle check must find an import that only a function makes.
    module = tmp_path / "mod.py"
    module.write_text("def f():\n    from core_rerank import ray\n")
    found = [(target, top) for target, _, top in _imports_of(module)]
    assert ("core_rerank.ray", False) in found


def _imports_of(path: Path) -> list[tuple[str, list[str], bool]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core_rerank"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                out.append((target if _exists(target) else node.module or "", [alias.name], id(node) in top_level))
    return out
