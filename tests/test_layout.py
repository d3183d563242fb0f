"""The package's architecture holds: a pure core without aiohttp, no import
circle, and no module importing one of a higher layer."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from .conftest import child_bytecode_env

PACKAGE = Path(__file__).resolve().parent.parent / "veo_async"

#: Modules that must work with no event loop and no aiohttp: tested on bytes alone.
PURE_CORE = [
    "veo_async.models",
    "veo_async.errors",
    "veo_async.policy",
    "veo_async._protocol",
    "veo_async._convert",
    "veo_async._limits",
    "veo_async._schedule",
    "veo_async._numbers",
]

#: The layers, lowest first; a module may import only from its own layer or below.
LAYERS: list[set[str]] = [
    {"errors", "models", "policy", "_version", "_json", "_release", "_timeouts", "_numbers"},
    {"_convert", "_schedule", "_limits", "_deadlines", "events", "_id_checks"},
    {"_protocol", "_endpoints", "_poll_runners"},
    {"_http", "store"},
    {"_requester", "_pacer"},
    {"_create", "_upgrade"},
    {"_task"},
    {"_batch"},
    {"_durable"},
    {"_session"},
    {"__init__"},
    {"testing", "cli", "__main__"},
]


def _load_without_package_init(module: str) -> str:
    """Python source that imports ``module`` without running ``veo_async/__init__``
    (which wires the whole SDK, aiohttp included) and prints whether aiohttp loaded."""
    return (
        "import importlib, sys, types\n"
        "package = types.ModuleType('veo_async')\n"
        f"package.__path__ = [{str(PACKAGE)!r}]\n"
        "sys.modules['veo_async'] = package\n"
        f"importlib.import_module({module!r})\n"
        "print('aiohttp' in sys.modules, 'asyncio' in sys.modules)\n"
    )


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_module_does_not_load_aiohttp(module: str) -> None:
    """Each pure-core module imports, in a fresh interpreter, without aiohttp."""
    out = subprocess.run(
        [sys.executable, "-c", _load_without_package_init(module)],
        capture_output=True,
        text=True,
        check=True,
        env=child_bytecode_env(dict(os.environ)),
    ).stdout.split()
    assert out[0] == "False", f"{module} loads aiohttp"


def test_the_aiohttp_check_can_fail() -> None:
    """The same check reports aiohttp for a module that does load it."""
    out = subprocess.run(
        [sys.executable, "-c", _load_without_package_init("veo_async._http")],
        capture_output=True,
        text=True,
        check=True,
        env=child_bytecode_env(dict(os.environ)),
    ).stdout.split()
    assert out[0] == "True"


def _local_name(path: Path) -> str:
    """``_task`` for veo_async/_task.py, ``cli`` for anything under veo_async/cli/."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_names(tree: ast.Module, own: str) -> set[str]:
    """The package's top-level modules that ``tree`` imports at run time
    (``if TYPE_CHECKING:`` blocks excluded: they never execute)."""
    found: set[str] = set()
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(child) for child in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "veo_async":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
                continue
            inside_subpackage = own in ("cli", "testing", "store")
            ups = node.level - (1 if inside_subpackage else 0)
            if ups > 1 or (ups == 1 and inside_subpackage is False and node.level > 1):
                continue  # pragma: no cover - no deeper nesting exists
            if inside_subpackage and node.level == 1:
                continue  # a sibling inside the same subpackage
            target = (node.module or "").split(".")[0]
            if target:
                found.add(target)
                continue
            # "from . import X": X is a module of the package, or a name of its __init__.
            for alias in node.names:
                is_module = (PACKAGE / f"{alias.name}.py").exists() or (
                    PACKAGE / alias.name
                ).is_dir()
                found.add(alias.name if is_module else "__init__")
    found.discard(own)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at run time."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _local_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph.setdefault(own, set()).update(_imported_names(tree, own))
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_no_import_circle() -> None:
    """No module of the package imports, directly or not, one that imports it back."""
    assert find_cycle(import_graph()) is None


def test_the_circle_check_can_fail() -> None:
    """The cycle finder sees a circle of three and a self-contained chain has none."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def _rank(module: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if module in layer:
            return rank
    raise AssertionError(f"module {module!r} has no layer in LAYERS: place it")


def test_nothing_imports_a_higher_layer() -> None:
    """Data flows down: every import points to the module's own layer or below."""
    climbing = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if _rank(target) > _rank(module)
    ]
    assert climbing == []


def test_the_layer_check_sees_a_climbing_import() -> None:
    """A core module importing the session would be reported."""
    assert _rank("_session") > _rank("_protocol")
