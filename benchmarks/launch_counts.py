"""What one step costs on a GPU, counted on this machine (no GPU needed).

    python benchmarks/launch_counts.py [--workload resnet50 vit_b16] [--out docs/snippets/gpu-counts.md]

PyTorch rows: one ``step()`` after a warm-up step on fake CUDA tensors (see counting.py):
kernel launches, host syncs, host-to-device copies, and a rough H200 time (5 us per launch,
20 us per sync or copy, 4 TB/s). JAX rows: runtime conditionals in the Optax step lowered
for each platform. Raw rows: array operations and Python scalars turned into arrays by
``adamp_core.step`` on a list of arrays, each of which CuPy would launch or copy.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from counting import count_raw_step, count_torch_step, peak_step_bytes
from shapes import WORKLOADS

import adamp_core as ac
from adapters.torch import SGDP, AdamP

TORCH_ROWS = {
    "torch.optim.AdamW(fused=True)": lambda p: torch.optim.AdamW(p, fused=True),
    "torch.optim.AdamW(foreach=True)": lambda p: torch.optim.AdamW(p, foreach=True),
    "official adamp.AdamP": lambda p: __import__("adamp").AdamP(p, weight_decay=1e-2),
    "ours AdamP, CUDA default (foreach)": lambda p: AdamP(p, weight_decay=1e-2),
    "ours AdamP foreach=False": lambda p: AdamP(p, weight_decay=1e-2, foreach=False),
    "ours AdamP nesterov=True": lambda p: AdamP(p, weight_decay=1e-2, nesterov=True),
    "ours SGDP, CUDA default (foreach)": lambda p: SGDP(p, lr=0.1, momentum=0.9, nesterov=True),
    "torch.optim.AdamW(foreach=True), weights and a no-decay group": lambda p: torch.optim.AdamW(
        no_decay_groups(p, 1e-2), foreach=True
    ),
    "ours AdamP, weights and a no-decay group": lambda p: AdamP(no_decay_groups(p, 1e-2)),
}


def no_decay_groups(params: list[torch.Tensor], weight_decay: float) -> list[dict]:
    """The two groups timm and transformers make: the weights with ``weight_decay``, the
    biases and norm weights (one dimension) without."""
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


#: Rows counted again with the conv weights in channels_last (ResNet-50 has 4-D weights).
CHANNELS_LAST_ROWS = ("torch.optim.AdamW(foreach=True)", "ours AdamP, CUDA default (foreach)")
#: Rows counted again with bfloat16 parameters (and so gradients and moments).
HALF_ROWS = (
    "torch.optim.AdamW(foreach=True)",
    "ours AdamP, CUDA default (foreach)",
    "ours SGDP, CUDA default (foreach)",
)


def _torch_rows(workload: str) -> list[str]:
    rows = []
    shapes = WORKLOADS[workload]()
    runs = [(name, make, {}) for name, make in TORCH_ROWS.items()]
    if any(len(s) == 4 for s in shapes):
        runs += [
            (f"{n}, channels_last conv weights", TORCH_ROWS[n], {"channels_last": True})
            for n in CHANNELS_LAST_ROWS
        ]
    runs += [(f"{n}, bfloat16", TORCH_ROWS[n], {"dtype": torch.bfloat16}) for n in HALF_ROWS]
    for name, make, options in runs:
        c = count_torch_step(make, shapes, **options)
        rows.append(
            f"| {name} | {c.launches:,} | {c.syncs} | {c.copies} | {c.estimate_ms:.2f} ms |"
        )
    return rows


#: The paths whose temporaries are measured: the CUDA default (foreach, the group's projection
#: batched) is forced onto CPU tensors, where the same code allocates the same buffers.
MEMORY_ROWS = {
    "torch.optim.AdamW(foreach=True)": lambda p: torch.optim.AdamW(p, foreach=True),
    "torch.optim.SGD(foreach=True)": lambda p: torch.optim.SGD(
        p, lr=0.1, momentum=0.9, foreach=True
    ),
    "ours AdamP, CUDA default (foreach)": lambda p: AdamP(p, weight_decay=1e-2, foreach=True),
    "ours SGDP, CUDA default (foreach)": lambda p: SGDP(p, lr=0.1, momentum=0.9, foreach=True),
}


def cuda_path_peak_bytes(make, shapes: list[tuple[int, ...]]) -> int:
    """``peak_step_bytes`` with the foreach path projecting in one batch, as on CUDA."""
    from adapters.torch import foreach

    held = foreach.namespace.batched_devices
    foreach.namespace.batched_devices = (*held, "cpu")
    try:
        return peak_step_bytes(make, shapes)
    finally:
        foreach.namespace.batched_devices = held


def _memory_rows(workload: str) -> list[str]:
    shapes = WORKLOADS[workload]()
    n = sum(math.prod(s) for s in shapes)
    rows = []
    for name, make in MEMORY_ROWS.items():
        peak = cuda_path_peak_bytes(make, shapes)
        rows.append(f"| {name} | {peak / 2**20:,.0f} MB | {peak / n:.1f} |")
    return rows


#: chunk_size as a fraction of the workload's elements, for the launches-versus-memory table
CHUNK_FRACTIONS = (None, 1 / 2, 1 / 4, 1 / 16)


def chunked_adamp(chunk_size: int | None):
    """``AdamP`` on the CUDA default path, ``chunk_size`` elements at a time."""
    return lambda p: AdamP(p, weight_decay=1e-2, foreach=True, chunk_size=chunk_size)


def _chunk_rows(workload: str) -> list[str]:
    shapes = WORKLOADS[workload]()
    n = sum(math.prod(s) for s in shapes)
    rows = []
    for fraction in CHUNK_FRACTIONS:
        chunk = None if fraction is None else int(n * fraction)
        launches = count_torch_step(chunked_adamp(chunk), shapes).launches
        peak = cuda_path_peak_bytes(chunked_adamp(chunk), shapes)
        label = (
            "None (the whole group)" if chunk is None else f"{chunk:,} (1/{round(1 / fraction)})"
        )
        rows.append(f"| {label} | {launches:,} | {peak / 2**20:,.0f} MB | {peak / n:.1f} |")
    return rows


def _jax_rows(workload: str) -> list[str]:
    import jax
    import jax.numpy as jnp
    from counting import runtime_conditionals

    from adapters.optax import adamp, sgdp

    params = {
        f"p{i}": jax.ShapeDtypeStruct(s, jnp.float32) for i, s in enumerate(WORKLOADS[workload]())
    }
    rows = []
    for name, tx in (
        ("adapters.optax.adamp", adamp(1e-3, weight_decay=1e-2, channel_axis="first")),
        ("adapters.optax.sgdp", sgdp(0.1, momentum=0.9, channel_axis="first")),
    ):
        state = jax.eval_shape(tx.init, params)
        traced = jax.jit(lambda p, s, g, tx=tx: tx.update(g, s, p)).trace(params, state, params)
        counts = [
            runtime_conditionals(traced.lower(lowering_platforms=(p,)).as_text())
            for p in ("cpu", "cuda", "tpu")
        ]
        rows.append(f"| {name} | {counts[0]} | {counts[1]} | {counts[2]} |")
    return rows


def _raw_rows(workload: str) -> list[str]:
    rows = []
    for name, config in (
        ("adamp_core.step, AdamP", ac.AdamPConfig(weight_decay=1e-2)),
        ("adamp_core.step, SGDP", ac.SGDPConfig(0.1, momentum=0.9, nesterov=True)),
    ):
        for packed, state in ((False, "a state per array"), (True, "one packed state")):
            c = count_raw_step(config, WORKLOADS[workload](), packed=packed)
            rows.append(f"| {name}, {state} | {c['ops']:,} | {c['scalar conversions']} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args()
    lines = [f"<!-- generated by benchmarks/launch_counts.py, torch {torch.__version__} -->"]
    for workload in args.workload:
        lines += [
            "",
            f"**{workload}** ({len(WORKLOADS[workload]())} tensors), PyTorch on fake CUDA tensors:",
            "",
            "| step | kernel launches | host syncs | host-to-device copies | estimated H200 step |",
            "|---|---|---|---|---|",
            *_torch_rows(workload),
            "",
            "Peak temporaries of one step (float32), the CUDA path's code run on CPU tensors:",
            "",
            "| step | peak extra memory | bytes per parameter |",
            "|---|---|---|",
            *_memory_rows(workload),
            "",
            "AdamP's `chunk_size`: kernel launches against peak temporaries:",
            "",
            "| chunk_size (of the parameters) | kernel launches | peak extra memory "
            "| bytes per parameter |",
            "|---|---|---|---|",
            *_chunk_rows(workload),
            "",
            "Optax, runtime conditionals in the lowered step:",
            "",
            "| transformation | CPU | CUDA | TPU |",
            "|---|---|---|---|",
            *_jax_rows(workload),
            "",
            "Raw arrays (what CuPy would launch):",
            "",
            "| call | array operations | Python scalars made arrays |",
            "|---|---|---|",
            *_raw_rows(workload),
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
