"""What a step costs on a GPU, counted here without one (see benchmarks/counting.py).

Counts are deterministic, so they are asserted: no host synchronization and no
host-to-device copy in a PyTorch step on CUDA (after the first), no runtime conditional in
the Optax step lowered for CUDA or TPU, no Python scalar turned into an array by
``adamp_core.step`` (CuPy would copy each to the device). The counters are checked against
the known costs of ``torch.optim.AdamW`` and against code that does sync, so they can fail.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from counting import runtime_conditionals
from shapes import WORKLOADS

import adamp_core as ac

RESNET = WORKLOADS["resnet50"]()

#: The launch budget of one default CUDA step on ResNet-50 or ViT-B/16 shapes (the official
#: package launches thousands).
MAX_LAUNCHES = 150
#: The array-operation budget of ``adamp_core.step`` on ResNet-50 shapes with a packed state.
MAX_RAW_OPERATIONS = 400


@pytest.fixture(scope="module")
def counting():
    pytest.importorskip("torch")
    import counting

    return counting


def test_the_counter_knows_torch_adamw(counting):
    import torch

    fused = counting.count_torch_step(lambda p: torch.optim.AdamW(p, fused=True), RESNET)
    foreach = counting.count_torch_step(lambda p: torch.optim.AdamW(p, foreach=True), RESNET)
    assert (fused.launches, fused.syncs, fused.copies) == (7, 0, 0)
    assert (foreach.launches, foreach.syncs, foreach.copies) == (26, 0, 0)


def test_the_counter_sees_syncs_and_copies(counting):
    import torch

    class Syncing(torch.optim.SGD):
        @torch.no_grad()
        def step(self):
            for p in self.param_groups[0]["params"]:
                scale = torch.as_tensor(0.5, device=p.device)  # a host-to-device copy
                if (p.grad * scale).abs().sum() > 0:  # a sync
                    p.sub_(p.grad)

    counts = counting.count_torch_step(lambda p: Syncing(p, lr=0.1), RESNET[:3])
    assert counts.syncs == 3 and counts.copies == 3


@pytest.mark.parametrize("path", [dict(), dict(foreach=False), dict(foreach=True)])
@pytest.mark.parametrize("kind", ["AdamP", "SGDP"])
def test_torch_cuda_step_never_waits_for_the_device(counting, kind, path):
    import torch

    from adapters import torch as ours

    def make(params):
        if kind == "AdamP":
            return ours.AdamP(params, lr=torch.tensor(1e-3), weight_decay=1e-2, **path)
        return ours.SGDP(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, **path)

    counts = counting.count_torch_step(make, RESNET)
    assert (counts.syncs, counts.copies) == (0, 0), counts.ops


@pytest.mark.parametrize("variant", ["float lr", "cpu tensor lr", "nesterov"])
@pytest.mark.parametrize("workload", ["resnet50", "vit_b16"])
@pytest.mark.parametrize("kind", ["AdamP", "SGDP"])
def test_torch_cuda_default_step_launches_at_most_max_launches_kernels(
    counting, kind, workload, variant
):
    """The projection of a whole group is batched (adapters/torch/batched.py): a few kernels
    per step instead of dozens per weight (the official package: about 2,500 on ResNet-50).
    A learning rate held in a CPU tensor (as a scheduler may keep it) is read on the host,
    and Nesterov's step is the fused kernel's too: Adam's step stays one multi-tensor
    kernel instead of one per tensor."""
    import torch

    from adapters import torch as ours

    def rate(value):
        return torch.tensor(value, dtype=torch.float64) if variant == "cpu tensor lr" else value

    nesterov = variant == "nesterov"

    def make(params):
        if kind == "AdamP":
            return ours.AdamP(params, lr=rate(1e-3), weight_decay=1e-2, nesterov=nesterov)
        return ours.SGDP(params, lr=rate(0.1), momentum=0.9, weight_decay=1e-4, nesterov=nesterov)

    counts = counting.count_torch_step(make, WORKLOADS[workload]())
    assert counts.launches <= MAX_LAUNCHES, (counts.launches, counts.ops.most_common(12))


@pytest.mark.parametrize("workload", ["resnet50", "vit_b16"])
@pytest.mark.parametrize("kind", ["AdamP", "SGDP"])
def test_a_group_with_nothing_to_test_launches_no_more_than_adamw_foreach(counting, kind, workload):
    """A group of biases and norm weights (the no-decay group that timm and transformers
    make) has nothing to test: its projection is the core's for an untested array, one 0-d
    value for the whole list, and its step launches no more than AdamW(foreach=True)'s on
    the same tensors (before: the whole batched projection, about a hundred)."""
    import torch

    from adapters import torch as ours

    shapes = [s for s in WORKLOADS[workload]() if len(s) < 2]
    adamw = counting.count_torch_step(lambda p: torch.optim.AdamW(p, foreach=True), shapes)
    if kind == "AdamP":
        counts = counting.count_torch_step(lambda p: ours.AdamP(p), shapes)
    else:
        counts = counting.count_torch_step(lambda p: ours.SGDP(p, lr=0.1, momentum=0.9), shapes)
    assert (counts.syncs, counts.copies) == (0, 0)
    assert counts.launches <= adamw.launches, counts.launches_by_op


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("kind", ["AdamP", "SGDP"])
def test_half_precision_groups_run_no_operation_once_per_tensor(counting, kind, dtype):
    """Half-precision parameters are widened to float32 a list at a time (one converting
    multi-tensor copy), and AdamP's moments step with the fused kernel on float32 copies:
    no operation launches once per tensor (casting each tensor, and Adam's step with the
    per-tensor bias corrections that multi-tensor kernels take one tensor at a time, did:
    thousands of launches for AdamP on ResNet-50)."""
    import torch

    from adapters import torch as ours

    def make(params):
        if kind == "AdamP":
            return ours.AdamP(params, weight_decay=1e-2)
        return ours.SGDP(params, lr=0.1, momentum=0.9, weight_decay=1e-4)

    counts = counting.count_torch_step(make, RESNET, dtype=getattr(torch, dtype))
    op, most = counts.launches_by_op.most_common(1)[0]
    assert most < len(RESNET), (op, most, counts.launches)
    assert (counts.syncs, counts.copies) == (0, 0)


@pytest.mark.parametrize("kind", ["AdamP", "SGDP"])
def test_channels_last_conv_weights_launch_as_few_kernels(counting, kind):
    """Conv weights in channels_last take the multi-tensor kernels' fast path too: the
    batched projection's buffers are viewed with the weights' strides (with contiguous ones,
    each multi-tensor kernel ran once per tensor). The
    contiguous step runs first, in the same process, as a second model would."""
    from adapters import torch as ours

    def make(params):
        if kind == "AdamP":
            return ours.AdamP(params, weight_decay=1e-2)
        return ours.SGDP(params, lr=0.1, momentum=0.9, weight_decay=1e-4)

    contiguous = counting.count_torch_step(make, RESNET)
    channels_last = counting.count_torch_step(make, RESNET, channels_last=True)
    assert channels_last.launches == contiguous.launches, channels_last.ops.most_common(8)
    assert (channels_last.syncs, channels_last.copies) == (0, 0)


def test_the_official_package_syncs_once_per_weight(counting):
    """The counter on the official optimizer: its Python branches read each weight's cosine."""
    adamp = pytest.importorskip("adamp")
    counts = counting.count_torch_step(lambda p: adamp.AdamP(p), RESNET)
    weights = sum(len(s) > 1 for s in RESNET)
    assert counts.syncs == weights and counts.launches > 2000


