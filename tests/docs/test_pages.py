"""The code in README.md, docs/ and examples/ runs, so it cannot rot."""

from __future__ import annotations

import re
import sys
import textwrap
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)  # indented in tabs too


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_runs(page):
    blocks = [textwrap.dedent(code) for _, code in BLOCK.findall(page.read_text())]
    module = types.ModuleType(f"docs_{page.stem}")  # a real module: dataclasses look it up
    sys.modules[module.__name__] = module
    try:
        for i, code in enumerate(blocks):  # blocks of one page run in order, sharing names
            exec(compile(code, f"{page.name}[block {i}]", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", ROOT / "docs" / "index.md"], ids=lambda p: p.name
)
def test_quick_start_snippets_show_output(page):
    """Each quick-start snippet ends with a visible line, so a reader sees that it worked."""
    section = page.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = [textwrap.dedent(code) for _, code in BLOCK.findall(section)]
    assert len(blocks) >= 3
    for code in blocks:
        last = [line for line in code.splitlines() if line.strip()][-1]
        assert last.startswith("print("), last


#: A measured figure: a speed ratio, a time, or a count of launches or operations.
FIGURE = re.compile(
    r"\b\d[\d,]*(\.\d+)?x\b|\b\d+(\.\d+)? ?(ms|s)\b(?!-)|\b\d[\d,]* (kernels|launches|array operations)"
)
FENCE = re.compile(r"^( *)```.*?^\1```", re.S | re.M)


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if p.name != "changelog.md" and "snippets" not in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_measured_figures_come_from_generated_files(page):
    """Prose quotes no measurement by hand: the figures are in the files the benchmark scripts
    write (docs/snippets/), which the pages include. The changelog keeps its history."""
    prose = FENCE.sub("", page.read_text())
    prose = re.sub(r"`[^`\n]*`", "", prose)  # code: shapes, flags, formulas
    found = [m.group(0) for m in FIGURE.finditer(prose)]
    assert found == []


#: The widest code line the site shows without a scroll bar next to both sidebars, in a
#: 1280-pixel window (measured in headless Chromium); docs/ruff.toml formats to it.
CODE_WIDTH = 76


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda p: str(p.relative_to(ROOT)))
def test_code_lines_fit_the_page(page):
    """Site pages only (docs/ruff.toml formats their code to this width); README.md is read
    where wider code fits, and follows the project's line length."""
    blocks = [textwrap.dedent(m.group(0)) for m in FENCE.finditer(page.read_text())]
    long = [line for b in blocks for line in b.splitlines() if len(line) > CODE_WIDTH]
    assert long == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_the_page_names_exist(page):
    """A path to a test, benchmark or example named in the docs is one the project has."""
    named = re.findall(r"`((?:tests|benchmarks|examples)/[\w/.-]+\.py)", page.read_text())
    missing = [path for path in named if not (ROOT / path).exists()]
    assert not missing, missing


def test_math_page_quotes_the_lines_that_compute_each_equation():
    """docs/math.md maps each equation to a line of adamp_core; the quoted lines are there."""
    section = (ROOT / "docs" / "math.md").read_text().split("## Where each equation", 1)[1]
    rows = [r for r in section.split("\n## ", 1)[0].splitlines() if r.startswith("| ")][1:]
    assert len(rows) >= 10
    for row in rows:
        _, file, quoted = (cell.strip() for cell in row.strip("|").rsplit("|", 2))
        code = {
            line.strip()
            for line in (ROOT / "adamp_core" / file.strip("`")).read_text().splitlines()
        }
        for line in re.findall(r"`([^`]+)`", quoted):
            assert line in code or any(c.startswith(line + "  #") for c in code), (file, line)
