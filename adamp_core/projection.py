"""The AdamP/SGDP projection, branch-free.

The official code tests the channel view, then the layer view, with Python
``if``s on array values. Here both tests are computed as arrays from one set of
per-row sums, and the outcome is selected with ``xp.where``: no host sync, and
the code traces under ``jax.jit`` and ``torch.compile``.

For a weight ``w`` of shape ``(rows, ...)`` viewed as ``(rows, fan)`` with the
gradient ``g`` and the update direction ``u``, the tests need the per-row sums
``<w,w>``, ``<g,g>`` and ``<w,g>``; the layer-view sums are the sums of these
rows, so the layer test costs no second pass over memory. The coefficients then
need ``<w,u>``, and only where a view fired: a namespace that can skip work
(:func:`~adamp_core.kernels.compute_if`, JAX) reads ``u`` only then.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from .kernels import compute_if, row_dots
from .namespace import compute_dtype, full_like_scalar, namespace_of, small_array_device

__all__ = [
    "CHANNEL",
    "LAYER",
    "NONE",
    "Projection",
    "RowSums",
    "project",
    "projection",
    "projection_from_sums",
    "row_sums",
]

Array = Any

#: Values of :attr:`Projection.branch`.
NONE, CHANNEL, LAYER = 0, 1, 2


class RowSums(NamedTuple):
    """Per-output-channel sums of a weight viewed as ``(rows, fan)``, each ``(rows,)``."""

    ww: Array  #: ``<w_i, w_i>``
    gg: Array  #: ``<g_i, g_i>``
    wg: Array  #: ``<w_i, g_i>``
    wu: Array  #: ``<w_i, u_i>``


class Projection(NamedTuple):
    """What the projection decided for one weight.

    ``coef`` has shape ``(rows, 1, ..., 1)`` (``param.ndim`` dimensions) and the
    compute dtype: the radial component of the update is ``coef * param``, so
    the projected update is ``update - coef * param`` (see :func:`project`).
    ``coef`` is zero where nothing is projected.
    """

    #: ``(rows, 1, ..., 1)``: ``<w_i,u_i>/(|w_i|+eps)^2`` (channel), ``<w,u>/(|w|+eps)^2`` (layer)
    coef: Array
    ratio: Array  #: 0-d; ``wd_ratio`` if projected, else 1: the weight-decay multiplier
    branch: Array  #: 0-d int32: :data:`NONE`, :data:`CHANNEL` or :data:`LAYER`
    #: 0-d: the deciding ``|cos|``: the channel max if channel fired, else the layer
    #: cosine; NaN where nothing was tested (``ndim < 2`` or empty)
    cosine: Array


def _rows(x: Array, xp: Any, dtype: Any) -> Array:
    x = xp.reshape(x, (x.shape[0], -1))
    return x if x.dtype == dtype else xp.astype(x, dtype)


def row_sums(param: Array, grad: Array, update: Array, *, xp: Any = None) -> RowSums:
    """The four per-row dot products the projection needs, in one pass.

    Args:
      param, grad, update: arrays of one shape ``(rows, ...)`` with ``ndim >= 2``.
      xp: the namespace to use (default: the arrays'); pass
        :func:`~adamp_core.namespace.with_overrides` output to swap ``vecdot``.

    Returns:
      :class:`RowSums` of shape ``(rows,)`` in the compute dtype (float32 for
      float16/bfloat16 inputs).
    """
    xp = namespace_of(param, grad, update) if xp is None else xp
    dtype = compute_dtype(param.dtype, xp)
    w, g, u = (_rows(a, xp, dtype) for a in (param, grad, update))
    return RowSums(*row_dots(w, g, xp=xp), xp.vecdot(w, u))


def _abs_cosine(wg: Array, ww: Array, gg: Array, eps: Array, xp: Any) -> Array:
    # torch.nn.functional.cosine_similarity: <x,y> / (max(|x|, eps) * max(|y|, eps))
    return xp.abs(wg) / (xp.maximum(xp.sqrt(ww), eps) * xp.maximum(xp.sqrt(gg), eps))


def projection_from_sums(
    sums: RowSums,
    shape: tuple[int, ...],
    *,
    delta: float | Array,
    wd_ratio: float | Array,
    eps: float | Array,
    xp: Any = None,
) -> Projection:
    """Decide the branch and the projection coefficients from :class:`RowSums`.

    Follows ``adamp`` 0.3.0: the channel view fires when
    ``max_i |cos(g_i, w_i)| < delta / sqrt(fan)`` with ``fan = prod(shape[1:])``;
    otherwise the layer view fires when ``|cos(g, w)| < delta / sqrt(size)``;
    otherwise nothing is projected. Both tests are computed; ``xp.where`` picks.

    Args:
      sums: per-row sums of a weight of ``shape`` (``ndim >= 2``, size > 0).
      shape: the weight's shape.
      delta, wd_ratio, eps: Python floats or 0-d arrays.
    """
    xp = namespace_of(sums.ww) if xp is None else xp
    tests = _tests(sums.ww, sums.gg, sums.wg, shape, delta=delta, eps=eps, xp=xp)
    return _decided(tests, _coefficients(tests, sums.wu, xp), shape, wd_ratio=wd_ratio, xp=xp)


class _Tests(NamedTuple):
    channel: Array  #: 0-d bool: the channel view fires
    layer: Array  #: 0-d bool: the layer view fires (and the channel view does not)
    cosine: Array  #: 0-d: the deciding |cos| (see Projection.cosine)
    ww: Array  #: (rows,): <w_i, w_i>
    ww_layer: Array  #: 0-d: <w, w>
    eps: Array  #: 0-d eps in the compute dtype


def _tests(
    ww: Array, gg: Array, wg: Array, shape: tuple, *, delta: Any, eps: Any, xp: Any
) -> _Tests:
    """The channel and layer tests from the three sums that do not involve the update."""
    size = math.prod(shape)
    eps_a = full_like_scalar(eps, ww, xp)
    cos_channel = xp.max(_abs_cosine(wg, ww, gg, eps_a, xp))
    channel = cos_channel < delta / math.sqrt(size // shape[0])
    # One reduction of the stacked row sums: summing each separately lets XLA fuse every
    # layer sum back into its producer and re-read the whole weight for it.
    layer_sums = xp.sum(xp.stack((ww, gg, wg)), axis=1)
    ww_l, gg_l, wg_l = (layer_sums[i] for i in range(3))
    cos_layer = _abs_cosine(wg_l, ww_l, gg_l, eps_a, xp)
    layer = xp.logical_and(xp.logical_not(channel), cos_layer < delta / math.sqrt(size))
    cosine = xp.where(channel, cos_channel, cos_layer)
    return _Tests(channel, layer, cosine, ww, ww_l, eps_a)


def _coefficients(tests: _Tests, wu: Array, xp: Any) -> Array:
    """``(rows,)``: ``<w_i,u_i>/(|w_i|+eps)^2`` (channel), ``<w,u>/(|w|+eps)^2`` (layer), or 0."""
    # p_n = w / (|w| + eps);  u -= p_n * <p_n, u>  ==  u -= w * <w,u> / (|w| + eps)^2
    coef_channel = wu / (xp.sqrt(tests.ww) + tests.eps) ** 2
    # Summed with a copy of itself stacked: XLA rewrites a plain sum of the row sums into a
    # sum over the whole weight, for which it stores and re-reads the product w * u.
    wu_layer = xp.sum(xp.stack((wu, wu)), axis=1)[0]
    coef_layer = wu_layer / (xp.sqrt(tests.ww_layer) + tests.eps) ** 2
    zero = full_like_scalar(0.0, wu, xp)
    return xp.where(tests.channel, coef_channel, xp.where(tests.layer, coef_layer, zero))


def _decided(tests: _Tests, coef: Array, shape: tuple, *, wd_ratio: Any, xp: Any) -> Projection:
    """The :class:`Projection` from the tests and the ``(rows,)`` coefficients."""
    coef = xp.reshape(coef, (shape[0],) + (1,) * (len(shape) - 1))
    projected = xp.logical_or(tests.channel, tests.layer)
    one = full_like_scalar(1.0, tests.ww, xp)
    ratio = xp.where(projected, full_like_scalar(wd_ratio, tests.ww, xp), one)
    channel, layer = (xp.astype(t, xp.int32) for t in (tests.channel, tests.layer))
    return Projection(coef, ratio, channel * CHANNEL + layer * LAYER, tests.cosine)


def _unprojected(param: Array, xp: Any) -> Projection:
    dtype = compute_dtype(param.dtype, xp)
    one = full_like_scalar(1.0, param, xp, dtype)
    return Projection(
        coef=xp.zeros((1,) * param.ndim, dtype=dtype, device=small_array_device(param)),
        ratio=one,
        branch=xp.astype(one, xp.int32) * NONE,
        cosine=one * math.nan,
    )


def _shared_unprojected(fn: Any) -> Any:
    """``fn`` that builds the constant, never-projected result once per dtype, device and
    rank: in a list most arrays are biases and norm weights, and a fresh set of small
    arrays for each costs more than their whole update. The results are only read."""
    made: dict[Any, Projection] = {}

    def one(param: Array, grad: Array, update: Array, *, xp: Any, **kwargs: Any) -> Projection:
        if param.ndim >= 2 and math.prod(param.shape) > 0:
            return fn(param, grad, update, xp=xp, **kwargs)
        key = (param.dtype, getattr(param, "device", None), param.ndim)  # standard attribute
        if key not in made:
            made[key] = _unprojected(param, xp)
        return made[key]

    return one


def projection(
    param: Array,
    grad: Array,
    update: Array | Callable[[], Array],
    *,
    delta: float | Array,
    wd_ratio: float | Array,
    eps: float | Array,
    xp: Any = None,
) -> Projection:
    """The projection of ``update`` for the weight ``param`` with gradient ``grad``.

    If ``xp`` is a namespace over lists of arrays (it has ``map_arrays``, as the
    PyTorch adapter's foreach namespace does), the projection of each element is
    computed and the fields come back as lists.

    Weights with fewer than 2 dimensions are never projected, nor are empty
    weights (the official code crashes on those; here nothing is projected and
    weight decay is not scaled, so the result is the plain update). The test
    is branch-free on values; only shapes select code paths.

    ``update`` is read only for ``<w_i, u_i>``, after both tests, and only where a view
    fired if the namespace skips work (:func:`~adamp_core.kernels.compute_if`). It may be
    a function of no arguments that returns it: under JAX the update is then computed
    inside that branch, where XLA need not store it (an array computed outside would be).

    Args:
      param, grad, update: arrays of one shape and dtype (``update`` or a function
        returning it; not with a list namespace).
      delta, wd_ratio, eps: Python floats or 0-d arrays (as in the configs).
      xp: namespace override (see :func:`row_sums`).

    Returns:
      A :class:`Projection`; apply it with :func:`project`.
    """
    xp = namespace_of(param, grad, update) if xp is None else xp
    map_arrays = getattr(xp, "map_arrays", None)
    if map_arrays is not None:  # a namespace whose arrays are lists of arrays (torch foreach)
        return map_arrays(
            _shared_unprojected(projection),
            param,
            grad,
            update,
            delta=delta,
            wd_ratio=wd_ratio,
            eps=eps,
        )
    if param.ndim < 2 or math.prod(param.shape) == 0:
        return _unprojected(param, xp)
    shape, dtype = tuple(param.shape), compute_dtype(param.dtype, xp)
    w, g = _rows(param, xp, dtype), _rows(grad, xp, dtype)
    ww, gg, wg = row_dots(w, g, xp=xp)
    tests = _tests(ww, gg, wg, shape, delta=delta, eps=eps, xp=xp)

    def coef() -> Array:
        u = _rows(update() if callable(update) else update, xp, dtype)
        return _coefficients(tests, xp.vecdot(w, u), xp)

    projected = xp.logical_or(tests.channel, tests.layer)
    coef_rows = compute_if(projected, coef, lambda: xp.zeros_like(ww), xp=xp)
    return _decided(tests, coef_rows, shape, wd_ratio=wd_ratio, xp=xp)


def project(update: Array, param: Array, proj: Projection, *, xp: Any = None) -> Array:
    """``update - coef * param``: the update with its radial component removed.

    Returns a new array of ``update``'s dtype and shape; where nothing was
    projected, ``coef`` is 0 and the values equal ``update``'s.
    """
    xp = namespace_of(update, param) if xp is None else xp
    coef = proj.coef if proj.coef.dtype == update.dtype else xp.astype(proj.coef, update.dtype)
    return update - coef * param
