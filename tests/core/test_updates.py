"""`adamp_core.updates`, each piece on numbers worked by hand in the comments.

The update rules are those of ``docs/math.md``; parity with the official package over many
steps is ``tests/test_parity.py``, and in-place against pure is ``test_raw.py``.
"""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest

import adamp_core as ac
from adamp_core import updates


def test_adam_moments():
    m, v = updates.adam_moments(
        np.array([2.0]), np.array([1.0]), np.array([1.0]), beta1=0.9, beta2=0.99, xp=xp
    )
    # m = 0.9 * 1 + 0.1 * 2 = 1.1;  v = 0.99 * 1 + 0.01 * 2^2 = 1.03
    np.testing.assert_allclose([m[0], v[0]], [1.1, 1.03], rtol=1e-15)


def test_first_adam_step_is_lr_times_the_sign():
    g = np.array([3.0, -0.5])
    zeros = np.zeros(2)
    m, v, d = updates.adam_step(
        g,
        zeros,
        zeros,
        np.asarray(1.0),
        lr=0.1,
        beta1=0.9,
        beta2=0.999,
        eps=0.0,
        nesterov=False,
        xp=xp,
    )
    # t = 1: m = 0.1 g, v = 0.001 g^2; u = m / (sqrt(v) / sqrt(0.001)) = 0.1 g / |g|;
    # d = lr / (1 - 0.9) * u = lr * sign(g)
    np.testing.assert_allclose(d, [0.1, -0.1], rtol=1e-14)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-15)


def test_nesterov_adam_looks_ahead():
    g, m0 = np.array([1.0]), np.array([2.0])
    m, _, d = updates.adam_step(
        g,
        m0,
        np.array([0.0]),
        np.asarray(1.0),
        lr=1.0,
        beta1=0.5,
        beta2=0.0,
        eps=0.0,
        nesterov=True,
        xp=xp,
    )
    # m = 0.5*2 + 0.5*1 = 1.5; numerator 0.5*1.5 + 0.5*1 = 1.25; v = g^2 = 1, bc2 = 1;
    # d = 1/(1 - 0.5) * 1.25 / 1 = 2.5
    np.testing.assert_allclose([m[0], d[0]], [1.5, 2.5], rtol=1e-15)


def test_sgd_momentum_and_direction():
    buf = updates.sgd_momentum(np.array([2.0]), np.array([1.0]), momentum=0.9, dampening=0.5)
    np.testing.assert_allclose(buf, [0.9 + 0.5 * 2.0], rtol=1e-15)  # 0.9 buf + (1-0.5) g
    g = np.array([2.0])
    assert updates.sgd_direction(g, buf, momentum=0.9, nesterov=False) is buf
    np.testing.assert_allclose(  # g + momentum * buf
        updates.sgd_direction(g, buf, momentum=0.9, nesterov=True), [2.0 + 0.9 * 1.9]
    )


def test_apply_update_decays_then_steps_along_the_projected_update():
    w, u, coef = np.array([[2.0, 4.0]]), np.array([[1.0, 1.0]]), np.array([[0.25]])
    new = updates.apply_update(w, u, coef, decay=0.5, step_size=0.1, xp=xp)
    # w * decay - step * (u - coef * w) = [1, 2] - 0.1 * ([1, 1] - [0.5, 1]) = [0.95, 2]
    np.testing.assert_allclose(new, [[0.95, 2.0]], rtol=1e-15)
    plain = updates.apply_update(w, u, None, decay=0.5, step_size=0.1, xp=xp)
    np.testing.assert_allclose(plain, [[0.9, 1.9]], rtol=1e-15)  # coef None: u as given


#: AdamP's hyperparameters in the examples below (eps 0: the numbers stay round)
ADAMP = dict(
    lr=0.1,
    beta1=0.9,
    beta2=0.999,
    eps=0.0,
    weight_decay=0.5,
    delta=0.1,
    wd_ratio=0.1,
    nesterov=False,
)


