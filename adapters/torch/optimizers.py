"""``AdamP`` and ``SGDP`` as ``torch.optim.Optimizer``s, drop-in for the official ``adamp`` ones.

The classes gather tensors, lay out state as the official package does and
translate torch.optim conventions (param groups, ``maximize``, closures); every
update is computed by ``adamp_core`` (``adamp_update`` / ``sgdp_update``),
either per tensor or over a whole group at once through the foreach namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch.optim.optimizer import Optimizer, required

import adamp_core
from adamp_core.radial import deciding_threshold
from adamp_core.state import step_dtype

from .compiled import (
    DeviceScalars,
    can_view,
    compiled,
    compiled_group,
    flat_view,
    read_on_host,
)
from .foreach import group_step, namespace
from .kernels import SMALL, Workspace, element_namespace

__all__ = ["SGDP", "AdamP", "ProjectionInfo"]

#: hyperparameters a compiled step takes as constants (rarely changed; ``nesterov`` chooses
#: code); the others go in as device tensors
_STATIC = ("nesterov", "delta", "eps")
_BRANCH_NAMES = {adamp_core.NONE: "none", adamp_core.CHANNEL: "channel", adamp_core.LAYER: "layer"}


class ProjectionInfo(NamedTuple):
    """What the last step did to one parameter (see ``AdamP.projection_info``)."""

    name: str  #: the parameter's name if ``names`` were given, else ``"group{g}.param{i}"``
    shape: tuple[int, ...]
    branch: str  #: ``"channel"``, ``"layer"`` or ``"none"``
    cosine: float  #: the ``|cos(grad, w)|`` that decided it (NaN for 1-D or empty weights)
    threshold: float  #: the ``delta / sqrt(fan)`` it was compared against (NaN if not tested)


def _checkable(name: str, value: Any) -> Any:
    """``value`` for the config's check. A tensor on an accelerator is checked for its size
    only, as ``torch.optim`` does: reading its value would wait for the device (and a tensor
    learning rate on the device is how CUDA-graph captured steps follow a schedule)."""
    if isinstance(value, (tuple, list)):
        return type(value)(_checkable(f"{name}[{i}]", v) for i, v in enumerate(value))
    if isinstance(value, torch.Tensor) and value.device.type != "cpu":
        if value.numel() != 1 or not value.is_floating_point():
            raise ValueError(f"{name} must be a one-element floating-point tensor")
        return 0.0 if name == "dampening" else 0.5  # within every range, nesterov too
    return value


def _hyperparameter(value: Any) -> Any:
    """A group's value for the core: a one-element tensor as a 0-d one (a view)."""
    return value.reshape(()) if isinstance(value, torch.Tensor) else value


