"""examples/norm_growth.py: the three backends agree, and the paper's claim shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
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