@pytest.mark.parametrize("inplace", [False, True])
def test_adamp_update_of_a_bias(inplace):
    w, g = np.array([1.0, 2.0]), np.array([0.5, -4.0])
    state = ac.init(w, ac.AdamPConfig())
    new, state, proj = ac.adamp_update(w, g, state, **ADAMP, inplace=inplace, xp=xp)
    # 1-D: never projected, decay ratio 1: w (1 - lr wd) - lr sign(g) on the first step
    np.testing.assert_allclose(new, [1.0 * 0.95 - 0.1, 2.0 * 0.95 + 0.1], rtol=1e-14)
    assert (int(proj.branch), float(proj.ratio), float(state.step)) == (ac.NONE, 1.0, 1.0)
    assert (new is w) == inplace


def test_adamp_update_of_a_scale_invariant_weight():
    w = np.array([[1.0, 1.0], [1.0, 1.0]])
    g = np.array([[1.0, -1.0], [-1.0, 1.0]])  # each row orthogonal to w's: the channel view
    m0 = np.array([[2.0, 2.0], [0.0, 0.0]])  # momentum along w in row 0
    state = ac.AdamPState(np.asarray(0.0), m0, np.ones((2, 2)))
    hyper = {**ADAMP, "beta1": 0.5, "beta2": 0.0, "wd_ratio": 0.2}
    new, _, proj = ac.adamp_update(w, g, state, **hyper, xp=xp)
    # t = 1, bias corrections 0.5 and 1; m = 0.5 m0 + 0.5 g = [[1.5, 0.5], [-0.5, 0.5]],
    # v = g^2 = 1: d = 0.1 / 0.5 * m = [[0.3, 0.1], [-0.1, 0.1]].
    # coef_i = <w_i, d_i> / |w_i|^2 = 0.4 / 2, 0 / 2: d' = d - coef w = [[0.1, -0.1], [-0.1, 0.1]]
    # decay 1 - lr wd wd_ratio = 0.99: w' = 0.99 w - d'
    np.testing.assert_allclose(new, [[0.89, 1.09], [1.09, 0.89]], rtol=1e-14)
    assert (int(proj.branch), float(proj.ratio)) == (ac.CHANNEL, 0.2)
    np.testing.assert_allclose(proj.coef, [[0.2], [0.0]], atol=1e-16)


#: SGDP's hyperparameters in the examples below
SGDP = dict(
    lr=0.1,
    momentum=0.5,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
    eps=0.0,
    delta=0.1,
    wd_ratio=0.1,
)


def test_sgdp_update_carries_the_projected_buffer():
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = np.array([[0.0, 1.0], [1.0, 0.0]])  # channel view
    state = ac.SGDPState(np.array([[2.0, 0.0], [0.0, 0.0]]))  # radial in row 0
    new, state, proj = ac.sgdp_update(w, g, state, **SGDP, xp=xp)
    # buf = 0.5 [[2, 0], [0, 0]] + g = [[1, 1], [1, 0]]; row coefs <w_i, buf_i> = 1, 0;
    # projected buf = [[0, 1], [1, 0]], kept as the state; w' = w - 0.1 buf
    np.testing.assert_allclose(state.momentum, [[0.0, 1.0], [1.0, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(new, [[1.0, -0.1], [-0.1, 1.0]], rtol=1e-15)
    assert int(proj.branch) == ac.CHANNEL


def test_sgdp_decay_is_divided_by_one_minus_momentum():
    w, g = np.array([2.0]), np.array([0.0])
    state = ac.init(w, ac.SGDPConfig(0.1))
    new, _, _ = ac.sgdp_update(w, g, state, **{**SGDP, "weight_decay": 0.5}, xp=xp)
    np.testing.assert_allclose(new, [2.0 * (1 - 0.1 * 0.5 / 0.5)], rtol=1e-15)  # 1.8
