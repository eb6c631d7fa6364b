"""The code in README.md, docs/ and examples/ runs, so it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_runs(page):
    blocks = BLOCK.findall(page.read_text())
    module = types.ModuleType(f"docs_{page.stem}")  # a real module: dataclasses look it up
    sys.modules[module.__name__] = module
    try:
        for i, code in enumerate(blocks):  # blocks of one page run in order, sharing names
            exec(compile(code, f"{page.name}[block {i}]", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "adamp_update" in api and "scale_by_adamp" in api and "ProjectionInfo" in api
