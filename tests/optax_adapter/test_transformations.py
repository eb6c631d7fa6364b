"""adapters.optax: float64 parity with adamp 0.3.0 and the Optax conventions."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
torch = pytest.importorskip("torch")
adamp_official = pytest.importorskip("adamp")

import jax.numpy as jnp  # noqa: E402
from oracle import ADAMP_OPTIONS, MODES, SGDP_OPTIONS, forced_grad, official_branch  # noqa: E402

from adapters import _xla  # noqa: E402
from adapters.optax import adamp, scale_by_adamp, sgdp, with_projection  # noqa: E402

# "wide" and "conv64" have fans that are multiples of 64: their row sums take the one-pass
# CPU kernel (adapters._xla._row_dots); the others take the three plain sums.
SHAPES = {
    "conv": (6, 3, 3, 3),
    "linear": (5, 7),
    "wide": (3, 64),
    "conv64": (4, 16, 2, 2),
    "bias": (6,),
    "scalar": (),
}


def _ours(kind, options, **extra):
    """Our optimizer with the official options; the weights are in PyTorch's layout."""
    o = dict(options) | {"channel_axis": extra.pop("channel_axis", 0)}
    lr = o.pop("lr")
    if kind == "adamp":
        b1, b2 = o.pop("betas", (0.9, 0.999))
        return adamp(extra.pop("schedule", lr), b1=b1, b2=b2, **o, **extra)
    return sgdp(extra.pop("schedule", lr), **o, **extra)


def _run(kind, options, steps=12, seed=0, lrs=None, **extra):
    """Train the same pytree with the official optimizer and ours; return the worst difference."""
    rng = np.random.default_rng(seed)
    w0 = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    names = list(SHAPES)
    ref = [torch.nn.Parameter(torch.from_numpy(w0[k].copy())) for k in names]
    cls = adamp_official.AdamP if kind == "adamp" else adamp_official.SGDP
    opt_ref = cls(ref, **options)
    opt = _ours(kind, options, **extra)
    params = jax.tree.map(jnp.asarray, w0)
    state = opt.init(params)
    update = jax.jit(opt.update)
    worst, branches = 0.0, set()
    for t in range(steps):
        mode = MODES[t % len(MODES)]
        grads = {k: forced_grad(p.detach().numpy(), mode, rng) for k, p in zip(names, ref)}
        for k, p in zip(names, ref):
            p.grad = torch.from_numpy(grads[k].copy())
            if p.ndim >= 2:
                branches.add(
                    official_branch(
                        p.detach(), p.grad, opt_ref.defaults["delta"], opt_ref.defaults["eps"]
                    )
                )
        if lrs is not None:
            opt_ref.param_groups[0]["lr"] = lrs[t]
        opt_ref.step()
        updates, state = update(jax.tree.map(jnp.asarray, grads), state, params)
        params = optax.apply_updates(params, updates)
        for k, p in zip(names, ref):
            expected = p.detach().numpy()
            got = np.asarray(params[k])
            np.testing.assert_allclose(
                got, expected, rtol=1e-11, atol=1e-13, err_msg=f"{k} step {t}"
            )
            worst = max(
                worst, float(np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-300))
            )
    return worst, branches, state


@pytest.mark.parametrize("options", ADAMP_OPTIONS, ids=range(3))
def test_adamp_matches_official(options):
    _, branches, _ = _run("adamp", options)
    assert {1, 2} <= branches  # channel and layer branches both fired along the way


@pytest.mark.parametrize("options", SGDP_OPTIONS, ids=range(4))
def test_sgdp_matches_official(options):
    _, branches, _ = _run("sgdp", options)
    assert {1, 2} <= branches


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
def test_schedule_drives_lr_and_weight_decay(kind):
    schedule = optax.exponential_decay(0.05, transition_steps=1, decay_rate=0.8)
    # the rate the schedule gives under jit (Optax computes it in float32 there), fed to both
    lrs = [float(jax.jit(schedule)(jnp.asarray(t, jnp.int32))) for t in range(8)]
    options = (
        dict(lr=0.05, weight_decay=0.1)
        if kind == "adamp"
        else dict(lr=0.05, momentum=0.9, weight_decay=0.1)
    )
    _run(kind, options, steps=8, lrs=lrs, schedule=schedule)


