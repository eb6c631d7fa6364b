"""Array-namespace helpers: which library an array belongs to, and overrides.

Nothing here imports a framework: ``array_api_compat`` inspects the arrays'
types, so importing ``adamp_core`` stays cheap.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import array_api_compat

__all__ = ["compute_dtype", "namespace_of", "with_overrides", "zeros_beside"]

Array = Any


def namespace_of(*arrays: Array | None) -> Any:
    """The array-API namespace shared by ``arrays`` (``None`` entries ignored).

    Raises:
      TypeError: the arrays come from different libraries, or one is not an
        array of a library that ``array_api_compat`` supports.
    """
    present = [a for a in arrays if a is not None]
    try:
        return array_api_compat.array_namespace(*present)
    except TypeError as err:
        kinds = sorted({f"{type(a).__module__}.{type(a).__qualname__}" for a in present})
        raise TypeError(
            f"all arrays must come from one array library; got {', '.join(kinds)} ({err})"
        ) from None


def with_overrides(xp: Any, **functions: Any) -> Any:
    """``xp`` with some functions replaced, e.g. a faster ``vecdot``.

    Every building block of ``adamp_core`` takes ``xp=``; an adapter passes
    ``with_overrides(xp, vecdot=native_vecdot)`` to swap in a native kernel without
    copying any math. The replacement must follow the array-API
    signature of the function it replaces.

    Besides the namespace's own functions, the kernels named in
    `adamp_core.kernels.REPLACEABLE` may be supplied.

    Returns:
      A namespace whose attributes are ``functions`` first, then ``xp``'s.
    """
    from . import kernels

    unknown = [n for n in functions if not hasattr(xp, n) and n not in kernels.REPLACEABLE]
    if unknown:
        raise AttributeError(f"{getattr(xp, '__name__', xp)!r} has no function(s) {unknown}")
    return _Overridden(xp, functions)


class _Overridden(SimpleNamespace):
    def __init__(self, base: Any, functions: dict[str, Any]) -> None:
        super().__init__(**functions)
        self._base = base

    def __getattr__(self, name: str) -> Any:  # called only for names not overridden
        return getattr(self._base, name)


def zeros_beside(x: Array, shape: tuple[int, ...], dtype: Any, xp: Any) -> Array:
    """Zeros of ``shape`` (``()``, or all ones such as ``(1, 1, 1)``) and ``dtype``, placed
    where ``x``'s library places a result computed from ``x``.

    Made by summing an empty slice of ``x`` (a view: no pass over its elements) rather
    than with ``device=``: a library may describe an array spread over several devices by
    a layout that fits only arrays of ``x``'s rank. A namespace may supply its own
    ``zeros_beside(x, shape, dtype)`` (see `adamp_core.kernels.REPLACEABLE`).
    """
    supplied = getattr(xp, "zeros_beside", None)
    if supplied is not None:
        return supplied(x, shape, dtype)
    flat = xp.reshape(x, (1,)) if x.ndim == 0 else x
    zero = xp.asarray(xp.sum(flat[(slice(0, 0),) * flat.ndim], dtype=dtype))  # 0-d, not a scalar
    return zero if shape == () else xp.reshape(zero, shape)


def compute_dtype(dtype: Any, xp: Any) -> Any:
    """The dtype in which reductions and scalars are computed for ``dtype`` arrays.

    float32 and float64 compute in their own dtype; narrower floats (float16,
    bfloat16) reduce and form their scalars in float32, which avoids overflow in
    sums of squares and keeps bias corrections accurate.
    """
    if dtype == xp.float64 or dtype == xp.float32:
        return dtype
    return xp.float32
