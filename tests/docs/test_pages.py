"""The code in README.md, docs/ and examples/ runs, so it cannot rot."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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
