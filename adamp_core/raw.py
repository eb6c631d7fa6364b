"""``init`` and ``step``: AdamP and SGDP on raw arrays of any array-API library."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import array_api_compat

from .config import AdamPConfig, SGDPConfig
from .namespace import compute_dtype, namespace_of
from .packed import Packing
from .state import AdamPState, SGDPState, init_adamp, init_sgdp
from .updates import adamp_update, sgdp_update

__all__ = ["init", "step"]

Array = Any
Config = AdamPConfig | SGDPConfig
State = AdamPState | SGDPState


def _as_list(x: Any) -> tuple[list[Any], bool]:
    if isinstance(x, (list, tuple)) and not isinstance(x, (AdamPState, SGDPState)):
        return list(x), True
    return [x], False


def _state_type(config: Config) -> type:
    if isinstance(config, AdamPConfig):
        return AdamPState
    if isinstance(config, SGDPConfig):
        return SGDPState
    raise TypeError(f"config must be an AdamPConfig or an SGDPConfig, got {type(config).__name__}")


def init(
    params: Array | Sequence[Array], config: Config, *, packed: bool = False
) -> State | list[State]:
    """Fresh optimizer state for ``params``.

    Args:
      params: one array, or a list/tuple of arrays, of any array-API library.
      config: an [`AdamPConfig`][adamp_core.AdamPConfig] or [`SGDPConfig`][adamp_core.SGDPConfig].
      packed: for a list of arrays of one dtype and device, one state for the whole list,
        its moments flat, ``(total elements,)`` in the packed order of
        [`adamp_core.packed`][adamp_core.packed]. [`step`][adamp_core.step] then updates
        the whole list with a few operations per step instead of a dozen per array, and
        with one step count: every gradient must be given at every step.

    Returns:
      For one array, its [`AdamPState`][adamp_core.AdamPState] or
      [`SGDPState`][adamp_core.SGDPState] (zeros, step 0); for a sequence, a list of
      them in the same order, or with ``packed`` one state for the list.

    Raises:
      TypeError: a non-floating array; with ``packed``, arrays of several dtypes.
      ValueError: with ``packed``, a single array, an empty list, or several devices.
    """
    make = init_adamp if _state_type(config) is AdamPState else init_sgdp
    arrays, many = _as_list(params)
    if packed and (not many or not arrays):
        raise ValueError("packed=True packs a non-empty list or tuple of arrays")
    xp = namespace_of(*arrays)
    for i, p in enumerate(arrays):
        _check_float(p, f"params[{i}]" if many else "params", xp)
    if packed:
        for i, p in enumerate(arrays[1:], 1):
            _check_like_packed(p, arrays[0], f"params[{i}]")
        total = sum(math.prod(p.shape) for p in arrays)
        like = arrays[0]
        return make(
            xp.zeros((total,), dtype=like.dtype, device=array_api_compat.device(like)), xp=xp
        )
    states = [make(p, xp=xp) for p in arrays]
    return states if many else states[0]


def _check_like_packed(p: Array, first: Array, name: str) -> None:
    if p.dtype != first.dtype:
        raise TypeError(
            f"a packed state holds one dtype: {name} is {p.dtype}, params[0] {first.dtype}; "
            "pack the arrays of each dtype apart"
        )
    dp, df = array_api_compat.device(p), array_api_compat.device(first)
    if dp is not None and df is not None and dp != df:
        raise ValueError(
            f"a packed state lives on one device: {name} is on {dp}, params[0] on {df}"
        )


def _check_float(p: Array, name: str, xp: Any) -> None:
    if not xp.isdtype(p.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype, got {p.dtype}")


def _check_like(x: Array, p: Array, name: str) -> None:
    if tuple(x.shape) != tuple(p.shape):
        raise ValueError(f"{name} has shape {tuple(x.shape)}, its parameter {tuple(p.shape)}")
    if x.dtype != p.dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, its parameter {p.dtype}")
    dx, dp = array_api_compat.device(x), array_api_compat.device(p)
    if dx is not None and dp is not None and dx != dp:
        raise ValueError(f"{name} is on device {dx}, its parameter on {dp}")


def _not_writable(a: Array) -> str | None:
    """Why ``a`` cannot be written in place, or None: read-only (immutable arrays, read-only views),
    an autograd leaf that requires grad, or memory shared between elements (a zero stride
    on an axis longer than 1, as an expanded array has)."""
    if not array_api_compat.is_writeable_array(a):
        return "is read-only (an immutable array, or a read-only view)"
    if getattr(a, "requires_grad", False) and getattr(a, "is_leaf", False):
        return "is an autograd leaf that requires grad"
    strides = getattr(a, "strides", None)
    if strides is None and callable(getattr(a, "stride", None)):
        strides = a.stride()
    shared = any(st == 0 and n > 1 for st, n in zip(strides or (), a.shape))
    if shared and 0 not in tuple(a.shape):  # an empty array has no elements to share
        return "shares memory between its elements (a zero stride: expanded or broadcast)"
    return None


def _validate(
    params: list[Array],
    grads: list[Array | None],
    states: list[Any],
    config: Config,
    many: bool,
    inplace: bool,
) -> Any:
    state_type = _state_type(config)
    if not (len(params) == len(grads) == len(states)):
        raise ValueError(
            f"params, grads and state differ in length: {len(params)}, {len(grads)}, {len(states)}"
        )
    for i, s in enumerate(states):
        if not isinstance(s, state_type):
            raise TypeError(
                f"state[{i}] is a {type(s).__name__}; {type(config).__name__} needs "
                f"{state_type.__name__} (from adamp_core.init)"
            )
    active = [i for i, g in enumerate(grads) if g is not None]
    arrays = [a for i in active for a in (params[i], grads[i], *states[i])]
    xp = namespace_of(*arrays) if arrays else None
    for i in active:
        tag = f"[{i}]" if many else ""
        p, s = params[i], states[i]
        _check_float(p, f"params{tag}", xp)
        _check_like(grads[i], p, f"grads{tag}")
        for field in state_type._fields:
            if field == "step":
                _check_step(s.step, f"state{tag}.step", xp)
                continue
            _check_like(getattr(s, field), p, f"state{tag}.{field}")
        if inplace:
            _check_writable(
                [(f"params{tag}", p), *((f"{f}{tag}", a) for f, a in zip(state_type._fields, s))]
            )
    return xp


def _check_step(step: Any, name: str, xp: Any) -> None:
    if not hasattr(step, "shape") or not hasattr(step, "dtype"):
        raise TypeError(
            f"{name} must be a 0-d floating array (from adamp_core.init), got {type(step).__name__}"
        )
    if tuple(step.shape) != () or not xp.isdtype(step.dtype, "real floating"):
        raise ValueError(f"{name} must be a 0-d floating array")


def _check_writable(named: list[tuple[str, Array]]) -> None:
    for name, a in named:
        problem = _not_writable(a)
        if problem:
            raise ValueError(
                f"inplace=True needs writable arrays, but {name} {problem} "
                f"({type(a).__module__}.{type(a).__name__}); use inplace=False and keep "
                "the returned arrays"
            )


def step(
    params: Array | Sequence[Array],
    grads: Array | Sequence[Array | None] | None,
    state: State | Sequence[State],
    config: Config,
    *,
    inplace: bool = False,
) -> tuple[Any, Any]:
    """One AdamP or SGDP step (chosen by the type of ``config``) on raw arrays.

    Args:
      params: one array, or a list/tuple of arrays, from any array-API library
        (any that ``array_api_compat`` supports), real floating dtypes.
      grads: matching gradients; a ``None`` gradient leaves its parameter and
        state untouched.
      state: from [`init`][adamp_core.init]: one state, or a sequence of them, or for a
        list of arrays one packed state (``init(..., packed=True)``), which steps the
        whole list at once and needs every gradient.
      config: [`AdamPConfig`][adamp_core.AdamPConfig] or [`SGDPConfig`][adamp_core.SGDPConfig].
      inplace: write the new values into ``params`` and ``state``, which must be
        writable; immutable arrays raise ``ValueError``.

    Returns:
      ``(new_params, new_state)``, shaped like the inputs (one array and one
      state, or lists). Without ``inplace`` the inputs are not modified.

    Raises:
      TypeError: arrays from different libraries, a non-floating parameter,
        a dtype mismatch, or a state of the wrong kind.
      ValueError: a shape or device mismatch, different lengths,
        ``inplace=True`` with read-only arrays, or a ``None`` gradient with a packed
        state.

    Everything is checked before anything is written, so a step that raises
    leaves every parameter and state array as it was.
    """
    if isinstance(state, (AdamPState, SGDPState)) and isinstance(params, (list, tuple)):
        return _packed_step(params, grads, state, config, inplace)
    param_list, many = _as_list(params)
    grad_list, grads_many = _as_list(grads)
    state_list, states_many = _as_list(state)
    if not (many == grads_many == states_many):
        raise ValueError("params, grads and state must all be sequences, or all single")
    xp = _validate(param_list, grad_list, state_list, config, many, inplace)

    update = adamp_update if isinstance(config, AdamPConfig) else sgdp_update
    hyper = config.update_kwargs()
    new_params, new_states = list(param_list), list(state_list)
    for i, (p, g, s) in enumerate(zip(param_list, grad_list, state_list)):
        if g is not None:
            new_params[i], new_states[i], _ = update(p, g, s, **hyper, inplace=inplace, xp=xp)
    if not many:
        return new_params[0], new_states[0]
    return (tuple(new_params) if isinstance(params, tuple) else new_params), new_states


#: Packings made, by shapes, dtype, device and library (a few lists per process)
_PACKINGS: dict[tuple[Any, ...], Packing] = {}


def _packing(params: list[Array], xp: Any) -> Packing:
    first = params[0]
    key = (
        tuple(tuple(p.shape) for p in params),
        str(first.dtype),
        repr(array_api_compat.device(first)),
        getattr(xp, "__name__", type(xp).__name__),
    )
    if key not in _PACKINGS:
        if len(_PACKINGS) >= 16:
            _PACKINGS.pop(next(iter(_PACKINGS)))
        dtype = compute_dtype(first.dtype, xp)
        _PACKINGS[key] = Packing([tuple(p.shape) for p in params], like=first, dtype=dtype)
    return _PACKINGS[key]


def _packed_step(
    params: Sequence[Array], grads: Any, state: State, config: Config, inplace: bool
) -> tuple[Any, State]:
    """``step`` of a list with one packed state (from ``init(..., packed=True)``)."""
    state_type = _state_type(config)
    if not isinstance(state, state_type):
        raise TypeError(
            f"state is a {type(state).__name__}; {type(config).__name__} needs "
            f"{state_type.__name__} (from adamp_core.init)"
        )
    if not isinstance(grads, (list, tuple)) or len(grads) != len(params) or not params:
        raise ValueError("a packed state steps a non-empty list: grads must be a list as long")
    missing = [i for i, g in enumerate(grads) if g is None]
    if missing:
        raise ValueError(
            f"a packed state steps every array at once (one step count): grads[{missing[0]}] "
            "is None; give every gradient, or keep per-array states (init without packed)"
        )
    as_tuple = isinstance(params, tuple)
    params, grads = list(params), list(grads)
    xp = namespace_of(*params, *grads, *state)
    total = 0
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        _check_float(p, f"params[{i}]", xp)
        if i:
            _check_like_packed(p, params[0], f"params[{i}]")
        _check_like(g, p, f"grads[{i}]")
        total += math.prod(p.shape)
    for field, a in zip(state_type._fields, state, strict=True):
        if field == "step":
            _check_step(a, "state.step", xp)
            continue
        if tuple(a.shape) != (total,):
            raise ValueError(
                f"state.{field} has shape {tuple(a.shape)}; a packed state of these params "
                f"has ({total},) (from adamp_core.init(params, config, packed=True))"
            )
        if a.dtype != params[0].dtype:
            raise TypeError(f"state.{field} has dtype {a.dtype}, the params {params[0].dtype}")
    if inplace:
        named = [(f"params[{i}]", p) for i, p in enumerate(params)]
        _check_writable(named + [(f"state.{f}", a) for f, a in zip(state_type._fields, state)])
    packing = _packing(params, xp)
    update = adamp_update if isinstance(config, AdamPConfig) else sgdp_update
    new_flat, new_state, _ = update(
        packing.pack(params, xp),
        packing.pack(grads, xp),
        state,
        **config.update_kwargs(),
        inplace=inplace,
        xp=packing.namespace(xp),
    )
    new_params = packing.unpack(new_flat, xp)
    if inplace:
        for p, new in zip(params, new_params, strict=True):
            p[...] = new
        new_params = params
    return (tuple(new_params) if as_tuple else new_params), new_state
