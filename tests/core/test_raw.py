"""`init`/`step` on raw arrays: structure, None gradients, in place, and errors that change nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import adamp_core as ac

CONFIGS = [ac.AdamPConfig(lr=1e-2, weight_decay=0.1), ac.SGDPConfig(lr=0.1, momentum=0.9)]
SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]


def _arrays(backend, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = [backend.asarray(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
    grads = [backend.asarray(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
    return params, grads


def _snapshot(params, state, backend):
    return [backend.to_numpy(p).copy() for p in params] + [
        backend.to_numpy(a).copy() for s in state for a in s
    ]


def _assert_unchanged(before, params, state, backend):
    after = _snapshot(params, state, backend)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_import_loads_no_framework():
    code = (
        "import sys, adamp_core, adapters; "
        "print(sorted(m for m in ('torch', 'jax', 'cupy', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("config", CONFIGS, ids=type)
def test_pure_by_default(backend, config):
    params, grads = _arrays(backend)
    state = ac.init(params, config)
    before = _snapshot(params, state, backend)
    new_params, new_state = ac.step(params, grads, state, config)
    _assert_unchanged(before, params, state, backend)
    assert isinstance(new_params, list) and len(new_params) == len(params)
    assert all(not np.array_equal(backend.to_numpy(a), b) for a, b in zip(new_params, before))


@pytest.mark.parametrize("config", CONFIGS, ids=type)
def test_inplace_equals_pure(writable_backend, config):
    b = writable_backend
    params, grads = _arrays(b)
    state = ac.init(params, config)
    pure_params, pure_state = params, state
    for _ in range(3):
        pure_params, pure_state = ac.step(pure_params, grads, pure_state, config)
    for _ in range(3):
        out_params, out_state = ac.step(params, grads, state, config, inplace=True)
    assert all(o is p for o, p in zip(out_params, params))  # the very same arrays, written
    for x, y in zip(params, pure_params):
        np.testing.assert_allclose(b.to_numpy(x), b.to_numpy(y), rtol=1e-12, atol=1e-14)
    for s, t in zip(state, pure_state):
        for x, y in zip(s, t):
            np.testing.assert_allclose(b.to_numpy(x), b.to_numpy(y), rtol=1e-12, atol=1e-14)


def test_inplace_refused_for_jax():
    from conftest import load_backend

    b = load_backend("jax")
    params, grads = _arrays(b)
    state = ac.init(params, CONFIGS[0])
    with pytest.raises(ValueError, match="inplace=True needs writable arrays"):
        ac.step(params, grads, state, CONFIGS[0], inplace=True)


def test_inplace_refused_for_readonly_numpy_and_nothing_changes():
    params, grads = _arrays(load := __import__("conftest").load_backend("numpy"))
    state = ac.init(params, CONFIGS[0])
    params[2].flags.writeable = False
    before = _snapshot(params, state, load)
    with pytest.raises(ValueError, match=r"params\[2\] is read-only"):
        ac.step(params, grads, state, CONFIGS[0], inplace=True)
    _assert_unchanged(before, params, state, load)


@pytest.mark.parametrize("config", CONFIGS, ids=type)
def test_none_grad_leaves_param_and_state(backend, config):
    params, grads = _arrays(backend)
    grads[1] = None
    state = ac.init(params, config)
    new_params, new_state = ac.step(params, grads, state, config)
    assert new_params[1] is params[1] and new_state[1] is state[1]
    assert not np.array_equal(backend.to_numpy(new_params[0]), backend.to_numpy(params[0]))


def test_single_array_and_tuple_structure():
    rng = np.random.default_rng(1)
    w, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    s = ac.init(w, CONFIGS[0])
    assert isinstance(s, ac.AdamPState)
    w1, s1 = ac.step(w, g, s, CONFIGS[0])
    assert isinstance(w1, np.ndarray) and isinstance(s1, ac.AdamPState)
    assert s1.step.shape == () and float(s1.step) == 1.0
    tw, _ = ac.step((w,), (g,), [s], CONFIGS[0])
    assert isinstance(tw, tuple)
    np.testing.assert_array_equal(tw[0], w1)


def test_zero_dim_and_empty_params(backend):
    for config in CONFIGS:
        params = [
            backend.asarray(np.array(2.0)),
            backend.asarray(np.zeros((0, 3))),
            backend.asarray(np.zeros((3, 0, 2))),
        ]
        grads = [
            backend.asarray(np.array(0.5)),
            backend.asarray(np.zeros((0, 3))),
            backend.asarray(np.zeros((3, 0, 2))),
        ]
        state = ac.init(params, config)
        new, new_state = ac.step(params, grads, state, config)
        assert [tuple(p.shape) for p in new] == [(), (0, 3), (3, 0, 2)]
        assert np.isfinite(backend.to_numpy(new[0])) and backend.to_numpy(new[0]) != 2.0
        info = ac.projection(params[1], grads[1], grads[1], delta=0.1, wd_ratio=0.1, eps=1e-8)
        assert int(info.branch) == ac.NONE and float(info.ratio) == 1.0
        if backend.writeable:  # in place too: an empty array (NumPy strides it 0) shares nothing
            kept, _ = ac.step(params, grads, state, config, inplace=True)
            assert kept[0] is params[0] and float(backend.to_numpy(params[0])) != 2.0


# --- errors: each raises before anything changes -------------------------------------------


def _bad_cases(b):
    rng = np.random.default_rng(2)
    w = [b.asarray(rng.standard_normal((3, 4))), b.asarray(rng.standard_normal(5))]
    g = [b.asarray(rng.standard_normal((3, 4))), b.asarray(rng.standard_normal(5))]
    cfg = CONFIGS[0]
    s = ac.init(w, cfg)
    f32 = b.asarray(rng.standard_normal(5).astype(np.float32))
    return (
        w,
        g,
        s,
        cfg,
        {
            "shape": (
                ValueError,
                r"grads\[1\] has shape \(4,\)",
                lambda: (w, [g[0], b.asarray(np.ones(4))], s, cfg),
            ),
            "dtype": (TypeError, r"grads\[1\] has dtype", lambda: (w, [g[0], f32], s, cfg)),
            "length": (ValueError, "differ in length", lambda: (w, g[:1], s, cfg)),
            "state kind": (
                TypeError,
                "needs AdamPState",
                lambda: (w, g, ac.init(w, CONFIGS[1]), cfg),
            ),
            "state shape": (
                ValueError,
                r"state\[0\].exp_avg has shape",
                lambda: (w, g, [s[0]._replace(exp_avg=b.asarray(np.zeros((4, 3)))), s[1]], cfg),
            ),
            "library": (
                TypeError,
                "one array library",
                lambda: (
                    w,
                    [g[0], np.ones(5)]
                    if b.name != "numpy"
                    else [
                        g[0],
                        __import__("array_api_strict").ones(
                            5, dtype=__import__("array_api_strict").float64
                        ),
                    ],
                    s,
                    cfg,
                ),
            ),
            "integer param": (
                TypeError,
                "real floating",
                lambda: ([w[0], b.asarray(np.arange(5))], [g[0], b.asarray(np.arange(5))], s, cfg),
            ),
            "single vs list": (ValueError, "all be sequences", lambda: (w, g[0], s, cfg)),
            "config": (TypeError, "AdamPConfig or an SGDPConfig", lambda: (w, g, s, {"lr": 0.1})),
        },
    )


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize(
    "case",
    [
        "shape",
        "dtype",
        "length",
        "state kind",
        "state shape",
        "library",
        "integer param",
        "single vs list",
        "config",
    ],
)
def test_bad_input_raises_and_changes_nothing(writable_backend, case, inplace):
    b = writable_backend
    w, g, s, cfg, cases = _bad_cases(b)
    err, pattern, make = cases[case]
    before = _snapshot(w, s, b)
    args = make()
    with pytest.raises(err, match=pattern):
        ac.step(*args, inplace=inplace)
    _assert_unchanged(before, w, s, b)


def test_device_mismatch_is_reported():
    torch = pytest.importorskip("torch")
    w = torch.zeros(3, 2)
    g = torch.zeros(3, 2, device="meta")
    with pytest.raises(ValueError, match="device"):
        ac.step(w, g, ac.init(w, CONFIGS[0]), CONFIGS[0])


@pytest.mark.parametrize("config", CONFIGS, ids=type)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("inplace", [False, True])
def test_half_precision_tracks_float32(config, dtype, inplace):
    torch = pytest.importorskip("torch")
    half = getattr(torch, dtype)
    rng = np.random.default_rng(4)
    w32 = [
        torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(half).float() for s in SHAPES
    ]
    grads32 = [
        [
            torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(half).float()
            for s in SHAPES
        ]
        for _ in range(3)
    ]
    grads32.append([torch.zeros(s) for s in SHAPES])  # zero gradients: eps must not underflow
    wh = [w.to(half) for w in w32]
    s32, sh = ac.init(w32, config), ac.init(wh, config)
    assert (
        all(s.step.dtype == torch.float32 for s in sh)
        if isinstance(config, ac.AdamPConfig)
        else True
    )
    for grads in grads32:
        w32, s32 = ac.step(w32, grads, s32, config)
        out, sh = ac.step(wh, [g.to(half) for g in grads], sh, config, inplace=inplace)
        wh = out
    for a, b in zip(wh, w32):
        assert a.dtype == half and torch.isfinite(a).all()
        tol = 2e-2 if dtype == "bfloat16" else 4e-3
        torch.testing.assert_close(a.float(), b, rtol=tol, atol=tol)


def _one_update(kind, param, grad, state_shape, nesterov):
    """One update of ``param`` from a non-zero state laid out as ``state_shape``."""
    g = grad.reshape(state_shape)
    hyper = dict(lr=0.1, weight_decay=0.1, eps=1e-8, delta=0.1, wd_ratio=0.1, nesterov=nesterov)
    if kind == "adamp":
        state = ac.AdamPState(np.zeros(()), g * 0.3, g**2 * 0.2)
        return ac.adamp_update(param, grad, state, beta1=0.9, beta2=0.999, **hyper)
    return ac.sgdp_update(param, grad, ac.SGDPState(g * 0.3), momentum=0.9, dampening=0.0, **hyper)


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("projected", [False, True])
def test_state_in_rows_layout_gives_the_same_update(kind, nesterov, projected):
    """The Optax adapter keeps a conv weight's state as (rows, fan): same numbers."""
    rng = np.random.default_rng(1)
    shape = (4, 3, 2, 2)
    param = rng.standard_normal(shape)
    grad = rng.standard_normal(shape)
    if projected:  # a gradient orthogonal to every row of the weight: the channel branch
        w, g = param.reshape(4, -1), grad.reshape(4, -1)
        grad = g - w * (np.sum(w * g, 1, keepdims=True) / np.sum(w * w, 1, keepdims=True))
        grad = grad.reshape(shape)
    flat = (shape[0], int(np.prod(shape[1:])))
    new_a, state_a, proj_a = _one_update(kind, param, grad, shape, nesterov)
    new_b, state_b, proj_b = _one_update(kind, param, grad, flat, nesterov)
    assert int(proj_a.branch) == int(proj_b.branch) == (ac.CHANNEL if projected else ac.NONE)
    assert new_b.shape == shape and proj_b.coef.shape == proj_a.coef.shape
    np.testing.assert_allclose(new_b, new_a, rtol=1e-14, atol=1e-15)
    for a, b in zip(state_a, state_b):
        assert np.shape(b) == (() if np.ndim(a) == 0 else flat)
        np.testing.assert_allclose(np.reshape(b, np.shape(a)), a, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
@pytest.mark.parametrize("state_shape", [(12, 4), (4, 3, 4), (3, 16)])
def test_state_in_another_layout_is_refused(kind, state_shape):
    rng = np.random.default_rng(2)
    param, grad = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    with pytest.raises(ValueError, match=r"state of shape .* parameter of shape \(4, 3, 2, 2\)"):
        _one_update(kind, param, grad, state_shape, nesterov=False)


SHARDED_SCRIPT = """
import numpy as np, jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import adamp_core as ac
mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
rng = np.random.default_rng(0)
shapes = {"w": ((8, 4), P("data", "model")), "b": ((8,), P("data")), "s": ((), P())}
host = {k: rng.standard_normal(s).astype(np.float32) for k, (s, _) in shapes.items()}
grads = {k: rng.standard_normal(s).astype(np.float32) for k, (s, _) in shapes.items()}
for config in (ac.AdamPConfig(lr=0.1, weight_decay=0.1), ac.SGDPConfig(lr=0.1, momentum=0.9)):
    out = {}
    for name, put in (("plain", jnp.asarray),
                      ("sharded", lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec)))):
        spec = lambda k: [shapes[k][1]] if name == "sharded" else []
        ps = [put(host[k], *spec(k)) for k in shapes]
        gs = [put(grads[k], *spec(k)) for k in shapes]
        state = ac.init(ps, config)
        for _ in range(3):
            ps, state = ac.step(ps, gs, state, config)
        out[name] = [np.asarray(p) for p in ps]
    for a, b in zip(out["plain"], out["sharded"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
print("sharded raw steps == plain")
"""


def test_raw_step_on_arrays_spread_over_devices():
    """init and step on JAX arrays sharded over a 4x2 mesh of (host) devices: the state's
    0-d arrays and the projection's small ones are placed without a device of their own."""
    pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sharded raw steps == plain" in out.stdout
