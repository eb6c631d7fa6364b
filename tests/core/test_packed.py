"""A list stepped with one packed state equals the list stepped with a state per array.

The reference is ``adamp_core.step`` with per-array states (checked against the official
package in ``test_parity.py``), on every backend, with each branch forced on some weights.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle import forced_grad

import adamp_core as ac
from adamp_core.packed import Packing

# three weights of fan 12 (one block of rows), weights of fans 2 and 8, 1-D and 0-d arrays,
# an empty weight
SHAPES = [(6, 3, 2, 2), (5,), (4, 12), (5,), (0, 3), (9, 2), (), (1, 8), (3, 2, 3, 2)]
#: SHAPES' indices in packed order, by the rule: tested arrays by fan, then the others
PACKED_ORDER = [5, 7, 0, 2, 8, 1, 3, 4, 6]
CONFIGS = [
    ac.AdamPConfig(lr=1e-2, weight_decay=0.1, wd_ratio=0.3),
    ac.AdamPConfig(lr=1e-2, weight_decay=0.1, nesterov=True),
    ac.SGDPConfig(lr=0.1, momentum=0.9, weight_decay=0.1),
    ac.SGDPConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
]
MODES = ["channel", "layer", "random", "zero"]


def _params(backend, seed=5):
    rng = np.random.default_rng(seed)
    return [backend.asarray(np.array(rng.standard_normal(s))) for s in SHAPES]


def _grads(params, backend, step):
    """Per weight, a gradient forcing a branch (the modes rotate over weights and steps)."""
    rng = np.random.default_rng(100 + step)
    return [
        backend.asarray(forced_grad(backend.to_numpy(p), MODES[(i + step) % 4], rng))
        for i, p in enumerate(params)
    ]


def test_packed_order_groups_tested_arrays_by_fan():
    packing = Packing(SHAPES, like=np.zeros(1), dtype=np.float64)
    assert packing.order == PACKED_ORDER
    # fans 2 and 8 alone, then one block of the 13 rows of fan 12
    assert packing.blocks == [(0, 9, 2), (18, 1, 8), (26, 13, 12)]


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_packed_step_equals_per_array_states(backend, config, inplace):
    if inplace and not backend.writeable:
        pytest.skip(f"{backend.name} arrays are immutable")
    apart, packed = _params(backend), _params(backend)
    apart_state = ac.init(apart, config)
    packed_state = ac.init(packed, config, packed=True)
    branches = set()
    for t in range(4):
        grads = _grads(apart, backend, t)
        for w, g in zip(apart, grads, strict=True):
            branches.add(int(backend.to_numpy(ac.projection(w, g, g, **_hyper(config)).branch)))
        apart, apart_state = ac.step(apart, grads, apart_state, config, inplace=inplace)
        packed, packed_state = ac.step(packed, grads, packed_state, config, inplace=inplace)
    assert branches >= {ac.CHANNEL, ac.LAYER, ac.NONE}
    for a, b in zip(apart, packed, strict=True):
        assert tuple(b.shape) == tuple(a.shape)
        np.testing.assert_allclose(backend.to_numpy(b), backend.to_numpy(a), rtol=1e-13, atol=1e-15)
    # the packed moments are the per-array ones, laid out in packed order
    for field in type(packed_state)._fields:
        flat = backend.to_numpy(getattr(packed_state, field))
        per_array = [backend.to_numpy(getattr(apart_state[i], field)) for i in PACKED_ORDER]
        if field == "step":
            assert all(float(s) == float(flat) for s in per_array)
            continue
        expected = np.concatenate([a.reshape(-1) for a in per_array])
        np.testing.assert_allclose(flat, expected, rtol=1e-13, atol=1e-15)


def _hyper(config):
    kw = config.update_kwargs()
    return {k: kw[k] for k in ("delta", "wd_ratio", "eps")}


def test_half_precision_packed_list_tracks_per_array_states():
    """float16 arrays are summed and decided in float32, as per-array states are."""
    config = CONFIGS[0]
    rng = np.random.default_rng(1)
    base = [np.array(rng.standard_normal(s)).astype(np.float16) for s in SHAPES]
    apart, packed = [a.copy() for a in base], [a.copy() for a in base]
    apart_state, packed_state = ac.init(apart, config), ac.init(packed, config, packed=True)
    for t in range(3):
        grads = [forced_grad(a.astype(np.float64), MODES[t], rng).astype(np.float16) for a in base]
        apart, apart_state = ac.step(apart, grads, apart_state, config)
        packed, packed_state = ac.step(packed, grads, packed_state, config)
    for a, b in zip(apart, packed, strict=True):
        assert b.dtype == np.float16
        np.testing.assert_allclose(b.astype(np.float32), a.astype(np.float32), rtol=2e-3, atol=1e-3)


def _snapshot(arrays):
    return [np.array(a, copy=True) for a in arrays]


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("none grad", ValueError, "grads\\[1\\] is None"),
        ("short grads", ValueError, "as long"),
        ("grad shape", ValueError, "grads\\[2\\] has shape"),
        ("other dtype", TypeError, "one dtype"),
        ("state length", ValueError, "packed state of these params"),
        ("state kind", TypeError, "needs AdamPState"),
        ("read-only", ValueError, "writable"),
    ],
)
def test_bad_packed_input_raises_and_changes_nothing(case, error, match):
    config = CONFIGS[0]
    params = _params(_numpy_backend())
    state = ac.init(params, config, packed=True)
    grads = [np.ones(s) for s in SHAPES]
    if case == "none grad":
        grads[1] = None
    elif case == "short grads":
        grads = grads[:-1]
    elif case == "grad shape":
        grads[2] = np.ones((12, 4))
    elif case == "other dtype":
        params[3] = params[3].astype(np.float32)
        grads[3] = grads[3].astype(np.float32)
    elif case == "state length":
        params, grads = params[:-1], grads[:-1]
    elif case == "state kind":
        state = ac.init(params, CONFIGS[2], packed=True)
    elif case == "read-only":
        params[4] = np.ones((2, 3))
        grads[4] = np.ones((2, 3))
        params[4].flags.writeable = False
        state = ac.init(params, config, packed=True)
    before = _snapshot(params) + _snapshot(state)
    with pytest.raises(error, match=match):
        ac.step(params, grads, state, config, inplace=True)
    for a, b in zip(before, _snapshot(params) + _snapshot(state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_packed_init_refuses_what_it_cannot_pack():
    config = CONFIGS[0]
    with pytest.raises(ValueError, match="non-empty list"):
        ac.init(np.ones((2, 3)), config, packed=True)
    with pytest.raises(ValueError, match="non-empty list"):
        ac.init([], config, packed=True)
    with pytest.raises(TypeError, match="one dtype"):
        ac.init([np.ones(3), np.ones(3, dtype=np.float32)], config, packed=True)


def test_packed_step_keeps_the_containers_kind():
    config = CONFIGS[2]
    params = tuple(_params(_numpy_backend()))
    state = ac.init(params, config, packed=True)
    new, _ = ac.step(params, [np.ones(s) for s in SHAPES], state, config)
    assert isinstance(new, tuple) and len(new) == len(SHAPES)


def _numpy_backend():
    from conftest import load_backend

    return load_backend("numpy")
