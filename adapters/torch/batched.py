"""The projection of a whole parameter list at once: a few kernels instead of dozens per weight.

The core decides a projection from per-channel sums
([`adamp_core.radial.decide`][adamp_core.radial.decide],
[`radial_coefficients`][adamp_core.radial.radial_coefficients]), written over the last axis so that
a
batch of weights, padded with zero sums, is decided by the same code in one pass. Here the
sums of every tensor of a list come from three kernels each (a multi-tensor product, a
concatenation, a segmented sum); the decisions are ``(weights, rows)`` arrays; and the
per-channel results go back as ``Packed`` values that expand to the tensors' shapes
only where they meet them (one ``repeat_interleave``). Nothing is read back to the host:
the layout of a list (which rows belong to which tensor) is built once per list of shapes.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat.torch as torch_xp
import torch

import adamp_core
from adamp_core.namespace import compute_dtype
from adamp_core.radial import branch, decay_ratio, decide, radial_coefficients

__all__ = ["Layout", "Packed", "projection"]


class Layout:
    """Rows (output channels) of a list of tensors of one dtype and device.

    A tensor with 2+ dimensions and elements is tested, its rows being its ``shape[0]``
    slices; any other tensor is one untested row of all its elements. Index arrays live
    on the tensors' device, made once (a host-to-device copy on the first step only).
    """

    def __init__(self, tensors: list[torch.Tensor], dtype: torch.dtype) -> None:
        shapes = [tuple(t.shape) for t in tensors]
        self.tested_list = [len(s) >= 2 and math.prod(s) > 0 for s in shapes]
        self.rows = [s[0] if t else 1 for s, t in zip(shapes, self.tested_list, strict=True)]
        self.numels = [math.prod(s) for s in shapes]
        self.shapes = shapes
        self.width = max(self.rows)  # rows of the padded (weights, rows) arrays
        fans = [n // r for n, r in zip(self.numels, self.rows, strict=True)]
        device = tensors[0].device

        def on_device(values: list[Any], kind: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=kind, device=device)

        self.row_lengths = on_device(
            [f for f, r in zip(fans, self.rows) for _ in range(r)], torch.int64
        )
        self.row_weight = on_device(
            [i for i, r in enumerate(self.rows) for _ in range(r)], torch.int64
        )
        self.padded_index = on_device(
            [i * self.width + j for i, r in enumerate(self.rows) for j in range(r)], torch.int64
        )
        self.numel_lengths = on_device(self.numels, torch.int64)
        self.fan = on_device([max(f, 1) for f in fans], dtype)
        self.size = on_device([max(n, 1) for n in self.numels], dtype)
        self.tested = on_device(self.tested_list, torch.bool)
        self.total = sum(self.numels)
        self.total_rows = sum(self.rows)

    def channel_sums(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
        """``<x_i, y_i>`` for every row of every tensor, as ``(weights, width)`` padded with 0."""
        products = torch._foreach_mul(xs, ys)
        flat = torch.cat([p.reshape(-1) for p in products])
        del products
        sums = torch.segment_reduce(flat, "sum", lengths=self.row_lengths, unsafe=True)
        padded = flat.new_zeros(len(self.rows) * self.width)
        return padded.index_copy_(0, self.padded_index, sums).view(len(self.rows), self.width)


class Packed:
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
        """The value of each element of each tensor: tensors of the list's shapes."""
        lengths = self.layout.row_lengths if self.per == "row" else self.layout.numel_lengths
        flat = torch.repeat_interleave(self.values, lengths, output_size=self.layout.total)
        parts = torch.split(flat, self.layout.numels)
        return [p.view(s) for p, s in zip(parts, self.layout.shapes, strict=True)]

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


def projection(
    param: list[torch.Tensor],
    grad: list[torch.Tensor],
    update: list[torch.Tensor],
    layout: Layout,
    *,
    delta: Any,
    wd_ratio: Any,
    eps: Any,
    xp: Any = torch_xp,
) -> adamp_core.Projection:
    """[`adamp_core.projection`][adamp_core.projection] of every tensor of a list (output channels
    on axis 0),
    decided by the core's [`decide`][adamp_core.radial.decide] on padded per-channel sums.
    The fields come back ``Packed``."""
    dtype = compute_dtype(param[0].dtype, torch)
    if dtype != param[0].dtype:
        param, grad, update = ([t.to(dtype) for t in ts] for ts in (param, grad, update))
    ww = layout.channel_sums(param, param)
    gg = layout.channel_sums(grad, grad)
    wg = layout.channel_sums(param, grad)
    d = decide(ww, gg, wg, fan=layout.fan, size=layout.size, delta=delta, eps=eps, xp=xp)
    d = d._replace(  # 1-D and empty tensors are not tested
        channel=torch.logical_and(d.channel, layout.tested),
        layer=torch.logical_and(d.layer, layout.tested),
        cosine=torch.where(layout.tested, d.cosine, math.nan),
    )
    wu = layout.channel_sums(param, update)
    coef = radial_coefficients(d, wu, ww, eps=eps, xp=xp)
    rows = coef.reshape(-1).index_select(0, layout.padded_index)
    return adamp_core.Projection(
        Packed(rows, layout, "row"),
        Packed(decay_ratio(d, wd_ratio, dtype, xp), layout, "weight"),
        Packed(branch(d, xp), layout, "weight"),
        Packed(d.cosine, layout, "weight"),
    )
