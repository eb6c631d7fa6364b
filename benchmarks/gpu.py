"""One optimizer step on a CUDA GPU: ours on every path against the references.

    python benchmarks/gpu.py [--workload resnet50 vit_b16] [--rounds 50]

On a machine with a CUDA device: times one ``step()`` (median of interleaved rounds, each
synchronized) of ``torch.optim.AdamW(fused=True)``, ``AdamW(foreach=True)``, the official
``adamp.AdamP``, ``pytorch_optimizer.AdamP`` and ours (default, ``foreach=False``,
``compile=True``), prints ratios to ``AdamW(foreach=True)``, and checks that a step captured
in a CUDA graph (``torch.cuda.graph``, tensor learning rate) gives what an eager step gives.
Without a CUDA device it says so and exits 0. (``benchmarks/launch_counts.py`` counts what a
step launches without a GPU.)
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from shapes import WORKLOADS


def _params(shapes, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, device="cuda", generator=g) * 0.05) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, device="cuda", generator=g)
    return params


def _makers():
    from adapters.torch import AdamP

    makers = {
        "torch.optim.AdamW(fused=True)": lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True),
        "torch.optim.AdamW(foreach=True)": lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True),
        "ours AdamP (default)": lambda p: AdamP(p, lr=1e-3, weight_decay=1e-2),
        "ours AdamP foreach=False": lambda p: AdamP(p, lr=1e-3, weight_decay=1e-2, foreach=False),
        "ours AdamP compile=True": lambda p: AdamP(p, lr=1e-3, weight_decay=1e-2, compile=True),
    }
    try:
        import adamp

        makers["official adamp.AdamP"] = lambda p: adamp.AdamP(p, lr=1e-3, weight_decay=1e-2)
    except ImportError:
        pass
    try:
        import pytorch_optimizer

        makers["pytorch_optimizer.AdamP"] = lambda p: pytorch_optimizer.AdamP(p, lr=1e-3)
    except ImportError:
        pass
    return makers


def time_steps(workload: str, rounds: int) -> dict[str, float]:
    shapes = WORKLOADS[workload]()
    opts = {name: make(_params(shapes)) for name, make in _makers().items()}
    for opt in opts.values():  # warm up: state, layouts, compilation
        for _ in range(3):
            opt.step()
    times: dict[str, list[float]] = {name: [] for name in opts}
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(rounds):
        for name, opt in opts.items():
            torch.cuda.synchronize()
            start.record()
            opt.step()
            end.record()
            torch.cuda.synchronize()
            times[name].append(start.elapsed_time(end))
    return {name: statistics.median(t) for name, t in times.items()}


def check_graph_capture(workload: str) -> float:
    """Worst relative difference between graph-replayed and eager steps, with the learning
    rate changed between replays through a device tensor."""
    from adapters.torch import AdamP

    shapes = WORKLOADS[workload]()
    eager_params, graph_params = _params(shapes), _params(shapes)
    lr = torch.tensor(1e-3, device="cuda")
    eager = AdamP(eager_params, lr=1e-3, weight_decay=1e-2)
    graphed = AdamP(graph_params, lr=lr, weight_decay=1e-2)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up allocates state and layouts outside the capture
            graphed.step()
            eager.step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graphed.step()
    worst = 0.0
    for value in (1e-3, 5e-4, 2e-4):
        lr.fill_(value)
        for group in eager.param_groups:
            group["lr"] = value
        graph.replay()
        eager.step()
        torch.cuda.synchronize()
        for a, b in zip(graph_params, eager_params, strict=True):
            worst = max(worst, float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "no CUDA device here: nothing to time (benchmarks/launch_counts.py counts a step "
            "without one)"
        )
        sys.exit(0)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for workload in args.workload:
        medians = time_steps(workload, args.rounds)
        ref = medians["torch.optim.AdamW(foreach=True)"]
        print(f"\n{workload}: median step, ratio to AdamW(foreach=True)")
        for name, ms in medians.items():
            print(f"  {name:36s} {ms:8.3f} ms  {ms / ref:6.2f}x")
        print(
            f"  graph-captured vs eager AdamP, worst relative difference: "
            f"{check_graph_capture(workload):.2e}"
        )


if __name__ == "__main__":
    main()
