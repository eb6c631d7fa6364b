"""adapters.torch: drop-in parity with adamp 0.3.0 and the torch.optim contract."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
adamp = pytest.importorskip("adamp")

from oracle import ADAMP_OPTIONS, SGDP_OPTIONS, official_branch  # noqa: E402

from adapters.torch import SGDP, AdamP  # noqa: E402

CASES = [(AdamP, adamp.AdamP, o) for o in ADAMP_OPTIONS] + [
    (SGDP, adamp.SGDP, o) for o in SGDP_OPTIONS
]
IDS = [f"{a.__name__}-{i}" for i, (a, _, _) in enumerate(CASES)]


def make_model(dtype=torch.float64, seed=1):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 6, 3, bias=False),
        torch.nn.BatchNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 4 * 4, 5),
    )
    return model.to(dtype)


def data(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 3, 8, 8, generator=g, dtype=dtype), torch.randint(
        0, 5, (32,), generator=g
    )


def train(model, opt, steps, dtype=torch.float64, scheduler=None):
    x, y = data(dtype)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def assert_same_params(m1, m2, rtol, atol):
    for (name, a), b in zip(m1.named_parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda s, n=name: f"{n}: {s}")


@pytest.fixture(params=["per-tensor", "foreach", "foreach batched"])
def foreach(request, monkeypatch):
    """The paths: one tensor at a time; foreach as on CPU (the projection per tensor); foreach
    as on CUDA (the projection of the whole group batched, forced here on CPU)."""
    if request.param == "foreach batched":
        from adapters.torch import foreach as module

        monkeypatch.setattr(module.namespace, "batched_devices", ("cpu", "cuda"))
    return request.param != "per-tensor"


@pytest.mark.parametrize("cls", [AdamP, SGDP])
def test_channels_last_weights_step_as_contiguous_ones(cls, foreach):
    """Conv weights in channels_last (as GPU training often keeps them) take the same steps
    as contiguous ones, on every path (the batched projection views its buffers with the
    weights' strides), and stay channels_last. Up to the order of summation in a row."""
    shapes = [(6, 3, 3, 3), (6,), (8, 6, 1, 1), (4, 8), (5, 4, 2, 2)]
    rng = np.random.default_rng(0)
    values = [torch.from_numpy(rng.standard_normal(s)) for s in shapes]
    grads = [[torch.from_numpy(rng.standard_normal(s)) for s in shapes] for _ in range(3)]

    def run(channels_last: bool) -> list[torch.Tensor]:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        params = [
            torch.nn.Parameter(v.clone().to(memory_format=fmt) if v.ndim == 4 else v.clone())
            for v in values
        ]
        opt = cls(params, lr=0.1, weight_decay=1e-2, foreach=foreach)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone().to(memory_format=fmt) if g.ndim == 4 else g.clone()
            opt.step()
        for p in params:
            if channels_last and p.ndim == 4:
                assert p.is_contiguous(memory_format=torch.channels_last)
                for buf in opt.state[p].values():
                    assert buf.ndim == 0 or buf.is_contiguous(memory_format=torch.channels_last)
        return [p.detach() for p in params]

    for a, b in zip(run(False), run(True), strict=True):  # contiguous first: a shared cache
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("ours", "theirs", "options"), CASES, ids=IDS)
def test_trajectory_float64_matches_official(ours, theirs, options, foreach):
    m1, m2 = make_model(), make_model()
    o1, o2 = ours(m1.parameters(), foreach=foreach, **options), theirs(m2.parameters(), **options)
    train(m1, o1, 15)
    train(m2, o2, 15)
    assert_same_params(m1, m2, rtol=1e-11, atol=1e-13)
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        s1, s2 = o1.state[p1], o2.state[p2]
        assert set(s1) == set(s2)
        for k in s2:
            torch.testing.assert_close(
                torch.as_tensor(s1[k]).double(),
                torch.as_tensor(s2[k]).double(),
                rtol=1e-11,
                atol=1e-13,
            )


@pytest.mark.parametrize(("ours", "theirs", "options"), CASES, ids=IDS)
def test_trajectory_float32_within_rounding(ours, theirs, options):
    m1, m2 = make_model(torch.float32), make_model(torch.float32)
    o1, o2 = ours(m1.parameters(), **options), theirs(m2.parameters(), **options)
    train(m1, o1, 5, torch.float32)
    train(m2, o2, 5, torch.float32)
    assert_same_params(m1, m2, rtol=1e-5, atol=1e-6)


