"""The one-way flow, enforced on the imports of src/tna.

kernel → introspect → snapshot (model) → plan → data path → kernel.  Every ``import`` of a
``tna`` module counts, wherever it stands (inside a function, under TYPE_CHECKING): a late
import is still a dependency.  docs/architecture.md explains each layer's job.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# What each layer may import from tna; a module not under a layer here is unconstrained
# (drivers: control, cli, sync, fdbrefresh, bench, equivalence, demo, testbed).
ALLOWED: dict[str, tuple[str, ...]] = {
    "tna.model": (),
    # the firewall compiler is pure: rules (parsed by tna.netfilter's text parsers) → tables
    "tna.firewall": ("tna.model", "tna.abi", "tna.netfilter"),
    "tna.plan": ("tna.model", "tna.firewall", "tna.abi"),
    # the data path knows the plan's types, not how plans are made; from the base layers it
    # takes the netlink walker (finding attached programs) and the root-only directory check
    "tna.datapath": ("tna.plan.types", "tna.abi", "tna.netns", "tna.model",
                     "tna.firewall.tables", "tna.netlink", "tna.rootdir"),
}


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_graph(src: Path) -> dict[str, set[str]]:
    """tna module → the tna modules it imports (resolved to modules that exist)."""
    files = {}
    for path in (src / "tna").rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            for name in _imported(node, package):
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    deps.add(name)
        graph[module] = deps
    return graph


def _imported(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def against_the_flow(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Imports a layer may not make (a layer's own modules are always allowed)."""
    out = []
    for module, deps in graph.items():
        layer = next((lay for lay in ALLOWED if under(module, lay)), None)
        if layer is None:
            continue
        for dep in deps:
            if dep == "tna":  # ``from tna import x`` names the package first, then x
                continue
            if not under(dep, layer) and not any(
                    under(dep, ok) for ok in ALLOWED[layer]):
                out.append(f"{module} -> {dep}")
    return sorted(out)


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module; a package importing its own
    submodules (or they it) is not a cycle."""
    edges = {m: [d for d in deps if d in graph and not under(d, m) and not under(m, d)]
             for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return module_graph(SRC)


def test_the_graph_sees_late_and_relative_imports(graph: dict[str, set[str]]) -> None:
    # control: the graph is real (a module with known imports, and many modules)
    assert {"tna.plan.types", "tna.abi"} <= graph["tna.datapath.loader"] | graph[
        "tna.datapath.program"]
    assert len(graph) > 40
    fake = ast.parse("def f():\n    from . import x\n    from .y import z\n")
    names = [n for node in ast.walk(fake) for n in _imported(node, "tna.pkg")]
    assert names == ["tna.pkg", "tna.pkg.x", "tna.pkg.y", "tna.pkg.y.z"]


def test_every_import_follows_the_flow(graph: dict[str, set[str]]) -> None:
    assert against_the_flow(graph) == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


@pytest.mark.parametrize(("module", "dep"), [
    ("tna.plan.router", "tna.datapath.loader"),  # planner -> data path
    ("tna.plan", "tna.introspect"),  # planner -> introspection
    ("tna.datapath.fdb", "tna.introspect"),  # data path -> introspection
    ("tna.datapath.loader", "tna.plan"),  # data path -> the planner itself, not its types
    ("tna.datapath.maps", "tna.routecache"),  # data path reading the kernel's config
    ("tna.datapath.status", "tna.cli"),
    ("tna.datapath.loader", "tna.sync"),
    ("tna.datapath.loader", "tna.control"),
    ("tna.datapath.program", "tna.bench.micro"),
    ("tna.datapath.pins", "tna.equivalence.harness"),
    ("tna.model", "tna.plan.types"),
])
def test_a_violation_is_reported(graph: dict[str, set[str]], module: str, dep: str) -> None:
    bad = {**graph, module: {*graph.get(module, set()), dep}}
    assert against_the_flow(bad) == [f"{module} -> {dep}"]


def test_a_cycle_is_reported(graph: dict[str, set[str]]) -> None:
    bad = {**graph, "tna.netns": {*graph["tna.netns"], "tna.cli"}}  # cli reaches netns
    [group] = cycles(bad)
    assert {"tna.cli", "tna.netns"} <= set(group)
    assert cycles({"tna.a": {"tna.a.b"}, "tna.a.b": {"tna.a"}}) == []  # package and its own
