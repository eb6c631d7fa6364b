"""The opt-in compiled paths (``compile=True``).

On accelerators, the group's multi-tensor step (``foreach.group_step``, the batched
projection included) compiles as one graph: ``compiled_group``. On CPU, the core's
single-tensor update compiles once per update function: ``compiled``.

On CPU each parameter is handed to the compiled core as a 2-D ``(rows, fan)`` view (1-D for
parameters of fewer than 2 dimensions): the projection of a weight only looks at its
output-channel rows, so the view gives the same result as the original shape while
the whole model needs only a handful of graphs (one per rank and per 0/1 size
specialization) instead of one per shape. Shapes are dynamic, hyperparameters are
0-d tensors and the step count is a tensor, so neither a learning-rate schedule nor
the passing steps recompile anything.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

import adamp_core
from adamp_core.state import step_dtype

from .foreach import group_step
from .kernels import element_namespace

__all__ = ["DeviceScalars", "can_view", "compiled", "compiled_group", "flat_view", "read_on_host"]

_ELEMENTS = element_namespace()


def _adamp_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: Any,
    nesterov: bool,
    delta: float,
    eps: float,
    **hyper: torch.Tensor,
) -> adamp_core.Projection:
    return adamp_core.adamp_update(
        param,
        grad,
        state,
        nesterov=nesterov,
        delta=delta,
        eps=eps,
        inplace=True,
        xp=_ELEMENTS,
        **hyper,
    )[2]


def _sgdp_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: Any,
    nesterov: bool,
    delta: float,
    eps: float,
    **hyper: torch.Tensor,
) -> adamp_core.Projection:
    return adamp_core.sgdp_update(
        param,
        grad,
        state,
        nesterov=nesterov,
        delta=delta,
        eps=eps,
        inplace=True,
        xp=_ELEMENTS,
        **hyper,
    )[2]


# One module-level function per update: dynamo keeps its graphs (and its recompile limit) per
# code object, so AdamP's and SGDP's graphs must not share one.
_STEPS: dict[Callable[..., Any], Callable[..., Any]] = {
    adamp_core.adamp_update: _adamp_step,
    adamp_core.sgdp_update: _sgdp_step,
}
_CACHE: dict[Callable[..., Any], Callable[..., Any]] = {}


def _quiet(compiled_step: Callable[..., Any]) -> Callable[..., Any]:
    def quiet_step(*args: Any, **kwargs: Any) -> Any:
        # Dynamo notes, while tracing, that array_api_compat's helpers are lru_cached;
        # they are pure functions of types, so tracing through the cache is exact.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*functools.lru_cache", UserWarning)
            return compiled_step(*args, **kwargs)

    return quiet_step


def compiled(update: Callable[..., Any]) -> Callable[..., Any]:
    """``update`` (``adamp_core.adamp_update`` or ``sgdp_update``) compiled once per process."""
    if update not in _CACHE:
        _CACHE[update] = _quiet(torch.compile(_STEPS[update], dynamic=True))
    return _CACHE[update]


def _adamp_group(update: Callable[..., Any], *args: Any) -> list[list[torch.Tensor]]:
    return group_step(update, *args)


def _sgdp_group(update: Callable[..., Any], *args: Any) -> list[list[torch.Tensor]]:
    return group_step(update, *args)


_GROUP_STEPS: dict[Callable[..., Any], Callable[..., Any]] = {
    adamp_core.adamp_update: _adamp_group,
    adamp_core.sgdp_update: _sgdp_group,
}
_GROUP_CACHE: dict[Callable[..., Any], Callable[..., Any]] = {}


def compiled_group(update: Callable[..., Any]) -> Callable[..., Any]:
    """[`group_step`][adapters.torch.foreach.group_step] of ``update`` compiled as one graph
    (``fullgraph=True``), once per process. Give it the hyperparameters that change as 0-d
    device tensors (``DeviceScalars``): Dynamo compiles Python numbers read from a dict in
    as constants, and would recompile for each new learning rate."""
    if update not in _GROUP_CACHE:
        _GROUP_CACHE[update] = _quiet(torch.compile(_GROUP_STEPS[update], fullgraph=True))
    return _GROUP_CACHE[update]


def can_view(*tensors: torch.Tensor) -> bool:
    """True when every tensor is non-empty, contiguous and has storage (not ``meta``), so
    ``flat_view`` aliases it and the compiled graph can run on it."""
    return all(t.numel() > 0 and t.is_contiguous() and t.device.type != "meta" for t in tensors)


def flat_view(t: torch.Tensor) -> torch.Tensor:
    """``t`` as ``(rows, fan)`` (``ndim >= 2``) or 1-D: a view, so in-place writes land in ``t``."""
    return t.view(t.shape[0], -1) if t.ndim >= 2 else t.view(-1)


def read_on_host(hyper: dict[str, Any], params: list[torch.Tensor]) -> dict[str, Any]:
    """``hyper`` with each CPU tensor read as a number when a parameter is on an accelerator:
    reading it waits for no device, where copying it to the device each step would, and
    multi-tensor kernels take a number with the list where a CPU tensor beside it would run
    them once per tensor. Not while ``torch.compile`` traces the step: there the tensor is a
    graph input, and reading it would specialize the graph on its value."""
    on_cpu = [k for k, v in hyper.items() if isinstance(v, torch.Tensor) and v.device.type == "cpu"]
    if not on_cpu or torch.compiler.is_compiling() or all(p.device.type == "cpu" for p in params):
        return hyper
    return {**hyper, **{k: hyper[k].item() for k in on_cpu}}


class DeviceScalars:
    """Hyperparameters as 0-d tensors in the step dtype, on the parameters' device, kept
    between steps: changing them never recompiles, and a value that did not change costs
    nothing. A changed value is written with ``fill_`` (a kernel, no host-to-device copy,
    so no stream synchronization); a tensor hyperparameter (a scheduled ``lr``) is used as
    it is, cast where needed (``read_on_host`` reads one on the CPU beside parameters
    elsewhere first)."""

    def __init__(self) -> None:
        self._held: dict[tuple[Any, ...], tuple[torch.Tensor, Any]] = {}

    def __call__(self, group: int, hyper: dict[str, Any], like: torch.Tensor) -> dict[str, Any]:
        dtype = step_dtype(like.dtype, torch)
        out = {}
        for name, value in hyper.items():
            if isinstance(value, torch.Tensor):
                out[name] = value.to(device=like.device, dtype=dtype)
                continue
            key = (group, name, dtype, like.device)
            held = self._held.get(key)
            if held is None:
                held = (torch.full((), value, dtype=dtype, device=like.device), value)
            elif held[1] != value:
                held = (held[0].fill_(value), value)
            self._held[key] = held
            out[name] = held[0]
        return out
