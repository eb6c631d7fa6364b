"""The batched projection's torch kernels: per-row sums of a whole list, and per-row values
spread over it.

[`adamp_core.batched.projection`][adamp_core.batched.projection] decides every weight of a
list at once from per-channel sums. Here those sums come from three kernels per list (a
fill, a multi-tensor product into one buffer, a segmented sum), and the per-channel results
go back as ``Packed`` values that expand to the tensors' shapes only where they meet them.
Nothing is read back to the host: the layout of a list is built once per list of shapes.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch

import adamp_core.batched

__all__ = ["Layout", "ListValue", "Packed", "row_dots"]


def _in_order(flat: torch.Tensor, shape: tuple[int, ...], order: tuple[int, ...] | None) -> Any:
    """``flat`` viewed as ``shape``: laid out in ``order`` (axes outermost first), or
    contiguous for None. A ``view`` and a ``permute``, which compiled code can write through
    (not ``as_strided``)."""
    if order is None:
        return flat.view(shape)
    stored = flat.view([shape[d] for d in order])
    return stored.permute([order.index(d) for d in range(len(shape))])


def _channels_last_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """For a tensor stored channels last (``(N, C, ...)`` laid out as ``(N, ..., C)``), the
    order of its axes in memory, outermost first; None for a contiguous tensor and for any
    other layout (then buffers are contiguous)."""
    if t.ndim < 3:
        return None
    shape, order = tuple(t.shape), (0, *range(2, t.ndim), 1)
    meta = torch.empty(math.prod(shape), device="meta")
    if t.stride() == _in_order(meta, shape, None).stride():
        return None
    return order if _in_order(meta, shape, order).stride() == t.stride() else None


class Layout(adamp_core.batched.Rows):
    """[`Rows`][adamp_core.batched.Rows] of a list of tensors, with what torch's kernels
    need: each row's length, each tensor's memory layout, and how per-row values expand."""

    def __init__(self, tensors: list[torch.Tensor], dtype: torch.dtype) -> None:
        super().__init__([tuple(t.shape) for t in tensors], like=tensors[0], dtype=dtype)
        #: per tensor, the order of its axes in memory if it is stored channels last, else
        #: None: buffers of the list are laid out alike (a row is one block of memory in
        #: either format), so that multi-tensor kernels pair them with the tensors element for
        #: element and keep one kernel per list
        self.orders = [_channels_last_order(t) for t in tensors]
        rows_fans = zip(self.rows, self.fans, strict=True)
        self.row_lengths = self.on_device([f for r, f in rows_fans for _ in range(r)], torch.int64)
        self.row_weight = self.on_device(
            [i for i, r in enumerate(self.rows) for _ in range(r)], torch.int64
        )
        self.total = sum(self.numels)
        pairs = list(zip(self.rows, self.tested_list, strict=True))
        place, zero = itertools.count(), sum(r for r, t in pairs if t)
        #: ``(rows,)``: each row's place among the rows of the tested tensors, or for the row
        #: of an untested tensor the zero after them (``row_dots`` when compiled)
        self.tested_row_index = self.on_device(
            [next(place) if t else zero for r, t in pairs for _ in range(r)], torch.int64
        )
        self._plan_expansion()

    def _plan_expansion(self) -> None:
        """How per-row values spread over the elements (``Packed.expand``) without an
        element-sized index: the rows of the tested tensors of one fan, sorted together,
        fill their block of the output with one broadcasting kernel each; the rest (untested
        tensors, whose one row is all their elements, and fans with few elements) take a
        ``repeat_interleave`` whose index is as small as they are."""
        by_fan: dict[int, list[int]] = {}
        for i, (fan, tested) in enumerate(zip(self.fans, self.tested_list, strict=True)):
            if tested:
                by_fan.setdefault(fan, []).append(i)
        small = max(self.total // 64, 1)
        groups = [idx for idx in by_fan.values() if sum(self.numels[i] for i in idx) >= small]
        grouped = {i for idx in groups for i in idx}
        rest = [i for i in range(len(self.shapes)) if i not in grouped]
        first_row = [0]
        for r in self.rows:
            first_row.append(first_row[-1] + r)
        order: list[int] = []  # tensors in the order their elements are laid out
        self.blocks: list[tuple[int, int, int, int]] = []  # (first row, rows, fan, first element)
        element = 0
        for idx in groups:
            start = sum(self.rows[i] for i in order)
            count = sum(self.rows[i] for i in idx)
            self.blocks.append((start, count, self.fans[idx[0]], element))
            order += idx
            element += sum(self.numels[i] for i in idx)
        self.rest_start_row = sum(self.rows[i] for i in order)
        self.rest_start = element
        self.rest_total = sum(self.numels[i] for i in rest)
        self.rest_row_lengths = self.on_device(
            [self.fans[i] for i in rest for _ in range(self.rows[i])], torch.int64
        )
        order += rest
        #: packed row positions in layout order
        self.row_order = self.on_device(
            [first_row[i] + j for i in order for j in range(self.rows[i])], torch.int64
        )
        offsets = {}
        element = 0
        for i in order:
            offsets[i] = element
            element += self.numels[i]
        self.offsets = [offsets[i] for i in range(len(self.shapes))]
        self._ones: dict[torch.dtype, torch.Tensor] = {}

    def ones(self, dtype: torch.dtype) -> torch.Tensor:
        """A row of ones as long as the longest grouped fan, made once per dtype."""
        held = self._ones.get(dtype)
        if held is None:
            width = max((fan for _, _, fan, _ in self.blocks), default=1)
            held = self._ones[dtype] = torch.ones(width, dtype=dtype, device=self.tested.device)
        return held

    def scratch(self, like: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A new buffer of the list's total size, and its views shaped as the tensors."""
        flat = torch.empty(self.total, dtype=like.dtype, device=like.device)
        return flat, self.views(flat, list(itertools.accumulate(self.numels, initial=0)))

    def views(self, flat: torch.Tensor, offsets: list[int]) -> list[torch.Tensor]:
        """Views of ``flat`` shaped as the tensors, the ``i``-th at ``offsets[i]``, laid out as
        the tensor is where it is stored channels last, else contiguous."""
        chunks = (flat.narrow(0, o, n) for o, n in zip(offsets, self.numels))
        return [
            _in_order(chunk, shape, order)
            for chunk, shape, order in zip(chunks, self.shapes, self.orders, strict=True)
        ]


