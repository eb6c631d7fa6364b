"""A jitted update + apply on ResNet-50 / ViT-B/16 parameter shapes, JAX on CPU, float32,
interleaved with optax.adamw / optax.sgd(momentum=0.9) in the same process.

    python benchmarks/jax_step.py [--rounds 20] [--workload resnet50 vit_b16]
                                  [--no-donate] [--memory-scheduler] [--projected]

Each optimizer runs on the PyTorch shapes (output channels first, ``channel_axis=0``) and on
the same weights in Flax's layout (output channels last, the adapter's default), against
optax on the same shapes: XLA's speed depends on the layout, for optax as for the adapter.

Random gradients fail the scale-invariance test on every weight, so nothing is projected:
the usual case for the linear weights of a transformer. --projected makes each gradient
orthogonal to its weight, row by row, so that every weight of 2+ dimensions is projected (the
usual case for conv weights followed by batch norm); the header says how many were at the
last step. --memory-scheduler sets
XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false (before JAX is imported),
XLA CPU's memory-minimizing scheduler. The adapter orders the weights itself, and with that
order the default scheduler is the faster one; the flag is kept to compare (see
docs/optax.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if "--memory-scheduler" in sys.argv:  # must precede the first import of jax
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SCHEDULER_FLAG}".strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from shapes import WORKLOADS, count  # noqa: E402
from timing import Bench, Result, measure  # noqa: E402

import adamp_core  # noqa: E402
from adapters.optax import adamp, sgdp  # noqa: E402

DONATE = True  # as a training step would: reuse the buffers (--no-donate to compare)
PROJECTED = False  # --projected: gradients that make every weight take the channel branch
#: The suffix of the rows on Flax-layout weights (output channels last, the adapter's default).
FLAX = ", Flax layout"


def _orthogonal(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``g`` without its component along ``w`` in every row (``ndim >= 2``): then the channel
    view fires and AdamP/SGDP project every weight, the costlier path."""
    if w.ndim < 2:
        return g
    rw, rg = (a.reshape(a.shape[0], -1).astype(np.float64) for a in (w, g))
    rg = rg - rw * (rw * rg).sum(1, keepdims=True) / (rw * rw).sum(1, keepdims=True)
    return rg.reshape(g.shape).astype(g.dtype)


def _stepper(opt, params):
    @partial(jax.jit, donate_argnums=(0, 1) if DONATE else ())
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step, opt.init(params)


def _projected(params: list, grads: list) -> tuple[int, int]:
    """How many weights (ndim >= 2) the projection fires on, and how many there are."""
    weights = [(np.asarray(p), np.asarray(g)) for p, g in zip(params, grads) if p.ndim >= 2]
    branches = [
        int(adamp_core.projection(p, g, g, delta=0.1, wd_ratio=0.1, eps=1e-8).branch)
        for p, g in weights
    ]
    return sum(b != adamp_core.NONE for b in branches), len(weights)


def run(workload: str, rounds: int) -> list[Result]:
    """Time ``prepare(workload)`` alone and print its table."""
    return measure([prepare(workload)], rounds, label=f"JAX {workload}")[0]


def prepare(workload: str) -> Bench:
    """The four jitted steps, compiled on ``workload`` and run once (their first step)."""
    shapes = WORKLOADS[workload]()
    rng = np.random.default_rng(0)
    params = [jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.05) for s in shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    if PROJECTED:
        grads = [_orthogonal(g, np.asarray(p)) for g, p in zip(grads, params, strict=True)]
    grads = [jnp.asarray(g) for g in grads]
    # With --projected the weights must stay orthogonal to the fixed gradients for all the
    # steps: a tiny learning rate (the same for all four; the work per step is unchanged).
    lr = 1e-6 if PROJECTED else 1.0
    # Each optimizer twice: on the PyTorch shapes with channel_axis=0, and on the same weights
    # in Flax's layout (dimensions reversed: output channels last) with the adapter's
    # default, channel_axis="last", each against optax on the same shapes.
    flax = [jnp.transpose(p) for p in params], [jnp.transpose(g) for g in grads]
    optimizers = {}
    for suffix, axis in (("", 0), (FLAX, "last")):
        optimizers |= {
            f"optax.adamw{suffix}": optax.adamw(lr * 1e-3, weight_decay=1e-2),
            f"adapters.optax.adamp{suffix}": adamp(lr * 1e-3, weight_decay=1e-2, channel_axis=axis),
            f"optax.sgd momentum{suffix}": optax.chain(
                optax.add_decayed_weights(1e-4), optax.sgd(lr * 0.1, momentum=0.9)
            ),
            f"adapters.optax.sgdp{suffix}": sgdp(
                lr * 0.1, momentum=0.9, weight_decay=1e-4, channel_axis=axis
            ),
        }
    runs, first, boxes = {}, {}, {}
    for name, opt in optimizers.items():
        p0, g0 = flax if name.endswith(FLAX) else (params, grads)
        step, state = _stepper(opt, p0)
        box = boxes[name] = {"p": [p + 0 for p in p0], "s": state}
        t0 = time.perf_counter()
        box["p"], box["s"] = step(box["p"], box["s"], g0)
        jax.block_until_ready(box["p"])
        first[name] = time.perf_counter() - t0

        def call(step=step, box=box, g0=g0):
            box["p"], box["s"] = step(box["p"], box["s"], g0)
            jax.block_until_ready(box["p"])

        runs[name] = call

    def reference(name: str) -> str:
        base = "optax.sgd momentum" if "sg" in name else "optax.adamw"
        return base + FLAX if name.endswith(FLAX) else base

    flags = os.environ.get("XLA_FLAGS", "")
    projected, weights = _projected(boxes["adapters.optax.adamp"]["p"], grads)
    return Bench(
        f"{workload}: {len(shapes)} tensors, {count(shapes) / 1e6:.1f}M params, float32, "
        f"JAX {jax.__version__} CPU, {'donated' if DONATE else 'no donation'}, "
        f"XLA_FLAGS={flags or '(none)'}, "
        f"{'orthogonal' if PROJECTED else 'random'} gradients ({projected} of {weights} weights "
        "projected after the first AdamP step)",
        runs,
        reference,
        first,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--workload", choices=list(WORKLOADS), nargs="*", default=["resnet50", "vit_b16"]
    )
    parser.add_argument(
        "--no-donate", action="store_true", help="do not donate param/state buffers"
    )
    parser.add_argument(
        "--memory-scheduler",
        action="store_true",
        help=f"run with XLA_FLAGS={SCHEDULER_FLAG} (XLA CPU's memory-minimizing scheduler)",
    )
    parser.add_argument(
        "--projected",
        action="store_true",
        help="gradients orthogonal to the weights per row: AdamP/SGDP project every weight",
    )
    args = parser.parse_args()
    global DONATE, PROJECTED
    DONATE = not args.no_donate
    PROJECTED = args.projected
    for w in args.workload:
        run(w, args.rounds)


if __name__ == "__main__":
    main()
