"""The AdamP/SGDP projection, in the paper's order: channel test, layer test, coefficients,
weight-decay ratio.

A weight ``w`` (``ndim >= 2``) has output channels ``w_i`` along its ``channel_axis`` (0 in
the official package's layout, output channels first; -1 for layouts that put them last). With its
gradient ``g``
and the update direction ``u``:

1. channel test: the channel view fires when ``max_i |cos(g_i, w_i)| < delta / sqrt(fan)``,
   ``fan`` being the size of one channel;
2. layer test: otherwise the layer view fires when ``|cos(g, w)| < delta / sqrt(size)``;
3. coefficients: where a view fired, ``u -= w_hat <w_hat, u>`` with ``w_hat = w / (|w|+eps)``
   per channel (channel view) or for the whole weight (layer view), that is
   ``u -= coef * w`` with ``coef = <w, u> / (|w|+eps)^2``;
4. weight-decay ratio: ``r = wd_ratio`` where a view fired, else 1.

The cosine is the official package's:
``<x, y> / (max(|x|, eps) * max(|y|, eps))``. Both tests are computed from one set of
per-channel sums (the layer sums are their sums) and the outcome is selected with
``xp.where``: no Python branch on array values, so no host sync, and the code traces under
any tracing compiler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from .kernels import row_dots, skip_unless
from .namespace import compute_dtype, namespace_of, zeros_beside

__all__ = [
    "CHANNEL",
    "LAYER",
    "NONE",
    "Decision",
    "Projection",
    "branch",
    "channel_view_shape",
    "decay_ratio",
    "decide",
    "normalize_axis",
    "project",
    "projection",
    "radial_coefficients",
    "threshold",
    "unprojected_like",
]

Array = Any

#: Values of [`Projection`][adamp_core.Projection]`.branch`.
NONE, CHANNEL, LAYER = 0, 1, 2


class Projection(NamedTuple):
    """What the projection decided for one weight.

    ``coef`` has ``param.ndim`` dimensions, all 1 but the channel axis (``rows`` long),
    and the compute dtype: the radial component of the update is ``coef * param``, so
    the projected update is ``update - coef * param`` (see [`project`][adamp_core.project]).
    ``coef`` is
    zero where nothing is projected.
    """

    #: ``<w_i,u_i>/(|w_i|+eps)^2`` (channel view) or ``<w,u>/(|w|+eps)^2`` (layer view)
    coef: Array
    ratio: Array  #: 0-d; ``wd_ratio`` if projected, else 1: the weight-decay multiplier
    branch: Array  #: 0-d int32: ``NONE``, ``CHANNEL`` or ``LAYER``
    #: 0-d: the deciding ``|cos|``: the channel maximum if the channel view fired, else
    #: the layer cosine; NaN where nothing was tested (``ndim < 2`` or empty)
    cosine: Array


def normalize_axis(channel_axis: int, ndim: int) -> int:
    """``channel_axis`` in ``[0, ndim)`` (negative values count from the end).

    Raises:
      ValueError: the axis does not exist for ``ndim`` dimensions.
    """
    if not -ndim <= channel_axis < ndim:
        raise ValueError(f"channel_axis {channel_axis} is out of range for a {ndim}-D weight")
    return channel_axis % ndim


def channel_view_shape(shape: tuple[int, ...], channel_axis: int | None = 0) -> tuple[int, ...]:
    """The 2-D shape in which a weight of ``shape`` is tested: ``(rows, fan)`` for channels
    first, ``(fan, rows)`` for channels last; ``shape`` itself for fewer than 2 dimensions,
    a channel axis in the middle (tested in its own shape) or none (never tested)."""
    if len(shape) < 2 or channel_axis is None:
        return tuple(shape)
    axis = normalize_axis(channel_axis, len(shape))
    if axis == 0:
        return (shape[0], math.prod(shape[1:]))
    if axis == len(shape) - 1:
        return (math.prod(shape[:-1]), shape[-1])
    return tuple(shape)


def _channel_dots(x: Array, y: Array, axis: int, xp: Any) -> Array:
    """``<x_i, y_i>`` per channel ``i`` of ``axis``, shape ``(rows,)``."""
    if x.ndim == 2:
        return xp.vecdot(x, y, axis=_summed_axis(axis))
    rest = tuple(a for a in range(x.ndim) if a != axis)
    return xp.sum(x * y, axis=rest)


def _summed_axis(channel_axis: int) -> int:
    """The axis summed over in the 2-D view: -1 for ``(rows, fan)``, -2 for ``(fan, rows)``."""
    return -1 if channel_axis == 0 else -2


def _in_view(x: Array, axis: int, dtype: Any, xp: Any) -> Array:
    x = xp.reshape(x, channel_view_shape(tuple(x.shape), axis))
    return x if x.dtype == dtype else xp.astype(x, dtype)


def _abs_cosine(wg: Array, ww: Array, gg: Array, eps: float | Array, xp: Any) -> Array:
    # the official package's cosine: <x,y> / (max(|x|, eps) * max(|y|, eps))
    return xp.abs(wg) / (_at_least(xp.sqrt(ww), eps, xp) * _at_least(xp.sqrt(gg), eps, xp))


def _at_least(x: Array, bound: float | Array, xp: Any) -> Array:
    return xp.clip(x, min=bound) if isinstance(bound, (int, float)) else xp.maximum(x, bound)


def threshold(delta: float | Array, n: int | Array, xp: Any = None) -> float | Array:
    """The tests' bound ``delta / sqrt(n)``, ``n`` the length of the rows compared (``fan``
    for the channel test, ``size`` for the layer test): a Python int, or an array of them
    (one per weight, then ``xp`` is their namespace)."""
    return delta / math.sqrt(n) if isinstance(n, int) else delta / xp.sqrt(n)


def deciding_threshold(
    shape: tuple[int, ...], taken: int, delta: float, channel_axis: int | None = 0
) -> float:
    """The bound that a [`Projection`][adamp_core.Projection]'s ``cosine`` was compared
    with, for a weight of ``shape`` whose ``branch`` is ``taken`` (a Python int):
    ``delta / sqrt(fan)`` where the channel view fired, else ``delta / sqrt(size)`` (the
    layer test was the last made); NaN where nothing was tested. For reports, on the host."""
    size = math.prod(shape)
    if len(shape) < 2 or size == 0 or channel_axis is None:
        return math.nan
    rows = shape[normalize_axis(channel_axis, len(shape))]
    return threshold(delta, size // rows if taken == CHANNEL else size)


def _radial_coefficient(wu: Array, ww: Array, eps: float | Array, xp: Any) -> Array:
    """``<w,u> / (|w|+eps)^2``, divided twice by ``|w|+eps`` so that it overflows no sooner
    than the official ``<w_hat, u>``; 0 where ``|w|`` overflowed (``w_hat`` is 0 there)."""
    norm = xp.sqrt(ww) + eps
    return xp.where(xp.isinf(norm), 0.0, wu / norm / norm)


class Decision(NamedTuple):
    """The outcome of the two tests for one weight (0-d fields) or a batch of weights."""

    channel: Array  #: bool: the channel view fired
    layer: Array  #: bool: the layer view fired (and the channel view did not)
    cosine: Array  #: the deciding ``|cos|`` (the channel maximum if it fired, else the layer's)
    ww_layer: Array  #: ``<w, w>``, the sum of the per-channel ``<w_i, w_i>``


def decide(
    ww: Array,
    gg: Array,
    wg: Array,
    *,
    fan: int | Array,
    size: int | Array,
    delta: float | Array,
    eps: float | Array,
    xp: Any,
) -> Decision:
    """Steps 1 and 2 from the per-channel sums ``<w_i,w_i>``, ``<g_i,g_i>``, ``<w_i,g_i>``.

    The channels are the last axis: ``(rows,)`` for one weight, or ``(weights, rows)`` for
    a batch whose shorter weights are padded with zero sums (their cosine is 0, and they add
    nothing to the layer sums). ``fan`` and ``size``, the number of elements of a channel
    and of the weight, are Python ints or arrays of one per weight.
    """
    # 1. Channel test: max_i |cos(g_i, w_i)| < delta / sqrt(fan)
    cos_channel = xp.max(_abs_cosine(wg, ww, gg, eps, xp), axis=-1)
    channel = cos_channel < threshold(delta, fan, xp)
    # 2. Layer test, where the channel test failed: |cos(g, w)| < delta / sqrt(size)
    ww_layer = xp.sum(ww, axis=-1)
    cos_layer = _abs_cosine(xp.sum(wg, axis=-1), ww_layer, xp.sum(gg, axis=-1), eps, xp)
    layer = xp.logical_and(xp.logical_not(channel), cos_layer < threshold(delta, size, xp))
    return Decision(channel, layer, xp.where(channel, cos_channel, cos_layer), ww_layer)


def radial_coefficients(
    decision: Decision, wu: Array, ww: Array, *, eps: float | Array, xp: Any
) -> Array:
    """Step 3: per channel, ``coef`` such that ``u - coef * w`` has no component along
    ``w_hat = w / (|w| + eps)``: ``<w_i,u_i>/(|w_i|+eps)^2`` where the channel view fired,
    ``<w,u>/(|w|+eps)^2`` where the layer view did, 0 elsewhere. Shapes as in
    [`decide`][adamp_core.radial.decide].
    """
    by_channel = _radial_coefficient(wu, ww, eps, xp)
    by_layer = xp.expand_dims(
        _radial_coefficient(xp.sum(wu, axis=-1), decision.ww_layer, eps, xp), axis=-1
    )
    channel, layer = (xp.expand_dims(t, axis=-1) for t in (decision.channel, decision.layer))
    return xp.where(channel, by_channel, xp.where(layer, by_layer, 0.0))


def decay_ratio(decision: Decision, wd_ratio: float | Array, dtype: Any, xp: Any) -> Array:
    """Step 4: ``wd_ratio`` where a view fired, else 1 (exactly either way)."""
    fired = xp.astype(xp.logical_or(decision.channel, decision.layer), dtype)
    return wd_ratio * fired + (1.0 - fired)


def branch(decision: Decision, xp: Any) -> Array:
    """``CHANNEL``, ``LAYER`` or ``NONE``, int32."""
    return xp.where(decision.layer, LAYER, xp.astype(decision.channel, xp.int32) * CHANNEL)


def unprojected_like(zeros: Array, xp: Any) -> Projection:
    """The projection of an array that is not tested (fewer than 2 dimensions, no elements,
    or no channel axis): coefficient 0, decay ratio 1, branch ``NONE``, cosine NaN.

    Args:
      zeros: zeros of the compute dtype, of the shape every field takes (``()`` for one
        array; ``(arrays,)`` for a list, as [`decided`][adamp_core.batched.decided] returns).
      xp: their namespace.
    """
    return Projection(
        coef=zeros,
        ratio=xp.ones_like(zeros),
        branch=xp.full_like(zeros, NONE, dtype=xp.int32),
        cosine=xp.full_like(zeros, math.nan),
    )


def _unprojected(param: Array, xp: Any) -> Projection:
    zero = zeros_beside(param, (), compute_dtype(param.dtype, xp), xp)
    proj = unprojected_like(zero, xp)
    return proj._replace(coef=xp.reshape(zero, (1,) * param.ndim))


def projection(
    param: Array,
    grad: Array,
    update: Array | Callable[[], Array],
    *,
    delta: float | Array,
    wd_ratio: float | Array,
    eps: float | Array,
    channel_axis: int | None = 0,
    xp: Any = None,
) -> Projection:
    """The projection of ``update`` for the weight ``param`` with gradient ``grad``.

    Weights with fewer than 2 dimensions are never projected, nor are empty weights (the
    official code crashes on those; here the result is the plain update), nor weights
    whose ``channel_axis`` is ``None``. Only shapes select code paths, never values.

    ``update`` is read only for ``<w_i, u_i>``, after both tests. It may be a function of
    no arguments that returns it: a namespace that can skip work
    ([`skip_unless`][adamp_core.kernels.skip_unless]) then calls it only where a view fired.

    Args:
      param, grad, update: arrays of one shape and dtype (``update`` or a function
        returning it).
      delta, wd_ratio, eps: Python floats or 0-d arrays (as in the configs).
      channel_axis: the axis of the output channels (negative counts from the end), or
        ``None``: never projected.
      xp: the namespace (default: the arrays'); see
        [`with_overrides`][adamp_core.with_overrides].

    Returns:
      A [`Projection`][adamp_core.Projection]; apply it with [`project`][adamp_core.project].
    """
    xp = namespace_of(param, grad) if xp is None else xp
    supplied = getattr(xp, "projection", None)
    if supplied is not None:  # a namespace's own form (see adamp_core.kernels)
        return supplied(
            param, grad, update, delta=delta, wd_ratio=wd_ratio, eps=eps, channel_axis=channel_axis
        )
    shape = tuple(param.shape)
    if len(shape) < 2 or math.prod(shape) == 0 or channel_axis is None:
        return _unprojected(param, xp)
    axis = normalize_axis(channel_axis, len(shape))
    dtype = compute_dtype(param.dtype, xp)
    w, g = _in_view(param, axis, dtype, xp), _in_view(grad, axis, dtype, xp)
    view_axis = axis if w.ndim > 2 else min(axis, 1)
    rows, size = shape[axis], math.prod(shape)

    # Per output channel i: <w_i, w_i>, <g_i, g_i>, <w_i, g_i>, each (rows,)
    if w.ndim == 2:
        ww, gg, wg = row_dots(w, g, axis=_summed_axis(view_axis), xp=xp)
    else:
        ww, gg, wg = (_channel_dots(a, b, view_axis, xp) for a, b in ((w, w), (g, g), (w, g)))

    decision = decide(ww, gg, wg, fan=size // rows, size=size, delta=delta, eps=eps, xp=xp)

    def coefficients() -> Array:
        u = _in_view(update() if callable(update) else update, axis, dtype, xp)
        wu = _channel_dots(w, u, view_axis, xp)
        return radial_coefficients(decision, wu, ww, eps=eps, xp=xp)

    projected = xp.logical_or(decision.channel, decision.layer)
    coef = skip_unless(projected, coefficients, lambda: xp.zeros_like(ww), xp=xp)
    coef = xp.reshape(coef, tuple(rows if a == axis else 1 for a in range(len(shape))))
    ratio = decay_ratio(decision, wd_ratio, dtype, xp)
    return Projection(coef, ratio, branch(decision, xp), decision.cosine)


def project(update: Array, param: Array, proj: Projection, *, xp: Any = None) -> Array:
    """``update - coef * param``: the update with its radial component removed.

    Returns a new array of ``update``'s dtype and shape; where nothing was
    projected, ``coef`` is 0 and the values equal ``update``'s.
    """
    xp = namespace_of(update, param) if xp is None else xp
    coef = proj.coef if proj.coef.dtype == update.dtype else xp.astype(proj.coef, update.dtype)
    return update - coef * param