def _chunks(
    params: list[torch.Tensor], grads: list[torch.Tensor], chunk_size: int | None
) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Consecutive runs of tensors of at most ``chunk_size`` elements together (a larger
    tensor alone); the whole list when ``chunk_size`` is None."""
    if chunk_size is None:
        return [(params, grads)]
    chunks: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    total = 0  # elements in the last chunk
    for p, g in zip(params, grads, strict=True):
        if not chunks or total + p.numel() > chunk_size:
            chunks.append(([], []))
            total = 0
        chunks[-1][0].append(p)
        chunks[-1][1].append(g)
        total += p.numel()
    return chunks


class _ProjectedOptimizer(Optimizer):
    """What AdamP and SGDP share: validation, gathering, state upkeep, diagnostics."""

    _config_type: type
    _config_keys: tuple[str, ...]
    _state_type: type  #: the core's state of one parameter; its fields are the state's keys
    _state_keys: tuple[str, ...]

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._projections: dict[torch.Tensor, adamp_core.Projection] = {}
        self._elements = element_namespace(Workspace())
        self._device_scalars = DeviceScalars()
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._projections = {}
        self._elements = element_namespace(Workspace())
        self._device_scalars = DeviceScalars()
        for group in self.param_groups:  # checkpoints of the official optimizer lack these
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("compile", False)
            group.setdefault("chunk_size", None)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.add_param_group``, validated first: a group with a bad
        hyperparameter, a complex or integer parameter, or a parameter listed twice raises
        ``ValueError`` and is not added."""
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, torch.Tensor) else list(params)
        tensors = [p[1] if isinstance(p, tuple) else p for p in group["params"]]  # named
        name = type(self).__name__
        for p in tensors:
            if isinstance(p, torch.Tensor) and p.is_complex():
                raise ValueError(f"{name} does not support complex parameters")
            if isinstance(p, torch.Tensor) and not p.is_floating_point():
                raise ValueError(f"{name} needs floating-point parameters, got {p.dtype}")
        chunk = group.get("chunk_size", self.defaults.get("chunk_size"))
        if chunk is not None and (type(chunk) is not int or chunk < 1):
            raise ValueError(f"chunk_size must be None or a positive int, got {chunk!r}")
        if len({id(p) for p in tensors}) != len(tensors):
            raise ValueError(f"{name}: a parameter appears more than once in one param group")
        values = {k: group.get(k, self.defaults.get(k, required)) for k in self._config_keys}
        if all(v is not required for v in values.values()):  # else torch names the missing one
            self._config_type(**{k: _checkable(k, v) for k, v in values.items()})
        super().add_param_group(group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.load_state_dict``, refusing state that does not fit its
        parameter (a missing key, a buffer of another shape or not floating point) with a
        ``ValueError`` before anything is loaded."""
        saved_groups = state_dict.get("param_groups", [])
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            for i, (key, p) in enumerate(zip(saved["params"], group["params"])):
                state = state_dict.get("state", {}).get(key)
                if state:
                    self._check_state(state, p, f"the checkpoint's state of group {g} param {i}")
        super().load_state_dict(state_dict)

    def _check_state(self, state: dict[str, Any], p: torch.Tensor, where: str) -> None:
        missing = [k for k in self._state_keys if k not in state]
        if missing:
            raise ValueError(
                f"{where} lacks {missing}; {type(self).__name__} keeps {list(self._state_keys)}"
            )
        for key in self._state_keys:
            value = state[key]
            if key == "step":
                if torch.is_tensor(value) and value.numel() != 1:
                    raise ValueError(f"{where}: 'step' has {value.numel()} elements, not 1")
                continue
            if not torch.is_tensor(value) or not value.is_floating_point():
                raise ValueError(f"{where}: {key!r} must be a floating-point tensor")
            if value.shape != p.shape:
                raise ValueError(
                    f"{where}: {key!r} has shape {tuple(value.shape)}, its parameter "
                    f"{tuple(p.shape)}"
                )

    def _validate_step(self) -> None:
        """Everything a step needs, checked before it changes anything."""
        name = type(self).__name__
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                grad = p.grad
                if grad is None:
                    continue
                where = f"group {g} param {i} (shape {tuple(p.shape)}, {p.dtype}, {p.device})"
                if grad.is_sparse:
                    raise RuntimeError(f"{name} does not support sparse gradients ({where})")
                if grad.shape != p.shape:
                    raise ValueError(f"the gradient of {where} has shape {tuple(grad.shape)}")
                if grad.dtype != p.dtype:
                    raise TypeError(f"the gradient of {where} has dtype {grad.dtype}")
                if grad.device != p.device:
                    raise ValueError(f"the gradient of {where} is on {grad.device}")
                state = self.state.get(p)
                if not state:
                    continue
                self._check_state(state, p, f"the state of {where}")
                for key in self._state_keys:
                    value = state[key]
                    if key != "step" and (value.dtype, value.device) != (p.dtype, p.device):
                        raise TypeError(
                            f"the state {key!r} of {where} is {value.dtype} on {value.device}; "
                            "was the model cast or moved after the optimizer was made? "
                            "Cast or move it before, or load the state again"
                        )

    def _gather(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params, grads = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            params.append(p)
            grads.append(p.grad)
            state = self.state[p]
            if len(state) == 0:
                self._init_state(p, state)
            elif "step" in state and not torch.is_tensor(state["step"]):
                # an official checkpoint stores the step as a Python int
                state["step"] = torch.tensor(
                    float(state["step"]), dtype=step_dtype(p.dtype, torch), device=p.device
                )
        return params, grads

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One optimization step; returns the closure's loss (``None`` without a closure).

        Reads no device value on the host (a CPU-tensor hyperparameter beside parameters
        elsewhere is read as a number, see ``read_on_host``), so it never waits on the device.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._validate_step()
        for index, group in enumerate(self.param_groups):
            params, grads = self._gather(group)
            if not params:
                continue
            if group["maximize"]:
                grads = torch._foreach_neg(grads)
            kwargs = read_on_host(self._hyperparameters(group), params)
            foreach = group["foreach"]
            on_cuda = all(p.is_cuda for p in params)
            if group["compile"] and namespace.batches(params):
                # on accelerators the group's batched step, compiled as one graph
                self._foreach_step(params, grads, kwargs, group["chunk_size"], index)
                continue
            if not group["compile"] and (foreach or (foreach is None and on_cuda)):
                # as torch.optim: the CUDA default
                self._foreach_step(params, grads, kwargs, group["chunk_size"])
                continue
            if foreach is False and not group["compile"]:
                for p, g in zip(params, grads, strict=True):
                    self._single_step(p, g, kwargs)
                continue
            # Small tensors (biases, norm weights: most of a ResNet's tensors, little of its
            # memory) go through the foreach kernels together; large ones one by one, where
            # per-tensor temporaries stay small, or through the compiled core.
            small = [i for i, p in enumerate(params) if p.numel() <= SMALL]
            if small:
                small_params, small_grads = [params[i] for i in small], [grads[i] for i in small]
                self._foreach_step(small_params, small_grads, kwargs, group["chunk_size"])
            large = [i for i, p in enumerate(params) if p.numel() > SMALL]
            params, grads = [params[i] for i in large], [grads[i] for i in large]
            if group["compile"]:
                self._compiled_step(params, grads, kwargs, index)
            else:
                for p, g in zip(params, grads, strict=True):
                    self._single_step(p, g, kwargs)
        return loss

    def _hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's hyperparameters as the core's update takes them."""
        values = {k: group[k] for k in self._config_keys}
        kwargs = self._config_type.as_update_kwargs(values)
        return {k: _hyperparameter(v) for k, v in kwargs.items()}

    def _single_step(self, p: torch.Tensor, g: torch.Tensor, kwargs: dict[str, Any]) -> None:
        state = self._core_state([self.state[p]], lambda ts: ts[0])
        _, _, proj = self._update(p, g, state, inplace=True, xp=self._elements, **kwargs)
        self._projections[p] = proj

    def _compiled_step(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        kwargs: dict[str, Any],
        group_index: int,
    ) -> None:
        fn = compiled(self._update)
        hyper: dict[tuple[torch.dtype, torch.device], dict[str, Any]] = {}
        for p, g in zip(params, grads, strict=True):
            state = self._core_state([self.state[p]], lambda ts: ts[0])
            buffers = [b for k, b in zip(self._state_keys, state, strict=True) if k != "step"]
            if not can_view(p, g, *buffers):  # empty or channels_last: the eager path
                self._single_step(p, g, kwargs)
                continue
            key = (p.dtype, p.device)
            if key not in hyper:
                hyper[key] = self._compiled_hyperparameters(group_index, kwargs, p)
            views = type(state)(
                *(
                    b if k == "step" else flat_view(b)
                    for k, b in zip(self._state_keys, state, strict=True)
                )
            )
            self._projections[p] = fn(flat_view(p), flat_view(g), views, **hyper[key])

    def _compiled_hyperparameters(
        self, group_index: int, kwargs: dict[str, Any], like: torch.Tensor
    ) -> dict[str, Any]:
        """``kwargs`` for a compiled step: the ``_STATIC`` ones as they are, the others as
        device tensors beside ``like`` (see ``DeviceScalars``)."""
        scalars = {k: v for k, v in kwargs.items() if k not in _STATIC}
        static = {k: v for k, v in kwargs.items() if k in _STATIC}
        return {**static, **self._device_scalars(group_index, scalars, like)}

    def _foreach_step(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        kwargs: dict[str, Any],
        chunk_size: int | None,
        compiled_in_group: int | None = None,
    ) -> None:
        """The group's step with the foreach namespace, per device and dtype and per chunk;
        compiled as one graph when ``compiled_in_group`` gives the group's index (its
        hyperparameters then go in as device tensors, see ``DeviceScalars``)."""
        grouped = Optimizer._group_tensors_by_device_and_dtype([params, grads])
        for (all_ps, all_gs), _ in grouped.values():
            hyper, step = kwargs, group_step
            if compiled_in_group is not None:
                hyper = self._compiled_hyperparameters(compiled_in_group, kwargs, all_ps[0])
                step = compiled_group(self._update)
            for ps, gs in _chunks(all_ps, all_gs, chunk_size):
                if compiled_in_group is not None:
                    namespace.layout(ps)  # made outside the graph, which only reads it
                state = self._core_state([self.state[p] for p in ps], list)
                self._keep_projections(ps, step(self._update, ps, gs, state, hyper))

    def _keep_projections(self, ps: list[torch.Tensor], fields: list[list[torch.Tensor]]) -> None:
        """Keep each parameter's projection (``fields``: per field, a value per tensor)."""
        for i, p in enumerate(ps):
            self._projections[p] = adamp_core.Projection(*(f[i] for f in fields))

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        """The core's fresh state (zeros in ``p``'s layout, step 0), keyed as the official
        optimizer keys it."""
        state.update(zip(self._state_keys, self._init(p, xp=self._elements), strict=True))

    def _core_state(self, states: list[dict[str, Any]], wrap: Callable[[list[Any]], Any]) -> Any:
        return self._state_type(*(wrap([s[k] for s in states]) for k in self._state_keys))

    def projection_info(
        self, names: dict[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]] | None = None
    ) -> list[ProjectionInfo]:
        """Per parameter, which branch the last step took and the cosine that decided it.

        Args:
          names: ``dict(model.named_parameters())`` (or the iterable itself) to
            label parameters by name.

        Returns:
          One [`ProjectionInfo`][adapters.torch.ProjectionInfo] per parameter updated by the last
          step, in
          param-group order. This call reads the values from the device (one
          sync, here, on request); ``step()`` itself never does.
        """
        label = {id(p): n for n, p in (dict(names) if names is not None else {}).items()}
        entries = []
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p in self._projections:
                    entries.append((label.get(id(p), f"group{g}.param{i}"), p, group))
        if not entries:
            return []
        values = torch.stack(
            [
                torch.stack(
                    [
                        self._projections[p].branch.to(torch.float64).cpu(),
                        self._projections[p].cosine.to(torch.float64).cpu(),
                    ]
                )
                for _, p, _ in entries
            ]
        ).tolist()
        out = []
        for (name, p, group), (branch, cosine) in zip(entries, values, strict=True):
            bound = deciding_threshold(tuple(p.shape), int(branch), float(group["delta"]))
            out.append(
                ProjectionInfo(name, tuple(p.shape), _BRANCH_NAMES[int(branch)], cosine, bound)
            )
        return out


