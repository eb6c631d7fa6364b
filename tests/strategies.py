"""Hypothesis strategies: shapes, weights and gradients that reach every branch, configs."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from oracle import MODES, forced_grad

import adamp_core as ac

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
matrix_shapes = st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple)
dtypes = st.sampled_from([np.float32, np.float64])

adamp_configs = st.builds(
    ac.AdamPConfig,
    lr=st.floats(1e-4, 0.1),
    betas=st.tuples(st.floats(0.0, 0.95), st.floats(0.5, 0.999)),
    weight_decay=st.sampled_from([0.0, 1e-2, 0.5]),
    delta=st.sampled_from([0.1, 0.3]),
    wd_ratio=st.sampled_from([0.0, 0.1, 1.0]),
    nesterov=st.booleans(),
)
sgdp_configs = st.builds(
    ac.SGDPConfig,
    lr=st.floats(1e-3, 0.5),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    dampening=st.sampled_from([0.0, 0.1]),
    weight_decay=st.sampled_from([0.0, 1e-2]),
    delta=st.sampled_from([0.1, 0.3]),
    wd_ratio=st.sampled_from([0.0, 0.1]),
).map(
    lambda c: (
        c
        if c.momentum == 0
        else ac.SGDPConfig(**{**c.__dict__, "nesterov": True, "dampening": 0.0})
    )
)
configs = st.one_of(
    adamp_configs,
    sgdp_configs,
    sgdp_configs.map(lambda c: ac.SGDPConfig(**{**c.__dict__, "nesterov": False})),
)


@st.composite
def problems(draw, shape_strategy=shapes):
    """``(w, [g1, g2, g3])``: a float64 weight and gradients, each forced toward a branch."""
    shape = draw(shape_strategy)
    seed = draw(st.integers(0, 2**32 - 1))
    modes = draw(st.lists(st.sampled_from(MODES), min_size=3, max_size=3))
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * scale
    return w, [forced_grad(w, m, rng) * draw(st.sampled_from([1e-3, 1.0])) for m in modes]


def decision_margin(w: np.ndarray, g: np.ndarray, delta: float, eps: float) -> float:
    """Relative distance of the branch tests from their thresholds (inf for ndim < 2).

    Backends that round differently may decide differently when a cosine sits on
    the threshold; comparisons skip such (measure-zero) cases.
    """
    if w.ndim < 2 or w.size == 0:
        return math.inf
    rows_w, rows_g = w.reshape(w.shape[0], -1), g.reshape(w.shape[0], -1)

    def cos(a, b, axis):
        na = np.maximum(np.sqrt((a * a).sum(axis)), eps)
        nb = np.maximum(np.sqrt((b * b).sum(axis)), eps)
        return np.abs((a * b).sum(axis)) / (na * nb)

    t_channel = delta / math.sqrt(rows_w.shape[1])
    t_layer = delta / math.sqrt(w.size)
    c_channel = cos(rows_w, rows_g, 1).max()
    c_layer = cos(rows_w.ravel(), rows_g.ravel(), 0)
    return min(abs(c_channel - t_channel) / t_channel, abs(c_layer - t_layer) / t_layer)
