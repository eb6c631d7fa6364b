"""One optimizer step on ResNet-50 / ViT-B/16 parameter shapes, PyTorch CPU, float32.

Interleaved in one process with torch.optim.AdamW/SGD(foreach=True) and the official adamp
package; reports median ms, the ratio to the torch.optim reference, the first step's time and
the peak extra memory of a step.

    python benchmarks/torch_step.py [--rounds 20] [--workload resnet50 vit_b16]
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
from shapes import WORKLOADS, count
from timing import Bench, Result, measure


def _params(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.05) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    return params


def _peak_extra(step) -> float:
    """Peak extra memory of one step, in MB: the bytes of the tensors it creates that are
    alive at once (``counting.step_bytes``, which follows each tensor until it dies)."""
    from counting import step_bytes

    return step_bytes(step) / 2**20


def _pytorch_optimizer_adamp() -> dict:
    """kozistr's pytorch_optimizer AdamP, when installed (``pip install pytorch-optimizer``)."""
    try:
        from pytorch_optimizer import AdamP as KozistrAdamP
    except ImportError:
        return {}
    return {"pytorch_optimizer.AdamP": lambda p: KozistrAdamP(p, lr=1e-3, weight_decay=1e-2)}


def candidates(shapes):
    import adamp

    from adapters.torch import SGDP, AdamP

    made = {
        "torch.optim.AdamW foreach": lambda p: torch.optim.AdamW(
            p, lr=1e-3, weight_decay=1e-2, foreach=True
        ),
        "ours AdamP default (per tensor on CPU)": lambda p: AdamP(p, lr=1e-3, weight_decay=1e-2),
        "ours AdamP foreach=True": lambda p: AdamP(p, lr=1e-3, weight_decay=1e-2, foreach=True),
        "ours AdamP compile=True": lambda p: AdamP(p, lr=1e-3, weight_decay=1e-2, compile=True),
        "official adamp.AdamP": lambda p: adamp.AdamP(p, lr=1e-3, weight_decay=1e-2),
        **_pytorch_optimizer_adamp(),
        "torch.optim.SGD foreach": lambda p: torch.optim.SGD(
            p, lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True
        ),
        "ours SGDP default (per tensor on CPU)": lambda p: SGDP(
            p, lr=0.1, momentum=0.9, weight_decay=1e-4
        ),
        "ours SGDP foreach=True": lambda p: SGDP(
            p, lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True
        ),
        "ours SGDP compile=True": lambda p: SGDP(
            p, lr=0.1, momentum=0.9, weight_decay=1e-4, compile=True
        ),
        "official adamp.SGDP": lambda p: adamp.SGDP(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
    }
    return made


def run(workload: str, rounds: int) -> list[Result]:
    """Time ``prepare(workload)`` alone and print its table."""
    return measure([prepare(workload)], rounds, label=f"PyTorch {workload}")[0]


def prepare(workload: str) -> Bench:
    """Every candidate optimizer, built on ``workload`` and stepped once (its first step);
    the peak extra memory of a step is measured after the timing (``Bench.memory``)."""
    shapes = WORKLOADS[workload]()
    opts, first = {}, {}
    for i, (name, make) in enumerate(candidates(shapes).items()):
        opt = make(_params(shapes, i))
        t0 = time.perf_counter()
        opt.step()
        first[name] = time.perf_counter() - t0
        opts[name] = opt

    def peak_memory() -> dict[str, float]:
        out = {}
        for name, opt in opts.items():
            if "compile=True" in name:
                continue  # under the tracker's dispatch mode dynamo would trace another graph
            gc.collect()
            out[name] = _peak_extra(opt.step)
        return out

    def reference(name: str) -> str:
        return "torch.optim.SGD foreach" if "SGD" in name else "torch.optim.AdamW foreach"

    return Bench(
        f"{workload}: {len(shapes)} tensors, {count(shapes) / 1e6:.1f}M params, float32, CPU, "
        f"{torch.get_num_threads()} threads",
        {n: o.step for n, o in opts.items()},
        reference,
        first,
        peak_memory,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--workload", choices=list(WORKLOADS), nargs="*", default=["resnet50", "vit_b16"]
    )
    args = parser.parse_args()
    with torch.no_grad():
        for w in args.workload:
            run(w, args.rounds)


if __name__ == "__main__":
    main()
