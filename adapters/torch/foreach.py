"""A namespace whose "arrays" are lists of tensors, computed with ``torch._foreach_*`` kernels.

The element-wise pieces of [`adamp_core.updates`][adamp_core.updates] are written with array
operators (``m *= beta1``, ``m += (1 - beta1) * g``, ...). Handing them
``TensorList`` values and ``namespace`` runs exactly that code over a
whole parameter group with one multi-tensor kernel per operator: the math stays
in the core, and this module only maps operators to kernels. The projection is
the core's own too (``ForeachNamespace.projection``): of the whole list at once on
accelerators ([`adamp_core.batched`][adamp_core.batched]), per tensor elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch

import adamp_core
import adamp_core.batched

from .batched import Layout, ListValue, Packed, row_dots
from .kernels import element_namespace, fused_adam_step, plain

__all__ = ["ForeachNamespace", "TensorList", "group_step", "namespace"]

#: The namespace the projection of each element runs with.
_ELEMENTS = element_namespace()
#: The namespace of the batched projection: the elements', with the sums of whole lists.
_BATCHED = adamp_core.with_overrides(_ELEMENTS, list_row_dots=row_dots)


class TensorList(ListValue):
    """A list of tensors of one dtype and device that behaves as one array under operators.

    The other operand of an operator may be a Python number, a tensor (applied to
    every element), or another ``TensorList`` of the same length (element by
    element, with broadcasting, e.g. a 0-d step size per tensor).
    """

    __slots__ = ("tensors",)

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = list(tensors)

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors[0].dtype

    @property
    def shape(self) -> tuple[tuple[int, ...], ...]:
        """The elements' shapes (equal for a parameter list and its state)."""
        return tuple(tuple(t.shape) for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def _arg(self, other: Any) -> Any:
        if isinstance(other, TensorList):
            return other.tensors
        if isinstance(other, Packed):  # one value per tensor or per row, expanded
            return other.expand()
        if isinstance(other, torch.Tensor):
            return self._scalar(other) if self._takes(other) else [other] * len(self.tensors)
        return other

    def _pairs(self, other: Any) -> Any:
        """``other`` as a list for a kernel that has no single-tensor form (``addcmul``): a
        0-d tensor is paired with each tensor (one kernel per tensor, where the product
        and the sum are rounded once, as with a number)."""
        if isinstance(other, torch.Tensor):
            return [other] * len(self.tensors)
        return self._arg(other)

    def _takes(self, other: Any) -> bool:
        """Whether ``other`` is a 0-d tensor that the multi-tensor kernels' single-tensor
        forms take (on the list's device: one kernel for the list, where a list of it
        would pair one 0-d tensor with each tensor, one kernel per tensor)."""
        return (
            isinstance(other, torch.Tensor)
            and other.ndim == 0
            and other.device == self.tensors[0].device
        )

    def _scalar(self, other: torch.Tensor) -> torch.Tensor:
        return other if other.dtype == self.dtype else other.to(self.dtype)

    def __add__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_add(self.tensors, self._arg(other)))

    __radd__ = __add__

    def __iadd__(self, other: Any) -> TensorList:
        torch._foreach_add_(self.tensors, self._arg(other))
        return self

    def __sub__(self, other: Any) -> TensorList:
        if self._takes(other):  # no single-tensor subtraction: add its negation
            return TensorList(torch._foreach_add(self.tensors, self._arg(other), alpha=-1))
        return TensorList(torch._foreach_sub(self.tensors, self._arg(other)))

    def __rsub__(self, other: Any) -> TensorList:
        negated = torch._foreach_neg(self.tensors)
        torch._foreach_add_(negated, self._arg(other))
        return TensorList(negated)

    def __isub__(self, other: Any) -> TensorList:
        if self._takes(other):
            torch._foreach_add_(self.tensors, self._arg(other), alpha=-1)
        else:
            torch._foreach_sub_(self.tensors, self._arg(other))
        return self

    def __mul__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_mul(self.tensors, self._arg(other)))

    __rmul__ = __mul__

    def __imul__(self, other: Any) -> TensorList:
        torch._foreach_mul_(self.tensors, self._arg(other))
        return self

    def __truediv__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_div(self.tensors, self._arg(other)))

    def __rtruediv__(self, other: Any) -> TensorList:
        inverse = torch._foreach_reciprocal(self.tensors)
        torch._foreach_mul_(inverse, self._arg(other))
        return TensorList(inverse)

    def __itruediv__(self, other: Any) -> TensorList:
        torch._foreach_div_(self.tensors, self._arg(other))
        return self

    def __rpow__(self, base: Any) -> TensorList:
        if isinstance(base, torch.Tensor):  # a 0-d hyperparameter
            return TensorList(torch._foreach_pow([base] * len(self.tensors), self.tensors))
        return TensorList(torch._foreach_pow(base, self.tensors))

    def __setitem__(self, key: Any, value: TensorList) -> None:
        if key is not Ellipsis:
            raise IndexError("TensorList supports only x[...] = y")
        torch._foreach_copy_(self.tensors, value.tensors)