class AdamP(_ProjectedOptimizer):
    """AdamP (Heo et al., ICLR 2021): Adam that removes the radial part of the update of
    scale-invariant weights. Drop-in for ``adamp.AdamP`` (official ``adamp`` 0.3.0).

    Args:
      params: parameters or param groups, as any ``torch.optim`` optimizer.
      lr, betas, eps, weight_decay, delta, wd_ratio, nesterov: as the official
        package (see [`adamp_core.AdamPConfig`][adamp_core.AdamPConfig]; same names, order,
        defaults).
      maximize: maximize the objective (negate gradients).
      foreach: ``True``: one multi-tensor kernel per element-wise operation over
        each group; ``False``: one tensor at a time; ``None`` (default): foreach
        when every parameter of the group is on CUDA, as ``torch.optim`` does (on
        CPU, small tensors together and large ones one by one measured faster: see
        ``docs/torch.md``).
      compile: run the step under ``torch.compile``. On CUDA, XPU and MPS the
        group's multi-tensor step, batched projection included, compiles as one
        graph (minutes of compilation on the first step for large models); on CPU
        the core's update per large tensor (dynamic shapes, one graph per rank, a few
        seconds), where it is the fastest SGDP path (for AdamP the default, with
        torch's fused Adam kernel, is as fast). Hyperparameters go in as device
        tensors: neither the step count nor a learning-rate schedule recompiles.
      chunk_size: on the foreach path, step at most this many elements of a group at
        once (consecutive tensors; a larger tensor alone). The step's temporaries are
        list-sized (AdamP keeps two at a time, SGDP one), so a chunk bounds them, at the
        cost of the step's kernel launches once per chunk. ``None`` (default): the whole
        group at once. Results do not depend on it.

    The state of each parameter is ``{"step", "exp_avg", "exp_avg_sq"}`` as in the
    official optimizer, ``step`` being a 0-d tensor; checkpoints interchange both ways.

    Raises:
      ValueError: at construction or ``add_param_group``, for a bad hyperparameter,
        a complex parameter or one listed twice; in ``load_state_dict``, for state
        that does not fit its parameter.
      ValueError, TypeError, RuntimeError: in ``step``, for a gradient or a state of
        another shape, dtype or device, or a sparse gradient, before anything changes.
    """

    _config_type = adamp_core.AdamPConfig
    _config_keys = _config_type.official_names()
    _state_type = adamp_core.AdamPState
    _state_keys = _state_type._fields

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            delta=delta,
            wd_ratio=wd_ratio,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            compile=compile,
            chunk_size=chunk_size,
        )
        super().__init__(params, defaults)

    _init = staticmethod(adamp_core.state.init_adamp)
    _update = staticmethod(adamp_core.adamp_update)


