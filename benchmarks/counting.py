"""What a PyTorch step costs on a GPU, counted without one.

Tensors are made on ``cuda`` under ``FakeTensorMode`` (no device needed), so an optimizer takes
its own CUDA path; a ``TorchDispatchMode`` inside sees every ATen operation of ``step()``:

- **launches**: operations that run a kernel on the device. Views, metadata and allocations
  launch nothing. A ``_foreach_*`` operation is launched as CUDA's ``multi_tensor_apply``
  does: tensors are packed into launches of at most 110/64/48/36/30 tensors (by the number of
  lists) and 320 blocks of 65536 elements; where its lists differ in shape, dtype or layout
  pairwise, it falls back to one launch per tensor. ``_foreach_copy_`` converts: its two
  lists may differ in dtype, each list having one.
- **syncs**: conversions of a device value to a Python one (``item``, ``bool``), each a
  stream synchronization.
- **copies**: host-to-device copies (``torch.as_tensor(0.5, device="cuda")`` is one): pageable
  copies, which synchronize the stream too.
- **bytes**: what the launches read and write, for a bandwidth estimate.

The time model (an H200: 5 us of CPU per launch, 20 us per sync or copy, 4 TB/s) is a rough
guide; the counts are exact for the code that runs, and deterministic.
"""

from __future__ import annotations

import math
import re
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

LAUNCH_US, SYNC_US, BANDWIDTH = 5.0, 20.0, 4e12

#: Operations that launch no kernel: views, metadata, allocations, profiler marks.
NO_KERNEL = frozenset(
    """view _unsafe_view alias as_strided expand t transpose permute unsqueeze squeeze select
    slice split split_with_sizes unbind detach reshape _reshape_alias empty empty_like
    empty_strided new_empty new_empty_strided set_ resize_ lift_fresh _record_function_enter_new
    _record_function_exit device dim size stride is_same_size sym_size sym_stride sym_numel
    _has_compatible_shallow_copy_type unflatten flatten view_as""".split()
)
SYNCS = frozenset({"_local_scalar_dense", "is_nonzero", "item"})
_MAX_TENSORS = {1: 110, 2: 64, 3: 48, 4: 36, 5: 30}
_CHUNK, _MAX_BLOCKS = 65536, 320


@dataclass
class Counts:
    launches: int = 0
    syncs: int = 0
    copies: int = 0
    bytes: int = 0
    ops: Counter = field(default_factory=Counter)  #: calls per operation
    launches_by_op: Counter = field(default_factory=Counter)  #: launches per operation

    @property
    def estimate_ms(self) -> float:
        """Rough H200 step time: launches, syncs and copies on the CPU, bytes at 4 TB/s."""
        host = self.launches * LAUNCH_US + (self.syncs + self.copies) * SYNC_US
        return host / 1e3 + self.bytes / BANDWIDTH * 1e3


def _tensors(x: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(x)[0] if isinstance(t, torch.Tensor)]


def _foreach_launches(lists: list[list[torch.Tensor]], *, converts: bool = False) -> int:
    """Launches of a multi-tensor operation on ``lists``; ``converts``: the operation may
    pair lists of different dtypes (``_foreach_copy_``), each list of one dtype."""
    first = lists[0]
    same = all(
        len(other) == len(first)
        and all(
            a.shape == b.shape and (a.dtype == b.dtype or converts) and a.stride() == b.stride()
            for a, b in zip(first, other, strict=True)
        )
        for other in lists[1:]
    ) and all(len({t.dtype for t in ts}) == 1 for ts in lists)
    dense = all(
        t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last) for t in first
    )
    if not same or not dense:
        return len(first)  # the slow path: one kernel per tensor
    limit = _MAX_TENSORS.get(len(lists), 30)
    launches, tensors, blocks = 0, 0, 0
    for t in first:
        if t.numel() == 0:
            continue
        tensors += 1
        chunks = math.ceil(t.numel() / _CHUNK)
        for c in range(chunks):
            blocks += 1
            last_chunk = c == chunks - 1
            if blocks == _MAX_BLOCKS or (tensors == limit and last_chunk):
                launches += 1
                blocks = 0
                tensors = 0 if last_chunk else 1
    return launches + (1 if blocks else 0)


