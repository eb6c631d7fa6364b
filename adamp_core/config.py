"""Hyperparameters of AdamP and SGDP: frozen, validated at construction.

The argument names, their order and their defaults are those of the official
``adamp`` 0.3.0 package, so ``AdamPConfig(**official_kwargs)`` just works.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

__all__ = ["AdamPConfig", "SGDPConfig", "as_real"]


def as_real(name: str, value: Any) -> float:
    """``value`` as a Python float: a real number (Python, NumPy) or a one-element real
    array of any library (a 0-d array, say), as the frameworks' optimizers accept.

    Raises:
      ValueError: naming ``name``, for a bool, a complex or non-numeric value, an array of
        more than one element, or a value that is not finite.
    """
    if isinstance(value, bool) or (
        isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real)
    ):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not isinstance(value, numbers.Real):
        shape = getattr(value, "shape", None)
        if shape is None or math.prod(shape) != 1:
            what = f"an array of shape {tuple(shape)}" if shape is not None else repr(value)
            raise ValueError(f"{name} must be a real number or a one-element array, got {what}")
        try:
            value = float(value)
        except (TypeError, ValueError, RuntimeError) as err:  # complex, non-numeric
            raise ValueError(f"{name} must be a real number, got {value!r} ({err})") from None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _nonnegative(name: str, value: Any) -> float:
    v = as_real(name, value)
    if v < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def _unit_interval(name: str, value: Any, *, closed: bool) -> float:
    v = as_real(name, value)
    if not (0.0 <= v and (v <= 1.0 if closed else v < 1.0)):
        raise ValueError(f"{name} must be in {'[0, 1]' if closed else '[0, 1)'}, got {value!r}")
    return v


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def _channel_axis(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"channel_axis must be an int, got {value!r}")
    return int(value)


def _store(config: Any, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(config, name, value)


class _Config:
    """What both configs offer adapters: the official argument names, and values keyed by
    them turned into the update's keyword arguments."""

    @classmethod
    def official_names(cls) -> tuple[str, ...]:
        """The hyperparameters the official optimizer takes, in its order (the fields before
        the keyword-only ``channel_axis``): the keys of an adapter's param group."""
        return tuple(f.name for f in dataclasses.fields(cls) if not f.kw_only)

    def update_kwargs(self) -> dict[str, Any]:
        """The hyperparameters as the update function takes them
        ([`adamp_update`][adamp_core.adamp_update] splits ``betas`` into ``beta1`` and
        ``beta2``)."""
        return self.as_update_kwargs(dataclasses.asdict(self))

    @staticmethod
    def as_update_kwargs(values: Mapping[str, Any]) -> dict[str, Any]:
        """``values``, keyed as the config's fields (a param group, say), keyed as the update
        function takes them. Not validated: the values pass as they are (0-d arrays stay
        arrays)."""
        return dict(values)


@dataclass(frozen=True)
class AdamPConfig(_Config):
    """Hyperparameters of AdamP (Heo et al., ICLR 2021).

    Args:
      lr: learning rate, ``>= 0``.
      betas: ``(beta1, beta2)``, each in ``[0, 1)``: decay rates of the first
        and second moment estimates.
      eps: ``>= 0``; added to Adam's denominator, and the ``eps`` of the
        cosine similarity and of the weight normalization in the projection.
      weight_decay: decoupled weight decay, ``>= 0``; applied as
        ``w *= 1 - lr * weight_decay * r`` before the step, where ``r`` is
        ``wd_ratio`` when the update was projected and 1 otherwise.
      delta: ``>= 0``; a weight of 2+ dimensions is taken as scale-invariant
        when ``max |cos(grad, w)| < delta / sqrt(fan)`` (per output channel,
        then per layer).
      wd_ratio: ``>= 0``; the weight-decay multiplier of projected weights.
      nesterov: use Nesterov momentum for the update direction.
      channel_axis: the axis of a weight that indexes its output channels: 0 for
        output channels first, as the official package has them (the default), -1 for
        output channels last (``(in, out)`` dense and ``(..., in, out)`` conv kernels).
        Not an argument of the official package (keyword only).

    Every number may be a Python or NumPy scalar or a one-element array (a 0-d
    tensor); it is validated and stored as a Python float.

    Raises:
      ValueError: naming the argument, for a value outside its range, a
        non-finite value, or a value that is not a real number.
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    delta: float = 0.1
    wd_ratio: float = 0.1
    nesterov: bool = False
    _: KW_ONLY
    channel_axis: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        _store(
            self,
            lr=_nonnegative("lr", self.lr),
            betas=tuple(
                _unit_interval(f"betas[{i}]", b, closed=False) for i, b in enumerate(self.betas)
            ),
            eps=_nonnegative("eps", self.eps),
            weight_decay=_nonnegative("weight_decay", self.weight_decay),
            delta=_nonnegative("delta", self.delta),
            wd_ratio=_nonnegative("wd_ratio", self.wd_ratio),
            nesterov=_flag("nesterov", self.nesterov),
            channel_axis=_channel_axis(self.channel_axis),
        )

    @staticmethod
    def as_update_kwargs(values: Mapping[str, Any]) -> dict[str, Any]:
        """``values``, keyed as the config's fields (a param group, say), keyed as
        [`adamp_update`][adamp_core.adamp_update] takes them: ``betas`` split into ``beta1``
        and ``beta2``. Not validated: the values pass as they are (0-d arrays stay arrays)."""
        kwargs = dict(values)
        kwargs["beta1"], kwargs["beta2"] = kwargs.pop("betas")
        return kwargs


@dataclass(frozen=True)
class SGDPConfig(_Config):
    """Hyperparameters of SGDP (Heo et al., ICLR 2021).

    Args:
      lr: learning rate, ``>= 0`` (required, as in the official SGDP).
      momentum: momentum factor in ``[0, 1)`` (the decay is divided by
        ``1 - momentum``, so 1 is excluded).
      dampening: in ``[0, 1]``; the gradient enters the buffer as
        ``(1 - dampening) * grad``.
      weight_decay: decoupled weight decay, ``>= 0``; applied as
        ``w *= 1 - lr * weight_decay * r / (1 - momentum)``, ``r`` as in AdamP.
      nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``
        (as the official SGDP).
      eps, delta, wd_ratio, channel_axis: as in [`AdamPConfig`][adamp_core.AdamPConfig].

    Raises:
      ValueError: naming the argument, as for [`AdamPConfig`][adamp_core.AdamPConfig].
    """

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    eps: float = 1e-8
    delta: float = 0.1
    wd_ratio: float = 0.1
    _: KW_ONLY
    channel_axis: int = 0

    def __post_init__(self) -> None:
        _store(
            self,
            lr=_nonnegative("lr", self.lr),
            momentum=_unit_interval("momentum", self.momentum, closed=False),
            dampening=_unit_interval("dampening", self.dampening, closed=True),
            weight_decay=_nonnegative("weight_decay", self.weight_decay),
            nesterov=_flag("nesterov", self.nesterov),
            eps=_nonnegative("eps", self.eps),
            delta=_nonnegative("delta", self.delta),
            wd_ratio=_nonnegative("wd_ratio", self.wd_ratio),
            channel_axis=_channel_axis(self.channel_axis),
        )
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError("nesterov requires momentum > 0 and dampening == 0")
