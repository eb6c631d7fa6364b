"""Output channels on any axis: Flax/Haiku kernels put them last, PyTorch first.

The proof: a Flax CNN and the same network in PyTorch (weights transposed) trained side by
side with ``adapters.optax`` and ``adapters.torch`` agree after every step, and both take the
channel branch on the conv weights. Properties: for any axis, a projected update is
orthogonal to each output channel (channel branch) or to the whole weight (layer branch).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import BACKEND_NAMES, load_backend
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import forced_grad

import adamp_core as ac

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from adapters import optax as ox  # noqa: E402
from adapters import torch as tx  # noqa: E402

STEPS = 10


class FlaxCNN(nn.Module):
    """conv (no bias) -> BatchNorm -> relu, twice; global average pooling; dense head."""

    @nn.compact
    def __call__(self, x):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        for features in (8, 6):
            x = nn.Conv(features, (3, 3), padding="VALID", use_bias=False, **f64)(x)
            x = nn.BatchNorm(use_running_average=False, epsilon=1e-5, **f64)(x)
            x = nn.relu(x)
        return nn.Dense(5, **f64)(x.mean(axis=(1, 2)))


def torch_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, bias=False),
        torch.nn.BatchNorm2d(8, eps=1e-5),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 6, 3, bias=False),
        torch.nn.BatchNorm2d(6, eps=1e-5),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, 5),
    ).double()


def _to_torch_layout(name: str, leaf: np.ndarray) -> np.ndarray:
    if "kernel" in name and leaf.ndim == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
        return leaf.transpose(3, 2, 0, 1)
    if "kernel" in name:  # Dense (in, out) -> Linear (out, in)
        return leaf.T
    return leaf


def _flax_leaves(params) -> dict[str, np.ndarray]:
    flat = jax.tree_util.tree_leaves_with_path(params)
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


# Flax leaf path (sorted) -> torch parameter name
PAIRS = {
    "['BatchNorm_0']['bias']": "1.bias",
    "['BatchNorm_0']['scale']": "1.weight",
    "['BatchNorm_1']['bias']": "4.bias",
    "['BatchNorm_1']['scale']": "4.weight",
    "['Conv_0']['kernel']": "0.weight",
    "['Conv_1']['kernel']": "3.weight",
    "['Dense_0']['bias']": "8.bias",
    "['Dense_0']['kernel']": "8.weight",
}


def _side_by_side(kind: str) -> tuple[float, list[dict], list]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 8, 3))
    y = rng.integers(0, 5, 16)
    model = FlaxCNN()
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(x))
    params = variables["params"]
    net = torch_cnn()
    named = dict(net.named_parameters())
    with torch.no_grad():
        for path, leaf in _flax_leaves(params).items():
            named[PAIRS[path]].copy_(torch.from_numpy(_to_torch_layout(path, leaf).copy()))

    if kind == "adamp":
        opt = ox.adamp(1e-2, weight_decay=1e-2)
        topt = tx.AdamP(net.parameters(), lr=1e-2, weight_decay=1e-2)
    else:
        opt = ox.sgdp(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        topt = tx.SGDP(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    state = opt.init(params)

    def loss_fn(params):
        logits, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            jnp.asarray(x),
            mutable=["batch_stats"],
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean()

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)
    worst = 0.0
    for _ in range(STEPS):
        params, state = step(params, state)
        topt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        topt.step()
        for path, leaf in _flax_leaves(params).items():
            ours = named[PAIRS[path]].detach().numpy()
            theirs = _to_torch_layout(path, leaf)
            worst = max(worst, float(np.max(np.abs(ours - theirs)) / np.max(np.abs(ours))))
    return worst, ox.projection_info(state, params), topt.projection_info(named)


@pytest.mark.parametrize("kind", ["adamp", "sgdp nesterov"])
def test_flax_cnn_and_its_pytorch_twin_train_alike(kind):
    worst, jax_info, torch_info = _side_by_side(kind)
    assert worst < 1e-12, worst  # float64 rounding, amplified over 10 steps
    jax_branch = {r["path"]: r["branch"] for r in jax_info}
    torch_branch = {r.name: r.branch for r in torch_info}
    for conv, twin in (("['Conv_0']['kernel']", "0.weight"), ("['Conv_1']['kernel']", "3.weight")):
        assert jax_branch[conv] == torch_branch[twin] == "channel"
    for path, name in PAIRS.items():
        assert jax_branch[path] == torch_branch[name], path


def test_pytorch_layout_in_optax_takes_the_weaker_layer_branch():
    """Why the default matters: the same Flax kernel tested along its height rows (axis 0)
    is not seen as scale-invariant per channel."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 3, 16))
    g = forced_grad(w.transpose(3, 0, 1, 2), "channel", rng).transpose(1, 2, 3, 0)
    last = ac.projection(w, g, g, delta=0.1, wd_ratio=0.1, eps=1e-8, channel_axis=-1)
    first = ac.projection(w, g, g, delta=0.1, wd_ratio=0.1, eps=1e-8, channel_axis=0)
    assert int(last.branch) == ac.CHANNEL and int(first.branch) != ac.CHANNEL


