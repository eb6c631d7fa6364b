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


@dataclass
class Result:
    """One implementation on one workload: median seconds per step and the ratio to its reference."""

    name: str
    seconds: float
    ratio: float
    reference: str
    first: float | None = None  #: seconds of the first step (compilation included)
    memory_mb: float | None = None  #: peak extra memory of a step


def interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    rounds: int = 20,
    warmup: int = 2,
    sync: Callable[[object], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each function, ``rounds`` samples each, after ``warmup`` calls."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            out = fns[name]()
            if sync:
                sync(out)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            out = fns[name]()
            if sync:
                sync(out)
            samples[name].append(time.perf_counter() - t0)
    return samples


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
    """Medians and ratios to each implementation's reference, in the order measured."""
    return [
        Result(
            name,
            median(xs),
            median(xs) / median(samples[reference_of(name)]),
            reference_of(name),
            (first or {}).get(name),
            (memory or {}).get(name),
        )
        for name, xs in samples.items()
    ]


def print_results(title: str, results: list[Result]) -> None:
    """The Markdown table of one workload."""
    header = ["implementation", "ms / step", "ratio to reference", "reference"]
    if any(r.first is not None for r in results):
        header.append("first step s")
    if any(r.memory_mb is not None for r in results):
        header.append("peak extra MB")
    rows = []
    for r in results:
        row = [r.name, f"{r.seconds * 1e3:.1f}", f"{r.ratio:.2f}", r.reference]
        if "first step s" in header:
            row.append("" if r.first is None else f"{r.first:.2f}")
        if "peak extra MB" in header:
            row.append("" if r.memory_mb is None else f"{r.memory_mb:.0f}")
        rows.append(tuple(row))
    print(f"\n{title}")
    print(table(rows, tuple(header)))
