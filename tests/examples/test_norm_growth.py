"""examples/norm_growth.py: the three backends agree, and the paper's claim shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

import norm_growth  # noqa: E402

STEPS = 60


@pytest.fixture(scope="module")
def numpy_history():
    return norm_growth.experiment("numpy", STEPS, progress=False)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_backends_print_the_same_figures(numpy_history, backend):
    pytest.importorskip(backend)
    history = norm_growth.experiment(backend, STEPS, progress=False)
    for name in norm_growth.OPTIMIZERS:
        for key in ("loss", "accuracy", "norm"):
            np.testing.assert_allclose(
                history[name][key],
                numpy_history[name][key],
                rtol=1e-9,
                err_msg=f"{backend} {name} {key}",
            )
    assert norm_growth.table(history) == norm_growth.table(numpy_history)


def test_projection_keeps_the_norm_down(numpy_history):
    final = {name: h["norm"][-1] for name, h in numpy_history.items()}
    start = numpy_history["SGD"]["norm"][0]
    assert final["SGD"] > 2 * final["SGDP"] and final["Adam"] > 1.5 * final["AdamP"]
    assert final["SGD"] > 3 * start  # momentum inflates the norm without projection
    for name in ("SGDP", "AdamP"):  # and the projected runs still learn
        h = numpy_history[name]
        assert h["loss"][-1] < 0.2 * h["loss"][0]


def test_command_line_writes_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plot.png"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "norm_growth.py"),
            "--steps",
            "40",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    for name in ("| SGD |", "| SGDP |", "| Adam |", "| AdamP |"):
        assert name in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(*args, **kwargs):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, **kwargs
    )


def test_help_explains_every_option_and_its_default():
    out = _run(str(ROOT / "examples" / "norm_growth.py"), "--help").stdout
    for option, default in (("--backend", "numpy"), ("--steps", "300"), ("--seed", "0")):
        block = out.split(option, 2)[2].split("\n  -", 1)[0]  # the option's own help entry
        assert f"(default: {default})" in " ".join(block.split()), option


def test_missing_backend_names_the_extra_to_install():
    script = ROOT / "examples" / "norm_growth.py"
    code = (
        "import sys, runpy; sys.modules['torch'] = None; "  # torch absent, as on a bare install
        f"sys.argv = ['norm_growth.py', '--backend', 'torch']; runpy.run_path({str(script)!r}, "
        "run_name='__main__')"
    )
    result = _run("-c", code)
    assert result.returncode == 2
    assert 'pip install -e ".[torch]"' in result.stderr and "Traceback" not in result.stderr


def test_table_is_valid_markdown_with_each_optimizers_effective_step(numpy_history):
    lines = norm_growth.table(numpy_history).splitlines()
    cells = [line.strip().strip("|").split("|") for line in lines]
    assert {len(c) for c in cells} == {7}, "a cell contains '|'"
    header = [c.strip() for c in cells[0]]
    assert header[1] == "lr" and header[3] == "training accuracy"
    by_name = {c[0].strip(): [x.strip() for x in c] for c in cells[2:]}
    for name, (kind, hyper) in norm_growth.OPTIMIZERS.items():
        norm = numpy_history[name]["norm"][-1]
        power = 2 if kind == "sgdp" else 1  # SGD turns the weight by lr/|W|^2, Adam by lr/|W|
        assert float(by_name[name][5]) == pytest.approx(hyper["lr"] / norm**power, abs=1e-5)
        assert float(by_name[name][1]) == hyper["lr"]


def test_docs_table_is_the_scripts_output(tmp_path):
    """docs/snippets/norm-growth.md is what the script writes now, not a stale copy."""
    out = tmp_path / "table.md"
    _run(
        str(ROOT / "examples" / "norm_growth.py"),
        "--markdown",
        str(out),
        "--out",
        str(tmp_path / "plot.png"),
        check=True,
    )
    assert out.read_text() == (ROOT / "docs" / "snippets" / "norm-growth.md").read_text()
