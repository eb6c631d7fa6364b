"""The torch forms of the core's replaceable kernels compute what the core's definitions do.

Each kernel named in ``adamp_core.kernels.REPLACEABLE`` (and ``vecdot``) runs twice on the
same inputs: with array_api_compat's plain torch namespace, which has none of them, so the
core's own array-API definition runs; and with the adapter's per-tensor namespace (with and
without a workspace) or its foreach namespace, which replace them.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import array_api_compat.torch as plain  # noqa: E402
import numpy as np  # noqa: E402

import adamp_core  # noqa: E402
from adamp_core import kernels  # noqa: E402
from adamp_core.updates import adam_step  # noqa: E402
from adapters.torch.foreach import _BATCHED, ForeachNamespace, TensorList, namespace  # noqa: E402
from adapters.torch.kernels import SMALL, Workspace, element_namespace  # noqa: E402


def close(got, expected):
    """float64 equality up to the order of rounding: 1e-13 relative, and, where a result
    cancels to near zero (``y - a*b``, with or without a fused multiply-add), 1e-14 of
    the largest value. A wrong coefficient or operand is off by far more."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-14 * scale)


SHAPES = [(5, 3), (300, 200)]  # small, and large enough (> SMALL) to use the workspace
assert 300 * 200 > SMALL

NAMESPACES = {
    "element": lambda: element_namespace(),
    "element+workspace": lambda: element_namespace(Workspace()),
}


def _tensors(shape, n, seed=0, positive=False):
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(n)]
    return [t.abs() + 0.1 for t in out] if positive else out


def _scalars(kind):
    if kind == "float":
        return 0.9, 0.1
    if kind == "unit":  # SGD's undamped momentum: buf = 0.9 * buf + g
        return 0.9, 1.0
    return torch.tensor(0.9, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)


CALLS = {
    "scale_add_": lambda y, x1, x2, a, b, xp: kernels.scale_add_(y, a, x1, b, xp=xp),
    "scale_addcmul_": lambda y, x1, x2, a, b, xp: kernels.scale_addcmul_(y, a, x1, x2, b, xp=xp),
    "sub_product_": lambda y, x1, x2, a, b, xp: kernels.sub_product_(y, a, x1, xp=xp),
    "quotient_": lambda y, x1, x2, a, b, xp: kernels.quotient_(x1, y, xp=xp),
}


def test_every_replaceable_kernel_is_checked_here():
    # skip_unless and row_dots have no torch form: the Optax adapter's (lax.cond, one variadic
    # reduction) are tested with it, in tests/optax_adapter/test_transformations.py
    assert set(kernels.REPLACEABLE) == {
        *CALLS,
        "adam_step_",
        "skip_unless",
        "row_dots",
        "list_row_dots",  # test_list_row_dots_matches_the_core
        "projection",  # the foreach namespace's: test_foreach_projection_matches_the_core
        "zeros_beside",  # test_zeros_beside_matches_the_core
    }


