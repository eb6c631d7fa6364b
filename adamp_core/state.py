"""Per-parameter optimizer state, laid out as the official ``adamp`` package's.

``AdamPState`` holds ``step``, ``exp_avg`` and ``exp_avg_sq`` and ``SGDPState``
holds ``momentum``: the keys of ``optimizer.state[p]`` in ``adamp`` 0.3.0, so
adapters map them one to one. The states are ``NamedTuple``s of arrays, hence
containers that tree utilities traverse.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .namespace import namespace_of, zeros_beside

__all__ = ["AdamPState", "SGDPState", "init_adamp", "init_sgdp", "step_dtype"]

Array = Any


class AdamPState(NamedTuple):
    """AdamP state of one parameter."""

    step: Array  #: 0-d float array: steps taken (float64 for float64 params, else float32)
    exp_avg: Array  #: first moment, the parameter's shape and dtype
    exp_avg_sq: Array  #: second moment, the parameter's shape and dtype


class SGDPState(NamedTuple):
    """SGDP state of one parameter."""

    momentum: Array  #: momentum buffer, the parameter's shape and dtype; starts at zeros


def step_dtype(param_dtype: Any, xp: Any) -> Any:
    """The dtype of the step counter and of the scalars derived from it.

    float64 for float64 parameters, float32 otherwise: bias corrections such as
    ``1 - 0.999**t`` lose most of their digits in float16, and float32 counts
    exactly up to 2**24 steps.
    """
    return xp.float64 if param_dtype == xp.float64 else xp.float32


def _zeros_like(param: Array, xp: Any) -> Array:
    # param's shape, dtype and device (and its memory layout, where the library keeps one)
    return xp.zeros_like(param)


def init_adamp(param: Array, *, xp: Any = None) -> AdamPState:
    """Fresh AdamP state for ``param``: step 0, zero moments."""
    xp = namespace_of(param) if xp is None else xp
    step = zeros_beside(param, (), step_dtype(param.dtype, xp), xp)
    return AdamPState(step, _zeros_like(param, xp), _zeros_like(param, xp))


def init_sgdp(param: Array, *, xp: Any = None) -> SGDPState:
    """Fresh SGDP state for ``param``: a zero momentum buffer."""
    xp = namespace_of(param) if xp is None else xp
    return SGDPState(_zeros_like(param, xp))
