"""Interleaved timing: every implementation runs once per round, in rotating order, so drift
and noise on a shared machine hit all of them alike. Report medians and ratios, never one run."""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


def fix_allocator() -> bool:
    """Fix glibc malloc's thresholds, so that every implementation allocates alike.

    By default glibc returns large blocks to the system with ``munmap`` and raises its mmap
    threshold as the process frees large blocks, so a step that allocates temporaries (say
    ``AdamW(foreach=True)``, 195 MB on ResNet-50) pays page faults or not depending on what
    ran before in the process: its time varied 55-105 ms between runs. Setting the thresholds
    keeps the blocks (up to 32 MB, glibc's maximum) in the heap. Returns False where glibc
    is absent.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 2**20) and mallopt(m_trim_threshold, 2**30))


ALLOCATOR_FIXED = fix_allocator()


#: A row whose per-round ratios spread (interquartile range) over more than this fraction of
#: their median is flagged as unstable rather than reported as a fact.
UNSTABLE_SPREAD = 0.25


@dataclass
class Result:
    """One implementation on one workload.

    ``ratio`` is the median over rounds of (this step's time / the reference's time in the same
    round), so drift that hits both alike cancels; ``low`` and ``high`` are that ratio's first
    and third quartiles.
    """

    name: str
    seconds: float
    ratio: float
    reference: str
    first: float | None = None  #: seconds of the first step (compilation included)
    memory_mb: float | None = None  #: peak extra memory of a step
    low: float = float("nan")
    high: float = float("nan")
    rounds: int = 0  #: how many rounds the ratio is the median of

    @property
    def unstable(self) -> bool:
        return (self.high - self.low) > UNSTABLE_SPREAD * self.ratio

    def ratio_text(self) -> str:
        """``1.59x (1.52-1.66)``, with ``unstable`` where the spread is too wide to trust."""
        text = f"{self.ratio:.2f}x ({self.low:.2f}-{self.high:.2f})"
        return text + " unstable" if self.unstable else text


def interleaved_groups(
    groups: list[dict[str, Callable[[], object]]],
    *,
    rounds: int,
    warmup: int = 1,
    label: str = "",
    until: float | None = None,
) -> list[dict[str, list[float]]]:
    """Seconds per call of every function of every group, ``rounds`` samples each, or more:
    with ``until`` (a ``time.perf_counter()`` value) rounds go on while a round would still
    end before it (judged by the rounds so far).

    Each round runs every group once, each group's functions back to back (an
    implementation and its reference a fraction of a second apart), the order of the groups
    and of the functions within each rotating from round to round. Running all groups in
    the same rounds spreads every group's samples over the whole measurement, so a slow
    minute on a shared machine weighs on all of them alike instead of on one group.

    A progress bar (tqdm, where installed) counts the warm-up calls and the rounds.
    """
    bar = progress(rounds + warmup, label)
    for fns in groups:
        for fn in fns.values():
            for _ in range(warmup):
                fn()
    bar.update(warmup)
    samples = [{n: [] for n in fns} for fns in groups]
    started, r = time.perf_counter(), 0
    while r < rounds or (until is not None and _next_round_fits(started, r, until)):
        if r >= rounds:  # a round beyond the planned ones: the bar grows with it
            bar.total = warmup + r + 1
        for g in _rotated(list(range(len(groups))), r):
            fns = groups[g]
            for name in _rotated(list(fns), r):
                t0 = time.perf_counter()
                fns[name]()
                samples[g][name].append(time.perf_counter() - t0)
        bar.update(1)
        r += 1
    bar.close()
    return samples


def _next_round_fits(started: float, done: int, until: float) -> bool:
    now = time.perf_counter()
    return now + (now - started) / max(done, 1) <= until


def _rotated(items: list, r: int) -> list:
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


@dataclass
class Bench:
    """One suite's implementations on one workload, set up and ready to time."""

    title: str  #: the heading of its table
    steps: dict[str, Callable[[], object]]  #: one step each, finished when the call returns
    reference_of: Callable[[str], str]  #: each implementation's reference (a name in steps)
    first: dict[str, float] | None = None  #: seconds of each first step
    memory: Callable[[], dict[str, float]] | None = None  #: peak extra MB, measured after


def measure(
    benches: list[Bench], rounds: int, label: str = "", until: float | None = None
) -> list[list[Result]]:
    """Time all ``benches`` in the same interleaved rounds (at least ``rounds``; more while
    they fit before ``until``, see ``interleaved_groups``); print and return each one's
    results."""
    samples = interleaved_groups(
        [b.steps for b in benches], rounds=rounds, label=label, until=until
    )
    out = []
    for bench, by_name in zip(benches, samples):
        memory = bench.memory() if bench.memory else None
        results = summarize(by_name, bench.reference_of, bench.first, memory)
        print_results(f"{bench.title}, median of {results[0].rounds} interleaved steps", results)
        out.append(results)
    return out


class _NoBar:
    total = 0  # a bar's total, set and ignored

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, label: str):
    """A tqdm progress bar on stderr, or nothing where tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=label, unit="round", leave=False, dynamic_ncols=True)


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile (inclusive method: defined for 2+ samples)."""
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def copy_bandwidth(nbytes: int = 400_000_000, repeats: int = 7) -> float:
    """Bytes per second of a large NumPy copy (read + write counted)."""
    import numpy as np

    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(best)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summarize(
    samples: dict[str, list[float]],
    reference_of: Callable[[str], str],
    first: dict[str, float] | None = None,
    memory: dict[str, float] | None = None,
) -> list[Result]:
    """Medians, and ratios to each implementation's reference round by round, in the order
    measured."""
    results = []
    for name, xs in samples.items():
        reference = reference_of(name)
        per_round = [x / r for x, r in zip(xs, samples[reference])]
        low, ratio, high = quartiles(per_round)
        results.append(
            Result(
                name,
                median(xs),
                ratio,
                reference,
                (first or {}).get(name),
                (memory or {}).get(name),
                low,
                high,
                len(per_round),
            )
        )
    return results


def print_results(title: str, results: list[Result]) -> None:
    """The Markdown table of one workload."""
    header = ["implementation", "ms / step", "ratio to reference (IQR)", "reference"]
    if any(r.first is not None for r in results):
        header.append("first step s")
    if any(r.memory_mb is not None for r in results):
        header.append("peak extra MB")
    rows = []
    for r in results:
        row = [r.name, f"{r.seconds * 1e3:.1f}", r.ratio_text(), r.reference]
        if "first step s" in header:
            row.append("" if r.first is None else f"{r.first:.2f}")
        if "peak extra MB" in header:
            row.append("" if r.memory_mb is None else f"{r.memory_mb:.0f}")
        rows.append(tuple(row))
    print(f"\n{title}")
    print(table(rows, tuple(header)))
