"""The benchmark suite's statistics: ratios round by round, their spread, and the flag."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import timing


def test_ratio_is_taken_round_by_round_so_shared_drift_cancels():
    # the machine slows down 3x in the last rounds; both implementations feel it alike
    samples = {"ref": [1.0, 1.0, 1.0, 3.0, 3.0], "ours": [2.0, 2.0, 2.0, 6.0, 6.0]}
    ours = timing.summarize(samples, lambda name: "ref")[1]
    assert (ours.low, ours.ratio, ours.high) == (2.0, 2.0, 2.0)
    assert not ours.unstable and ours.ratio_text() == "2.00x (2.00-2.00)"


def test_a_wide_spread_is_flagged_not_reported_as_a_fact():
    samples = {"ref": [1.0] * 5, "ours": [1.0, 1.5, 2.0, 2.5, 3.0]}
    ours = timing.summarize(samples, lambda name: "ref")[1]
    assert (ours.low, ours.ratio, ours.high) == (1.5, 2.0, 2.5)
    assert ours.unstable and ours.ratio_text().endswith("unstable")


@pytest.mark.parametrize("rounds", [1, 2, 7])
def test_interleaved_gives_one_sample_per_round(rounds):
    calls = []
    samples = timing.interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=rounds, warmup=1
    )
    assert {k: len(v) for k, v in samples.items()} == {"a": rounds, "b": rounds}
    assert len(calls) == 2 * (rounds + 1)