def test_compiled_hyperparameters_stay_on_the_device():
    """The compiled path keeps its hyperparameters as device tensors: made once, refilled
    (a kernel, not a copy) only when a value changes."""
    torch = pytest.importorskip("torch")
    from adapters.torch.compiled import DeviceScalars, read_on_host

    scalars = DeviceScalars()
    like = torch.zeros(3)
    first = scalars(0, {"lr": 0.1, "weight_decay": 0.0}, like)
    again = scalars(0, {"lr": 0.1, "weight_decay": 0.0}, like)
    assert first["lr"] is again["lr"]
    changed = scalars(0, {"lr": 0.05, "weight_decay": 0.0}, like)
    assert changed["lr"] is first["lr"] and changed["lr"].item() == torch.tensor(0.05).item()
    # a CPU tensor lr beside parameters on another device: read on the host, refilled in
    # the held device tensor (a copy per step would be a new tensor each time)
    on_meta = torch.empty(3, device="meta")
    lr = torch.tensor(0.1)
    held = scalars(1, read_on_host({"lr": lr}, [on_meta]), on_meta)["lr"]
    lr.fill_(0.02)
    again = scalars(1, read_on_host({"lr": lr}, [on_meta]), on_meta)["lr"]
    assert held.device.type == "meta" and again is held


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
def test_optax_on_gpu_and_tpu_has_no_runtime_conditional_and_no_chain(kind):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from adapters.optax import adamp, sgdp

    axis = "first"  # PyTorch-layout shapes: the CPU one-pass row sums (and their chain) apply
    tx = (
        adamp(1e-3, channel_axis=axis)
        if kind == "adamp"
        else sgdp(0.1, momentum=0.9, channel_axis=axis)
    )
    shapes = [(64, 64, 3, 3), (64,), (256, 64), (128, 64, 1, 1)]
    params = {f"p{i}": jax.ShapeDtypeStruct(s, jnp.float32) for i, s in enumerate(shapes)}
    state = jax.eval_shape(tx.init, params)
    traced = jax.jit(lambda p, s, g: tx.update(g, s, p)).trace(params, state, params)
    lowered = {p: traced.lower(lowering_platforms=(p,)).as_text() for p in ("cpu", "cuda", "tpu")}
    # the chain's signature: max(x, -1 - isnan(previous)), isnan being x != x
    chain = re.compile(r"stablehlo\.compare\s+NE, (%[\w#]+), \1")
    assert runtime_conditionals(lowered["cpu"]) >= 1  # the CPU branch keeps lax.cond
    assert chain.search(lowered["cpu"])
    for platform in ("cuda", "tpu"):
        assert runtime_conditionals(lowered[platform]) == 0, platform
        assert not chain.search(lowered[platform]), platform