def test_weight_decay_mask_pytree_and_callable():
    rng = np.random.default_rng(3)
    params = {
        "w": jnp.asarray(rng.standard_normal((4, 3))),
        "b": jnp.asarray(rng.standard_normal(4)),
    }
    grads = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), params)
    masked = adamp(1e-2, weight_decay=0.5, mask={"w": True, "b": False})
    by_fn = adamp(1e-2, weight_decay=0.5, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    u_masked, _ = masked.update(grads, masked.init(params), params)
    u_fn, _ = by_fn.update(grads, by_fn.init(params), params)
    plain_b, _ = adamp(1e-2).update(grads, adamp(1e-2).init(params), params)
    decayed_w, _ = adamp(1e-2, weight_decay=0.5).update(grads, adamp(1e-2).init(params), params)
    for u in (u_masked, u_fn):
        np.testing.assert_array_equal(u["b"], plain_b["b"])  # no decay on the bias
        np.testing.assert_array_equal(u["w"], decayed_w["w"])
    assert not np.array_equal(u_masked["w"], plain_b["w"])


def test_update_without_params_is_a_value_error():
    params = {"w": jnp.ones((3, 2))}
    for opt in (adamp(1e-3), sgdp(0.1), with_projection(optax.sgd(0.1))):
        with pytest.raises(ValueError, match="needs the parameters"):
            opt.update(params, opt.init(params))


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (adamp, dict(learning_rate=1e-3, b1=1.0), "betas"),
        (adamp, dict(learning_rate=1e-3, eps=-1.0), "eps"),
        (adamp, dict(learning_rate=1e-3, weight_decay=-1.0), "weight_decay"),
        (adamp, dict(learning_rate=1e-3, wd_ratio=-1.0), "wd_ratio"),
        (sgdp, dict(learning_rate=0.1, momentum=1.0), "momentum"),
        (sgdp, dict(learning_rate=0.1, nesterov=True), "nesterov"),
        (sgdp, dict(learning_rate=0.1, delta=float("nan")), "delta"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(factory, kwargs, name):
    with pytest.raises(ValueError, match=name):
        factory(**kwargs)


def test_state_is_arrays_and_jit_traces_once():
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(4)}
    opt = adamp(1e-3)
    state = opt.init(params)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    grads = {"w": jnp.full((4, 3), 0.1), "b": jnp.ones(4)}
    for _ in range(5):
        params, state = step(params, state, grads)
    assert len(traces) == 1
    assert float(state[0].step) == 5.0


@pytest.mark.parametrize("fan", [64, 96, 192, 768, 2048, 3072, 72, 1000, 8, 12])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("axis", [-1, -2], ids=["rows", "columns"])
def test_row_dots_are_the_three_row_sums(fan, dtype, axis):
    """The CPU kernels (one variadic reduction: for rows, fans that are multiples of 64; for
    columns, of 8; the plain sums otherwise) against float64 NumPy, with and without an
    ``after``."""
    rng = np.random.default_rng(fan)
    w, g = (rng.standard_normal((5, fan)).astype(dtype) for _ in range(2))
    expected = [np.einsum("ij,ij->i", a.astype(np.float64), b) for a, b in ((w, w), (g, g), (w, g))]
    if axis == -2:  # the same rows, as the columns of a channels-last view
        w, g = w.T.copy(), g.T.copy()
    rtol = 1e-5 if dtype == "float32" else 1e-13
    for after in (None, jnp.asarray([jnp.nan])):
        got = jax.jit(functools.partial(_xla._row_dots, axis=axis, after=after))(
            jnp.asarray(w), jnp.asarray(g)
        )
        for a, b in zip(got, expected):
            assert a.dtype == dtype and a.shape == (5,)
            np.testing.assert_allclose(np.asarray(a), b, rtol=rtol, atol=rtol * np.sqrt(fan))


@pytest.mark.parametrize("fan", [8, 64, 12])
def test_vecdot_sums_the_channels_of_either_layout(fan):
    """``vecdot`` of the Optax namespace, by rows (axis -1) and by columns (axis -2, summed in
    groups of 8 when the fan allows) against float64 NumPy."""
    rng = np.random.default_rng(fan)
    x, y = (rng.standard_normal((5, fan)) for _ in range(2))
    expected = np.einsum("ij,ij->i", x, y)
    for axis, a, b in ((-1, x, y), (-2, x.T.copy(), y.T.copy())):
        got = jax.jit(functools.partial(_xla.xp.vecdot, axis=axis))(jnp.asarray(a), jnp.asarray(b))
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-12)


