"""The package's structure: the core knows no example, and its subpackages form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("graphs", "guards", "tools", "checkpoints", "retrieval", "evals")


def _imports(path: Path) -> set[str]:
    """Every ``tether.*`` module a file imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tether"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tether")}
    return out


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {p: set() for p in CORE}
    for part in CORE:
        for path in (ROOT / part).rglob("*.py"):
            for mod in _imports(path):
                other = _part(mod)
                if other in CORE and other != part:
                    deps[part].add(other)
    return deps


def test_the_core_imports_nothing_from_the_examples() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {mod}"
        for part in (*CORE,)
        for path in (ROOT / part).rglob("*.py")
        for mod in _imports(path)
        if _part(mod) == "agents"
    ]
    roots = [p for p in ROOT.glob("*.py") if p.name != "cli.py"]
    offenders += [f"{p.name} imports {m}" for p in roots for m in _imports(p) if _part(m) == "agents"]
    assert offenders == []


def test_core_subpackages_form_no_import_cycle() -> None:
    deps = _graph()
    seen: dict[str, int] = {}

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in trail, " -> ".join((*trail, node))
        if seen.get(node) == 2:
            return
        for nxt in sorted(deps[node]):
            visit(nxt, (*trail, node))
        seen[node] = 2

    for node in CORE:
        visit(node, ())


def test_the_import_graph_is_what_the_layers_say() -> None:
    deps = _graph()
    assert "graphs" not in deps["checkpoints"] | deps["guards"] | deps["tools"] | deps["retrieval"]
    assert "evals" not in set().union(*(deps[p] for p in CORE if p != "evals"))
    assert deps["guards"] <= {"retrieval"} or deps["guards"] == set(), deps["guards"]