def test_projection_info_reports_the_official_branch():
    model = make_model()
    opt = AdamP(model.parameters(), lr=1e-2)
    x, y = data()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    info = {i.name: i for i in opt.projection_info(model.named_parameters())}
    assert set(info) == set(before)
    names = {0: "none", 1: "channel", 2: "layer"}
    for n, w in before.items():
        if w.ndim >= 2:
            assert info[n].branch == names[official_branch(w, grads[n], 0.1, 1e-8)]
            assert math.isfinite(info[n].cosine)
            compared = w[0].numel() if info[n].branch == "channel" else w.numel()
            assert info[n].threshold == pytest.approx(0.1 / math.sqrt(compared))
        else:
            assert info[n].branch == "none" and math.isnan(info[n].cosine)
            assert math.isnan(info[n].threshold)
    assert any(i.branch == "channel" for i in info.values())  # conv weights before BN project


# --- checkpoints ---------------------------------------------------------------------------


def _roundtrip(state_dict):
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("direction", ["official->ours", "ours->official"])
@pytest.mark.parametrize(("ours", "theirs", "options"), [CASES[2], CASES[5]], ids=["AdamP", "SGDP"])
def test_checkpoint_interchange(ours, theirs, options, direction):
    first, second = (theirs, ours) if direction == "official->ours" else (ours, theirs)
    # reference: the official optimizer for all 10 steps
    m_ref = make_model()
    o_ref = theirs(m_ref.parameters(), **options)
    train(m_ref, o_ref, 10)
    # 5 steps with one, checkpoint through torch.save / weights_only load, 5 with the other
    m = make_model()
    o = first(m.parameters(), **options)
    train(m, o, 5)
    saved = _roundtrip(o.state_dict())
    o2 = second(m.parameters(), **options)
    o2.load_state_dict(saved)
    train(m, o2, 5)
    assert_same_params(m, m_ref, rtol=1e-11, atol=1e-13)


def test_state_dict_layout_and_roundtrip():
    model = make_model()
    opt = AdamP(model.parameters(), lr=1e-2, weight_decay=0.1)
    train(model, opt, 3)
    sd = opt.state_dict()
    official = adamp.AdamP(make_model().parameters(), lr=1e-2, weight_decay=0.1)
    assert set(official.state_dict()["param_groups"][0]) <= set(sd["param_groups"][0])
    for s in sd["state"].values():
        assert set(s) == {"step", "exp_avg", "exp_avg_sq"}
        assert all(torch.is_tensor(v) for v in s.values())
    loaded = _roundtrip(sd)
    for k, s in sd["state"].items():
        for name, v in s.items():
            assert torch.equal(loaded["state"][k][name], v)


# --- the torch.optim contract --------------------------------------------------------------


def test_param_groups_and_add_param_group_fill_defaults():
    m = make_model()
    convs = [p for p in m.parameters() if p.ndim == 4]
    rest = [p for p in m.parameters() if p.ndim != 4]
    opt = AdamP([{"params": convs, "lr": 0.1, "wd_ratio": 0.5}], lr=1e-3, weight_decay=0.1)
    opt.add_param_group({"params": rest, "betas": (0.5, 0.9)})
    g0, g1 = opt.param_groups
    assert (g0["lr"], g0["wd_ratio"], g0["weight_decay"]) == (0.1, 0.5, 0.1)
    assert (g1["lr"], g1["betas"], g1["delta"], g1["maximize"]) == (1e-3, (0.5, 0.9), 0.1, False)
    ref = adamp.AdamP([{"params": convs, "lr": 0.1, "wd_ratio": 0.5}], lr=1e-3, weight_decay=0.1)
    assert {k for k in ref.param_groups[0] if k != "params"} <= set(g0)
    with pytest.raises(ValueError, match="betas"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "betas": (1.5, 0.9)})


def test_closure_returns_loss_and_zero_grad():
    m = make_model()
    opt = SGDP(m.parameters(), lr=0.1, momentum=0.9)
    x, y = data()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.ndim == 0
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())


