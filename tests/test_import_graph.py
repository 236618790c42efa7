"""The import graph of lstmjax/ runs one way: no circle, and arrows point down the floors.

Read from the sources with `ast`, imports inside functions included (a deferred
import is still an arrow). Every module sits on one floor of ARCHITECTURE.md;
a module on no floor fails the test, so that a new file is placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lstmjax"

# Floors, lowest first: a module may import from its own floor or a lower one.
FLOORS = {
    0: ["_typing", "_arrays", "_checks", "_array_checks", "_lazy", "_integrators"],
    1: ["_cell", "_initializers", "_activations", "_layer_norm"],
    2: [
        "_rnn",
        "_lstm",
        "_lstm_rule",
        "_gru",
        "_gru_rule",
        "_jordan",
        "_ctrnn",
        "_min_gru",
        "_min_lstm",
        "_exponential_gates",
        "_slstm",
        "_mlstm",
        "_recurrent_dropout",
        "_feedforward",
        "_map_cell",
    ],
    3: [
        "_sequence",
        "_affine_scan",
        "_remat",
        "_scan",
        "_affine",
        "_convergence",
        "_newton",
        "_elk",
        "_fused_kernel",
        "_fused_ad",
        "_fused",
        "_methods",
        "_unroll",
        "_jacobians",
    ],
    4: ["_layers"],
    5: ["diagnostics", "dynamics", "losses", "generate", "lm", "tasks", "interop"],
    6: ["_training", "_checkpointing", "train", "tbptt", "distributed", "checkpoint"],
    7: ["__init__"],
}
# The one arrow allowed to run up a floor (none today; name it here with its reason).
UPWARD_ALLOWED: set[tuple[str, str]] = set()
# The ground floor imports nothing from lstmjax.
GROUND_IMPORTS_NOTHING = {"_typing", "_checks", "_lazy"}
# The array checks build on the option checks and on nothing else.
GROUND_IMPORTS_ONLY = {"_array_checks": {"lstmjax._checks"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """Every lstmjax module `path` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lstmjax"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if not module.startswith("lstmjax"):
                continue
            found.add(module)
            for alias in node.names:  # `from lstmjax import train` imports a module
                found.add(f"{module}.{alias.name}")
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    packages = {m for m, p in files.items() if p.name == "__init__.py"}
    names = {m.removesuffix(".__init__") for m in modules}
    graph = {}
    for name, path in files.items():
        real = name.removesuffix(".__init__")
        targets = {t for t in _imports(path, real) if t in names and t != real}
        # Importing `lstmjax.x.y` runs `lstmjax.x`'s __init__ too, but the
        # package root's __init__ (the public face) is not counted as a dependency
        # of its own internals.
        graph[real] = {t for t in targets if t != "lstmjax"}
    del packages
    return graph


def _floor(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for floor, members in FLOORS.items():
        if key in members:
            return floor
    raise AssertionError(
        f"{module} sits on no floor of tests/test_import_graph.py (and ARCHITECTURE.md): "
        "place it there."
    )


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_arrows_run_down_the_floors():
    graph = _graph()
    upward = sorted(
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if _floor(b) > _floor(a)
        and (a.split(".")[1], b.split(".")[1]) not in UPWARD_ALLOWED
        and a.split(".")[:2] != b.split(".")[:2]  # within one subpackage
    )
    assert not upward, f"imports running up a floor: {upward}"


def test_the_ground_floor_imports_nothing_from_lstmjax():
    graph = _graph()
    offenders = {m: sorted(graph[f"lstmjax.{m}"]) for m in GROUND_IMPORTS_NOTHING}
    assert all(not v for v in offenders.values()), offenders
    for module, allowed in GROUND_IMPORTS_ONLY.items():
        assert graph[f"lstmjax.{module}"] <= allowed, (module, sorted(graph[f"lstmjax.{module}"]))


def test_every_module_is_on_a_floor():
    for module in _graph():
        if module != "lstmjax":
            _floor(module)


MAX_LINES = 400  # ARCHITECTURE.md: past this, a module holds more than one concept


def test_no_module_is_longer_than_the_house_allows():
    lengths = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert len(lengths) > 40  # the walk found the package
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concept): {too_long}"
