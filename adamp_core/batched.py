"""The projection of a whole list of weights at once.

[`decide`][adamp_core.radial.decide] and
[`radial_coefficients`][adamp_core.radial.radial_coefficients] are written over the last
axis, so a batch of weights, each padded to the longest with zero sums, is decided in one
pass by the code that decides one weight. Here the per-channel sums of every weight of a
list are laid out that way (``Rows``), and [`projection`][adamp_core.batched.projection]
returns the projection of every weight. Past the sums, that is a few operations for the whole
list, where [`adamp_core.projection`][adamp_core.projection] takes a few dozen per weight.
The sums are the kernel [`list_row_dots`][adamp_core.kernels.list_row_dots]: by definition
a ``vecdot`` per array, and a namespace may compute them over the whole list in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat

from .kernels import list_row_dots
from .namespace import compute_dtype, namespace_of
from .radial import (
    Projection,
    branch,
    decay_ratio,
    decide,
    radial_coefficients,
    unprojected_like,
)

__all__ = ["Rows", "decided", "projection", "tested"]

Array = Any


def tested(shape: tuple[int, ...]) -> bool:
    """Whether an array of this shape is tested: 2 or more dimensions, and elements."""
    return len(shape) >= 2 and math.prod(shape) > 0


class Rows:
    """The rows (output channels, axis 0) of a list of arrays of one dtype and device.

    An array with 2 or more dimensions and elements is tested, its rows being its axis-0
    slices; any other array is one untested row of all its elements. The index arrays are
    made once, when the layout is (a copy to the device then, none per step).

    Args:
      shapes: the arrays' shapes, in list order (at least one).
      like: an array on the device (and of the library) where the index arrays go.
      dtype: the compute dtype of the sums (``fan`` and ``size`` are of it).
    """

    def __init__(self, shapes: Sequence[tuple[int, ...]], *, like: Array, dtype: Any) -> None:
        if not shapes:
            raise ValueError("Rows needs at least one array")
        self._xp, self._device = namespace_of(like), array_api_compat.device(like)
        xp, on_device = self._xp, self.on_device
        self.shapes = [tuple(s) for s in shapes]
        self.numels = [math.prod(s) for s in self.shapes]
        #: per array: tested (2+ dimensions, not empty)
        self.tested_list = [tested(s) for s in self.shapes]
        #: per array: its number of rows (1 for an untested array)
        self.rows = [s[0] if t else 1 for s, t in zip(self.shapes, self.tested_list)]
        #: per array: the length of its rows
        self.fans = [n // r for n, r in zip(self.numels, self.rows)]
        #: rows of the padded ``(arrays, width)`` arrays: the most rows of one array
        self.width = max(self.rows)

        self.fan = on_device([max(f, 1) for f in self.fans], dtype)  #: ``(arrays,)``
        self.size = on_device([max(n, 1) for n in self.numels], dtype)  #: ``(arrays,)``
        self.tested = on_device(self.tested_list, xp.bool)  #: ``(arrays,)``
        slots = [i * self.width + j for i, r in enumerate(self.rows) for j in range(r)]
        #: ``(rows,)``: each row's slot in the flattened padded array
        self.padded_index = on_device(slots, xp.int64)
        slot_row = [len(slots)] * (len(self.rows) * self.width)
        for row, slot in enumerate(slots):
            slot_row[slot] = row
        #: ``(arrays * width,)``: each slot's row, or for a padding slot the zero that
        #: ``padded`` appends to the rows
        self.slot_row = on_device(slot_row, xp.int64)
        self._zero = on_device([0], dtype)

    def on_device(self, values: list[Any], dtype: Any) -> Array:
        """``values`` as an array of ``dtype`` on the layout's device (a copy to it)."""
        return self._xp.asarray(values, dtype=dtype, device=self._device)

    def padded(self, sums: Array, xp: Any) -> Array:
        """``(rows,)`` values as ``(arrays, width)``, zero where an array has fewer rows."""
        values = xp.take(xp.concat((sums, self._zero)), self.slot_row, axis=0)
        return xp.reshape(values, (len(self.rows), self.width))