@pytest.mark.parametrize(
    "config", [ac.AdamPConfig(weight_decay=1e-2), ac.SGDPConfig(0.1, momentum=0.9)]
)
def test_raw_step_turns_no_python_scalar_into_an_array(config, counting):
    counts = counting.count_raw_step(config, RESNET[:12])
    assert counts["ops"] > 0
    assert counts["scalar conversions"] == 0, counts


@pytest.mark.parametrize(
    "config",
    [ac.AdamPConfig(weight_decay=1e-2), ac.SGDPConfig(0.1, momentum=0.9, nesterov=True)],
    ids=["AdamP", "SGDP"],
)
def test_raw_step_of_a_packed_list_stays_within_budget(config, counting):
    """With one packed state, a step of ResNet-50's 161 arrays is a few operations over the
    whole list plus one write back per array (in place); a state per array takes thousands."""
    packed = counting.count_raw_step(config, RESNET, packed=True)
    apart = counting.count_raw_step(config, RESNET)
    assert packed["ops"] <= MAX_RAW_OPERATIONS < apart["ops"], packed.most_common(12)
    assert packed["op setitem"] == len(RESNET)  # each parameter written back once
    assert packed["scalar conversions"] == 0


def test_raw_count_does_not_depend_on_how_the_state_was_made(counting, monkeypatch):
    """Every array of the state is counted, also when ``init`` returns plain arrays (an
    operation on the moments or the step count alone is still a kernel on CuPy)."""
    import numpy as np

    config = ac.AdamPConfig(weight_decay=1e-2)
    counted = counting.count_raw_step(config, RESNET[:12])["ops"]
    made_by_init = ac.init

    def plain_init(params, config, packed=False):
        assert not packed
        return [
            type(s)(*(np.asarray(a).view(np.ndarray).copy() for a in s))
            for s in made_by_init(params, config)
        ]

    monkeypatch.setattr(ac, "init", plain_init)
    assert counting.count_raw_step(config, RESNET[:12])["ops"] == counted