@pytest.mark.parametrize(("ours", "theirs", "options"), [CASES[1], CASES[4]], ids=["AdamP", "SGDP"])
def test_lr_scheduler_follows_official(ours, theirs, options):
    m1, m2 = make_model(), make_model()
    o1, o2 = ours(m1.parameters(), **options), theirs(m2.parameters(), **options)
    s1 = torch.optim.lr_scheduler.StepLR(o1, step_size=2, gamma=0.5)
    s2 = torch.optim.lr_scheduler.StepLR(o2, step_size=2, gamma=0.5)
    train(m1, o1, 7, scheduler=s1)
    train(m2, o2, 7, scheduler=s2)
    assert o1.param_groups[0]["lr"] == o2.param_groups[0]["lr"] < options["lr"]
    assert_same_params(m1, m2, rtol=1e-11, atol=1e-13)


def _snapshot(model, opt):
    params = [p.detach().clone() for p in model.parameters()]
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}
    return params, state


def _assert_snapshot(model, opt, snap):
    params, state = snap
    for a, b in zip(model.parameters(), params, strict=True):
        assert torch.equal(a.detach(), b)
    assert {id(p) for p in opt.state} == set(state)
    for p, s in opt.state.items():
        for k, v in s.items():
            assert torch.equal(v, state[id(p)][k])


