"""Step-for-step parity with the official ``adamp`` 0.3.0 package (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracle import MODES, forced_grad, official, official_branch

import adamp_core as ac

SHAPES = [(5,), (6, 4), (4, 3, 5), (8, 3, 3, 3), (1, 9), (7, 1)]
CONFIGS = {
    "adamp": ac.AdamPConfig(lr=1e-2),
    "adamp-wd": ac.AdamPConfig(lr=1e-2, weight_decay=0.1, wd_ratio=0.2),
    "adamp-nesterov-wd": ac.AdamPConfig(
        lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05, nesterov=True
    ),
    "sgdp": ac.SGDPConfig(lr=0.1),
    "sgdp-momentum-wd": ac.SGDPConfig(lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgdp-dampening": ac.SGDPConfig(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=1e-3),
    "sgdp-nesterov-wd": ac.SGDPConfig(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
}
STEPS = 12
RTOL = 1e-11


def _run(config, shape, modes, seed, steps=STEPS):
    """Train one weight with the official optimizer and with ``adamp_core.step`` on NumPy."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(shape)
    ref = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = official(config, [ref])
    ours, state = w0.copy(), ac.init(w0, config)
    branches, worst = [], 0.0
    for t in range(steps):
        mode = modes[t % len(modes)]
        g = forced_grad(ref.detach().numpy(), mode, rng)
        gt = torch.from_numpy(g.copy())
        if len(shape) > 1:
            branches.append((mode, official_branch(ref.detach(), gt, config.delta, config.eps)))
        ref.grad = gt
        opt.step()
        ours, state = ac.step(ours, g, state, config)
        expected = ref.detach().numpy()
        worst = max(worst, float(np.max(np.abs(ours - expected)) / np.max(np.abs(expected))))
        np.testing.assert_allclose(ours, expected, rtol=RTOL, atol=1e-13)
    return opt.state[ref], state, branches, worst


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_trajectory_matches_official(name, shape):
    config = CONFIGS[name]
    ref_state, state, branches, _ = _run(config, shape, MODES, seed=len(shape) * 7 + len(name))
    if isinstance(config, ac.AdamPConfig):
        assert float(state.step) == ref_state["step"] == STEPS
        np.testing.assert_allclose(
            state.exp_avg, ref_state["exp_avg"].numpy(), rtol=RTOL, atol=1e-15
        )
        np.testing.assert_allclose(
            state.exp_avg_sq, ref_state["exp_avg_sq"].numpy(), rtol=RTOL, atol=1e-15
        )
    else:  # the carried buffer is the projected one, as in the official code
        np.testing.assert_allclose(
            state.momentum, ref_state["momentum"].numpy(), rtol=RTOL, atol=1e-13
        )
    if len(shape) > 1:  # the forced gradients really exercised the branches they aim at
        fired = {b for _, b in branches}
        assert ac.CHANNEL in fired
        if shape[0] > 1:
            assert ac.LAYER in fired
        assert all(b == ac.CHANNEL for m, b in branches if m in ("channel", "zero"))


@pytest.mark.parametrize("mode", MODES)
def test_each_branch_alone(mode):
    """Every step forced into one branch, on a conv-shaped weight, both optimizers."""
    for config in (CONFIGS["adamp-wd"], CONFIGS["sgdp-momentum-wd"]):
        _, _, branches, _ = _run(config, (6, 2, 3, 3), (mode,), seed=3)
        want = {"channel": ac.CHANNEL, "zero": ac.CHANNEL, "layer": ac.LAYER}.get(mode)
        if want is not None:
            assert {b for _, b in branches} == {want}


def test_core_reports_the_official_branch():
    rng = np.random.default_rng(11)
    for mode in MODES:
        for _ in range(5):
            w = rng.standard_normal((5, 2, 3))
            g = forced_grad(w, mode, rng)
            expected = official_branch(torch.from_numpy(w), torch.from_numpy(g), 0.1, 1e-8)
            proj = ac.projection(
                w, g, rng.standard_normal(w.shape), delta=0.1, wd_ratio=0.1, eps=1e-8
            )
            assert int(proj.branch) == expected


def test_large_parameter_many_steps_float64():
    """A realistic conv weight for 50 steps: the worst relative difference stays tiny."""
    config = CONFIGS["adamp-nesterov-wd"]
    _, _, _, worst = _run(config, (32, 16, 3, 3), MODES, seed=5, steps=50)
    assert worst < RTOL
