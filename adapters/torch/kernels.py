"""Torch forms of the kernels a core namespace may replace, and the per-tensor namespace.

``adamp_core`` runs on any array-API namespace; a namespace may supply faster forms of
a few functions (``vecdot``, the in-place kernels of [`adamp_core.kernels`][adamp_core.kernels] and
the
fused ``adam_step_`` of [`adamp_core.updates.adam_step`][adamp_core.updates.adam_step]). Here they
are torch's
fused in-place methods and ``torch._fused_adam_``. Each computes the same values as the
core's definition (``tests/test_torch_kernels.py`` checks them against it).

On CPU, a fresh large temporary page-faults on every step (much slower than writing into
memory already touched), so the per-tensor path of one optimizer reuses a
``Workspace``: the product inside ``vecdot`` and Adam's step are written into
scratch tensors the size of the largest parameter, kept between steps.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as torch_xp
import torch

import adamp_core

__all__ = ["Workspace", "element_namespace", "fused_adam_step"]

#: Tensors of at most this many elements are not worth a workspace (nor, on CPU, a
#: call of their own: the optimizers update them together with foreach kernels).
SMALL = 2**15

_FUSED_DEVICES = ("cpu", "cuda")


class Workspace:
    """Scratch tensors that one optimizer reuses across the large CPU tensors of its steps.

    One buffer per use (``"product"``, ``"direction"``) and dtype, grown to the largest
    tensor seen: about two parameters' worth of memory, held as long as the optimizer.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def take(self, use: str, like: torch.Tensor) -> torch.Tensor | None:
        """A tensor of ``like``'s shape and dtype (contents undefined) that may be
        overwritten until the next ``take(use, ...)``; ``None`` where fresh memory is the
        better choice (not a plain contiguous CPU tensor, small, or under ``torch.compile``).
        """
        if (
            type(like) is not torch.Tensor
            or like.device.type != "cpu"
            or like.numel() <= SMALL
            or not like.is_contiguous()
            or torch.compiler.is_compiling()
        ):
            return None
        key = (use, like.dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < like.numel():
            buf = self._buffers[key] = torch.empty(like.numel(), dtype=like.dtype)
        return buf[: like.numel()].view(like.shape)


def _vecdot(
    x1: torch.Tensor, x2: torch.Tensor, /, *, axis: int = -1, workspace: Workspace | None = None
) -> torch.Tensor:
    """The standard ``vecdot`` for real tensors, in the fastest torch form measured on CPU.

    For ``x1 is x2``, the squared norm (one pass, no temporary); otherwise ``sum(x1*x2)``,
    which measured faster on CPU than ``torch.linalg.vecdot`` and than the batched matmul
    of ``array_api_compat``; the product goes into the workspace when there is one.
    """
    if x1 is x2:
        return torch.linalg.vector_norm(x1, dim=axis).square()
    out = workspace.take("product", x1) if workspace is not None else None
    if out is None or x2.shape != x1.shape:
        return torch.sum(x1 * x2, dim=axis)
    return torch.sum(torch.mul(x1, x2, out=out), dim=axis)


def _scale_add_(y: torch.Tensor, beta: Any, x: torch.Tensor, alpha: Any) -> torch.Tensor:
    if isinstance(alpha, (int, float)) and alpha == 1 and isinstance(beta, (int, float)):
        return torch.add(x, y, alpha=beta, out=y)  # x + beta*y: one pass (SGD's momentum)
    y.mul_(beta)
    if isinstance(alpha, torch.Tensor):  # a traced hyperparameter: no .item()
        return y.addcmul_(x, alpha)
    return y.add_(x, alpha=alpha)


def _scale_addcmul_(
    y: torch.Tensor, beta: Any, x1: torch.Tensor, x2: torch.Tensor, value: Any
) -> torch.Tensor:
    y.mul_(beta)
    if isinstance(value, torch.Tensor):
        return y.addcmul_(x1 * value, x2)
    return y.addcmul_(x1, x2, value=value)


def _sub_product_(y: torch.Tensor, a: Any, b: torch.Tensor) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return y.addcmul_(a, b, value=-1)
    return y.add_(b, alpha=-a)


def _quotient_(numerator: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    return torch.div(numerator, denom, out=denom)


def plain(t: torch.Tensor) -> bool:
    """A dense tensor of torch's own kernels (or its fake twin that counts them); not a
    subclass such as DTensor, whose fused kernel would not see its shards."""
    from torch._subclasses.fake_tensor import FakeTensor

    return type(t) in (torch.Tensor, torch.nn.Parameter) or isinstance(t, FakeTensor)


def fused_adam_step(
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
    *,
    lr: Any,
    beta1: Any,
    beta2: Any,
    eps: Any,
    out: list[torch.Tensor | None] | None = None,
) -> list[torch.Tensor] | None:
    """[`adamp_core.updates.adam_step`][adamp_core.updates.adam_step] over lists, with
    ``torch._fused_adam_``.

    Adam applied with a negated learning rate and no weight decay to zero-filled
    "parameters" leaves each holding ``lr/(1-b1**t) * m/(sqrt(v)/sqrt(1-b2**t) + eps)``,
    the moments updated, in one pass (the kernel reads the step counts and leaves
    them alone). ``out`` may give scratch tensors to hold the results.

    Returns:
      The steps, or ``None`` where the kernel does not apply: tensor hyperparameters
      other than ``lr`` (the compiled path), tensor subclasses such as DTensor,
      devices without the kernel, an ``lr`` on another device, a gradient laid out
      unlike its moments.
    """
    if torch.compiler.is_compiling() or not all(
        isinstance(h, (int, float)) for h in (beta1, beta2, eps)
    ):
        return None
    first = grads[0]
    if first.device.type not in _FUSED_DEVICES or any(
        not plain(t) for t in (first, exp_avgs[0], exp_avg_sqs[0], steps[0])
    ):
        return None
    if isinstance(lr, torch.Tensor) and lr.device != first.device:
        return None
    if any(m.stride() != g.stride() for m, g in zip(exp_avgs, grads, strict=True)):
        return None  # the kernel wants one layout for a parameter's tensors
    slots = out if out is not None else [None] * len(exp_avgs)
    directions = [
        torch.empty_like(m) if buf is None else buf for m, buf in zip(exp_avgs, slots, strict=True)
    ]
    torch._foreach_zero_(directions)  # one multi-tensor fill, not one per tensor
    torch._fused_adam_(
        directions,
        grads,
        exp_avgs,
        exp_avg_sqs,
        [],
        steps,
        lr=-lr,
        beta1=beta1,
        beta2=beta2,
        weight_decay=0.0,
        eps=eps,
        amsgrad=False,
        maximize=False,
    )
    return directions


def _adam_step_(
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    *,
    workspace: Workspace | None = None,
    **hyper: Any,
) -> torch.Tensor | None:
    buf = workspace.take("direction", exp_avg) if workspace is not None else None
    out = fused_adam_step([grad], [exp_avg], [exp_avg_sq], [step], out=[buf], **hyper)
    return None if out is None else out[0]


def _clip(x: torch.Tensor, /, min: Any = None, max: Any = None) -> torch.Tensor:
    """The standard ``clip`` (the compat wrapper's checks break ``torch.compile``'s graph)."""
    return torch.clamp(x, min=min, max=max)


def _take(x: torch.Tensor, indices: torch.Tensor, /, *, axis: int | None = None) -> torch.Tensor:
    """The standard ``take`` for in-bounds, non-negative indices (the compat wrapper also
    maps negative ones: three more kernels per call)."""
    return torch.index_select(x, 0 if axis is None else axis, indices)


def _zeros_beside(x: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The core's ``zeros_beside`` as torch makes small tensors: on ``x``'s device (a plain
    tensor beside a DTensor, as torch.optim keeps its step counts)."""
    return torch.zeros(shape, dtype=dtype, device=x.device)


def element_namespace(workspace: Workspace | None = None) -> Any:
    """The per-tensor namespace: array_api_compat's torch with torch's fused kernels.

    Besides the kernels, the functions whose torch signature already is the standard
    one for the calls the core makes (same-dtype tensors, full reductions) are torch's
    own: the compat wrappers cost a few microseconds per call, which adds up to tens of
    milliseconds over a ResNet-50 step. ``workspace`` (one per optimizer) lends the
    scratch memory of the large CPU tensors.
    """

    def vecdot(x1: torch.Tensor, x2: torch.Tensor, /, *, axis: int = -1) -> torch.Tensor:
        return _vecdot(x1, x2, axis=axis, workspace=workspace)

    def adam_step_(*args: Any, **hyper: Any) -> torch.Tensor | None:
        return _adam_step_(*args, workspace=workspace, **hyper)

    return adamp_core.with_overrides(
        torch_xp,
        scale_add_=_scale_add_,
        scale_addcmul_=_scale_addcmul_,
        sub_product_=_sub_product_,
        quotient_=_quotient_,
        adam_step_=adam_step_,
        zeros_beside=_zeros_beside,
        vecdot=vecdot,
        abs=torch.abs,
        sqrt=torch.sqrt,
        maximum=torch.maximum,
        clip=_clip,
        isinf=torch.isinf,
        max=torch.amax,
        sum=torch.sum,
        where=torch.where,
        logical_and=torch.logical_and,
        logical_or=torch.logical_or,
        logical_not=torch.logical_not,
        reshape=torch.reshape,
        take=_take,
    )