def test_grad_scaler_skipped_step_changes_nothing():
    m = make_model(torch.float32)
    opt = AdamP(m.parameters(), lr=1e-2, weight_decay=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x, y = data(torch.float32)
    scaler.scale(torch.nn.functional.cross_entropy(m(x), y)).backward()
    scaler.step(opt)
    scaler.update()
    snap = _snapshot(m, opt)
    opt.zero_grad()
    scaler.scale(torch.nn.functional.cross_entropy(m(x), y)).backward()
    next(m.parameters()).grad[0, 0, 0, 0] = math.inf
    scaler.step(opt)  # found inf: the step is skipped
    scaler.update()
    _assert_snapshot(m, opt, snap)
    assert scaler.get_scale() < 2.0**10


def test_step_hooks_run():
    m = make_model()
    opt = SGDP(m.parameters(), lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    train(m, opt, 1)
    assert calls == ["pre", "post"]


def test_deepcopy_and_repr():
    m = make_model()
    opt = AdamP(m.parameters(), lr=1e-2, nesterov=True)
    train(m, opt, 2)
    clone = copy.deepcopy(opt)
    assert clone.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    assert "AdamP (" in repr(opt) and "wd_ratio: 0.1" in repr(opt) and "nesterov: True" in repr(opt)


def test_params_without_grad_are_skipped():
    m = make_model()
    opt = AdamP(m.parameters(), lr=1e-2)
    train(m, opt, 2)
    frozen = m[0].weight
    state_before = {k: v.clone() for k, v in opt.state[frozen].items()}
    w_before = frozen.detach().clone()
    x, y = data()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    frozen.grad = None
    opt.step()
    assert torch.equal(frozen.detach(), w_before)
    for k, v in opt.state[frozen].items():
        assert torch.equal(v, state_before[k])
    fresh = torch.nn.Parameter(torch.ones(3, 3))
    opt.add_param_group({"params": [fresh]})
    opt.step()
    assert fresh not in opt.state


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("cls", [AdamP, SGDP])
def test_dtypes_empty_and_zero_dim(cls, dtype, foreach):
    params = [
        torch.nn.Parameter(torch.randn(4, 3, 2, dtype=dtype)),
        torch.nn.Parameter(torch.randn((), dtype=dtype)),
        torch.nn.Parameter(torch.zeros(0, 3, dtype=dtype)),
        torch.nn.Parameter(torch.randn(5, dtype=dtype)),
    ]
    opt = (
        cls(params, lr=1e-2, momentum=0.9, weight_decay=0.1, foreach=foreach)
        if cls is SGDP
        else cls(params, lr=1e-2, weight_decay=0.1, foreach=foreach)
    )
    before = [p.detach().clone() for p in params]
    for _ in range(3):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    for p, b in zip(params, before, strict=True):
        assert p.dtype == dtype and torch.isfinite(p).all()
        assert p.numel() == 0 or not torch.equal(p.detach(), b)


def test_bad_hyperparameters_raise_value_error():
    p = [torch.nn.Parameter(torch.ones(2, 2))]
    for kwargs, name in [
        (dict(lr=-1), "lr"),
        (dict(betas=(0.9, 1.0)), "betas"),
        (dict(eps=-1), "eps"),
        (dict(weight_decay=-1), "weight_decay"),
        (dict(delta=-1), "delta"),
        (dict(wd_ratio=-1), "wd_ratio"),
    ]:
        with pytest.raises(ValueError, match=name):
            AdamP(p, **kwargs)
    for kwargs, name in [
        (dict(lr=-1), "lr"),
        (dict(lr=0.1, momentum=1.0), "momentum"),
        (dict(lr=0.1, dampening=2), "dampening"),
        (dict(lr=0.1, nesterov=True), "nesterov"),
    ]:
        with pytest.raises(ValueError, match=name):
            SGDP(p, **kwargs)
    with pytest.raises(ValueError, match="lr"):
        SGDP(p)  # lr is required, as in the official SGDP
    with pytest.raises(ValueError, match="complex"):
        AdamP([torch.nn.Parameter(torch.ones(2, 2, dtype=torch.complex64))])
    for chunk in (0, -5, 2.5, True, "8"):
        with pytest.raises(ValueError, match="chunk_size"):
            AdamP(p, chunk_size=chunk)
        with pytest.raises(ValueError, match="chunk_size"):
            SGDP(p, lr=0.1).add_param_group({"params": [torch.ones(1)], "chunk_size": chunk})


@pytest.mark.parametrize(("ours", "theirs", "options"), CASES, ids=IDS)
@pytest.mark.parametrize("chunk_size", [1, 100, 500])
def test_chunks_change_nothing_but_how_many_tensors_go_at_once(
    ours, theirs, options, chunk_size, foreach
):
    # the model's tensors hold 216, 8, 8, 432, 6, 6, 480 and 5 elements: chunks of 1, 100 and
    # 500 elements take every tensor alone, the small ones together, and a few large ones
    # together; a chunked step computes exactly what the whole group's step does
    m1, m2 = make_model(), make_model()
    o1 = ours(m1.parameters(), foreach=foreach, chunk_size=chunk_size, **options)
    o2 = ours(m2.parameters(), foreach=foreach, **options)
    train(m1, o1, 4)
    train(m2, o2, 4)
    assert_same_params(m1, m2, rtol=0, atol=0)
    assert o1.state_dict()["param_groups"][0]["chunk_size"] == chunk_size


def test_sparse_gradient_refused_before_anything_changes():
    m = make_model()
    extra = torch.nn.Parameter(torch.ones(4, 3))
    opt = AdamP([*m.parameters(), extra], lr=1e-2)
    train(m, opt, 1)
    snap = _snapshot(m, opt)
    x, y = data()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    extra.grad = torch.ones(4, 3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    _assert_snapshot(m, opt, snap)


def test_maximize_is_minimizing_the_negation():
    m1, m2 = make_model(), make_model()
    o1 = AdamP(m1.parameters(), lr=1e-2, maximize=True)
    o2 = AdamP(m2.parameters(), lr=1e-2)
    x, y = data()
    for m, o, sign in ((m1, o1, -1.0), (m2, o2, 1.0)):
        for _ in range(3):
            o.zero_grad()
            (sign * torch.nn.functional.cross_entropy(m(x), y)).backward()
            o.step()
    assert_same_params(m1, m2, rtol=1e-12, atol=1e-14)


class _CountSyncs(torch.overrides.TorchFunctionMode):
    SYNCING = frozenset(
        {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy"}
    )

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in self.SYNCING:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("cls", [AdamP, SGDP])
@pytest.mark.parametrize("foreach", [False, True])
def test_step_makes_no_host_sync(cls, foreach):
    m = make_model()
    opt = cls(m.parameters(), lr=1e-2, weight_decay=0.1, foreach=foreach)
    x, y = data()
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        with _CountSyncs() as counter:
            opt.step()
        assert counter.calls == []
    # the counter does see conversions: the official optimizer makes one per weight per view
    ref = (
        adamp.AdamP(make_model().parameters(), lr=1e-2)
        if cls is AdamP
        else adamp.SGDP(make_model().parameters(), lr=1e-2)
    )
    for p in ref.param_groups[0]["params"]:
        p.grad = torch.randn_like(p)
    with _CountSyncs() as counter:
        ref.step()
    assert "__bool__" in counter.calls


def test_channels_last_weights_work_and_match_contiguous(foreach):
    """The official code crashes on channels_last weights (.view); ours matches the contiguous run."""
    m1, m2 = make_model(), make_model().to(memory_format=torch.channels_last)
    assert not m2[0].weight.is_contiguous()
    o1 = AdamP(m1.parameters(), lr=1e-2, weight_decay=0.1)
    o2 = AdamP(m2.parameters(), lr=1e-2, weight_decay=0.1, foreach=foreach)
    train(m1, o1, 4)
    train(m2, o2, 4)
    assert_same_params(m1, m2, rtol=1e-11, atol=1e-13)


def _split_groups(model, weight_decay, bias_decay):
    """Parameter groups as timm and transformers make them: the weights, and the biases and
    norm weights (nothing to test), without weight decay or, here, with ``bias_decay``."""
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": bias_decay},
    ]


@pytest.mark.parametrize("bias_decay", [0.0, 0.03])
@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float lr", "tensor lr"])
@pytest.mark.parametrize(
    ("ours", "theirs", "options"),
    [CASES[2], CASES[4], CASES[6]],
    ids=["AdamP nesterov", "SGDP", "SGDP nesterov"],
)
def test_a_group_of_biases_and_norm_weights_matches_official(
    ours, theirs, options, tensor_lr, bias_decay, foreach
):
    """A group with nothing to test takes the core's untested projection as one 0-d value
    for the list (on the batched path), and a learning rate in a tensor on the parameters'
    device is one 0-d operand of the multi-tensor kernels: the official trajectory either
    way."""
    m1, m2 = make_model(), make_model()
    options = dict(options)
    decay = options.pop("weight_decay", 1e-2) or 1e-2
    lr = options.pop("lr", 0.01)
    o1 = ours(
        _split_groups(m1, decay, bias_decay),
        lr=torch.tensor(lr, dtype=torch.float64) if tensor_lr else lr,
        foreach=foreach,
        **options,
    )
    o2 = theirs(_split_groups(m2, decay, bias_decay), lr=lr, **options)
    train(m1, o1, 12)
    train(m2, o2, 12)
    assert_same_params(m1, m2, rtol=1e-11, atol=1e-13)
    info = o1.projection_info()
    assert {i.branch for i in info} >= {"channel", "none"}


@pytest.mark.parametrize("how", ["compile=True", "torch.compile(step)"])
@pytest.mark.parametrize(("ours", "theirs", "options"), [CASES[1], CASES[4]], ids=["AdamP", "SGDP"])
def test_a_compiled_group_of_biases_and_norm_weights_matches_official(
    ours, theirs, options, how, monkeypatch
):
    """Traced, a group with nothing to test takes the batched path (Dynamo turns an in-place
    operator with a 0-d tensor into a new list, which once left the parameters unchanged)."""
    import torch._dynamo

    from adapters.torch import foreach as module

    monkeypatch.setattr(module.namespace, "batched_devices", ("cpu", "cuda"))
    torch._dynamo.reset()
    m1, m2 = make_model(), make_model()
    options = dict(options)
    decay = options.pop("weight_decay", 1e-2)
    o1 = ours(_split_groups(m1, decay, 0.03), compile=how == "compile=True", **options)
    o2 = theirs(_split_groups(m2, decay, 0.03), **options)
    train(m1, o1, 1)  # the state made by an eager step
    train(m2, o2, 1)
    if how != "compile=True":
        o1.step = torch.compile(o1.step, fullgraph=True)
    train(m1, o1, 3)
    train(m2, o2, 3)
    assert_same_params(m1, m2, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("batched", [False, True], ids=["cpu", "accelerator"])
@pytest.mark.parametrize(("ours", "theirs", "options"), [CASES[2], CASES[6]], ids=["AdamP", "SGDP"])
def test_compiled_path_matches_official_and_never_recompiles(
    ours, theirs, options, batched, monkeypatch
):
    """``compile=True`` follows the official optimizer under a schedule of Python-float
    learning rates without recompiling. On CPU it compiles the core's per-tensor update; on
    accelerators (forced here on CPU) the group's batched step, as one graph."""
    import torch._dynamo
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from adapters.torch import compiled
    from adapters.torch import foreach as module

    if batched:
        monkeypatch.setattr(module.namespace, "batched_devices", ("cpu", "cuda"))
    torch._dynamo.reset()
    m1, m2 = make_model(), make_model()
    m2_params = list(m2.parameters())
    o1 = ours(m1.parameters(), compile=True, **options)
    o2 = theirs(m2_params, **options)
    s1 = torch.optim.lr_scheduler.StepLR(o1, step_size=1, gamma=0.7)
    s2 = torch.optim.lr_scheduler.StepLR(o2, step_size=1, gamma=0.7)
    train(m1, o1, 2, scheduler=s1)
    train(m2, o2, 2, scheduler=s2)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    train(m1, o1, 4, scheduler=s1)  # the step count and the learning rate keep changing
    train(m2, o2, 4, scheduler=s2)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    assert_same_params(m1, m2, rtol=1e-11, atol=1e-13)
    assert {i.branch for i in o1.projection_info()} >= {"channel", "none"}
    group_step = compiled._adamp_group if ours is AdamP else compiled._sgdp_group
    assert len(_debug_get_cache_entry_list(group_step.__code__)) == (1 if batched else 0)


def test_compiled_adamp_and_sgdp_keep_separate_graphs_within_dynamo_limits():
    """Dynamo keeps graphs, and its recompile limit, per code object: AdamP and SGDP each have
    their own, and the weights of every rank and a rows=1 weight stay well within the limit
    (a shared code object hit it on ViT-B/16 shapes and fell back to eager)."""
    import torch._dynamo
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from adapters.torch import compiled

    torch._dynamo.reset()  # count this test's graphs, not those of earlier tests' dtypes
    shapes = [(40, 30, 3, 3), (1, 40000), (50000,), (300, 200)]
    for cls, kw in ((AdamP, dict(lr=1e-3)), (SGDP, dict(lr=0.1, momentum=0.9))):
        params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        opt = cls(params, compile=True, **kw)
        for _ in range(2):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
    limit = torch._dynamo.config.recompile_limit
    for fn in (compiled._adamp_step, compiled._sgdp_step):
        graphs = len(_debug_get_cache_entry_list(fn.__code__))
        assert 1 <= graphs <= limit // 2, (fn.__name__, graphs)


@pytest.mark.parametrize(
    ("cls", "channels_last", "tensor_lr"),
    [(AdamP, False, False), (AdamP, True, True), (SGDP, True, True)],
)
def test_the_batched_foreach_step_compiles_as_one_graph(cls, channels_last, tensor_lr, monkeypatch):
    """``torch.compile(opt.step, fullgraph=True)`` traces the CUDA path's whole step (the
    batched projection included, forced here on CPU) without a graph break, never recompiles
    as the step count grows or as a tensor learning rate changes, and steps as the eager
    optimizer does. Conv weights in channels_last too: their buffers are views that compiled
    code can write through."""
    from adapters.torch import foreach as module

    monkeypatch.setattr(module.namespace, "batched_devices", ("cpu", "cuda"))
    torch._dynamo.reset()
    models = [make_model(), make_model()]
    if channels_last:
        models = [m.to(memory_format=torch.channels_last) for m in models]
    rates = [torch.tensor(0.01, dtype=torch.float64) if tensor_lr else 0.01 for _ in models]
    extra = {"momentum": 0.9} if cls is SGDP else {}
    eager, traced = (
        cls(m.parameters(), lr=lr, weight_decay=0.1, foreach=True, **extra)
        for m, lr in zip(models, rates, strict=True)
    )
    train(models[0], eager, 1)
    train(models[1], traced, 1)  # the state is made by an eager step (as for a CUDA graph)
    # with a tensor lr, the CUDA-graph recipe's mode (on CPU it compiles without graphs)
    mode = "reduce-overhead" if tensor_lr else None
    traced.step = torch.compile(traced.step, fullgraph=True, mode=mode)
    with torch._dynamo.config.patch(error_on_recompile=True):
        train(models[0], eager, 2)
        train(models[1], traced, 2)
        if tensor_lr:  # a schedule
            for lr in rates:
                lr.fill_(0.003)
        train(models[0], eager, 2)
        train(models[1], traced, 2)
    assert_same_params(models[0], models[1], rtol=1e-12, atol=1e-14)


def test_compile_true_with_chunks_compiles_one_graph_per_chunk(monkeypatch):
    """On accelerators (forced here on CPU) ``compile=True`` with ``chunk_size`` compiles each
    chunk's step as a graph of its own, and steps as the eager chunked step does."""
    import torch._dynamo
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from adapters.torch import compiled
    from adapters.torch import foreach as module

    monkeypatch.setattr(module.namespace, "batched_devices", ("cpu", "cuda"))
    torch._dynamo.reset()
    models = [make_model(), make_model()]
    # tensors of 216, 8, 8, 432, 6, 6, 480 and 5 elements: three chunks of at most 500
    eager, traced = (
        AdamP(m.parameters(), lr=0.01, weight_decay=0.1, chunk_size=500, **kw)
        for m, kw in zip(models, [{"foreach": True}, {"compile": True}], strict=True)
    )
    train(models[0], eager, 3)
    train(models[1], traced, 3)
    assert len(_debug_get_cache_entry_list(compiled._adamp_group.__code__)) == 3
    assert_same_params(models[0], models[1], rtol=1e-12, atol=1e-14)


@pytest.mark.compiled_code  # the ops of torch 2.13's functionalized graph
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cls", [AdamP, SGDP])
def test_the_compiled_batched_step_writes_no_view_of_a_shared_buffer(
    cls, channels_last, monkeypatch
):
    """Traced, the batched projection neither writes products into views of one buffer nor
    expands per-row values into one: compiled code turns each such write into a copy of the
    whole buffer (a ``slice_scatter``), so a step of n tensors copied the list's size n times
    (a ResNet-50 step ran many times slower than the eager one). Counted in the compiled graph."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    from adapters.torch import foreach as module

    monkeypatch.setattr(module.namespace, "batched_devices", ("cpu", "cuda"))
    torch._dynamo.reset()
    targets: list[str] = []

    def capture(graph, inputs):
        targets.extend(str(n.target) for n in graph.graph.nodes if n.op == "call_function")
        return make_boxed_func(graph.forward)

    model = make_model()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    extra = {"momentum": 0.9} if cls is SGDP else {}
    opt = cls(model.parameters(), lr=0.01, weight_decay=0.1, foreach=True, **extra)
    train(model, opt, 1)
    opt.step = torch.compile(opt.step, fullgraph=True, backend=aot_autograd(fw_compiler=capture))
    train(model, opt, 1)
    assert "aten.index_select.default" in targets  # the batched projection was traced (padding)
    assert [t for t in targets if "scatter" in t] == []


def test_a_cpu_learning_rate_beside_accelerator_params_is_read_eagerly_only():
    """Beside parameters on an accelerator (meta here), the eager step reads a CPU-tensor
    learning rate as a number (multi-tensor kernels take a number, not a CPU tensor beside
    each tensor); a traced step keeps it a tensor, a graph input, so that a schedule
    changing it in place recompiles nothing (reading it would break or specialize the
    graph)."""
    from adapters.torch.compiled import read_on_host

    lr, like = torch.tensor(0.25, dtype=torch.float64), torch.empty(2, device="meta")
    assert read_on_host({"lr": lr}, [like]) == {"lr": 0.25}
    assert read_on_host({"lr": lr}, [torch.empty(2)])["lr"] is lr  # CPU parameters

    torch._dynamo.reset()

    @torch.compile(fullgraph=True, backend="eager")
    def traced(lr):
        return read_on_host({"lr": lr}, [like])["lr"] * 2

    assert traced(lr).item() == 0.5
    lr.fill_(0.5)
    assert traced(lr).item() == 1.0


@pytest.mark.parametrize("cls", [AdamP, SGDP])
def test_a_step_can_be_replayed_as_a_cuda_graph_would(cls, foreach):
    """What capturing a step in a CUDA graph needs, checked on CPU: after a warm-up step,
    steps keep every parameter and state tensor at its address (a replay writes there),
    and a learning rate held in a tensor and changed in place (lr.fill_) takes effect, as a
    new optimizer with that rate would compute it."""
    model, twin = make_model(), make_model()
    lr = torch.tensor(0.01, dtype=torch.float64)
    extra = {"momentum": 0.9} if cls is SGDP else {}
    opt = cls(model.parameters(), lr=lr, weight_decay=0.1, foreach=foreach, **extra)
    train(model, opt, 1)

    def addresses():
        return [p.data_ptr() for p in model.parameters()] + [
            t.data_ptr() for s in opt.state.values() for t in s.values()
        ]

    held = addresses()
    twin.load_state_dict(model.state_dict())
    other = cls(twin.parameters(), lr=0.003, weight_decay=0.1, foreach=foreach, **extra)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    other.param_groups[0]["lr"] = 0.003
    lr.fill_(0.003)
    train(model, opt, 2)
    train(twin, other, 2)
    assert addresses() == held
    assert_same_params(model, twin, rtol=0, atol=0)
