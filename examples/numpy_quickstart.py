"""Train a scale-invariant linear classifier with AdamP on raw NumPy arrays.

The classifier normalizes its weight rows before use (logits = x @ (W / |W|).T * 4),
so the loss depends on the direction of each row only: exactly the kind of weight
AdamP projects. Run:  python examples/numpy_quickstart.py
"""

from __future__ import annotations

import numpy as np

import adamp_core


def make_data(rng: np.random.Generator, n: int = 512, dim: int = 20, classes: int = 4):
    centers = rng.standard_normal((classes, dim)) * 0.4
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.standard_normal((n, dim))
    return x, y


def loss_and_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray, scale: float = 4.0):
    """Softmax cross-entropy of ``x @ (w / |w|_rows).T * scale`` and its gradient in ``w``."""
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    v = w / norms
    logits = scale * x @ v.T
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(len(y)), y]).mean()
    dlogits = prob
    dlogits[np.arange(len(y)), y] -= 1
    dv = scale * dlogits.T @ x / len(y)
    # d(w/|w|)/dw projects out the radial part: the gradient is orthogonal to each row
    dw = (dv - v * (dv * v).sum(axis=1, keepdims=True)) / norms
    accuracy = float((logits.argmax(axis=1) == y).mean())
    return loss, dw, accuracy


def main() -> None:
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    w = rng.standard_normal((4, x.shape[1])) * 0.1

    config = adamp_core.AdamPConfig(lr=0.01, weight_decay=1e-4)
    state = adamp_core.init(w, config)
    for step in range(201):
        loss, grad, accuracy = loss_and_grad(w, x, y)
        if step % 50 == 0:
            norm = np.linalg.norm(w)
            print(f"step {step:3d}  loss {loss:.4f}  accuracy {accuracy:.3f}  |w| {norm:.4f}")
        w, state = adamp_core.step(w, grad, state, config, inplace=True)


if __name__ == "__main__":
    main()
