"""The layers of ``codec/`` hold: no import cycle between its modules, and no import from a lower layer to a
higher one. Read from the source with ``ast`` (every import: at module level, inside functions, under
``TYPE_CHECKING``), so nothing is imported and the test is instant.

Layers, lowest first (a module may import its own layer and those below it)::

    core < format < models < weights < coding < training < top

``top`` is the package itself (``codec/__init__.py``), ``api``, ``cli``, ``plugin`` and ``bench/``. What only tests
use (the seeded test network, hooks that kill a worker or slow a write) lives in ``tests/``, not in the wheel.
``training`` stands above ``coding`` (layout.md had them side by side): its validation measures real files, so it
codes them through the one encode and decode path rather than a copy of it. An import of the package root
(``import codec``, ``from .. import __version__``) from below the top counts as an import of the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "codec"
LAYERS = {"core": 0, "format": 1, "models": 2, "weights": 3, "coding": 4, "training": 5}
TOP = 6
#: Outside the package: the command's entry point (it imports ``codec.cli``), benchmarks and tests.
FORBIDDEN_ROOTS = {"_aecodec_start", "benchmarks", "tests", "scripts"}

#: Imports that run up a layer, each with the change that would end it: none today. An entry the code no longer
#: has fails the test, so one added cannot outlive its import.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "top"


def rank(module: str) -> int:
    return LAYERS.get(layer(module), TOP)


def imports(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The modules ``module`` imports: codec modules by name (a name imported from a package is the submodule
    when there is one, else the package), and the roots of others."""
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name if alias.name in known else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base != "codec" and not base.startswith("codec."):
                yield base.split(".")[0]
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in known else base


def graph() -> dict[str, set[str]]:
    """Every import between codec modules, and of the forbidden roots."""
    found = modules()
    known = set(found)
    edges: dict[str, set[str]] = {}
    for module, path in found.items():
        targets = set()
        for target in imports(module, path, known):
            if target in known:
                targets.add(target)
            elif target in FORBIDDEN_ROOTS or target == "codec" or target.startswith("codec."):
                targets.add(target)  # an unknown codec module fails below too
        edges[module] = targets - {module}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_layers_are_the_folders():
    """Every module sits in a layer's folder or on top; the layer folders all exist."""
    names = set(modules())
    assert {f"codec.{name}" for name in LAYERS} <= names
    top = sorted(m for m in names if layer(m) == "top" and m.split(".")[1:2] not in (["bench"], []))
    assert top == ["codec.api", "codec.cli", "codec.plugin"], top


def test_no_test_hook_ships():
    """No module of the package names a test-only environment variable (``AECODEC_TEST_...``) or a testing
    module: tests bring their hooks themselves (monkeypatch, a subclass), so users' runs carry none."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "AECODEC_TEST" in node.value:
                found.append((name, node.value))
    assert found == []
    assert not [name for name in modules() if name.split(".")[-1] in ("testing", "conftest")]


def test_every_import_names_a_module_that_exists():
    edges = graph()
    unknown = sorted((src, dst) for src, targets in edges.items() for dst in targets if dst not in edges)
    unknown = [(src, dst) for src, dst in unknown if dst not in FORBIDDEN_ROOTS]
    assert unknown == [], unknown


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_import_runs_up_a_layer():
    edges = graph()
    upward = set()
    for src, targets in edges.items():
        for dst in targets:
            if dst in FORBIDDEN_ROOTS:
                upward.add((src, dst))
            elif rank(dst) > rank(src):
                upward.add((src, dst))
    assert sorted(upward - ALLOWED_UPWARD) == []
    assert sorted(ALLOWED_UPWARD - upward) == [], "no longer imported: drop these from ALLOWED_UPWARD"


def test_the_checks_see_what_they_should():
    """The reader itself: relative, absolute and function-level imports, a package root import, a cycle."""
    edges = graph()
    assert "codec.core.errors" in edges["codec.format.bitstream"]  # from ..core.errors import FormatError
    assert "codec.coding.encoding" in edges["codec.coding.jobs"]  # inside a method: from .encoding import ...
    assert "codec.api" in edges["codec.bench.coders"]  # absolute: from codec import api
    assert "codec" in edges["codec.cli"]  # from . import __version__: the package root
    assert "codec.models.overfit.coding" in edges["codec.models.overfit.model"]  # from . import coding
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
