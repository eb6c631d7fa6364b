"""Hypothesis properties of the core: backends agree, projections are orthogonal, and so on."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BACKEND_NAMES, load_backend
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import configs, decision_margin, dtypes, matrix_shapes, problems

import adamp_core as ac

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _train(backend, config, w, grads, dtype):
    p = backend.asarray(w.astype(dtype))
    state = ac.init(p, config)
    for g in grads:
        p, state = ac.step(p, backend.asarray(g.astype(dtype)), state, config)
    return backend.to_numpy(p), [backend.to_numpy(a) for a in state]


def _margins(w, grads, config, scale_tol):
    # the weight moves during training, so re-check the margin along the NumPy trajectory
    p, state = w.copy(), ac.init(w, config)
    worst = np.inf
    for g in grads:
        worst = min(worst, decision_margin(p, g, config.delta, config.eps))
        p, state = ac.step(p, g, state, config)
    return worst > scale_tol


@pytest.mark.parametrize("name", [n for n in BACKEND_NAMES if n != "numpy"])
@settings(max_examples=40)
@given(problem=problems(), config=configs, dtype=dtypes)
def test_backends_agree_with_numpy(name, problem, config, dtype):
    backend = load_backend(name)
    w, grads = problem
    assume(_margins(w, grads, config, 1e-3 if dtype == np.float32 else 1e-9))
    numpy = load_backend("numpy")
    expected_p, expected_s = _train(numpy, config, w, grads, dtype)
    got_p, got_s = _train(backend, config, w, grads, dtype)
    assert got_p.dtype == dtype
    np.testing.assert_allclose(got_p, expected_p, **TOL[dtype])
    for a, b in zip(got_s, expected_s):
        np.testing.assert_allclose(a, b, **TOL[dtype])


def _rows(x):
    return x.reshape(x.shape[0], -1)


@settings(max_examples=60)
@given(problem=problems(matrix_shapes), dtype=dtypes, eps=st.sampled_from([1e-8, 1e-3]))
def test_projected_update_is_orthogonal(problem, dtype, eps):
    w, grads = problem
    w, g = w.astype(dtype), grads[0].astype(dtype)
    u = np.random.default_rng(0).standard_normal(w.shape).astype(dtype)
    proj = ac.projection(w, g, u, delta=0.1, wd_ratio=0.1, eps=eps)
    projected = ac.project(u, w, proj)
    branch = int(proj.branch)
    assume(branch != ac.NONE)
    if branch == ac.CHANNEL:
        wr, ur, pr = _rows(w), _rows(u), _rows(projected)
    else:
        wr, ur, pr = w.reshape(1, -1), u.reshape(1, -1), projected.reshape(1, -1)
    wr, ur, pr = (a.astype(np.float64) for a in (wr, ur, pr))
    norm_w = np.sqrt((wr * wr).sum(1))
    # exact: <w,u'> = <w,u> (1 - |w|^2/(|w|+eps)^2), i.e. about 2 eps/|w| of <w,u>; plus rounding
    rounding = 16 * wr.shape[1] * np.finfo(dtype).eps
    bound = (
        np.abs((wr * ur).sum(1)) * (2 * eps / np.maximum(norm_w, eps))
        + np.sqrt((ur * ur).sum(1)) * norm_w * rounding
    )
    assert np.all(np.abs((wr * pr).sum(1)) <= bound + 1e-30)


@settings(max_examples=40)
@given(problem=problems(matrix_shapes), config=configs)
def test_no_branch_leaves_update_untouched(problem, config):
    w, _ = problem
    rng = np.random.default_rng(1)
    g = w + 1e-3 * np.abs(w).max() * rng.standard_normal(w.shape)  # cosine ~ 1: never projected
    u = rng.standard_normal(w.shape)
    proj = ac.projection(w, g, u, delta=config.delta, wd_ratio=config.wd_ratio, eps=config.eps)
    assert int(proj.branch) == ac.NONE and float(proj.ratio) == 1.0
    np.testing.assert_array_equal(ac.project(u, w, proj), u)
    # and a whole step is the plain optimizer's step (written out here, independently)
    new, _ = ac.step(w, g, ac.init(w, config), config)
    if isinstance(config, ac.AdamPConfig):
        b1, b2 = config.betas
        m, v = (1 - b1) * g, (1 - b2) * g * g
        num = b1 * m + (1 - b1) * g if config.nesterov else m
        u = num / (np.sqrt(v) / np.sqrt(1 - b2) + config.eps)
        expected = w * (1 - config.lr * config.weight_decay) - config.lr / (1 - b1) * u
    else:
        buf = (1 - config.dampening) * g
        u = g + config.momentum * buf if config.nesterov else buf
        expected = w * (1 - config.lr * config.weight_decay / (1 - config.momentum)) - config.lr * u
    np.testing.assert_allclose(new, expected, rtol=1e-12, atol=1e-14)


@settings(max_examples=60)
@given(problem=problems(matrix_shapes), config=configs)
def test_projected_step_grows_norm_to_second_order(problem, config):
    w, grads = problem
    config = type(config)(**{**config.__dict__, "weight_decay": 0.0})
    g = grads[0]
    assume(decision_margin(w, g, config.delta, config.eps) > 1e-9)
    new, _ = ac.step(w, g, ac.init(w, config), config)
    proj = ac.projection(w, g, g, delta=config.delta, wd_ratio=config.wd_ratio, eps=config.eps)
    assume(int(proj.branch) != ac.NONE)
    d = new - w
    grown = (new * new).sum() - (w * w).sum()
    second_order = (d * d).sum()
    # first-order term 2<w,d> vanishes up to the eps terms and rounding
    slack = (
        2
        * np.sqrt((w * w).sum() * second_order)
        * (4 * config.eps / np.sqrt((w * w).min(initial=np.inf) + 1e-300) + 1e-12 * w.size)
    )
    assert abs(grown - second_order) <= slack + 1e-12 * (w * w).sum()


@settings(max_examples=20)
@given(problem=problems(), config=configs, dtype=dtypes)
def test_jit_equals_eager(problem, config, dtype):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    w, grads = problem
    p = jnp.asarray(w.astype(dtype))
    eager_p, eager_s = p, ac.init(p, config)
    jit_p, jit_s = p, ac.init(p, config)
    stepper = jax.jit(lambda p, g, s: ac.step(p, g, s, config))
    for g in grads:
        gj = jnp.asarray(g.astype(dtype))
        eager_p, eager_s = ac.step(eager_p, gj, eager_s, config)
        jit_p, jit_s = stepper(jit_p, gj, jit_s)
    assume(_margins(w, grads, config, 1e-3 if dtype == np.float32 else 1e-9))
    np.testing.assert_allclose(np.asarray(jit_p), np.asarray(eager_p), **TOL[dtype])
    for a, b in zip(jit_s, eager_s):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL[dtype])