def test_a_nan_stays_in_its_leaf():
    """Leaves are updated independently: a NaN in one gradient changes no other leaf."""
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.standard_normal((4, 6))) for k in "abc"}
    grads = {k: jnp.asarray(rng.standard_normal((4, 6))) for k in "abc"}
    bad = grads | {"a": grads["a"].at[0, 0].set(jnp.nan)}
    for opt in (adamp(1e-2, weight_decay=0.1), sgdp(0.1, momentum=0.9, weight_decay=0.1)):
        state = opt.init(params)
        clean, _ = jax.jit(opt.update)(grads, state, params)
        dirty, _ = jax.jit(opt.update)(bad, state, params)
        assert np.isnan(np.asarray(dirty["a"])).any()
        for k in "bc":
            np.testing.assert_array_equal(np.asarray(dirty[k]), np.asarray(clean[k]))


def test_inject_hyperparams_chain_multisteps_apply_if_finite_masked():
    params = {"w": jnp.ones((4, 3)) + jnp.arange(12.0).reshape(4, 3) / 10, "b": jnp.zeros(4)}
    grads = {"w": jnp.full((4, 3), 0.1), "b": jnp.ones(4)}
    plain = adamp(1e-2, weight_decay=0.1)
    expected, _ = plain.update(grads, plain.init(params), params)

    injected = optax.inject_hyperparams(adamp)(learning_rate=1e-2, weight_decay=0.1)
    state = injected.init(params)
    got, state = injected.update(grads, state, params)
    np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-12)
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    zero, _ = injected.update(grads, state, params)
    np.testing.assert_array_equal(zero["w"], 0.0 * zero["w"])

    chained = optax.chain(optax.clip_by_global_norm(1e9), adamp(1e-2, weight_decay=0.1))
    got, _ = chained.update(grads, chained.init(params), params)
    np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-12)

    multi = optax.MultiSteps(adamp(1e-2, weight_decay=0.1), every_k_schedule=2)
    ms = multi.init(params)
    first, ms = multi.update(grads, ms, params)
    second, ms = multi.update(grads, ms, params)
    np.testing.assert_array_equal(first["w"], 0.0 * first["w"])
    np.testing.assert_allclose(second["w"], expected["w"], rtol=1e-12)

    guarded = optax.apply_if_finite(adamp(1e-2), max_consecutive_errors=3)
    gs = guarded.init(params)
    bad = {"w": grads["w"].at[0, 0].set(jnp.nan), "b": grads["b"]}
    skipped, gs2 = guarded.update(bad, gs, params)
    assert np.all(np.asarray(skipped["w"]) == 0.0)
    for a, b in zip(jax.tree.leaves(gs2.inner_state), jax.tree.leaves(gs.inner_state)):
        np.testing.assert_array_equal(a, b)

    only_w = optax.masked(adamp(1e-2), {"w": True, "b": False})
    got, _ = only_w.update(grads, only_w.init(params), params)
    np.testing.assert_array_equal(got["b"], grads["b"])  # untouched leaves pass through