class _Counter(TorchDispatchMode):
    def __init__(self, counts: Counts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        c = self.counts
        c.ops[name] += 1
        before = c.launches
        try:
            return self._count(func, name, args, kwargs)
        finally:
            c.launches_by_op[name] += c.launches - before

    def _count(self, func, name, args, kwargs):
        c = self.counts
        if name in SYNCS and any(t.device.type == "cuda" for t in _tensors(args)):
            c.syncs += 1  # fake tensors hold no value: answer as a nonzero one would
            return True if name == "is_nonzero" else 1
        inputs = _tensors((args, kwargs))
        if name.startswith("_fused_") and any(isinstance(t, FakeTensor) for t in inputs):
            # in place, returns nothing: fake tensors hold no values to update (and there is
            # no fake rule for the kernel with a tensor learning rate)
            out = None
        else:
            out = func(*args, **kwargs)
        outputs = _tensors(out)
        if name in SYNCS:
            return out
        if (
            name in ("_to_copy", "copy_", "_copy_from")
            and any(t.device.type == "cpu" for t in inputs)
            and any(t.device.type == "cuda" for t in (outputs or inputs))
        ):
            c.copies += 1
        if name in NO_KERNEL or not any(t.device.type == "cuda" for t in inputs + outputs):
            return out
        c.bytes += sum(
            t.numel() * t.element_size() for t in inputs + outputs if t.device.type == "cuda"
        )
        if name.startswith("_foreach_"):
            lists = [
                a
                for a in (*args, *kwargs.values())
                if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor)
            ]
            if not name.endswith("_") and outputs:
                lists.append(list(out) if isinstance(out, (list, tuple)) else [out])
            converts = name == "_foreach_copy_"
            c.launches += _foreach_launches(lists, converts=converts) if lists else 1
        elif name.startswith("_fused_"):  # params, grads, moments; then the 0-d steps
            lists = [
                a
                for a in args
                if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor)
            ]
            c.launches += _foreach_launches(lists[:4]) if lists else 1
        else:
            c.launches += 1
        return out


def count_torch_step(
    make_optimizer,
    shapes: list[tuple[int, ...]],
    *,
    warmup: int = 1,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Counts:
    """Counts of one ``step()`` (after ``warmup`` steps) of ``make_optimizer(params)`` on fake
    CUDA parameters of ``shapes`` and ``dtype`` with gradients set; with ``channels_last``,
    the 4-D ones in that memory format (as GPU training of conv nets often keeps them)."""
    counts = Counts()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with FakeTensorMode(allow_non_fake_inputs=True):
        params = [
            torch.nn.Parameter(
                torch.empty(
                    s, device="cuda", dtype=dtype, memory_format=fmt if len(s) == 4 else None
                )
            )
            for s in shapes
        ]
        for p in params:
            p.grad = torch.empty_like(p)
        opt = make_optimizer(params)
        for _ in range(warmup):  # counted too, and discarded (it answers for syncs)
            with _Counter(Counts()):
                opt.step()
        with _Counter(counts):
            opt.step()
    return counts


class CountedArray:
    """Marker base: see :func:`count_raw_step`."""


def count_raw_step(
    config: Any, shapes: list[tuple[int, ...]], *, steps: int = 2, packed: bool = False
) -> Counter:
    """Array operations and scalar conversions of ``adamp_core.step`` on a list of arrays, as
    CuPy would launch them: NumPy arrays of a subclass that counts every ufunc and NumPy
    function applied to it (CuPy launches a kernel for each) but a reshape that returns a
    view, every write of an array into another (``a[...] = b``, a copy kernel), and every
    Python scalar turned into an array (``cupy.asarray(0.5)`` is a host-to-device copy).
    Counts of the last step, in place; ``packed``: with one packed state for the list.
    """
    import numpy as np

    import adamp_core

    counts: Counter = Counter()

    class Counted(np.ndarray, CountedArray):
        def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
            counts["ops"] += 1
            args = [i.view(np.ndarray) if isinstance(i, Counted) else i for i in inputs]
            if "out" in kwargs:
                kwargs["out"] = tuple(o.view(np.ndarray) for o in kwargs["out"])
            result = getattr(ufunc, method)(*args, **kwargs)
            if isinstance(result, np.ndarray):
                return result.view(Counted)
            if isinstance(result, tuple):
                return tuple(r.view(Counted) if isinstance(r, np.ndarray) else r for r in result)
            return result

        def __array_function__(self, func, types, args, kwargs):
            def uncounted(a):
                if isinstance(a, (list, tuple)):  # concat's arrays
                    return type(a)(uncounted(x) for x in a)
                return a.view(np.ndarray) if isinstance(a, Counted) else a

            plain = [uncounted(a) for a in args]
            result = func(*plain, **kwargs)
            view = func is np.reshape and np.shares_memory(result, plain[0])
            if func.__name__ not in ("shape", "ndim", "result_type", "may_share_memory") and (
                not view
            ):
                counts["ops"] += 1
                counts[f"op {func.__name__}"] += 1
            return result.view(Counted) if isinstance(result, np.ndarray) else result

        def __setitem__(self, key, value):
            if isinstance(value, np.ndarray):
                counts["ops"] += 1
                counts["op setitem"] += 1
            super().__setitem__(key, value)

    import array_api_compat.numpy as compat

    plain_asarray = compat.asarray

    def asarray(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, (int, float, bool)):
            counts["scalar conversions"] += 1
        return plain_asarray(obj, *args, **kwargs)

    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32).view(Counted) for s in shapes]
    # every state array counted too, however init made it (an operation on uncounted arrays
    # alone would be missed)
    made = adamp_core.init(params, config, packed=packed)
    state = (
        type(made)(*(a.view(Counted) for a in made))
        if packed
        else [type(s)(*(a.view(Counted) for a in s)) for s in made]
    )
    compat.asarray = asarray
    try:
        for _ in range(steps):
            counts.clear()
            grads = [rng.standard_normal(s).astype(np.float32).view(Counted) for s in shapes]
            params, state = adamp_core.step(params, grads, state, config, inplace=True)
    finally:
        compat.asarray = plain_asarray
    return counts


