"""Worst relative difference from the official adamp 0.3.0 package, float64, per entry point.

    python benchmarks/parity.py

Runs the parity scenarios of the test suite (every option, gradients that fire each branch,
1-D to 4-D shapes) and prints max |ours - official| / max |official| over all steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import jax

jax.config.update("jax_enable_x64", True)

import test_optax_adapter  # noqa: E402
import test_parity  # noqa: E402
import test_torch_adapter as tt  # noqa: E402
from oracle import ADAMP_OPTIONS, SGDP_OPTIONS  # noqa: E402
from timing import table  # noqa: E402


def main() -> None:
    rows = []
    worst = 0.0
    for config in test_parity.CONFIGS.values():
        for shape in test_parity.SHAPES:
            worst = max(
                worst, test_parity._run(config, shape, test_parity.MODES, seed=1, steps=30)[3]
            )
    rows.append(
        (
            "adamp_core.step (NumPy)",
            f"{len(test_parity.CONFIGS)} configs x {len(test_parity.SHAPES)} shapes x 30 steps",
            f"{worst:.1e}",
        )
    )
    worst = 0.0
    for kind, options in [("adamp", o) for o in ADAMP_OPTIONS] + [
        ("sgdp", o) for o in SGDP_OPTIONS
    ]:
        worst = max(worst, test_optax_adapter._run(kind, options, steps=30)[0])
    rows.append(
        (
            "adapters.optax (jax.jit)",
            f"{len(ADAMP_OPTIONS) + len(SGDP_OPTIONS)} option sets"
            f" x {len(test_optax_adapter.SHAPES)} leaves x 30 steps",
            f"{worst:.1e}",
        )
    )
    worst = 0.0
    for ours, theirs, options in tt.CASES:
        for extra in ({"foreach": False}, {"foreach": True}, {}):
            m1, m2 = tt.make_model(), tt.make_model()
            tt.train(m1, ours(m1.parameters(), **options, **extra), 30)
            tt.train(m2, theirs(m2.parameters(), **options), 30)
            for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
                a, b = a.detach(), b.detach()
                worst = max(worst, float((a - b).abs().max() / b.abs().max()))
    rows.append(
        (
            "adapters.torch (conv+BN+linear)",
            f"{len(tt.CASES)} option sets x 3 paths x 30 steps",
            f"{worst:.1e}",
        )
    )
    print(table(rows, ("entry point", "scenarios", "worst relative difference")))


if __name__ == "__main__":
    main()