class SGDP(_ProjectedOptimizer):
    """SGDP (Heo et al., ICLR 2021): SGD with momentum that removes the radial part of the
    update of scale-invariant weights. Drop-in for ``adamp.SGDP`` (official ``adamp`` 0.3.0).

    Args:
      params: parameters or param groups.
      lr (required), momentum, dampening, weight_decay, nesterov, eps, delta, wd_ratio:
        as the official package (see [`adamp_core.SGDPConfig`][adamp_core.SGDPConfig]).
      maximize, foreach, compile, chunk_size: as in [`AdamP`][adapters.torch.AdamP].

    The state of each parameter is ``{"momentum"}``: the (projected, without nesterov)
    momentum buffer, as in the official optimizer.
    """

    _config_type = adamp_core.SGDPConfig
    _config_keys = _config_type.official_names()
    _state_type = adamp_core.SGDPState
    _state_keys = _state_type._fields

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = required,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        eps: float = 1e-8,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            eps=eps,
            delta=delta,
            wd_ratio=wd_ratio,
            maximize=maximize,
            foreach=foreach,
            compile=compile,
            chunk_size=chunk_size,
        )
        super().__init__(params, defaults)

    _init = staticmethod(adamp_core.state.init_sgdp)
    _update = staticmethod(adamp_core.sgdp_update)
