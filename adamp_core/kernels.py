"""In-place kernels of the element-wise pieces, with array-API definitions a namespace may replace.

The core writes its in-place arithmetic (``inplace=True``) through these few functions. Each is
defined here with array-API operators; a namespace that has an attribute of the same name
supplies a fused version instead (the PyTorch adapter maps them to ``mul_``/``add_``/
``addcmul_``/``div(out=)``, which avoid the temporaries that ``y += a * x`` allocates). They
are kernels, not math: which quantities are combined, with which coefficients, is decided by
:mod:`adamp_core.updates`, and every replacement must compute the same values as the
definition here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compute_if", "divide_into", "scale_add_", "scale_addcmul_", "sub_product_"]

#: Every kernel name a namespace may supply: the five here, and ``adam_step_``, a fused
#: form of :func:`adamp_core.updates.adam_step` (defined there, with the Adam math).
REPLACEABLE = (*__all__, "adam_step_")

Array = Any


def _kernel(xp: Any, name: str) -> Any:
    return getattr(xp, name, None)


def times(a: Any, x: Array) -> Array:
    """``a * x``, or ``x`` itself when ``a`` is the Python number 1 (no pass over ``x``)."""
    return x if isinstance(a, (int, float)) and a == 1 else a * x


def scale_add_(y: Array, beta: Any, x: Array, alpha: Any, *, xp: Any) -> Array:
    """``y = y * beta + alpha * x`` in place; returns ``y``."""
    fused = _kernel(xp, "scale_add_")
    if fused is not None:
        return fused(y, beta, x, alpha)
    y *= beta
    y += times(alpha, x)
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
    y -= times(a, b)
    return y


def compute_if(pred: Array, fn: Any, placeholder: Any, *, xp: Any) -> Array:
    """``fn()`` where the 0-d bool ``pred`` holds; where it does not, ``fn()`` or
    ``placeholder()`` (an array of the same shape and dtype): the caller masks the result.

    Defined as ``fn()``, which needs no host sync. A namespace whose compiler can run one
    branch on the device supplies ``compute_if`` to skip ``fn`` (the Optax adapter maps it
    to ``jax.lax.cond``).
    """
    fused = _kernel(xp, "compute_if")
    if fused is not None:
        return fused(pred, fn, placeholder)
    return fn()


def divide_into(numerator: Array, denom: Array, *, xp: Any) -> Array:
    """``numerator / denom``; may reuse ``denom``'s memory for the result (a temporary)."""
    fused = _kernel(xp, "divide_into")
    if fused is not None:
        return fused(numerator, denom)
    return numerator / denom
