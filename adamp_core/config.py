"""Hyperparameters of AdamP and SGDP: frozen, validated at construction.

The argument names, their order and their defaults are those of the official
``adamp`` 0.3.0 package, so ``AdamPConfig(**official_kwargs)`` just works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AdamPConfig", "SGDPConfig"]


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _check_nonnegative(name: str, value: object) -> None:
    if _check_real(name, value) < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _check_unit_interval(name: str, value: object, *, closed: bool) -> None:
    v = _check_real(name, value)
    top_ok = v <= 1.0 if closed else v < 1.0
    if not (0.0 <= v and top_ok):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def _check_projection_args(eps: float, delta: float, wd_ratio: float) -> None:
    _check_nonnegative("eps", eps)
    _check_nonnegative("delta", delta)
    _check_nonnegative("wd_ratio", wd_ratio)


@dataclass(frozen=True)
class AdamPConfig:
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

    def __post_init__(self) -> None:
        _check_nonnegative("lr", self.lr)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(self.betas))
        _check_unit_interval("betas[0]", self.betas[0], closed=False)
        _check_unit_interval("betas[1]", self.betas[1], closed=False)
        _check_nonnegative("weight_decay", self.weight_decay)
        _check_projection_args(self.eps, self.delta, self.wd_ratio)
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov must be a bool, got {self.nesterov!r}")


@dataclass(frozen=True)
class SGDPConfig:
    """Hyperparameters of SGDP (Heo et al., ICLR 2021).

    Args:
      lr: learning rate, ``>= 0`` (required, as in ``torch.optim.SGD``).
      momentum: momentum factor in ``[0, 1)`` (the decay is divided by
        ``1 - momentum``, so 1 is excluded).
      dampening: in ``[0, 1]``; the gradient enters the buffer as
        ``(1 - dampening) * grad``.
      weight_decay: decoupled weight decay, ``>= 0``; applied as
        ``w *= 1 - lr * weight_decay * r / (1 - momentum)``, ``r`` as in AdamP.
      nesterov: Nesterov momentum; needs ``momentum > 0``.
      eps, delta, wd_ratio: as in :class:`AdamPConfig`.

    Raises:
      ValueError: naming the argument, as for :class:`AdamPConfig`.
    """

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    eps: float = 1e-8
    delta: float = 0.1
    wd_ratio: float = 0.1

    def __post_init__(self) -> None:
        _check_nonnegative("lr", self.lr)
        _check_unit_interval("momentum", self.momentum, closed=False)
        _check_unit_interval("dampening", self.dampening, closed=True)
        _check_nonnegative("weight_decay", self.weight_decay)
        _check_projection_args(self.eps, self.delta, self.wd_ratio)
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov must be a bool, got {self.nesterov!r}")
        if self.nesterov and self.momentum <= 0.0:
            raise ValueError("nesterov requires momentum > 0")
