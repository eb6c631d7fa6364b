"""Kernels with array-API definitions that a namespace may replace with faster ones.

The core writes its in-place arithmetic (``inplace=True``), the projection's per-row sums
([`row_dots`][adamp_core.kernels.row_dots], and over a list
[`list_row_dots`][adamp_core.kernels.list_row_dots]) and its conditional work
([`skip_unless`][adamp_core.kernels.skip_unless]) through these few functions.
Each is defined here with array-API operators; a namespace that has an attribute of the same
name supplies its own version instead (an adapter may map the in-place ones to native
in-place operations, which avoid the temporaries that ``y += a * x`` allocates, or compute
``row_dots`` in one pass). They are kernels, not math: which quantities are combined, with which
coefficients, is decided by
[`adamp_core.updates`][adamp_core.updates] and ``adamp_core.radial``, and every replacement must
compute the same values as the definition here (up to the order of summation).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "list_row_dots",
    "quotient_",
    "row_dots",
    "scale_add_",
    "scale_addcmul_",
    "skip_unless",
    "sub_product_",
]

#: Every kernel name a namespace may supply: the seven here, ``adam_step_``, a fused form of
#: [`adamp_core.updates.adam_step`][adamp_core.updates.adam_step], ``projection``, a form of
#: [`adamp_core.projection`][adamp_core.projection] (e.g. over lists of arrays), both defined
#: where their math is, and ``zeros_beside``, how small arrays are placed beside a weight
#: (``adamp_core.namespace.zeros_beside``).
REPLACEABLE = (*__all__, "adam_step_", "projection", "zeros_beside")

Array = Any


def _kernel(xp: Any, name: str) -> Any:
    return getattr(xp, name, None)


def scaled(a: Any, x: Array) -> Array:
    """``a * x``, or ``x`` itself when ``a`` is the Python number 1 (no pass over ``x``)."""
    return x if isinstance(a, (int, float)) and a == 1 else a * x


def scale_add_(y: Array, beta: Any, x: Array, alpha: Any, *, xp: Any) -> Array:
    """``y = y * beta + alpha * x`` in place; returns ``y``."""
    fused = _kernel(xp, "scale_add_")
    if fused is not None:
        return fused(y, beta, x, alpha)
    y *= beta
    y += scaled(alpha, x)
    return y


def scale_addcmul_(y: Array, beta: Any, x1: Array, x2: Array, value: Any, *, xp: Any) -> Array:
    """``y = y * beta + value * x1 * x2`` in place; returns ``y``."""
    fused = _kernel(xp, "scale_addcmul_")
    if fused is not None:
        return fused(y, beta, x1, x2, value)
    y *= beta
    y += value * x1 * x2
    return y


def sub_product_(y: Array, a: Any, b: Array, *, xp: Any) -> Array:
    """``y -= a * b`` in place (``a`` broadcasts: a 0-d step size or ``(rows, 1, ...)``)."""
    fused = _kernel(xp, "sub_product_")
    if fused is not None:
        return fused(y, a, b)
    y -= scaled(a, b)
    return y


def skip_unless(pred: Array, fn: Any, placeholder: Any, *, xp: Any) -> Array:
    """``fn()``, which a namespace may skip, returning ``placeholder()`` (an array of the
    same shape and dtype), where the 0-d bool ``pred`` is false: the caller masks the
    result where ``pred`` is false, so either value will do there.

    Defined as ``fn()``, which needs no host sync. A namespace that can run one branch
    on the device without waiting for ``pred`` supplies ``skip_unless`` to skip ``fn``.
    """
    fused = _kernel(xp, "skip_unless")
    if fused is not None:
        return fused(pred, fn, placeholder)
    return fn()


def row_dots(w: Array, g: Array, *, axis: int = -1, xp: Any) -> tuple[Array, Array, Array]:
    """``(<w_i, w_i>, <g_i, g_i>, <w_i, g_i>)`` for 2-D arrays, summed along ``axis`` (-1 for
    ``(rows, fan)``, -2 for ``(fan, rows)``), each ``(rows,)``: the per-channel sums the
    projection's tests need. Defined as three ``xp.vecdot``; a namespace may compute them in
    one pass over ``w`` and ``g``."""
    fused = _kernel(xp, "row_dots")
    if fused is not None:
        return fused(w, g, axis=axis)
    return xp.vecdot(w, w, axis=axis), xp.vecdot(g, g, axis=axis), xp.vecdot(w, g, axis=axis)


def quotient_(numerator: Array, denom: Array, *, xp: Any) -> Array:
    """``numerator / denom``, which a namespace may write into ``denom`` (the caller passes
    a temporary: the trailing underscore, as in the in-place kernels, says so)."""
    fused = _kernel(xp, "quotient_")
    if fused is not None:
        return fused(numerator, denom)
    return numerator / denom


def list_row_dots(xs: Any, ys: Any, rows: Any, *, xp: Any) -> Array:
    """``<x_r, y_r>`` for every row ``r`` of a list of arrays, as one ``(rows,)`` array in list
    order: the rows of ``rows`` (an [`adamp_core.batched.Rows`][adamp_core.batched.Rows]), an
    untested array being one row of all its elements. Defined as a ``vecdot`` per array and
    a concatenation; a namespace may compute the sums of the whole list in one pass. The
    sums of untested arrays are never read (their projection is none whatever they are): a
    namespace may leave them 0 instead of computing them."""
    fused = _kernel(xp, "list_row_dots")
    if fused is not None:
        return fused(xs, ys, rows)
    parts = []
    for x, y, r in zip(xs, ys, rows.rows, strict=True):
        parts.append(xp.vecdot(xp.reshape(x, (r, -1)), xp.reshape(y, (r, -1))))
    return xp.concat(parts)