def projection(
    params: Sequence[Array],
    grads: Sequence[Array],
    updates: Sequence[Array],
    rows: Rows,
    *,
    delta: float | Array,
    wd_ratio: float | Array,
    eps: float | Array,
    xp: Any = None,
) -> Projection:
    """[`adamp_core.projection`][adamp_core.projection] of every array of a list, output
    channels on axis 0.

    Args:
      params, grads, updates: lists of arrays of one dtype and device, laid out by ``rows``.
      rows: their [`Rows`][adamp_core.batched.Rows].
      delta, wd_ratio, eps: Python floats or 0-d arrays.
      xp: the namespace (default: the arrays'); it may supply
        [`list_row_dots`][adamp_core.kernels.list_row_dots].

    Returns:
      A [`Projection`][adamp_core.Projection] whose ``coef`` is ``(rows,)``, one value per
      row of the list in order (an untested array's one row: 0), and whose ``ratio``,
      ``branch`` and ``cosine`` are ``(arrays,)``. The same values as the projection of
      each array (up to the order of summation).
    """
    xp = namespace_of(params[0]) if xp is None else xp
    dtype = compute_dtype(params[0].dtype, xp)
    if dtype != params[0].dtype:
        widened = (
            [a if a.dtype == dtype else xp.astype(a, dtype) for a in ts]
            for ts in (params, grads, updates)
        )
        params, grads, updates = widened

    def row_sums(xs: Sequence[Array], ys: Sequence[Array]) -> Array:
        return list_row_dots(xs, ys, rows, xp=xp)

    return decided(
        row_sums, params, grads, updates, rows, delta=delta, wd_ratio=wd_ratio, eps=eps, xp=xp
    )


def decided(
    row_sums: Callable[[Any, Any], Array],
    params: Any,
    grads: Any,
    updates: Any,
    rows: Rows,
    *,
    delta: float | Array,
    wd_ratio: float | Array,
    eps: float | Array,
    xp: Any,
) -> Projection:
    """Steps 1-4 of the projection of a list, from its per-row sums: ``row_sums(x, y)`` gives
    ``<x_i, y_i>`` for every row ``i`` of ``rows``, as a ``(rows,)`` array, for ``x`` and ``y``
    among ``params``, ``grads`` and ``updates`` (however the list is held: a sequence of
    arrays, or one packed array). The sums of untested arrays' rows are masked out, never
    read: they may be anything (0, say). Returns what
    [`projection`][adamp_core.batched.projection] does."""
    dtype = rows.fan.dtype
    if not any(rows.tested_list):  # nothing is tested (shapes say so): no sums to take
        return unprojected_like(xp.zeros_like(rows.fan), xp)

    def sums(xs: Any, ys: Any) -> Array:
        return rows.padded(row_sums(xs, ys), xp)

    # 1. and 2. The channel and layer tests, for every array at once
    ww, gg, wg = sums(params, params), sums(grads, grads), sums(params, grads)
    d = decide(ww, gg, wg, fan=rows.fan, size=rows.size, delta=delta, eps=eps, xp=xp)
    d = d._replace(  # 1-D and empty arrays are not tested
        channel=xp.logical_and(d.channel, rows.tested),
        layer=xp.logical_and(d.layer, rows.tested),
        cosine=xp.where(rows.tested, d.cosine, math.nan),
    )
    # 3. The radial coefficients, per row; 4. the decay ratio, per array
    coef = radial_coefficients(d, sums(params, updates), ww, eps=eps, xp=xp)
    return Projection(
        xp.take(xp.reshape(coef, (-1,)), rows.padded_index, axis=0),
        decay_ratio(d, wd_ratio, dtype, xp),
        branch(d, xp),
        d.cosine,
    )
