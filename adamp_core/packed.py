"""A list of arrays stepped as one: packed state and the projection of a packed list.

With per-array state, a step of a list costs a dozen element-wise operations per array. A
packed state holds the moments of the whole list in one flat array per field, so the
element-wise part of a step is a few operations over the list: the parameters and gradients
are concatenated into that layout, [`adamp_update`][adamp_core.adamp_update] (or
[`sgdp_update`][adamp_core.sgdp_update]) runs on the flat arrays, and the new values are
split back. Its projection is the list's ([`batched.decided`][adamp_core.batched.decided]),
with per-row sums taken over blocks of rows of one length: one ``vecdot`` per distinct fan.

The packed order puts the tested arrays (2+ dimensions, not empty) first, grouped by the
length of their rows (their fan), then the others, each in list order within its group
([`Packing`][adamp_core.packed.Packing]).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from .batched import Rows, decided, tested
from .namespace import compute_dtype, with_overrides
from .radial import Projection

__all__ = ["Packing"]

Array = Any


class Packing:
    """Where each array of a list lies in the packed layout, and the list's projection there.

    Args:
      shapes: the arrays' shapes, in list order (at least one).
      like: an array on the device (and of the library) where the index arrays go.
      dtype: the compute dtype of the projection's sums.
    """

    def __init__(self, shapes: Sequence[tuple[int, ...]], *, like: Array, dtype: Any) -> None:
        self.shapes = [tuple(s) for s in shapes]
        self.numels = [math.prod(s) for s in self.shapes]
        self.total = sum(self.numels)

        def place(i: int) -> tuple[bool, int]:  # tested first, by fan; then the others
            shape = self.shapes[i]
            return (False, self.numels[i] // shape[0]) if tested(shape) else (True, 0)

        #: the list's indices in packed order
        self.order = sorted(range(len(self.shapes)), key=place)
        #: the rows of the arrays, in packed order
        self.rows = rows = Rows([self.shapes[i] for i in self.order], like=like, dtype=dtype)
        starts = list(itertools.accumulate(rows.numels, initial=0))
        #: per array (list order): where its elements start in the packed layout
        self.offsets = [0] * len(self.shapes)
        for k, i in enumerate(self.order):
            self.offsets[i] = starts[k]
        #: blocks of consecutive rows of one fan: (first element, rows, fan)
        self.blocks: list[tuple[int, int, int]] = []
        for start, is_tested, count, fan in zip(
            starts, rows.tested_list, rows.rows, rows.fans, strict=False
        ):
            if is_tested and self.blocks and self.blocks[-1][2] == fan:
                self.blocks[-1] = (self.blocks[-1][0], self.blocks[-1][1] + count, fan)
            elif is_tested:
                self.blocks.append((start, count, fan))
        index = rows.padded_index.dtype
        #: per row in packed order: its length; per array in packed order: its size
        self.row_lengths = rows.on_device(
            [f for r, f in zip(rows.rows, rows.fans, strict=True) for _ in range(r)], index
        )
        self.sizes = rows.on_device(rows.numels, index)
        untested = rows.tested_list.count(False)
        #: the sums of the untested arrays' rows, never read (their tests are off)
        self._untested = rows.on_device([0] * untested, dtype) if untested else None

    def pack(self, arrays: Sequence[Array], xp: Any) -> Array:
        """The arrays (list order) as one flat array in packed order."""
        return xp.concat([xp.reshape(arrays[i], (-1,)) for i in self.order])

    def unpack(self, flat: Array, xp: Any) -> list[Array]:
        """The arrays of a packed flat array, in list order, shaped as the list's (views
        where the library gives views of slices)."""
        return [
            xp.reshape(flat[o : o + n], s)
            for o, n, s in zip(self.offsets, self.numels, self.shapes, strict=True)
        ]

    def row_sums(self, x: Array, y: Array, xp: Any) -> Array:
        """``(rows,)``: each row's ``<x_i, y_i>``, for packed ``x`` and ``y``; one ``vecdot``
        per block of rows of one fan."""
        parts = [
            xp.vecdot(
                xp.reshape(x[start : start + count * fan], (count, fan)),
                xp.reshape(y[start : start + count * fan], (count, fan)),
            )
            for start, count, fan in self.blocks
        ]
        if self._untested is not None:
            parts.append(self._untested)
        return xp.concat(parts) if len(parts) > 1 else parts[0]

    def namespace(self, xp: Any) -> Any:
        """``xp`` whose ``projection`` is the packed list's: what
        [`adamp_update`][adamp_core.adamp_update] and [`sgdp_update`][adamp_core.sgdp_update]
        take to step a packed list."""

        def projection(
            param: Array, grad: Array, update: Any, *, delta: Any, wd_ratio: Any, eps: Any, **_: Any
        ) -> Projection:
            dtype = compute_dtype(param.dtype, xp)
            u = update() if callable(update) else update
            w, g, u = (a if a.dtype == dtype else xp.astype(a, dtype) for a in (param, grad, u))
            proj = decided(
                lambda a, b: self.row_sums(a, b, xp),
                w,
                g,
                u,
                self.rows,
                delta=delta,
                wd_ratio=wd_ratio,
                eps=eps,
                xp=xp,
            )
            # per element, in packed order: the coefficient of its row, the ratio of its array
            return proj._replace(
                coef=xp.repeat(proj.coef, self.row_lengths),
                ratio=xp.repeat(proj.ratio, self.sizes),
            )

        return with_overrides(xp, projection=projection)
