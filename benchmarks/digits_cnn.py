"""A real, small experiment: a CNN with BatchNorm on scikit-learn's digits, several seeds.

AdamW vs AdamP and SGD vs SGDP (PyTorch, adapters.torch), same hyperparameters otherwise;
reports test accuracy and the norm of the conv weights (scale-invariant: BatchNorm follows)
as mean and standard deviation over seeds. It reports what it measures, whatever that is.

    python benchmarks/digits_cnn.py [--seeds 5] [--epochs 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from timing import table

from adapters.torch import SGDP, AdamP


def data(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=0.3, random_state=seed, stratify=digits.target
    )
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )


OPTIMIZERS = {
    "AdamW": lambda p: AdamP(p, lr=3e-3, weight_decay=1e-2, delta=0.0),  # delta=0: never projects
    "AdamP": lambda p: AdamP(p, lr=3e-3, weight_decay=1e-2),
    "SGD": lambda p: SGDP(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, delta=0.0),
    "SGDP": lambda p: SGDP(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
}


def train(name: str, seed: int, epochs: int, batch: int = 64) -> tuple[float, float]:
    torch.manual_seed(seed)
    x, y, xt, yt = data(seed)
    net = model()
    opt = OPTIMIZERS[name](net.parameters())
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(y))
        for i in range(0, len(y), batch):
            j = order[i : i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[j]), y[j]).backward()
            opt.step()
        schedule.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(xt).argmax(1) == yt).float().mean().item()
    conv_norm = (
        sum(m.weight.detach().norm() ** 2 for m in net if isinstance(m, torch.nn.Conv2d)) ** 0.5
    )
    return accuracy, float(conv_norm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="at least 2")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name in OPTIMIZERS:
        started = time.perf_counter()
        runs = [train(name, seed, args.epochs) for seed in range(args.seeds)]
        acc, norm = zip(*runs, strict=True)
        rows.append(
            (
                name,
                f"{100 * statistics.mean(acc):.2f} ± {100 * statistics.stdev(acc):.2f}",
                f"{statistics.mean(norm):.2f} ± {statistics.stdev(norm):.2f}",
            )
        )
        print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
    print(
        f"\nscikit-learn digits, CNN with BatchNorm, {args.epochs} epochs, {args.seeds} seeds "
        "(mean ± std)"
    )
    print(table(rows, ("optimizer", "test accuracy %", "conv weight norm")))


if __name__ == "__main__":
    main()
