"""The package imports one way: no module of src/gblsr reaches itself through imports.

Every ``import`` / ``from ... import`` counts, at module level or inside functions (a function
that imports a higher layer still ties the layers together). Relative imports are resolved. An
edge goes to the module named: ``from pkg import name`` is an import of ``pkg.name`` when that is
a module, else of ``pkg``'s ``__init__``. Parent packages that Python initialises on the way are
not edges (``gblsr/__init__`` imports the method packages so that they register, as timm's
``models/__init__`` does; that is the one sanctioned way down, and it is not a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "gblsr"


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert len(graph) > 40
    # gblsr/__init__ imports its subpackages; the registry imports nothing of ours.
    assert "gblsr.registry" in graph["gblsr"]
    assert graph["gblsr.registry"] <= {"gblsr.errors"}
    assert "gblsr.peers.convert" in graph["gblsr.peers"]  # from . import convert


def test_cycle_finder_reports_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# Layers, lowest first; a module may import its own layer and the layers below, never above.
LAYERS = [
    (
        "foundation",
        ("gblsr._version", "gblsr.errors", "gblsr.fileio", "gblsr.geometry", "gblsr.runtime"),
    ),
    ("foundation", ("gblsr.encoder_tiles", "gblsr.representation")),
    ("data and metrics", ("gblsr.data", "gblsr.metrics")),
    ("registry", ("gblsr.registry",)),
    ("methods", ("gblsr.models", "gblsr.encoders", "gblsr.asr", "gblsr.peers")),
    ("checkpoint", ("gblsr.checkpoint",)),
    (
        "inference and evaluation",
        (
            "gblsr.inference",
            "gblsr.features",
            "gblsr.feasibility",
            "gblsr.evaluation",
            "gblsr.latency",
            "gblsr.viewer",
        ),
    ),
    ("training", ("gblsr.training",)),
    ("study", ("gblsr.study",)),
    ("cli", ("gblsr.cli", "gblsr.__main__")),
]


def layer_of(module: str) -> int:
    if module == "gblsr":
        return len(LAYERS)  # the package front imports everything
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                best = rank
    assert best is not None, f"{module} is in no layer; add it to LAYERS"
    return best


def test_layers_import_downwards_only():
    graph = import_graph()
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
        for m, deps in sorted(graph.items())
        for d in sorted(deps)
        if layer_of(d) > layer_of(m)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_importing_gblsr_loads_no_trainer_and_registers_every_family():
    import subprocess
    import sys

    code = (
        "import sys, gblsr, gblsr.checkpoint\n"
        "assert not any(m.startswith(('gblsr.training', 'gblsr.cli')) for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('gblsr.'))\n"
        "from gblsr.registry import available, converters\n"
        "assert {'gblsr_asr', 'liif', 'lte', 'lmliif', 'lmlte', 'local_spectral'} <= "
        "set(available('model'))\n"
        "assert {'edsr', 'rdn'} <= set(available('encoder'))\n"
        "assert len(converters()) >= 2\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