def test_channel_axis_forms_agree():
    """One int, a name, a pytree of axes (None: never projected) and a function of the
    params give the same step where they name the same axes."""
    rng = np.random.default_rng(1)
    params = {"conv": jnp.asarray(rng.standard_normal((3, 3, 4, 6))), "b": jnp.zeros(6)}
    grads = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), params)
    ref, _ = ox.adamp(1e-2).update(grads, ox.adamp(1e-2).init(params), params)
    for axis in (-1, 3, "last", {"conv": -1, "b": None}, lambda p: jax.tree.map(lambda _: -1, p)):
        opt = ox.adamp(1e-2, channel_axis=axis)
        got, state = opt.update(grads, opt.init(params), params)
        for k in params:
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(ref[k]))
    opt = ox.adamp(1e-2, channel_axis=None)
    _, state = opt.update(grads, opt.init(params), params)
    assert all(r["branch"] == "none" for r in ox.projection_info(state, params))
    with pytest.raises(ValueError, match="channel_axis"):
        ox.adamp(1e-2, channel_axis=1.5).init(params)


def test_transposed_weight_gives_the_transposed_step():
    """channel_axis=-1 on a Flax kernel is channel_axis=0 on the PyTorch kernel."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 3, 4, 6))
    grads = [
        forced_grad(w.transpose(3, 2, 0, 1), m, rng).transpose(2, 3, 1, 0)
        for m in ("channel", "layer", "random")
    ]
    for config in (ac.AdamPConfig, lambda **k: ac.SGDPConfig(0.1, momentum=0.9, **k)):
        last, first = config(channel_axis=-1), config(channel_axis=0)
        a, b = w.copy(), w.transpose(3, 2, 0, 1).copy()
        sa, sb = ac.init(a, last), ac.init(b, first)
        for g in grads:
            a, sa = ac.step(a, g, sa, last)
            b, sb = ac.step(b, g.transpose(3, 2, 0, 1), sb, first)
            np.testing.assert_allclose(a.transpose(3, 2, 0, 1), b, rtol=1e-13, atol=1e-15)


axes_problems = st.tuples(
    st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple),
    st.integers(0, 3),
    st.sampled_from(["channel", "layer", "random"]),
    st.integers(0, 2**32 - 1),
)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=40)
@given(problem=axes_problems)
def test_projected_update_is_orthogonal_on_any_axis(name, problem):
    backend = load_backend(name)
    shape, axis, mode, seed = problem
    axis = axis % len(shape)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape)
    moved = np.moveaxis(w, axis, 0)
    g = np.moveaxis(forced_grad(moved, mode, rng), 0, axis)
    u = rng.standard_normal(shape)
    xp = backend.xp
    W, G, U = (backend.asarray(a) for a in (w, g, u))
    proj = ac.projection(W, G, U, delta=0.1, wd_ratio=0.1, eps=1e-8, channel_axis=axis, xp=xp)
    out = backend.to_numpy(ac.project(U, W, proj, xp=xp))
    branch = int(backend.to_numpy(proj.branch))
    assert backend.to_numpy(proj.coef).shape == tuple(
        n if a == axis else 1 for a, n in enumerate(shape)
    )
    rows = np.moveaxis(out, axis, 0).reshape(shape[axis], -1)
    wrows = moved.reshape(shape[axis], -1)
    urows = np.moveaxis(u, axis, 0).reshape(shape[axis], -1)
    if branch == ac.NONE:
        np.testing.assert_array_equal(out, u)
    else:
        if branch == ac.LAYER:
            rows, wrows, urows = (a.reshape(1, -1) for a in (rows, wrows, urows))
        # exact: <w,u'> = <w,u> (1 - |w|^2/(|w|+eps)^2), about 2 eps/|w| of <w,u>; plus rounding
        norm_w = np.linalg.norm(wrows, axis=1)
        rounding = 16 * wrows.shape[1] * np.finfo(np.float64).eps
        bound = (
            np.abs((wrows * urows).sum(1)) * 2e-8 / norm_w
            + np.linalg.norm(urows, axis=1) * norm_w * rounding
        )
        assert np.all(np.abs((wrows * rows).sum(1)) <= bound)
    if mode == "channel" and math.prod(shape) // shape[axis] > 1:
        assert branch == ac.CHANNEL
