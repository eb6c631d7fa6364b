"""Compiled PyTorch steps: how long the first step takes (compilation, from a cold Inductor
cache), how fast the later ones are, against the eager ``torch.optim.AdamW(foreach=True)``,
and how much memory a step allocates at its peak.

    python benchmarks/compiled_step.py [--rounds 15] [--workload resnet50] [--out docs/snippets/compiled-step.md]

Rows: ``torch.compile`` of ``AdamW(foreach=True).step`` (the anchor); ``AdamP(compile=True)``
as a CPU runs it (the core's update of each large tensor compiled, per rank); and as CUDA runs
it (the group's batched step compiled as one graph), forced onto this device when it is not
an accelerator, beside the eager batched step it compiles. Float32, ResNet-50 shapes by
default; the ratios are medians of interleaved steps (``timing.py``). Takes minutes: most of it
compiling.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# a cold cache, so that the first step's time is a whole compilation
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")

import torch
from shapes import WORKLOADS, count
from timing import Bench, measure
from torch_step import _params

from adapters.torch import AdamP
from adapters.torch.foreach import namespace

REFERENCE = "torch.optim.AdamW(foreach=True), eager"


def _batched(step: Callable[[], object], device: str) -> Callable[[], object]:
    """``step`` with the group's projection batched on ``device`` (the CUDA path)."""

    def run() -> object:
        held = namespace.batched_devices
        namespace.batched_devices = (*held, device)
        try:
            return step()
        finally:
            namespace.batched_devices = held

    return run


def peak_bytes(step: Callable[[], object]) -> int:
    """Peak extra memory of one call of ``step``: the running sum of the sizes of the blocks
    it allocates and frees, in order, as the profiler records them. Unlike a dispatch mode
    (``counting.step_bytes``) the profiler sees the buffers of compiled code."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        step()
    records = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak


def _synchronized(step: Callable[[], object]) -> Callable[[], object]:
    """``step``, finished on the device when the call returns."""

    def run() -> object:
        out = step()
        torch.cuda.synchronize()
        return out

    return run


def prepare(workload: str, device: str) -> Bench:
    shapes = WORKLOADS[workload]()

    def params() -> list[torch.nn.Parameter]:
        return [p.to(device) if device != "cpu" else p for p in _params(shapes, 4)]

    anchor = torch.optim.AdamW(params(), lr=1e-3, weight_decay=1e-2, foreach=True)
    anchor_compiled = torch.optim.AdamW(params(), lr=1e-3, weight_decay=1e-2, foreach=True)
    per_tensor = AdamP(params(), lr=1e-3, weight_decay=1e-2, compile=True)
    group = AdamP(params(), lr=1e-3, weight_decay=1e-2, compile=True)
    eager = AdamP(params(), lr=1e-3, weight_decay=1e-2, foreach=True)
    steps = {
        REFERENCE: anchor.step,
        "torch.compile(AdamW(foreach=True).step)": torch.compile(anchor_compiled.step),
        "ours AdamP compile=True, CPU path (per tensor)": per_tensor.step,
        "ours AdamP compile=True, CUDA path (group graph)": _batched(group.step, device),
        "ours AdamP foreach=True, CUDA path, eager": _batched(eager.step, device),
    }
    if device != "cpu":  # on an accelerator, compile=True takes the group graph by itself
        del steps["ours AdamP compile=True, CPU path (per tensor)"]
        steps = {name: _synchronized(step) for name, step in steps.items()}
    first = {}
    for name, step in steps.items():
        started = time.perf_counter()
        step()
        first[name] = time.perf_counter() - started
        print(f"first step of {name}: {first[name]:.1f} s", flush=True)

    def memory() -> dict[str, float]:
        return {name: peak_bytes(step) / 2**20 for name, step in steps.items()}

    return Bench(f"Compiled steps, {workload}", steps, lambda name: REFERENCE, first, memory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--workload", default="resnet50", choices=sorted(WORKLOADS))
    parser.add_argument("--out", type=Path, help="write the table as Markdown here")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    (results,) = measure([prepare(args.workload, device)], args.rounds, label="compiled")
    total = count(WORKLOADS[args.workload]())
    lines = [
        f"Compiled steps on {args.workload} shapes, float32, on {device} "
        f"({torch.get_num_threads()} threads, torch {torch.__version__}): the first step from a "
        "cold Inductor cache, the median step time against the eager "
        f"`torch.optim.AdamW(foreach=True)` over {results[0].rounds} interleaved rounds, and the "
        "peak of the memory a step allocates beyond the state (the profiler's allocation "
        "records, which see compiled code's buffers too).",
        "",
        "| step | first step | median step, ratio | peak extra memory |",
        "|---|---|---|---|",
    ]
    for r in results:
        first = f"{r.first:.1f} s" if r.first is not None else ""
        memory = f"{r.memory_mb:.0f} MB ({r.memory_mb * 2**20 / total:.1f} B/param)"
        lines.append(
            f"| {r.name} | {first} | {r.seconds * 1e3:.0f} ms, {r.ratio_text()} | {memory} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
