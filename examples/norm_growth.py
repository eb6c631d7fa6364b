"""See the paper's claim: momentum inflates the norm of scale-invariant weights; AdamP/SGDP don't.

A linear classifier whose weight rows are normalized before use (``logits = s * x @ (W/|W|)^T``)
is scale-invariant: its loss depends on ``W / |W|`` only, so the gradient is orthogonal to each
row and scales as ``1/|W|``. Plain SGD with momentum and Adam then grow ``|W|``, which shrinks
the effective step size (the step's angle, paper section 2): ``lr / |W|^2`` for SGD, whose step is
``lr`` times a gradient of size ``1/|W|``, and ``lr / |W|`` for Adam, whose step has size ``lr``
whatever the gradient's scale. SGDP and AdamP remove the radial part of the update and keep the
norm in check.
The four optimizers share everything else: SGD and Adam are SGDP and AdamP with ``delta=0``,
a threshold no cosine is below, so nothing is ever projected.

    python examples/norm_growth.py                       # NumPy, hand-written gradients
    python examples/norm_growth.py --backend torch       # adapters.torch, autograd
    python examples/norm_growth.py --backend jax         # adapters.optax, jax.grad
    python examples/norm_growth.py --out norm_growth.png --steps 300
    python examples/norm_growth.py --markdown docs/snippets/norm-growth.md   # the docs' table

All three backends run in float64 and print the same table to within float tolerance. The
accuracy is training accuracy (there is no held-out set: the point is the weight norm).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import adamp_core

SCALE = 8.0  # logit scale of the normalized classifier
CLASSES, DIM, SAMPLES = 5, 32, 1000
EXTRAS = {"torch": "torch", "jax": "jax"}  # backend -> the pip extra that installs it
OPTIMIZERS = {  # name -> (kind, hyperparameters); delta=0 turns the projection off
    "SGD": ("sgdp", dict(lr=0.2, momentum=0.9, delta=0.0)),
    "SGDP": ("sgdp", dict(lr=0.2, momentum=0.9)),
    "Adam": ("adamp", dict(lr=0.02, delta=0.0)),
    "AdamP": ("adamp", dict(lr=0.02)),
}


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian clusters with label noise; the initial weight. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLASSES, DIM)) * 0.35
    y = rng.integers(0, CLASSES, size=SAMPLES)
    x = centers[y] + rng.standard_normal((SAMPLES, DIM))
    w0 = rng.standard_normal((CLASSES, DIM)) * 0.2
    return x, y, w0


def numpy_loss_and_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Cross-entropy of ``SCALE * x @ (w/|w|_rows).T``, its gradient in ``w``, and accuracy."""
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    v = w / norms
    logits = SCALE * x @ v.T
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(len(y)), y]).mean()
    dlogits = prob
    dlogits[np.arange(len(y)), y] -= 1
    dv = SCALE * dlogits.T @ x / len(y)
    dw = (dv - v * (dv * v).sum(axis=1, keepdims=True)) / norms  # orthogonal to each row
    return float(loss), dw, float((logits.argmax(axis=1) == y).mean())


def run_numpy(kind: str, hyper: dict, data, steps: int, on_step: Callable) -> None:
    x, y, w = data[0], data[1], data[2].copy()
    config = adamp_core.AdamPConfig(**hyper) if kind == "adamp" else adamp_core.SGDPConfig(**hyper)
    state = adamp_core.init(w, config)
    for t in range(steps):
        loss, grad, accuracy = numpy_loss_and_grad(w, x, y)
        on_step(t, loss, accuracy, float(np.linalg.norm(w)))
        w, state = adamp_core.step(w, grad, state, config, inplace=True)


def run_torch(kind: str, hyper: dict, data, steps: int, on_step: Callable) -> None:
    import torch

    from adapters.torch import SGDP, AdamP

    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    w = torch.nn.Parameter(torch.from_numpy(data[2].copy()))
    opt = AdamP([w], **hyper) if kind == "adamp" else SGDP([w], **hyper)
    for t in range(steps):
        opt.zero_grad()
        logits = SCALE * x @ torch.nn.functional.normalize(w, dim=1, eps=0.0).T
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        accuracy = (logits.argmax(dim=1) == y).double().mean()
        on_step(t, loss.item(), accuracy.item(), w.detach().norm().item())
        opt.step()


def run_jax(kind: str, hyper: dict, data, steps: int, on_step: Callable) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    from adapters.optax import adamp, sgdp

    x, y, w = jnp.asarray(data[0]), jnp.asarray(data[1]), jnp.asarray(data[2])
    h = dict(hyper)
    lr = h.pop("lr")
    # w is (classes, features), PyTorch's layout: output channels on axis 0
    opt = adamp(lr, **h, channel_axis=0) if kind == "adamp" else sgdp(lr, **h, channel_axis=0)

    def loss_fn(w):
        logits = SCALE * x @ (w / jnp.linalg.norm(w, axis=1, keepdims=True)).T
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, jnp.mean((jnp.argmax(logits, axis=1) == y).astype(logits.dtype))

    @jax.jit
    def train_step(w, state):
        (loss, accuracy), grad = jax.value_and_grad(loss_fn, has_aux=True)(w)
        updates, state = opt.update(grad, state, w)
        return optax.apply_updates(w, updates), state, loss, accuracy, jnp.linalg.norm(w)

    state = opt.init(w)
    for t in range(steps):
        w, state, loss, accuracy, norm = train_step(w, state)
        on_step(t, float(loss), float(accuracy), float(norm))