@pytest.mark.parametrize("shape", [(), (5,), (0, 3), (4, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_zeros_beside_matches_the_core(shape, dtype):
    from adamp_core.namespace import zeros_beside

    x = torch.ones(shape, dtype=dtype)
    small = (1,) * len(shape)
    for want, dt in (((), torch.float32), (small, torch.float64)):
        expected = zeros_beside(x, want, dt, plain)
        got = zeros_beside(x, want, dt, element_namespace())
        assert (got.shape, got.dtype, got.device) == (expected.shape, expected.dtype, x.device)
        assert torch.equal(got, expected)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scalars", ["float", "unit", "tensor"])
@pytest.mark.parametrize("ns", sorted(NAMESPACES))
def test_element_kernels_match_the_core(name, shape, scalars, ns):
    a, b = _scalars(scalars)
    y, x1, x2 = _tensors(shape, 3, positive=True)
    expected = CALLS[name](y.clone(), x1, x2, a, b, plain)
    assert not hasattr(plain, name)  # so the core's own definition ran
    got = CALLS[name](y.clone(), x1, x2, a, b, NAMESPACES[ns]())
    close(got, expected)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("scalars", ["float", "unit", "tensor"])
def test_foreach_kernels_match_the_core(name, scalars):
    a, b = _scalars(scalars)
    shapes = [(5, 3), (7,), (300, 200)]
    lists = [_tensors(s, 3, seed=i, positive=True) for i, s in enumerate(shapes)]
    expected = [CALLS[name](y.clone(), x1, x2, a, b, plain) for y, x1, x2 in lists]
    ys, x1s, x2s = (TensorList([t[k].clone() for t in lists]) for k in range(3))
    got = CALLS[name](ys, x1s, x2s, a, b, namespace)
    for g, e in zip(got.tensors, expected, strict=True):
        close(g, e)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ns", sorted(NAMESPACES))
def test_vecdot_matches_the_core(shape, ns):
    xp = NAMESPACES[ns]()
    w, g, u = _tensors(shape, 3)
    for x1, x2 in [(w, g), (w, u), (w, w), (g, u)]:  # the workspace is reused across calls
        close(xp.vecdot(x1, x2), plain.vecdot(x1, x2))
        if x1.ndim == 2:  # channels last: (fan, rows) summed over the fan
            close(xp.vecdot(x1, x2, axis=-2), plain.vecdot(x1, x2, axis=-2))


@pytest.mark.parametrize("channels_last", [False, True])
def test_list_row_dots_matches_the_core(channels_last):
    """The segmented sums of a whole list equal the core's ``vecdot`` per tensor, row for row,
    for tested tensors, untested ones (one row of all their elements) and empty ones."""
    from adapters.torch.batched import Layout

    shapes = [(6, 3, 2, 2), (5,), (4, 7), (0, 3), (9, 2), ()]
    xs, ys = map(list, zip(*(_tensors(s, 2, seed=i) for i, s in enumerate(shapes))))
    if channels_last:
        xs[0], ys[0] = (t.to(memory_format=torch.channels_last) for t in (xs[0], ys[0]))
    layout = Layout(xs, torch.float64)
    expected = kernels.list_row_dots(xs, ys, layout, xp=plain)
    assert not hasattr(plain, "list_row_dots")  # so the core's own definition ran
    assert expected.shape == (sum(layout.rows),)
    close(kernels.list_row_dots(xs, ys, layout, xp=_BATCHED), expected)


@pytest.mark.compiled_code  # the ops of torch 2.13's functionalized graph
def test_compiled_list_row_dots_sum_only_the_tested_tensors():
    """Compiled, the sums of a list are one reduction per tested tensor and none for the
    rest: their rows, which the projection never reads, are 0. The tested rows are the
    core's sums."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    from adapters.torch.batched import Layout, row_dots

    shapes = [(6, 3, 2, 2), (5,), (4, 7), (0, 3), (9, 2), (), (3,)]
    xs, ys = map(list, zip(*(_tensors(s, 2, seed=i) for i, s in enumerate(shapes))))
    layout = Layout(xs, torch.float64)
    targets: list[str] = []

    def capture(graph, inputs):
        targets.extend(str(n.target) for n in graph.graph.nodes if n.op == "call_function")
        return make_boxed_func(graph.forward)

    torch._dynamo.reset()
    traced = torch.compile(row_dots, fullgraph=True, backend=aot_autograd(fw_compiler=capture))
    got = traced(xs, ys, layout)
    assert targets.count("aten.sum.dim_IntList") == sum(layout.tested_list) == 3
    tested = torch.tensor([t for t, r in zip(layout.tested_list, layout.rows) for _ in range(r)])
    expected = kernels.list_row_dots(xs, ys, layout, xp=plain)
    close(got[tested], expected[tested])
    assert (got[~tested] == 0).all()


@pytest.mark.parametrize("mode", ["random", "channel", "layer", "zero"])
def test_foreach_projection_matches_the_core(mode):
    """The foreach namespace's batched projection gives, per tensor, the core's projection:
    the same branch and, up to the order of summation, the same numbers."""
    from oracle import forced_grad

    rng = np.random.default_rng(3)
    shapes = [(6, 3, 2, 2), (5,), (4, 7), (5,), (0, 3), (9, 2), ()]
    ws = [rng.standard_normal(s) for s in shapes]
    gs = [forced_grad(w, mode, rng) for w in ws]
    us = [rng.standard_normal(s) for s in shapes]
    lists = [TensorList([torch.from_numpy(a) for a in arrays]) for arrays in (ws, gs, us)]
    hyper = dict(delta=0.1, wd_ratio=0.3, eps=1e-8)
    got = ForeachNamespace(batched_devices=("cpu",)).projection(*lists, **hyper)  # forced
    for i in range(len(shapes)):
        expected = adamp_core.projection(*(tl.tensors[i] for tl in lists), **hyper)
        assert got.branch.tensors[i].item() == expected.branch.item()
        for field in ("coef", "ratio", "cosine"):
            g, e = getattr(got, field).tensors[i], getattr(expected, field)
            assert g.shape == e.shape or g.numel() == e.numel() == 1, field
            np.testing.assert_allclose(
                g.numpy().reshape(e.shape), e.numpy(), rtol=1e-12, atol=1e-300
            )


def _adam_inputs(shape, seed):
    grad, exp_avg, exp_avg_sq = _tensors(shape, 3, seed=seed)
    return grad, exp_avg, exp_avg_sq.abs(), torch.tensor(3.0, dtype=torch.float64)


HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ns", sorted(NAMESPACES))
@pytest.mark.parametrize("lr", ["float", "tensor"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_adam_step_matches_the_core(shape, ns, lr, nesterov, monkeypatch):
    """The fused kernel's step (with ``nesterov``, run on a copy of the updated first
    moment) is the core's definition, and leaves the step count alone."""
    hyper = {**HYPER, "lr": torch.tensor(1e-3, dtype=torch.float64)} if lr == "tensor" else HYPER
    grad, m, v, step = _adam_inputs(shape, 0)
    m_ref, v_ref = m.clone(), v.clone()
    expected = adam_step(
        grad, m_ref, v_ref, step, nesterov=nesterov, inplace=True, xp=plain, **hyper
    )
    xp = NAMESPACES[ns]()
    fused, kernel = [], torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: fused.append(kernel(*a, **k)))
    got = adam_step(grad, m, v, step, nesterov=nesterov, inplace=True, xp=xp, **hyper)
    assert len(fused) == 1  # the fused kernel took the step
    for g, e in zip(got, expected, strict=True):
        close(g, e)
    assert step.item() == 3.0  # the kernel reads the step count, never changes it


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_adam_step_over_lists_matches_the_core(nesterov, monkeypatch):
    shapes = [(5, 3), (7,), (300, 200)]
    inputs = [_adam_inputs(s, i) for i, s in enumerate(shapes)]
    expected = [
        adam_step(g, m.clone(), v.clone(), t, nesterov=nesterov, inplace=True, xp=plain, **HYPER)
        for g, m, v, t in inputs
    ]
    lists = [TensorList([x[k] for x in inputs]) for k in range(4)]
    fused, kernel = [], torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: fused.append(kernel(*a, **k)))
    got = adam_step(*lists, nesterov=nesterov, inplace=True, xp=namespace, **HYPER)
    assert len(fused) == 1  # one fused kernel over the list
    for field, want in zip(got, zip(*expected, strict=True), strict=True):
        for g, e in zip(field.tensors, want, strict=True):
            close(g, e)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lists", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_adam_step_of_half_moments_matches_the_core(dtype, lists, nesterov, monkeypatch):
    """Half-precision moments step with the fused kernel on their float32 copies: the step
    in float32 and the moments rounded back, as the core's definition computes them (to
    the rounding of each dtype)."""
    shapes = [(5, 3), (7,), (300, 200)]
    inputs = [
        [x.to(dtype) for x in _adam_inputs(s, i)[:3]] + [torch.tensor(3.0)]
        for i, s in enumerate(shapes)
    ]
    expected = [
        adam_step(g, m.clone(), v.clone(), t, nesterov=nesterov, inplace=True, xp=plain, **HYPER)
        for g, m, v, t in inputs
    ]
    fused, kernel = [], torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: fused.append(kernel(*a, **k)))
    if lists:
        got = adam_step(
            *(TensorList([x[k] for x in inputs]) for k in range(4)),
            nesterov=nesterov,
            inplace=True,
            xp=namespace,
            **HYPER,
        )
        got = list(zip(*(field.tensors for field in got), strict=True))
    else:
        xp = element_namespace()
        got = [adam_step(*x, nesterov=nesterov, inplace=True, xp=xp, **HYPER) for x in inputs]
    assert len(fused) == (1 if lists else len(shapes))  # the fused kernel took the step
    for fields, want in zip(got, expected, strict=True):
        m_got, v_got, d_got = fields
        assert (m_got.dtype, v_got.dtype, d_got.dtype) == (dtype, dtype, torch.float32)
        torch.testing.assert_close(list(fields), list(want))


