"""The official ``adamp`` 0.3.0 package as the reference, and gradients that force each branch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

import adamp_core as ac

MODES = ("random", "channel", "layer", "zero")

#: Constructor options of the official optimizers that the adapter parity tests run, covering
#: every argument (nesterov, weight decay, dampening, eps, betas, delta, wd_ratio).
ADAMP_OPTIONS = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=0.1, wd_ratio=0.2),
    dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, nesterov=True, delta=0.2),
]
SGDP_OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=1e-3, wd_ratio=0.5),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, delta=0.2),
]


def official(config: ac.AdamPConfig | ac.SGDPConfig, params: list[torch.nn.Parameter]) -> Any:
    import adamp

    kwargs = {n: getattr(config, n) for n in config.__dataclass_fields__ if n != "channel_axis"}
    cls = adamp.AdamP if isinstance(config, ac.AdamPConfig) else adamp.SGDP
    return cls(params, **kwargs)


def forced_grad(w: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """A gradient for weight ``w`` that makes the given branch fire (for ``w.ndim >= 2``).

    - ``channel``: orthogonal to ``w`` in every output channel;
    - ``layer``: each channel parallel to ``w`` (cosine 1) but the whole orthogonal;
    - ``zero``: all zeros (cosine 0);
    - ``random``: Gaussian, usually no branch on small weights.
    """
    g = rng.standard_normal(w.shape)
    if mode == "random" or w.ndim < 2 or w.size == 0:
        return g
    if mode == "zero":
        return np.zeros_like(w)
    rows = w.reshape(w.shape[0], -1)
    if mode == "channel":
        gr = g.reshape(rows.shape)
        gr = gr - rows * (gr * rows).sum(1, keepdims=True) / (rows * rows).sum(1, keepdims=True)
        return gr.reshape(w.shape)
    assert mode == "layer"
    sq = (rows * rows).sum(1)
    c = rng.uniform(0.5, 1.5, size=rows.shape[0]) * rng.choice([-1.0, 1.0], size=rows.shape[0])
    c = c - sq * (c @ sq) / (sq @ sq)  # now sum_i c_i |w_i|^2 = 0
    return (c[:, None] * rows).reshape(w.shape)


def official_branch(w: torch.Tensor, g: torch.Tensor, delta: float, eps: float) -> int:
    """Which branch ``adamp`` 0.3.0 takes, computed with its own cosine code."""
    import adamp

    opt = adamp.AdamP([torch.nn.Parameter(w.clone())])
    for branch, view in ((ac.CHANNEL, opt._channel_view), (ac.LAYER, opt._layer_view)):
        cos = opt._cosine_similarity(g, w, eps, view)
        if cos.max() < delta / math.sqrt(view(w).size(1)):
            return branch
    return ac.NONE