def row_dots(xs: list[torch.Tensor], ys: list[torch.Tensor], layout: Layout) -> torch.Tensor:
    """[`list_row_dots`][adamp_core.kernels.list_row_dots] in three kernels: the products of
    the whole list written into one buffer by one multi-tensor pass, then one segmented sum."""
    if torch.compiler.is_compiling():
        # compiled code pays for each write into a view of one buffer with a copy of the
        # whole buffer (quadratic in the list); each tensor's products, summed by rows in the
        # kernel that makes them, need no buffer at all. The rows of untested tensors are
        # never read (list_row_dots): left 0, they add no kernel to compile and run.
        tested = zip(xs, ys, layout.rows, layout.tested_list, strict=True)
        sums = [(x * y).reshape(r, -1).sum(1) for x, y, r, t in tested if t]
        zero = torch.zeros(1, dtype=xs[0].dtype, device=xs[0].device)
        return torch.cat([*sums, zero]).index_select(0, layout.tested_row_index)
    flat, views = layout.scratch(xs[0])
    flat.zero_()  # one kernel; then 0 + x*y is x*y exactly, in one multi-tensor pass
    torch._foreach_addcmul_(views, xs, ys)
    return torch.segment_reduce(flat, "sum", lengths=layout.row_lengths, unsafe=True)


#: torch's name for an operator with a tensor first and a list value second, and the list
#: value's method that computes it: ``tensor - value`` is ``value.__rsub__(tensor)``, and
#: ``tensor.__rsub__(value)`` (``value - tensor``, as torch.compile asks) ``value.__sub__``
_REFLECTED = {
    **dict.fromkeys(("add", "__add__"), "__radd__"),
    **dict.fromkeys(("sub", "__sub__"), "__rsub__"),
    **dict.fromkeys(("mul", "__mul__"), "__rmul__"),
    **dict.fromkeys(("div", "__truediv__"), "__rtruediv__"),
    **dict.fromkeys(("pow", "__pow__"), "__rpow__"),
    "__radd__": "__add__",
    "__rsub__": "__sub__",
    "__rmul__": "__mul__",
    **dict.fromkeys(("__rtruediv__", "__rdiv__"), "__truediv__"),
}


