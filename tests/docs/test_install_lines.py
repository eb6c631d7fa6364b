"""Every script the docs advertise runs after the install line the docs give for it: each
third-party module it imports (and each module of the project it reaches) is installed by
the extras on that line."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: `pip install -e ".[a,b]" && python path/to/script.py`
LINE = re.compile(r'pip install -e "?\.(?:\[([\w,-]+)\])?"? && python ([\w/]+\.py)')
#: import name -> distribution, where they differ
DISTRIBUTIONS = {"sklearn": "scikit-learn", "pytorch_optimizer": "pytorch-optimizer"}
PROJECT = {"adamp_core", "adapters"}
#: Imports behind an option that says which extra to install when they are missing (tested
#: in tests/examples): not needed by the advertised command itself.
BEHIND_AN_OPTION = {"examples/norm_growth.py": {"torch", "jax", "optax"}}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def _installed_by(extras: list[str]) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = _requirement_names(project["dependencies"])
    todo = list(extras)
    while todo:
        for req in project["optional-dependencies"][todo.pop()]:
            if req.startswith("adamp-core["):  # an extra that includes others
                todo += req[len("adamp-core[") : -1].split(",")
            else:
                names |= _requirement_names([req])
    return names


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``try: ... except ImportError`` (or ModuleNotFoundError): the script copes."""
    while node in parents:
        node, child = parents[node], node
        if isinstance(node, ast.Try) and child in node.body:
            caught = [ast.unparse(h.type) for h in node.handlers if h.type is not None]
            if any("ImportError" in c or "ModuleNotFoundError" in c for c in caught):
                return True
    return False


def _imports(script: Path, seen: set[Path]) -> set[str]:
    """Top-level names of the modules ``script`` imports unconditionally, following the
    modules next to it that it imports."""
    if script in seen:
        return set()
    seen.add(script)
    tree = ast.parse(script.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if _optional(node, parents):
            continue
        for name in names:
            top = name.split(".")[0]
            sibling = script.parent / f"{top}.py"
            if sibling.exists():
                found |= _imports(sibling, seen)
            else:
                found.add(top)
    return found


ADVERTISED = sorted(
    {(m.group(2), m.group(1) or "") for page in PAGES for m in LINE.finditer(page.read_text())}
)


def test_the_docs_advertise_scripts():
    scripts = {script for script, _ in ADVERTISED}
    assert {"examples/norm_growth.py", "benchmarks/run.py", "benchmarks/digits_cnn.py"} <= scripts


@pytest.mark.parametrize("script, extras", ADVERTISED, ids=[s for s, _ in ADVERTISED])
def test_install_line_brings_every_import(script, extras):
    installed = _installed_by([e for e in extras.split(",") if e])
    modules = _imports(ROOT / script, set()) - PROJECT - set(sys.stdlib_module_names)
    modules -= BEHIND_AN_OPTION.get(script, set())
    missing = sorted(m for m in modules if DISTRIBUTIONS.get(m, m).lower() not in installed)
    assert missing == [], f'pip install -e ".[{extras}]" does not install {missing}'
