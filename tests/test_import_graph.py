"""The import graph of src/ has no cycle, and the library never imports the trainer."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of src/ it imports (module-level, in functions, or by importlib.import_module)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [(base, a.name) for a in node.names]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                targets = [(node.args[0].value, None)]
            for base, attr in targets:
                if attr is not None and f"{base}.{attr}" in mods:  # `from pkg import module`
                    graph[name].add(f"{base}.{attr}")
                elif base in mods:
                    graph[name].add(base)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_find_cycle_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_src_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert "openclap.factory" in graph and "openclap.errors" in graph["openclap.factory"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_library_never_imports_the_trainer_and_errors_import_nothing_of_openclap() -> None:
    graph = import_graph()
    # the CLI front door (openclap.commands: `openclap train`, `pretrain-audio`) dispatches to the trainer
    leaks = sorted(
        f"{m} -> {t}"
        for m, ts in graph.items()
        if (m.startswith("openclap.") or m == "openclap") and not m.startswith("openclap.commands")
        for t in ts
        if t.startswith("openclap_train")
    )
    assert not leaks, leaks
    assert graph["openclap.errors"] == set()
