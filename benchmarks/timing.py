"""Interleaved timing: every implementation runs once per round, in rotating order, so drift
and noise on a shared machine hit all of them alike. Report medians and ratios, never one run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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
