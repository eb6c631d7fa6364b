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
    samples = timing.interleaved_groups(
        [{"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}], rounds=rounds, warmup=1
    )
    assert [{k: len(v) for k, v in s.items()} for s in samples] == [{"a": rounds, "b": rounds}]
    assert len(calls) == 2 * (rounds + 1)


def test_rounds_go_on_while_they_fit_before_the_deadline(monkeypatch):
    # a clock that only the step moves: each round takes exactly one second
    clock = [100.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def step():
        clock[0] += 1.0

    samples = timing.interleaved_groups([{"a": step}], rounds=2, warmup=0, until=105.5)
    # rounds 3, 4 and 5 still end by 105.5; a sixth would end at 106
    assert samples[0]["a"] == [1.0] * 5
    short = timing.interleaved_groups([{"a": step}], rounds=2, warmup=0, until=0.0)
    assert len(short[0]["a"]) == 2  # at least ``rounds``, whatever the deadline


def test_groups_share_rounds_and_each_group_runs_back_to_back():
    calls = []
    groups = [{n: (lambda n=n: calls.append(n)) for n in names} for names in ("ab", "xyz")]
    samples = timing.interleaved_groups(groups, rounds=3, warmup=0)
    assert [{k: len(v) for k, v in s.items()} for s in samples] == [
        {"a": 3, "b": 3},
        {"x": 3, "y": 3, "z": 3},
    ]
    # round 0: groups in order; round 1: groups and names rotated by one; round 2: by two
    assert "".join(calls) == "abxyz" + "yzxba" + "abzxy"


def test_runs_agree_where_their_interquartile_ranges_overlap():
    import run

    earlier = {"ours": {"w": [2.0, 1.9, 2.1]}, "other": {"w": [3.0, 2.9, 3.1]}}
    now = {"ours": {"w": [2.2, 2.1, 2.3]}, "other": {"w": [3.4, 3.2, 3.5]}, "new": {"w": [1, 1, 1]}}
    text = run.agreement(earlier, now)
    assert text.startswith("1 of 2 rows agree")
    assert "| ours (w) | 2.00x (1.90-2.10) | 2.20x (2.10-2.30) | yes |" in text
    assert "| other (w) | 3.00x (2.90-3.10) | 3.40x (3.20-3.50) | **no** |" in text
    assert "new (w)" not in text