def test_foreach_astype_widens_a_list_with_one_copy_except_for_subclasses(monkeypatch):
    """A half-precision list is widened by one converting ``_foreach_copy_``; a list of
    tensor subclasses (DTensor has no sharding rule for that copy) is cast tensor by tensor.
    A list already in the dtype is returned as it is."""
    copies, real = [], torch._foreach_copy_
    monkeypatch.setattr(torch, "_foreach_copy_", lambda *a, **k: copies.append(real(*a, **k)))

    class Sub(torch.Tensor):
        pass

    half = [torch.randn(4, 3).to(torch.bfloat16), torch.randn(5).to(torch.bfloat16)]
    for tensors, n_copies in ((half, 1), ([t.as_subclass(Sub) for t in half], 0)):
        copies.clear()
        wide = namespace.astype(TensorList(tensors), torch.float32)
        assert len(copies) == n_copies
        for w, t in zip(wide.tensors, tensors, strict=True):
            assert w.dtype == torch.float32 and torch.equal(w, t.to(torch.float32))
    same = TensorList(half)
    assert namespace.astype(same, torch.bfloat16) is same


def test_fused_adam_step_declines_what_it_cannot_do():
    xp = element_namespace(Workspace())
    grad, m, v, step = _adam_inputs((4, 3), 0)
    traced = {**HYPER, "beta1": torch.tensor(0.9, dtype=torch.float64)}
    assert xp.adam_step_(grad, m, v, step, **traced) is None  # as in the compiled path
    strided = torch.randn(3, 4, dtype=torch.float64).t()  # same shape, another layout
    assert xp.adam_step_(strided, m, v, step, **HYPER) is None
    before = (m.clone(), v.clone())
    torch.testing.assert_close((m, v), before)  # declining changes nothing


