"""Nothing changes unless the whole step is valid: each case found by trying to break a step.

Every test here failed before its fix. A step that raises must leave every parameter and
every state buffer as it was, and name the offending argument.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import adamp  # noqa: E402

import adamp_core as ac  # noqa: E402
from adapters.torch import SGDP, AdamP  # noqa: E402

PATHS = [dict(foreach=False), dict(foreach=True), dict(), dict(compile=True)]
PATH_IDS = ["per-tensor", "foreach", "default", "compiled"]


def _params(dtype=torch.float32):
    torch.manual_seed(0)
    # small (foreach on CPU by default) and large (> 2**15 elements, one by one) tensors
    return [
        torch.nn.Parameter(torch.randn(4, 3, 3, 3, dtype=dtype)),
        torch.nn.Parameter(torch.randn(4, dtype=dtype)),
        torch.nn.Parameter(torch.randn(300, 200, dtype=dtype)),
    ]


def _grads(params):
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, 0.1 * (i + 1))


def _snapshot(opt):
    tensors = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    state = copy.deepcopy({id(p): dict(s) for p, s in opt.state.items()})
    return tensors, state


def _assert_unchanged(opt, before):
    tensors, state = before
    now = [p.detach() for g in opt.param_groups for p in g["params"]]
    for a, b in zip(now, tensors, strict=True):
        assert torch.equal(a, b)
    assert set(state) == {id(p) for p in opt.state}
    for p, s in opt.state.items():
        for k, v in s.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(state[id(p)][k])), k


# 1. add_param_group keeps a rejected group


@pytest.mark.parametrize("cls", [AdamP, SGDP])
def test_rejected_param_group_is_not_added(cls):
    opt = cls(_params()[:1], lr=0.1)
    extra = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [extra], "lr": -1.0})
    assert len(opt.param_groups) == 1
    with pytest.raises(ValueError, match="more than once"):
        opt.add_param_group({"params": [extra, extra]})
    assert len(opt.param_groups) == 1


# 2. NumPy scalars and 0-d tensors as hyperparameters; 3. tensor learning rates


CASES = [
    (path, dtype, lr_shape)
    for path in PATH_IDS
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16)
    for lr_shape in ((), (1,), (1, 1))
    # the compiled path compiles per dtype and rank: one float dtype and the odd shapes
    if path != "compiled" or (dtype == torch.float32 and lr_shape != ())
]


@pytest.mark.parametrize(("path", "dtype", "lr_shape"), CASES)
def test_tensor_and_numpy_hyperparameters_step_like_floats(path, dtype, lr_shape):
    path = PATHS[PATH_IDS.index(path)]
    for cls, extra in ((AdamP, dict(nesterov=True)), (SGDP, dict(momentum=0.9, nesterov=True))):
        ref_params, params = _params(dtype), _params(dtype)
        ref = cls(ref_params, lr=0.01, weight_decay=0.1, **extra, **path)
        opt = cls(
            params,
            lr=torch.full(lr_shape, 0.01, dtype=torch.float64),
            weight_decay=np.float32(0.1) if cls is SGDP else np.int64(0) + 0.1,
            **extra,
            **path,
        )
        for o, ps in ((ref, ref_params), (opt, params)):
            for _ in range(2):
                _grads(ps)
                o.step()
        for a, b in zip(params, ref_params, strict=True):
            torch.testing.assert_close(a, b)


def test_tensor_betas_and_two_element_lr():
    p = _params()
    AdamP(p, betas=(torch.tensor(0.9), torch.tensor(0.999))).step()  # accepted, as torch's Adam
    with pytest.raises(ValueError, match="lr must be a real number or a one-element array"):
        AdamP(p, lr=torch.tensor([0.1, 0.2]))


# 4. the adapter validates before it writes


def _bad_cases():
    def wrong_grad_shape(ps):
        ps[2].grad.set_(torch.ones(200, 300))  # torch refuses plain assignment

    def wrong_grad_dtype(ps):
        ps[2].grad_dtype = None  # torch refuses the assignment otherwise
        ps[2].grad = ps[2].grad.double()

    def cast_model(ps):
        for p in ps:
            p.data = p.data.double()
            p.grad = p.grad.double()

    return {"grad shape": wrong_grad_shape, "grad dtype": wrong_grad_dtype, "cast": cast_model}


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("case", sorted(_bad_cases()))
@pytest.mark.parametrize("cls", [AdamP, SGDP])
def test_a_bad_step_changes_nothing(cls, case, path):
    params = _params()
    opt = cls(params, lr=0.1, **path)
    _grads(params)
    opt.step()  # states exist: later parameters would be stepped before the bad one
    _grads(params)
    _bad_cases()[case](params)
    before = _snapshot(opt)
    with pytest.raises((ValueError, TypeError)) as err:
        opt.step()
    assert "param 2" in str(err.value) or "param 0" in str(err.value)
    _assert_unchanged(opt, before)


# 5. load_state_dict refuses state that does not fit


@pytest.mark.parametrize("cls", [AdamP, SGDP])
def test_load_state_dict_refuses_state_that_does_not_fit(cls):
    params = _params()
    opt = cls(params, lr=0.1)
    _grads(params)
    opt.step()
    good = copy.deepcopy(opt.state_dict())
    key = "exp_avg" if cls is AdamP else "momentum"
    wrong_shape = copy.deepcopy(good)
    wrong_shape["state"][2][key] = torch.zeros(1, 200)
    fresh = cls(_params(), lr=0.1)
    with pytest.raises(ValueError, match=r"group 0 param 2: 'exp_avg'|group 0 param 2: 'momentum'"):
        fresh.load_state_dict(wrong_shape)
    assert len(fresh.state) == 0
    if cls is AdamP:  # (SGDP's only buffer: without it the state is that of a fresh one)
        missing = copy.deepcopy(good)
        del missing["state"][2]["exp_avg_sq"]
        with pytest.raises(ValueError, match="lacks"):
            fresh.load_state_dict(missing)
    fresh.load_state_dict(good)  # and the right one loads


def test_state_missing_a_buffer_is_refused_before_stepping():
    params = _params()
    opt = AdamP(params, lr=0.1)
    _grads(params)
    opt.step()
    del opt.state[params[2]]["exp_avg_sq"]
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="lacks"):
        opt.step()
    _assert_unchanged(opt, before)


# 6. the core's inplace step and torch tensors that cannot be written


@pytest.mark.parametrize("problem", ["requires grad", "expanded"])
def test_core_inplace_refuses_unwritable_torch_tensors_first(problem):
    config = ac.AdamPConfig(lr=0.1)
    good = torch.randn(4, 3, dtype=torch.float64)
    bad = (
        torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
        if problem == "requires grad"
        else torch.randn(1, 3, dtype=torch.float64).expand(4, 3)
    )
    params = [good, bad]
    state = ac.init([p.detach() for p in params], config)
    grads = [torch.ones(4, 3, dtype=torch.float64)] * 2
    before = [good.clone(), *(s.exp_avg.clone() for s in state)]
    with pytest.raises(ValueError, match=r"params\[1\]"):
        ac.step(params, grads, state, config, inplace=True)
    assert torch.equal(good, before[0])
    assert all(torch.equal(s.exp_avg, b) for s, b in zip(state, before[1:], strict=True))


# 7. overflow in the projection coefficient


@pytest.mark.parametrize("value", [1e38, 1e30])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_weights_do_not_overflow_where_the_official_does_not(value, dtype):
    ours, theirs = (torch.nn.Parameter(torch.full((1, 8), value, dtype=dtype)) for _ in range(2))
    o1, o2 = AdamP([ours], lr=1.0), adamp.AdamP([theirs], lr=1.0)
    for grad in (torch.ones(1, 8), torch.zeros(1, 8)):  # the second step is projected
        for p, o in ((ours, o1), (theirs, o2)):
            p.grad = grad.to(dtype)
            o.step()
    assert torch.isfinite(theirs).all()
    torch.testing.assert_close(ours, theirs)


# 8. empty leaves in Optax: see test_optax_reliability below; 9. compile with a meta parameter


def test_compiled_path_steps_meta_parameters_like_the_default_path():
    real = torch.nn.Parameter(torch.randn(300, 200))
    meta = torch.nn.Parameter(torch.empty(300, 200, device="meta"))
    opt = AdamP([real, meta], lr=0.1, compile=True)
    for p in (real, meta):
        p.grad = torch.ones_like(p)
    opt.step()
    assert meta.device.type == "meta"
    assert opt.state[meta]["exp_avg"].device.type == "meta"


# 10. smaller gaps


def test_sgdp_nesterov_needs_zero_dampening():
    with pytest.raises(ValueError, match="dampening"):
        SGDP(_params(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_duplicate_parameters_are_refused():
    p = _params()
    with pytest.raises(ValueError, match="more than once"):
        AdamP([p[0], p[1], p[0]])


def test_core_state_with_a_python_step_is_a_clear_type_error():
    w = np.ones((3, 2))
    state = ac.init(w, ac.AdamPConfig())._replace(step=0.0)
    with pytest.raises(TypeError, match=r"state.step must be a 0-d floating array"):
        ac.step(w, w, state, ac.AdamPConfig())


# 11. float16 moments whose (1-b2)*g*g underflows


@pytest.mark.parametrize("path", PATHS[:2], ids=PATH_IDS[:2])
def test_float16_second_moment_underflow_does_not_blow_up_the_step(path):
    wide = torch.nn.Parameter(torch.ones(8, dtype=torch.float32))
    half = torch.nn.Parameter(torch.ones(8, dtype=torch.float16))
    for p in (wide, half):
        p.grad = torch.full_like(p, 1e-4)  # (1 - 0.999) * 1e-8 is 0 in float16
        AdamP([p], lr=0.01, **path).step()
    assert (1 - half.float()).abs().max() < 0.011  # the float32 step is lr: 0.01, not 4e3
    torch.testing.assert_close(half.float(), wide, atol=1e-3, rtol=0)


# 13. the Optax adapter


def test_optax_reliability():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import optax

    from adapters.optax import adamp, sgdp

    # empty leaves of 3+ dimensions step, as optax.adamw steps them
    params = {"a": jnp.zeros((0, 3, 3)), "b": jnp.zeros((3, 0, 2)), "w": jnp.ones((2, 3, 4))}
    for tx in (adamp(1e-2), sgdp(0.1, momentum=0.9), adamp(1e-2, channel_axis=0)):
        updates, _ = tx.update(params, tx.init(params), params)
        assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, params)
    # complex parameters are refused clearly, as the core and the PyTorch adapter do
    with pytest.raises(TypeError, match=r"\['z'\] has dtype complex64"):
        adamp(1e-2).init({"z": jnp.ones((2, 2), jnp.complex64)})
    # injected hyperparameters are checked by value
    injected = optax.inject_hyperparams(sgdp)(0.1, momentum=0.9, nesterov=True)
    state = injected.init(params)
    jax.jit(injected.update)(params, state, params)
    with pytest.raises(ValueError, match="momentum"):
        optax.inject_hyperparams(sgdp)(0.1, momentum=1.5).init(params)
    # abstract initialisation (sharding planners, jax.eval_shape)
    abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    shapes = jax.eval_shape(adamp(1e-2).init, abstract)
    assert shapes[0].exp_avg["w"].shape == (6, 4)  # the (fan, rows) view of channels last
    adamp(1e-2).init(abstract)
    # a negative float learning rate is refused, as AdamPConfig refuses it
    with pytest.raises(ValueError, match="lr"):
        adamp(-1e-3)
    with pytest.raises(ValueError, match="lr"):
        sgdp(-0.1)
    # the annotation stays an object that tools can inspect
    import inspect

    assert inspect.signature(adamp).parameters["learning_rate"].annotation is (
        optax.ScalarOrSchedule
    )


def test_warnings_are_not_errors_for_valid_steps():
    params = _params()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = AdamP(params, lr=np.float32(1e-3))
        _grads(params)
        opt.step()