def runtime_conditionals(mlir: str) -> int:
    """``stablehlo.case``/``if`` ops whose index is not a constant (or a case on constants,
    as ``platform_dependent`` lowers): conditionals that run on the device, which XLA:GPU
    runs by copying the predicate to the host and waiting."""
    definitions = {
        m.group(1): m.group(2) for m in re.finditer(r"^\s*(%[\w#:]+) = (.*)$", mlir, re.M)
    }

    def constant(name: str, depth: int = 0) -> bool:
        d = definitions.get(name.split("#")[0], "")
        if "stablehlo.constant" in d:
            return True
        inner = re.match(r'"?stablehlo\.case"?\((%[\w#]+)\)', d)
        return bool(inner) and depth < 8 and constant(inner.group(1), depth + 1)

    ops = re.findall(r'"?stablehlo\.(?:case|if)"?\((%[\w#]+)', mlir)
    return sum(not constant(i) for i in ops)


class _LiveBytes(TorchDispatchMode):
    """Bytes of the tensors that operations create, tracked until the last tensor holding
    each storage dies; ``peak`` is the most alive at once."""

    def __init__(self) -> None:
        super().__init__()
        self.holders: Counter = Counter()
        self.sizes: dict[int, int] = {}
        self.live = self.peak = 0

    def _release(self, key: int) -> None:
        self.holders[key] -= 1
        if self.holders[key] == 0:
            del self.holders[key]
            self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, kwargs))}
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            key = t.untyped_storage().data_ptr()
            if key in inputs and key not in self.sizes:
                continue  # written in place, or a view of something made before the step
            if key not in self.sizes:
                self.sizes[key] = t.untyped_storage().nbytes()
                self.live += self.sizes[key]
            self.holders[key] += 1
            weakref.finalize(t, self._release, key)
        self.peak = max(self.peak, self.live)
        return out


def peak_step_bytes(make_optimizer, shapes: list[tuple[int, ...]], *, warmup: int = 1) -> int:
    """Peak bytes of the temporaries of one ``step()`` (after ``warmup`` steps, so the state
    exists) of ``make_optimizer(params)`` on real CPU float32 parameters of ``shapes``. The
    figure depends on the code path, not the device: force a CUDA path onto the CPU to
    measure it."""
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, 0.01 * (i + 1))
    opt = make_optimizer(params)
    with torch.no_grad():
        for _ in range(warmup):
            opt.step()
    return step_bytes(opt.step)


def step_bytes(step) -> int:
    """Peak bytes of the tensors ``step()`` creates that are alive at once."""
    import gc

    gc.collect()
    mode = _LiveBytes()
    with torch.no_grad(), mode:
        step()
    return mode.peak