def test_workspace_lends_memory_only_for_large_plain_cpu_tensors():
    ws = Workspace()
    big = torch.zeros(300, 200)
    first = ws.take("product", big)
    assert first is not None and first.shape == big.shape and first.dtype == big.dtype
    again = ws.take("product", torch.zeros(200, 300))
    assert again.data_ptr() == first.data_ptr()  # reused, not reallocated
    assert ws.take("direction", big).data_ptr() != first.data_ptr()  # one buffer per use
    assert ws.take("product", torch.zeros(5, 3)) is None
    assert ws.take("product", torch.zeros(200, 300).t()) is None  # not contiguous


def test_take_is_the_standard_take_for_non_negative_indices():
    """The per-tensor namespace's ``take`` (``index_select``, as the batched projection pads
    its sums with it) gives what array_api_compat's does."""
    xp = element_namespace()
    x, m = torch.arange(5.0), torch.arange(12.0).reshape(4, 3)
    idx = torch.tensor([4, 0, 0, 2])
    assert torch.equal(xp.take(x, idx), plain.take(x, idx))
    assert torch.equal(xp.take(x, idx, axis=0), plain.take(x, idx, axis=0))
    assert torch.equal(xp.take(m, idx[1:], axis=0), plain.take(m, idx[1:], axis=0))
    assert torch.equal(xp.take(m, idx[1:3], axis=1), plain.take(m, idx[1:3], axis=1))