BACKENDS = {"numpy": run_numpy, "torch": run_torch, "jax": run_jax}


def experiment(backend: str, steps: int, seed: int = 0, progress: bool = True) -> dict:
    """Train all four optimizers; per optimizer the histories of loss, accuracy and |W|."""
    data = make_data(seed)
    history: dict[str, dict[str, list[float]]] = {}
    for name, (kind, hyper) in OPTIMIZERS.items():
        h = history[name] = {"loss": [], "accuracy": [], "norm": []}
        started = time.perf_counter()

        def on_step(t, loss, accuracy, norm, h=h, name=name):
            h["loss"].append(loss)
            h["accuracy"].append(accuracy)
            h["norm"].append(norm)
            if progress and (t + 1) % max(1, steps // 4) == 0:
                print(
                    f"  {name:5s} step {t + 1:4d}/{steps}  loss {loss:.4f}  |W| {norm:.4f}",
                    flush=True,
                )

        BACKENDS[backend](kind, hyper, data, steps, on_step)
        if progress:
            print(f"  {name:5s} done in {time.perf_counter() - started:.1f} s", flush=True)
    return history


def effective_step(kind: str, lr: float, norm: float) -> tuple[float, str]:
    """The effective step size of a scale-invariant weight and its formula (paper, section 2).

    A scale-invariant weight's gradient has size ``1/|W|``: SGD's step ``lr * grad`` turns the
    weight by ``lr / |W|^2``. Adam divides by the gradient's own scale, so its step has size
    ``lr`` and turns the weight by ``lr / |W|``.
    """
    if kind == "sgdp":
        return lr / norm**2, "lr/‖W‖²"
    return lr / norm, "lr/‖W‖"


def table(history: dict) -> str:
    """The final figures as a Markdown table (no ``|`` inside a cell)."""
    rows = [
        "| optimizer | lr | final loss | training accuracy | weight norm ‖W‖ "
        "| effective step size | formula |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, h in history.items():
        kind, hyper = OPTIMIZERS[name]
        norm = h["norm"][-1]
        step, formula = effective_step(kind, hyper["lr"], norm)
        rows.append(
            f"| {name} | {hyper['lr']:g} | {h['loss'][-1]:.4f} | {h['accuracy'][-1]:.3f} "
            f"| {norm:.4f} | {step:.5f} | {formula} |"
        )
    return "\n".join(rows)


def plot(history: dict, path: str, backend: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_norm, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {
        "SGD": ("tab:blue", "--"),
        "SGDP": ("tab:blue", "-"),
        "Adam": ("tab:red", "--"),
        "AdamP": ("tab:red", "-"),
    }
    for name, h in history.items():
        color, line = styles[name]
        ax_norm.plot(h["norm"], color=color, linestyle=line, label=name)
        ax_loss.plot(h["loss"], color=color, linestyle=line, label=name)
    ax_norm.set(title="Weight norm |W| of the scale-invariant layer", xlabel="step", ylabel="|W|")
    ax_loss.set(title="Training loss", xlabel="step", ylabel="cross-entropy", yscale="log")
    for ax in (ax_norm, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Momentum inflates the norm of scale-invariant weights ({backend})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="numpy",
        help="numpy: adamp_core on hand-written gradients; torch: adapters.torch with autograd; "
        "jax: adapters.optax with jax.grad",
    )
    parser.add_argument("--steps", type=int, default=300, help="full-batch training steps")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data and the initial weight"
    )
    parser.add_argument("--out", default="norm_growth.png", help="the PNG plot to write")
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    extra = EXTRAS.get(args.backend)
    if extra is not None:
        try:
            __import__(args.backend)
        except ModuleNotFoundError:
            parser.exit(
                2, f'--backend {args.backend} needs {args.backend}: pip install -e ".[{extra}]"\n'
            )
    print(
        f"Scale-invariant classifier, {SAMPLES} samples, {CLASSES} classes, {args.steps} "
        f"full-batch steps, backend {args.backend}, float64"
    )
    print("learning rates: " + ", ".join(f"{n} {h['lr']:g}" for n, (_, h) in OPTIMIZERS.items()))
    history = experiment(args.backend, args.steps, args.seed)
    print()
    print(table(history))
    if args.markdown:
        Path(args.markdown).write_text(table(history) + "\n")
        print(f"\ntable written to {args.markdown}")
    try:
        plot(history, args.out, args.backend)
        print(f"\nplot written to {args.out}")
    except ModuleNotFoundError:
        print("\n(matplotlib is not installed: pip install matplotlib for the plot)")
    return history


if __name__ == "__main__":
    main()
