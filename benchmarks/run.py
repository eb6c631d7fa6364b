"""The speed suite: every implementation on ResNet-50 and ViT-B/16 parameter shapes, float32, CPU.

Rows are implementations (ours: the PyTorch default, foreach and compiled paths, the JAX/Optax
jitted step, NumPy pure and in place; references: torch.optim AdamW/SGD foreach, the official
adamp package, pytorch_optimizer, optax.adamw/sgd, a NumPy AdamW), columns are workloads; each
cell is the median step time and its ratio to the framework's plain optimizer, measured
interleaved in the same process. A floor row gives the time the machine's measured copy
bandwidth allows for the bytes each update must move.

    python benchmarks/run.py [--quick] [--out benchmarks/results.md] [--chart benchmarks/results.png]
                             [--compare an-earlier-results.json]

Beside the table, the per-row ratios and quartiles are written as JSON (``--out`` with the
suffix ``.json``); ``--compare`` reads such a file from an earlier run and says, row by row,
whether the two runs agree within their stated spread (their interquartile ranges overlap).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

from shapes import WORKLOADS, count
from timing import UNSTABLE_SPREAD, Result, copy_bandwidth, measure, table

STARTED = time.perf_counter()

#: Bytes per parameter an update must move at least: AdamW reads p, g, m, v and writes p, m, v
#: (7 x 4 bytes); AdamP also reads the weight a second time for the projection's reductions.
FLOOR_BYTES = {"AdamW": 28, "AdamP": 32, "SGD": 20, "SGDP": 24}

NOT_MEASURED = {
    "timm AdamP/SGDP": "timm needs torchvision, whose PyPI build does not import beside the pinned "
    "CPU torch 2.13.0 the suite runs on; its AdamP is the official one with .reshape",
}


#: ``--quick`` times rounds while they end within this many seconds of the start; the report
#: and the chart take a few more.
QUICK_SECONDS = 150

#: Workloads up to this many parameters are timed with every suite in the same rounds, so that
#: a slow minute on a shared machine weighs on all suites alike; all suites' arrays are then
#: alive at once: about 90 parameter-sized float32 arrays, 9 GB for ResNet-50 (25.6M), 31 GB
#: for ViT-B/16 (86.6M), whose suites are therefore timed one after the other.
TOGETHER_MAX_PARAMS = 40_000_000


def _measure(
    suites: list[tuple[str, object]],
    workload: str,
    rounds: int,
    memory: bool,
    until: float | None = None,
) -> list[list[Result]]:
    """Set up every suite on ``workload`` (compiled, first steps taken), then time them all in
    the same interleaved rounds, at least ``rounds`` and more while they fit before ``until``
    (and, with ``memory``, measure peak memory after)."""
    benches = []
    for framework, suite in suites:
        started = time.perf_counter()
        bench = suite.prepare(workload)
        benches.append(bench if memory else dataclasses.replace(bench, memory=None))
        took = time.perf_counter() - started
        print(f"({framework} {workload}: set up in {took:.0f} s)", file=sys.stderr)
    started = time.perf_counter()
    measured = measure(benches, rounds, label=workload, until=until)
    took = time.perf_counter() - started
    done = measured[0][0].rounds
    print(f"({workload}: {done} rounds in {took:.0f} s)", file=sys.stderr)
    return measured


def _how_timed(workloads: list[str]) -> str:
    together = [w for w in workloads if count(WORKLOADS[w]()) <= TOGETHER_MAX_PARAMS]
    apart = [w for w in workloads if w not in together]
    parts = [f"{', '.join(together)}: every suite in the same rounds"] if together else []
    parts += [f"{', '.join(apart)}: one suite after another"] if apart else []
    return "; ".join(parts)


def _suites(quick: bool) -> list[tuple[str, object]]:
    suites = []
    import numpy_core

    suites.append(("NumPy", numpy_core))
    try:
        import torch_step

        suites.append(("PyTorch", torch_step))
    except ImportError as err:
        print(f"(PyTorch suite skipped: {err})", file=sys.stderr)
    try:
        import jax_step

        suites.append(("JAX", jax_step))
    except ImportError as err:
        print(f"(JAX suite skipped: {err})", file=sys.stderr)
    return suites


def environment() -> str:
    """The machine, the library versions and the date, for the table and the chart."""
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for package in ("numpy", "torch", "jax", "optax", "adamp"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return (
        f"{platform.machine()} CPU, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"{', '.join(versions)}; {datetime.date.today().isoformat()}"
    )


def _cell(r: Result) -> str:
    return f"{r.seconds * 1e3:.0f} ms, {r.ratio_text()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="ResNet-50 only, no memory column; at least 10 rounds, more while the run stays "
        f"under {QUICK_SECONDS} s (under 3 minutes on 2 cores with the report)",
    )
    parser.add_argument(
        "--rounds", type=int, default=20, help="rounds of the full run (default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).with_name("results.md")),
        help="the Markdown table; the ratios go beside it as .json (default: %(default)s)",
    )
    parser.add_argument(
        "--chart",
        default=str(Path(__file__).with_name("results.png")),
        help="the chart, where matplotlib is installed (default: %(default)s)",
    )
    parser.add_argument(
        "--compare", metavar="JSON", help="an earlier run's JSON: report where the runs disagree"
    )
    args = parser.parse_args()
    workloads = ["resnet50"] if args.quick else list(WORKLOADS)
    rounds = 10 if args.quick else args.rounds
    until = STARTED + QUICK_SECONDS if args.quick else None

    bandwidth = copy_bandwidth()
    results: dict[str, dict[str, dict[str, Result]]] = {}  # framework -> name -> workload
    suites = _suites(args.quick)
    for workload in workloads:
        together = count(WORKLOADS[workload]()) <= TOGETHER_MAX_PARAMS
        for batch in [suites] if together else [[s] for s in suites]:
            for (framework, _), rows in zip(
                batch, _measure(batch, workload, rounds, not args.quick, until)
            ):
                for r in rows:
                    results.setdefault(framework, {}).setdefault(r.name, {})[workload] = r

    env = environment()
    counts = sorted(
        {r.rounds for rows in results.values() for by in rows.values() for r in by.values()}
    )
    rounds_text = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    parts = [
        f"Median step time and its ratio to the framework's plain AdamW/SGD, measured "
        f"interleaved ({_how_timed(workloads)}): the median of the per-round ratios, with their "
        f"interquartile range in parentheses; a row whose range is wider than "
        f"{UNSTABLE_SPREAD:.0%} of its ratio is marked unstable. float32, {rounds_text} rounds; "
        f"{env}.",
    ]
    for framework, rows in results.items():
        parts += ["", section(framework.lower(), framework_table(framework, rows, workloads))]
    floors = [
        (
            f"{kind} at {bandwidth / 1e9:.0f} GB/s copy bandwidth",
            *(f"{nbytes * count(WORKLOADS[w]()) / bandwidth * 1e3:.0f} ms" for w in workloads),
        )
        for kind, nbytes in FLOOR_BYTES.items()
    ]
    floors += [
        (name, *(f"not measured: {why}" for _ in workloads)) for name, why in NOT_MEASURED.items()
    ]
    parts += ["", section("floors", table(floors, ("time the bytes allow", *workloads)))]
    text = "\n".join(parts)
    print("\n" + text)
    Path(args.out).write_text(text + "\n")
    print(f"\ntable written to {args.out}")
    measured = {
        f"{fw}: {name}": {w: [r.ratio, r.low, r.high] for w, r in by.items()}
        for fw, rows in results.items()
        for name, by in rows.items()
    }
    json_path = Path(args.out).with_suffix(".json")
    json_path.write_text(json.dumps(measured, indent=1) + "\n")
    print(f"ratios written to {json_path}")
    if args.compare:
        print("\n" + agreement(json.loads(Path(args.compare).read_text()), measured))
    flat = {f"{fw}: {name}": by for fw, rows in results.items() for name, by in rows.items()}
    _chart(flat, workloads, args.chart, f"{rounds_text} rounds; {env}".replace("; ", "\n"))


def agreement(earlier: dict, now: dict) -> str:
    """Row by row, whether two runs' ratios agree within their stated spread: their
    interquartile ranges overlap. Rows measured in only one run are left out."""
    rows, agree = [], 0
    for name, by in now.items():
        for workload, (ratio, low, high) in by.items():
            before = earlier.get(name, {}).get(workload)
            if before is None:
                continue
            ok = low <= before[2] and before[1] <= high
            agree += ok
            rows.append(
                (
                    f"{name} ({workload})",
                    f"{before[0]:.2f}x ({before[1]:.2f}-{before[2]:.2f})",
                    f"{ratio:.2f}x ({low:.2f}-{high:.2f})",
                    "yes" if ok else "**no**",
                )
            )
    summary = f"{agree} of {len(rows)} rows agree (interquartile ranges overlap)"
    return summary + "\n\n" + table(rows, ("row", "earlier run", "this run", "agree"))


def section(name: str, text: str) -> str:
    """Markers that let a page include one part of the results file (pymdownx.snippets)."""
    return f"<!-- --8<-- [start:{name}] -->\n{text}\n<!-- --8<-- [end:{name}] -->"


def framework_table(
    framework: str, rows: dict[str, dict[str, Result]], workloads: list[str]
) -> str:
    """One framework's rows: a cell per workload, then first-step time and peak extra memory
    (one value per workload, separated by /) where the suite measures them."""
    header = [framework, *workloads]
    extras = [
        ("first step s", "first", "{:.2f}"),
        ("peak extra MB", "memory_mb", "{:.0f}"),
    ]
    extras = [
        e
        for e in extras
        if any(getattr(r, e[1]) is not None for by in rows.values() for r in by.values())
    ]
    header += [label for label, _, _ in extras]
    lines = []
    for name, by in rows.items():
        line = [name, *(_cell(by[w]) if w in by else "" for w in workloads)]
        for _, field, fmt in extras:
            values = [getattr(by[w], field) if w in by else None for w in workloads]
            shown = [("" if v is None else fmt.format(v)) for v in values]
            line.append("" if not any(shown) else " / ".join(shown))
        lines.append(tuple(line))
    return table(lines, tuple(header))


def _chart(
    ratios: dict[str, dict[str, Result]], workloads: list[str], path: str, subtitle: str
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no chart)")
        return
    names = list(ratios)
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) + 2.5))
    height = 0.8 / len(workloads)
    for i, workload in enumerate(workloads):
        ys = [j + i * height for j in range(len(names))]
        got = [ratios[n].get(workload) for n in names]
        widths = [r.ratio if r else 0.0 for r in got]
        spread = [
            [r.ratio - r.low if r else 0.0 for r in got],
            [r.high - r.ratio if r else 0.0 for r in got],
        ]
        ax.barh(ys, widths, height=height, label=workload, xerr=spread, capsize=2)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(names))], names, fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(
        "step time / the framework's plain AdamW or SGD (lower is faster)\n"
        "median of per-round ratios; bars: interquartile range"
    )
    ax.set_title(f"AdamP and SGDP step time, float32 CPU\n{subtitle}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"chart written to {path}")


if __name__ == "__main__":
    main()