def test_the_memory_tracker_counts_what_is_alive_at_once():
    import torch
    from counting import peak_step_bytes

    class TwoBuffers:  # an "optimizer" whose step holds two list-sized buffers, then one
        def __init__(self, params):
            self.params = params

        def step(self):
            a = torch._foreach_mul(self.params, 2.0)
            b = torch._foreach_mul(self.params, 3.0)
            del a
            c = torch._foreach_mul(self.params, 4.0)
            return b, c

    shapes = [(64, 3, 3, 3), (128,)]
    peak = peak_step_bytes(TwoBuffers, shapes)
    assert peak == 2 * 4 * sum(math.prod(s) for s in shapes)


@pytest.mark.parametrize("workload", ["resnet50", "vit_b16"])
def test_cuda_path_temporaries_stay_near_adamw_foreach(workload):
    """The batched CUDA path keeps one list-sized buffer at a time (the projection's products,
    then the expanded per-channel factors), as AdamW(foreach=True) does (its sqrt(v)); AdamP
    also keeps Adam's step for the projection, one more. Nesterov's copy of the first moment
    is gone before the projection's buffer is made: it adds nothing to the peak."""
    from launch_counts import MEMORY_ROWS, cuda_path_peak_bytes

    from adapters.torch import AdamP

    shapes = WORKLOADS[workload]()
    peak = {name: cuda_path_peak_bytes(make, shapes) for name, make in MEMORY_ROWS.items()}
    adamw = peak["torch.optim.AdamW(foreach=True)"]
    assert peak["ours SGDP, CUDA default (foreach)"] <= 1.1 * adamw
    assert peak["ours AdamP, CUDA default (foreach)"] <= 2.1 * adamw
    nesterov = cuda_path_peak_bytes(
        lambda p: AdamP(p, weight_decay=1e-2, foreach=True, nesterov=True), shapes
    )
    assert nesterov == peak["ours AdamP, CUDA default (foreach)"]


@pytest.mark.parametrize("workload", ["resnet50", "vit_b16"])
def test_chunk_size_bounds_the_temporaries(workload):
    """With ``chunk_size``, AdamP's two list-sized temporaries are chunk-sized: a quarter of
    the model's elements at a time needs less than AdamW(foreach=True)'s one model-sized
    buffer, and nothing of a step syncs."""
    import torch
    from counting import count_torch_step
    from launch_counts import MEMORY_ROWS, chunked_adamp, cuda_path_peak_bytes

    shapes = WORKLOADS[workload]()
    sizes = [math.prod(s) for s in shapes]
    chunk = sum(sizes) // 4
    peak = cuda_path_peak_bytes(chunked_adamp(chunk), shapes)
    itemsize = torch.finfo(torch.float32).bits // 8
    # besides: a few (weights, widest weight's rows) arrays of per-row sums, a fraction of
    # a percent of the model
    padded = len(shapes) * max(s[0] if len(s) > 1 else 1 for s in shapes)
    assert peak <= 2 * itemsize * max(chunk, *sizes) + 4 * itemsize * padded
    adamw = cuda_path_peak_bytes(MEMORY_ROWS["torch.optim.AdamW(foreach=True)"], shapes)
    assert peak < adamw
    counts = count_torch_step(chunked_adamp(chunk), shapes)
    assert (counts.syncs, counts.copies) == (0, 0)
    whole = count_torch_step(chunked_adamp(None), shapes)
    assert whole.launches < counts.launches <= 5 * whole.launches