#: a 0-d tensor ``t`` and a list value ``v`` (one value per tensor) on either side
OPERATORS = {
    "t + v": lambda t, v: t + v,
    "t - v": lambda t, v: t - v,
    "v - t": lambda t, v: v - t,
    "t * v": lambda t, v: t * v,
    "v / t": lambda t, v: v / t,
    "t ** v": lambda t, v: t**v,
}


@pytest.mark.parametrize(
    ("kind", "expr"),
    # the core raises no hyperparameter to a per-weight (Packed) power
    [
        (k, e)
        for k in ("Packed", "TensorList")
        for e in sorted(OPERATORS)
        if (k, e) != ("Packed", "t ** v")
    ],
)
def test_list_values_meet_tensors_alike_eager_and_compiled(kind, expr):
    """A 0-d tensor (a hyperparameter) meets a list value on either side of an operator in
    compiled code as in eager code: torch.compile asks the tensor's operators, which hand
    over to the list value's (``ListValue.__torch_function__``)."""
    import torch._dynamo

    from adapters.torch.batched import Layout, Packed

    tensors = [torch.rand(3, 2, dtype=torch.float64) + 0.5, torch.rand(4, dtype=torch.float64)]
    values = torch.rand(2, dtype=torch.float64) + 0.5
    if kind == "Packed":
        value = Packed(values, Layout(tensors, torch.float64), "weight")
    else:
        value = TensorList(list(values.unbind()))

    def fn(t, v):
        out = OPERATORS[expr](t, v)
        return list(out.tensors) if isinstance(out, TensorList) else [out.values]

    torch._dynamo.reset()
    t = torch.tensor(0.3, dtype=torch.float64)
    traced = torch.compile(fn, fullgraph=True, backend="eager")(t, value)
    for a, b in zip(fn(t, value), traced, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _iadd(x, s):
    x += s
    return x


def _isub(x, s):
    x -= s
    return x


def _imul(x, s):
    x *= s
    return x


def _idiv(x, s):
    x /= s
    return x


@pytest.mark.parametrize(
    "op",
    [
        lambda x, s: x + s,
        lambda x, s: x - s,
        lambda x, s: s - x,
        lambda x, s: x * s,
        lambda x, s: x / s,
        _iadd,
        _isub,
        _imul,
        _idiv,
    ],
    ids=["add", "sub", "rsub", "mul", "div", "iadd", "isub", "imul", "idiv"],
)
def test_a_0d_tensor_operand_is_one_multi_tensor_kernel(op, monkeypatch):
    """A 0-d tensor on the list's device (a decay factor the same for every tensor, say)
    goes to the multi-tensor kernels' single-tensor forms, one kernel for the list, never
    paired with each tensor (one kernel per tensor on CUDA); the values are those of each
    tensor's own operation, to the bit."""
    tensors = [torch.randn(s, dtype=torch.float32) for s in [(5, 3), (7,), (2, 3, 4)]]
    scalar = torch.tensor(0.37, dtype=torch.float64)
    paired = []
    for name in ("_foreach_add", "_foreach_sub", "_foreach_mul", "_foreach_div"):
        for fn_name in (name, name + "_"):
            real = getattr(torch, fn_name)

            def spy(*args, real=real, **kwargs):
                paired.extend(a for a in args[1:] if isinstance(a, list))
                return real(*args, **kwargs)

            monkeypatch.setattr(torch, fn_name, spy)
    got = op(TensorList([t.clone() for t in tensors]), scalar)
    assert paired == []  # no list of the 0-d tensor
    for g, t in zip(got.tensors, tensors, strict=True):
        assert g.dtype == t.dtype
        torch.testing.assert_close(g, op(t.clone(), scalar), rtol=0, atol=0)