def _copy(x: TensorList, dtype: torch.dtype) -> TensorList:
    """A copy of ``x`` in ``dtype``: one multi-tensor copy, which converts, instead of a
    copy per tensor (per tensor for DTensor, which has no sharding rule for it)."""
    if not all(plain(t) for t in x.tensors):
        return TensorList([t.to(dtype, copy=True) for t in x.tensors])
    out = [torch.empty_like(t, dtype=dtype) for t in x.tensors]
    torch._foreach_copy_(out, x.tensors)
    return TensorList(out)


class ForeachNamespace:
    """The few namespace functions the element-wise pieces call, over ``TensorList``."""

    float32 = torch.float32
    float64 = torch.float64

    @staticmethod
    def sqrt(x: TensorList) -> TensorList:
        return TensorList(torch._foreach_sqrt(x.tensors))

    @staticmethod
    def astype(x: Any, dtype: torch.dtype) -> Any:
        if isinstance(x, torch.Tensor):  # a 0-d hyperparameter shared by the list
            return x.to(dtype)
        if isinstance(x, Packed):
            return x.astype(dtype)
        if all(t.dtype == dtype for t in x.tensors):
            return x
        return _copy(x, dtype)

    @staticmethod
    def asarray(x: TensorList, *, copy: bool) -> TensorList:
        """The standard ``asarray`` of a list: the list itself, or with ``copy`` a copy."""
        return _copy(x, x.dtype) if copy else x

    # adamp_core.kernels over whole lists: the same values, no list-sized temporaries
    @staticmethod
    def scale_add_(y: TensorList, beta: Any, x: TensorList, alpha: Any) -> TensorList:
        torch._foreach_mul_(y.tensors, y._arg(beta))
        if isinstance(alpha, (int, float)):
            torch._foreach_add_(y.tensors, x.tensors, alpha=alpha)
        else:
            torch._foreach_addcmul_(y.tensors, x.tensors, y._pairs(alpha))
        return y

    @staticmethod
    def scale_addcmul_(
        y: TensorList, beta: Any, x1: TensorList, x2: TensorList, value: Any
    ) -> TensorList:
        torch._foreach_mul_(y.tensors, y._arg(beta))
        if isinstance(value, (int, float)):
            torch._foreach_addcmul_(y.tensors, x1.tensors, x2.tensors, value=value)
        else:
            torch._foreach_addcmul_(y.tensors, (x1 * value).tensors, x2.tensors)
        return y

    @staticmethod
    def sub_product_(y: TensorList, a: Any, b: TensorList) -> TensorList:
        if isinstance(a, (int, float)):
            torch._foreach_add_(y.tensors, b.tensors, alpha=-a)
        else:
            torch._foreach_addcmul_(y.tensors, y._pairs(a), b.tensors, value=-1)
        return y

    @staticmethod
    def adam_step_(
        grad: TensorList, exp_avg: TensorList, exp_avg_sq: TensorList, step: TensorList, **h: Any
    ) -> TensorList | None:
        out = fused_adam_step(grad.tensors, exp_avg.tensors, exp_avg_sq.tensors, step.tensors, **h)
        return None if out is None else TensorList(out)

    def __init__(self, batched_devices: tuple[str, ...] = ("cuda", "xpu", "mps")) -> None:
        #: Device types whose lists are projected in one batch. Not the CPU: there the
        #: per-tensor projection measured faster (a segmented sum and a concatenation are
        #: slow passes on CPU, where launching an operation costs little).
        self.batched_devices = batched_devices
        self._layouts: dict[tuple[Any, ...], Layout] = {}
        self._never_projected: dict[tuple[Any, ...], adamp_core.Projection] = {}

    def batches(self, tensors: list[torch.Tensor]) -> bool:
        """Whether a list on these tensors' device is projected in one batch."""
        return tensors[0].device.type in self.batched_devices

    def layout(self, tensors: list[torch.Tensor]) -> Layout:
        """The batched layout of a list, made on its first use and kept (a compiled step
        asks for it before it runs, so that the graph only reads it)."""
        first = tensors[0]
        key = (tuple(tuple(t.shape) for t in tensors), tuple(t.stride() for t in tensors))
        key += (first.dtype, first.device)
        layout = self._layouts.get(key)
        if layout is None:
            dtype = adamp_core.namespace.compute_dtype(first.dtype, torch)
            layout = self._layouts[key] = Layout(tensors, dtype)
        return layout

    def projection(
        self,
        param: TensorList,
        grad: TensorList,
        update: TensorList,
        *,
        channel_axis: int | None = 0,
        **hyper: Any,
    ) -> adamp_core.Projection:
        """The projection of every tensor of the list: at once on accelerators
        (``.batched``, the fields come back packed, one value per tensor or per output
        channel); per tensor with the core on CPU, for DTensors and other layouts."""
        tensors = param.tensors
        if not self.batches(tensors) or channel_axis != 0 or not all(plain(t) for t in tensors):
            return self._per_tensor(param, grad, update, channel_axis=channel_axis, **hyper)
        layout = self.layout(param.tensors)
        if not any(layout.tested_list) and not torch.compiler.is_compiling():
            # biases and norm weights, say: no sums, no spreads. Not traced: Dynamo turns
            # ``list *= tensor`` into a new list (compiled, the batched path fuses anyway)
            return self._untested(tensors[0].device, layout.fan.dtype)
        # half-precision lists widened here, one multi-tensor copy each (the core would cast
        # each tensor)
        param, grad, update = (self.astype(x, layout.fan.dtype) for x in (param, grad, update))
        proj = adamp_core.batched.projection(
            param.tensors, grad.tensors, update.tensors, layout, xp=_BATCHED, **hyper
        )
        return adamp_core.Projection(
            Packed(proj.coef, layout, "row"), *(Packed(f, layout, "weight") for f in proj[1:])
        )

    def _untested(self, device: torch.device, dtype: torch.dtype) -> adamp_core.Projection:
        """The core's projection of an untested array, 0-d: that of every tensor of a list in
        which nothing is tested. The multi-tensor kernels take a 0-d tensor for a whole list
        in one kernel. Made once per device and dtype and only read."""
        key = (dtype, device, "list")
        if key not in self._never_projected:
            zero = torch.zeros((), dtype=dtype, device=device)
            # the coefficient, 0, as a number: sub_product_ takes it in one kernel
            proj = adamp_core.radial.unprojected_like(zero, torch)._replace(coef=0.0)
            self._never_projected[key] = proj
        return self._never_projected[key]

    def _per_tensor(
        self, param: TensorList, grad: TensorList, update: TensorList, **kwargs: Any
    ) -> adamp_core.Projection:
        """The core's projection of each tensor. Most tensors of a list are biases and norm
        weights, never projected: their constant result is made once per dtype, device and
        rank and only read (fresh small tensors for each cost more than their update)."""
        results = []
        for p, g, u in zip(param.tensors, grad.tensors, update.tensors, strict=True):
            tested = p.ndim >= 2 and p.numel() > 0 and kwargs["channel_axis"] is not None
            key = (p.dtype, p.device, p.ndim)
            if tested or key not in self._never_projected:
                proj = adamp_core.projection(p, g, u, xp=_ELEMENTS, **kwargs)
                if not tested:
                    self._never_projected[key] = proj
            results.append(proj if tested else self._never_projected[key])
        return adamp_core.Projection(*(TensorList(list(f)) for f in zip(*results, strict=True)))


namespace = ForeachNamespace()


def group_step(
    update: Any,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: Any,
    hyper: dict[str, Any],
) -> list[list[torch.Tensor]]:
    """``update`` (``adamp_core.adamp_update`` or ``sgdp_update``) of a whole list, in place,
    with ``namespace``. ``state`` is the core's state type holding one list of tensors per
    field. Returns each field of the projection as one tensor per parameter."""
    lists = type(state)(*(TensorList(field) for field in state))
    _, _, proj = update(
        TensorList(params), TensorList(grads), lists, inplace=True, xp=namespace, **hyper
    )
    return [
        list(field.tensors) if isinstance(field, ListValue) else [field] * len(params)
        for field in proj
    ]
