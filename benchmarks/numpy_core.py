"""adamp_core on NumPy arrays vs a hand-written in-place NumPy AdamW / SGD (same process, interleaved).

python benchmarks/numpy_core.py [--rounds 20] [--workload resnet50]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from shapes import WORKLOADS, count
from timing import Bench, Result, measure

import adamp_core as ac


def numpy_adamw(params, grads, ms, vs, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=1e-2):
    """The reference: AdamW written with ``out=`` ufuncs, one scratch buffer per tensor."""
    bc1, bc2 = 1 - b1**t, math.sqrt(1 - b2**t)
    for p, g, m, v in zip(params, grads, ms, vs):
        tmp = np.multiply(g, 1 - b1)
        np.multiply(m, b1, out=m)
        np.add(m, tmp, out=m)
        np.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        np.multiply(v, b2, out=v)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        tmp /= bc2
        tmp += eps
        np.divide(m, tmp, out=tmp)
        p *= 1 - lr * wd
        tmp *= lr / bc1
        p -= tmp


def numpy_sgd(params, grads, bufs, lr=0.1, momentum=0.9, wd=1e-4):
    for p, g, b in zip(params, grads, bufs):
        b *= momentum
        b += g
        p *= 1 - lr * wd
        tmp = np.multiply(b, lr)
        p -= tmp


def run(workload: str, rounds: int) -> list[Result]:
    """Time ``prepare(workload)`` alone and print its table."""
    return measure([prepare(workload)], rounds, label=f"NumPy {workload}")[0]


def prepare(workload: str) -> Bench:
    """The in-place NumPy AdamW and SGD and adamp_core's steps, set up on ``workload``."""
    shapes = WORKLOADS[workload]()
    rng = np.random.default_rng(0)
    fresh = lambda: [rng.standard_normal(s).astype(np.float32) * 0.05 for s in shapes]  # noqa: E731
    grads = fresh()
    adam_cfg = ac.AdamPConfig(lr=1e-3, weight_decay=1e-2)
    sgd_cfg = ac.SGDPConfig(lr=0.1, momentum=0.9, weight_decay=1e-4)

    ref_p, ref_m, ref_v = (
        fresh(),
        [np.zeros(s, np.float32) for s in shapes],
        [np.zeros(s, np.float32) for s in shapes],
    )
    ref_t = [0]
    ours_p = fresh()
    ours_s = ac.init(ours_p, adam_cfg)
    pure = {"p": fresh()}
    pure["s"] = ac.init(pure["p"], adam_cfg)
    sgd_p, sgd_b = fresh(), [np.zeros(s, np.float32) for s in shapes]
    sgdp_p = fresh()
    sgdp_s = ac.init(sgdp_p, sgd_cfg)

    def adamw():
        ref_t[0] += 1
        numpy_adamw(ref_p, grads, ref_m, ref_v, ref_t[0])

    def adamp_pure():
        pure["p"], pure["s"] = ac.step(pure["p"], grads, pure["s"], adam_cfg)

    fns = {
        "numpy AdamW (in place, out=)": adamw,
        "adamp_core AdamP inplace=True": lambda: ac.step(
            ours_p, grads, ours_s, adam_cfg, inplace=True
        ),
        "adamp_core AdamP pure": adamp_pure,
        "numpy SGD momentum (in place)": lambda: numpy_sgd(sgd_p, grads, sgd_b),
        "adamp_core SGDP inplace=True": lambda: ac.step(
            sgdp_p, grads, sgdp_s, sgd_cfg, inplace=True
        ),
    }

    def reference(name: str) -> str:
        return "numpy SGD momentum (in place)" if "SG" in name else "numpy AdamW (in place, out=)"

    return Bench(
        f"{workload}: {len(shapes)} tensors, {count(shapes) / 1e6:.1f}M params, float32, "
        f"NumPy {np.__version__}",
        fns,
        reference,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workload", choices=list(WORKLOADS), nargs="*", default=["resnet50"])
    args = parser.parse_args()
    for w in args.workload:
        run(w, args.rounds)


if __name__ == "__main__":
    main()