def test_with_projection_makes_any_update_orthogonal():
    rng = np.random.default_rng(5)
    w = jnp.asarray(rng.standard_normal((5, 8)))
    g = jnp.asarray(forced_grad(np.asarray(w), "channel", rng))
    opt = with_projection(optax.sgd(0.1, momentum=0.9))
    state = opt.init({"w": w})
    for _ in range(3):
        u, state = opt.update({"w": g}, state, {"w": w})
    dots = np.sum(np.asarray(u["w"]) * np.asarray(w), axis=1)
    assert np.all(
        np.abs(dots)
        < 1e-10 * np.linalg.norm(np.asarray(u["w"])) * np.linalg.norm(np.asarray(w)) + 1e-12
    )
    # with a gradient parallel to the weight nothing is projected: plain SGD
    plain = optax.sgd(0.1, momentum=0.9)
    u2, _ = opt.update({"w": w}, opt.init({"w": w}), {"w": w})
    u3, _ = plain.update({"w": w}, plain.init({"w": w}), {"w": w})
    np.testing.assert_array_equal(u2["w"], u3["w"])


def test_scale_by_adamp_composes_like_optax():
    params = {"w": jnp.ones((3, 4))}
    grads = {"w": jnp.full((3, 4), 0.2).at[0, 1].set(-1.0)}
    a = adamp(1e-2, weight_decay=0.1)
    b = optax.chain(scale_by_adamp(weight_decay=0.1), optax.scale(-1e-2))
    ua, _ = a.update(grads, a.init(params), params)
    ub, _ = b.update(grads, b.init(params), params)
    np.testing.assert_allclose(ua["w"], ub["w"], rtol=1e-15)


def test_flax_train_state():
    flax = pytest.importorskip("flax")
    from flax.training import train_state

    del flax
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(4)}
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=adamp(1e-2))
    grads = {"w": jnp.full((4, 3), 0.1), "b": jnp.ones(4)}
    new = jax.jit(lambda s, g: s.apply_gradients(grads=g))(state, grads)
    assert int(new.step) == 1 and not np.array_equal(new.params["b"], params["b"])


SHARDING_SCRIPT = textwrap.dedent(
    r"""
    import re
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from adapters.optax import adamp, sgdp
    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    rng = np.random.default_rng(0)
    params = {"conv": rng.standard_normal((16, 8, 3, 3)).astype(np.float32),
              "dense": rng.standard_normal((32, 64)).astype(np.float32),
              "bias": rng.standard_normal(32).astype(np.float32)}
    specs = {"conv": P("data", "model"), "dense": P(None, "data"), "bias": P("model")}
    for opt in (adamp(1e-2, weight_decay=0.1, channel_axis=0), sgdp(0.1, momentum=0.9, weight_decay=1e-2, channel_axis=0)):
        def train(params, n=4):
            state = opt.init(params)
            step = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*opt.update(g, s, p)))
            for i in range(n):
                grads = jax.tree.map(lambda x: jnp.sin(x * (i + 1)), params)
                params, state = step(params, state, grads)
            return params
        plain = train(jax.tree.map(jnp.asarray, params))
        sharded_in = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in params.items()}
        sharded = train(sharded_in)
        for k in params:
            assert sharded[k].sharding.is_equivalent_to(NamedSharding(mesh, specs[k]), params[k].ndim), k
            np.testing.assert_allclose(np.asarray(sharded[k]), np.asarray(plain[k]), rtol=2e-6, atol=1e-7)
        # the projection adds only all-reduces of per-row sums: no weight is gathered
        state = opt.init(sharded_in)
        step = jax.jit(lambda p, s, g: opt.update(g, s, p))
        hlo = step.lower(sharded_in, state, sharded_in).compile().as_text()
        assert "all-gather" not in hlo and "all-to-all" not in hlo, "a weight is gathered"
        reduced = [int(n) for line in hlo.splitlines() if "all-reduce(" in line
                   for n in re.findall(r"f32\[(\d+)\]", line.split("all-reduce(")[0])]
        assert reduced and max(reduced) <= 32, reduced  # at most one value per output channel
    print("sharded == unsharded")
    """
)


def test_sharded_parameters_match_unsharded_and_stay_sharded():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", SHARDING_SCRIPT],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded == unsharded" in out.stdout