class ListValue:
    """Base of the values that stand for a whole list (``Packed``, the foreach
    ``TensorList``): ``tensor <op> value``, a 0-d learning rate times a list, say, runs the
    value's reflected operator. Python does that by itself; this ``__torch_function__``
    does it where torch asks first, and ``torch.compile`` traces it (it does not trace
    Python's fallback, and it asks the tensor's reflected operator of ``value <op> tensor``
    too)."""

    __slots__ = ()

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = _REFLECTED.get(getattr(func, "__name__", ""))
        if name and not kwargs and len(args) == 2 and isinstance(args[1], ListValue):
            if isinstance(args[0], torch.Tensor) and hasattr(args[1], name):
                return getattr(args[1], name)(args[0])
        return NotImplemented


class Packed(ListValue):
    """One value per tensor (``per="weight"``) or per row (``per="row"``) of a list, packed
    in one tensor: the core's arithmetic on them is one kernel, and they expand to the
    tensors' shapes (``expand``) where they meet whole tensors."""

    __slots__ = ("layout", "per", "values")

    def __init__(self, values: torch.Tensor, layout: Layout, per: str) -> None:
        self.values, self.layout, self.per = values, layout, per

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    def _rows(self) -> torch.Tensor:
        if self.per == "row":
            return self.values
        return self.values.index_select(0, self.layout.row_weight)

    def _pair(self, other: Any) -> tuple[torch.Tensor, Any, str]:
        if isinstance(other, Packed):
            if self.per == other.per:
                return self.values, other.values, self.per
            return self._rows(), other._rows(), "row"
        return self.values, other, self.per

    def _op(self, other: Any, fn: Any) -> Packed:
        a, b, per = self._pair(other)
        return Packed(fn(a, b), self.layout, per)

    def __add__(self, other: Any) -> Packed:
        return self._op(other, torch.add)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Packed:
        return self._op(other, torch.sub)

    def __rsub__(self, other: Any) -> Packed:
        return Packed(other - self.values, self.layout, self.per)

    def __mul__(self, other: Any) -> Packed:
        return self._op(other, torch.mul)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Packed:
        return self._op(other, torch.div)

    def astype(self, dtype: torch.dtype) -> Packed:
        return Packed(self.values.to(dtype), self.layout, self.per)

    def expand(self) -> list[torch.Tensor]:
        """The value of each element of each tensor: tensors of the list's shapes (eager:
        views of one buffer of the list's size, the only temporary besides it row-sized;
        traced: broadcast views of the per-row values)."""
        layout = self.layout
        if torch.compiler.is_compiling():
            # broadcasts, which compiled code fuses into the kernel that reads them (writes
            # into views of one buffer would each copy the whole buffer)
            return [v.expand(s) for v, s in zip(self.tensors, layout.shapes, strict=True)]
        rows = self._rows().index_select(0, layout.row_order)
        flat = torch.empty(layout.total, dtype=rows.dtype, device=rows.device)
        ones = layout.ones(rows.dtype)
        for start, count, fan, element in layout.blocks:
            block = flat.narrow(0, element, count * fan).view(count, fan)
            # multiplications by one (exact) write in place: one kernel each, as a copy would
            torch.mul(rows.narrow(0, start, count).unsqueeze(1), ones.narrow(0, 0, fan), out=block)
        if layout.rest_total:
            rest = rows.narrow(0, layout.rest_start_row, rows.shape[0] - layout.rest_start_row)
            repeated = torch.repeat_interleave(
                rest, layout.rest_row_lengths, output_size=layout.rest_total
            )
            torch.mul(repeated, 1, out=flat.narrow(0, layout.rest_start, layout.rest_total))
        return layout.views(flat, layout.offsets)

    @property
    def tensors(self) -> list[torch.Tensor]:
        """Per tensor: its 0-d value, or its ``(rows, 1, ...)`` coefficients (views)."""
        if self.per == "weight":
            return list(self.values.unbind())
        parts = torch.split(self.values, self.layout.rows)
        return [
            p.view((r,) + (1,) * (len(s) - 1)) if len(s) else p.view(())
            for p, r, s in zip(parts, self.layout.rows, self.layout.shapes, strict=True)
        ]
