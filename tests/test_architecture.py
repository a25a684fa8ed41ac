"""The architecture's rules, checked on the source: one-way imports between packages, no cycles, small functions.

Every import counts, function-level ones included (only ``if TYPE_CHECKING:`` blocks are skipped: they never
run). Packages are found through the package-dir mapping of ``pyproject.toml`` (``envs/`` is
``rl_select.envs``, ``policies/`` is ``rl_select.policies``).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, ...]] = [
    (
        "rl_select._version",
        "rl_select.errors",
        "rl_select.types",
        "rl_select.paths",
        "rl_select.logs",
        "rl_select.reproducibility",
    ),
    ("rl_select.settings",),
    ("rl_select.observation",),
    ("rl_select.provenance", "rl_select.proposals", "rl_select.rules"),
    ("rl_select.tasks",),
    ("rl_select.scoring",),
    ("rl_select.retrieval",),
    ("rl_select.resources",),
    ("rl_select.selectors",),
    ("rl_select.envs",),
    ("rl_select.budget", "rl_select.policies"),
    ("rl_select.runs",),
    ("rl_select.evaluation",),
    ("rl_select.rollouts",),
    ("rl_select.export",),
    ("rl_select.train",),
    ("rl_select.sweep", "rl_select.study"),
    ("rl_select.bench", "rl_select.service", "rl_select.integrations"),
    ("rl_select.cli",),
    ("rl_select",),
]
"""Packages from the bottom up: each may import only packages of lower layers (and itself)."""
LEVEL = {package: i for i, layer in enumerate(LAYERS) for package in layer}
LIGHT_RUNTIME = (
    "rl_select.export.runtime",
    "rl_select.export.manifest",
    "rl_select.service.app",
    "rl_select.integrations.langchain",
    "rl_select.integrations.dspy",
)
HEAVY = ("torch", "transformers", "stable_baselines3", "sb3_contrib", "ray", "gymnasium")
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, from the pyproject's package-dir mapping."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    found: dict[str, Path] = {}
    for package in config["tool"]["setuptools"]["packages"]:
        directory = ROOT / mapping.get(package, package.replace(".", "/"))
        if package not in mapping:  # a subpackage of a mapped one
            parent = next(p for p in sorted(mapping, key=len, reverse=True) if package.startswith(p + "."))
            directory = ROOT / mapping[parent] / package[len(parent) + 1 :].replace(".", "/")
        for file in directory.glob("*.py"):
            name = package if file.stem == "__init__" else f"{package}.{file.stem}"
            found[name] = file
    return found


def imports(file: Path, module: str, type_checking: bool = False) -> set[str]:
    """Modules a file imports anywhere, relative imports resolved (``type_checking``: TYPE_CHECKING blocks too)."""
    tree = ast.parse(file.read_text())
    skipped = (
        set()
        if type_checking
        else {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)
        }
    )
    found = set()
    package = module if file.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def package_of(module: str) -> str:
    """The layered package a module belongs to (the longest listed prefix)."""
    return max((p for p in LEVEL if module == p or module.startswith(p + ".")), key=len)


def graph(type_checking: bool = False) -> dict[str, set[str]]:
    """Module → project modules it imports (``type_checking``: counting imports made for type checkers only)."""
    found = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for module, file in found.items():
        for target in imports(file, module, type_checking):
            while target and target not in found:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges[module].add(target)
    return edges


def test_packages_import_only_lower_layers():
    broken = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if package_of(module) != package_of(target) and LEVEL[package_of(target)] >= LEVEL[package_of(module)]
    )
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


def test_every_module_belongs_to_a_layer():
    unlisted = sorted(m for m in modules() if not any(m == p or m.startswith(p + ".") for p in LEVEL))
    assert not unlisted


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph, or None (iterative depth-first search)."""
    state: dict[str, int] = {}
    for start in list(edges):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(edges.get(start, ()))))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(edges.get(child, ())))))
                path.append(child)
    return None


def test_no_import_cycles_between_files_or_packages():
    """No cycle of any kind: imports inside functions and ``if TYPE_CHECKING:`` blocks count too."""
    edges = graph(type_checking=True)
    assert find_cycle(edges) is None, f"file import cycle: {find_cycle(edges)}"
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in edges.items():
        packages[package_of(module)] |= {package_of(t) for t in targets} - {package_of(module)}
    assert find_cycle(packages) is None, f"package import cycle: {find_cycle(packages)}"


@pytest.mark.parametrize("module", LIGHT_RUNTIME)
def test_the_light_runtime_imports_nothing_heavy(module):
    file = modules()[module]
    heavy = sorted(t for t in imports(file, module) if t.split(".")[0] in HEAVY)
    project = sorted(t for t in graph()[module] if t.startswith(("rl_select.scoring", "rl_select.retrieval.embed")))
    assert not heavy and not project, f"{module} pulls in {heavy + project}"


def test_functions_are_short():
    long = []
    for module, file in modules().items():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert not long, "\n".join(long)


def deferred_imports_without_reason(source: str) -> list[int]:
    """Lines of imports inside functions that say no reason (a ``#`` comment on their first line)."""
    lines = source.splitlines()
    found = []
    for function in ast.walk(ast.parse(source)):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom) and "#" not in lines[node.lineno - 1]:
                    found.append(node.lineno)
    return found


def test_imports_inside_functions_say_what_they_defer():
    missing = [
        f"{module}:{line}"
        for module, file in modules().items()
        for line in deferred_imports_without_reason(file.read_text())
    ]
    assert not missing, f"an import inside a function needs its reason, or belongs at the top: {missing}"
    assert deferred_imports_without_reason("def f():\n    import torch\n    return torch\n") == [2]
    assert deferred_imports_without_reason("def f():\n    import torch  # deferred: loads torch\n") == []


def test_the_cycle_check_sees_type_checking_imports(tmp_path):
    """A cycle closed only by a type checker's import is still a cycle (so the check is not vacuous)."""
    fake = tmp_path / "table.py"
    fake.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rl_select.study.learned import S\n")
    assert "rl_select.study.learned" not in imports(fake, "rl_select.study.table")
    assert "rl_select.study.learned" in imports(fake, "rl_select.study.table", type_checking=True)
    edges = {"a": {"b"}, "b": {"a"}}
    assert find_cycle(edges) == ["a", "b", "a"]


def test_the_rules_catch_a_backward_import(tmp_path, monkeypatch):
    """The layering check fails when a low package imports a high one (so it is not vacuous)."""
    fake = tmp_path / "scorer.py"
    fake.write_text("from rl_select.train import train\n")
    assert "rl_select.train.train" in imports(fake, "rl_select.scoring.scorer")
    assert LEVEL[package_of("rl_select.train")] > LEVEL[package_of("rl_select.scoring.scorer")]
