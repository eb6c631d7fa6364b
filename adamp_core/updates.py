"""One AdamP or SGDP update of a single parameter array.

These are the building blocks that [`adamp_core.step`][adamp_core.step] and the adapters
call. Each takes the parameter, its gradient and its state, and returns the new
parameter, the new state and the [`Projection`][adamp_core.Projection]
that was applied. Hyperparameters may be Python floats or 0-d arrays (a traced
learning-rate schedule, say); ``nesterov`` is a Python bool.

With ``inplace=False`` (default) no input is modified. With ``inplace=True`` the
parameter and the state arrays are written in place with the array-API in-place
operators; the caller checks writability first ([`adamp_core.step`][adamp_core.step] does).

The math, as ``adamp`` 0.3.0::

    AdamP: m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  t += 1
           u = m / (sqrt(v)/sqrt(1-b2**t) + eps)     (nesterov: b1*m + (1-b1)*g over the same)
           d = lr/(1-b1**t) * u                       (Adam's step)
           w = w*(1 - lr*wd*r) - (d - coef*w)
    SGDP:  buf = momentum*buf + (1-dampening)*g;  u = buf   (nesterov: g + momentum*buf)
           buf -= coef*w   (without nesterov the projected buffer is carried on)
           w = w*(1 - lr*wd*r/(1-momentum)) - lr * (u - coef*w)

where ``coef`` and ``r`` come from [`projection`][adamp_core.projection].
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from .kernels import quotient_, scale_add_, scale_addcmul_, scaled, sub_product_
from .namespace import compute_dtype, namespace_of
from .radial import Projection, channel_view_shape, normalize_axis, project, projection
from .state import AdamPState, SGDPState

__all__ = [
    "adam_direction",
    "adam_moments",
    "adam_step",
    "adamp_update",
    "apply_update",
    "sgd_direction",
    "sgd_momentum",
    "sgdp_update",
]

Array = Any
Scalar = float | Array


def _as(x: Array | float, dtype: Any, xp: Any) -> Array | float:
    """``x`` in ``dtype``; a Python number (a namespace's constant) as it is."""
    if isinstance(x, (int, float)) or x.dtype == dtype:
        return x
    return xp.astype(x, dtype)


def adam_moments(
    grad: Array,
    exp_avg: Array,
    exp_avg_sq: Array,
    *,
    beta1: Scalar,
    beta2: Scalar,
    inplace: bool = False,
    xp: Any = None,
) -> tuple[Array, Array]:
    """``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g``; in place or new arrays."""
    if inplace:
        xp = namespace_of(grad) if xp is None else xp
        scale_add_(exp_avg, beta1, grad, 1 - beta1, xp=xp)
        scale_addcmul_(exp_avg_sq, beta2, grad, grad, 1 - beta2, xp=xp)
        return exp_avg, exp_avg_sq
    return exp_avg * beta1 + (1 - beta1) * grad, exp_avg_sq * beta2 + (1 - beta2) * grad * grad


def adam_direction(
    grad: Array,
    exp_avg: Array,
    exp_avg_sq: Array,
    sqrt_bc2: Array,
    *,
    beta1: Scalar,
    eps: Scalar,
    nesterov: bool,
    xp: Any,
    scale: Scalar | None = None,
) -> Array:
    """Adam's update direction ``m / (sqrt(v)/sqrt(bc2) + eps)``, a new array.

    ``sqrt_bc2`` is ``sqrt(1 - beta2**t)`` as a 0-d array; with ``nesterov`` the
    numerator is ``b1*m + (1-b1)*g``; ``scale`` (a float or 0-d array) multiplies
    the numerator. For float16/bfloat16 inputs the direction is computed and
    returned in float32, where ``eps`` does not underflow to 0.
    """
    dtype = compute_dtype(exp_avg.dtype, xp)
    grad, exp_avg, exp_avg_sq = (_as(a, dtype, xp) for a in (grad, exp_avg, exp_avg_sq))
    denom = xp.sqrt(exp_avg_sq)
    denom /= _as(sqrt_bc2, denom.dtype, xp)
    denom += eps
    numerator = beta1 * exp_avg + (1 - beta1) * grad if nesterov else exp_avg
    if scale is not None:
        numerator = numerator * (
            scale if isinstance(scale, (int, float)) else _as(scale, dtype, xp)
        )
    return quotient_(numerator, denom, xp=xp)


def adam_step(
    grad: Array,
    exp_avg: Array,
    exp_avg_sq: Array,
    step: Array,
    *,
    lr: Scalar,
    beta1: Scalar,
    beta2: Scalar,
    eps: Scalar,
    nesterov: bool,
    inplace: bool = False,
    xp: Any,
) -> tuple[Array, Array, Array]:
    """Adam's moments and its step ``d = lr/(1-b1**t) * u`` (``u`` from
    [`adam_direction`][adamp_core.updates.adam_direction]).

    ``step`` is the 0-d step count ``t`` after this step's increment. Returns
    ``(exp_avg, exp_avg_sq, d)``; ``d`` is a new array, in float32 for
    float16/bfloat16 moments.

    A namespace may supply the whole of this as one kernel, ``adam_step_(grad,
    exp_avg, exp_avg_sq, step, *, lr, beta1, beta2, eps)``: it updates the moments
    in place and returns ``d``, or ``None``, having changed nothing, when it cannot
    handle these arrays (then the definition here runs). It is used only with
    ``inplace``, on the moments themselves or, for half-precision ones, on their
    float32 copies: one pass over memory instead of six. With ``nesterov`` it runs on
    a copy of the first moment already updated: the kernel's own update of that copy,
    ``b1*m + (1-b1)*g``, is Nesterov's numerator.
    """
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, nesterov=nesterov)
    dtype = compute_dtype(exp_avg.dtype, xp)
    # Half-precision moments are updated in float32 and the step taken from those, then
    # stored rounded: (1-b2)*g*g can underflow to 0 in float16 while m does not, and a
    # step from the stored v would then be m/eps.
    g, m, v = (_as(a, dtype, xp) for a in (grad, exp_avg, exp_avg_sq))
    if not inplace:
        m, v = adam_moments(g, m, v, beta1=beta1, beta2=beta2, xp=xp)
        d = _adam_d(g, m, v, step, **hyper, xp=xp)
        return _as(m, exp_avg.dtype, xp), _as(v, exp_avg_sq.dtype, xp), d
    fused = getattr(xp, "adam_step_", None)
    kernel = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    d = None
    if nesterov:  # the first moment now, then the kernel on a copy of it
        m = scale_add_(m, beta1, g, 1 - beta1, xp=xp)
        if fused is not None:
            d = fused(g, xp.asarray(m, copy=True), v, step, **kernel)
        if d is None:
            v = scale_addcmul_(v, beta2, g, g, 1 - beta2, xp=xp)
    else:
        if fused is not None:
            d = fused(g, m, v, step, **kernel)
        if d is None:
            m, v = adam_moments(g, m, v, beta1=beta1, beta2=beta2, inplace=True, xp=xp)
    if d is None:
        d = _adam_d(g, m, v, step, **hyper, xp=xp)
    if dtype != exp_avg.dtype:
        exp_avg[...] = _as(m, exp_avg.dtype, xp)
        exp_avg_sq[...] = _as(v, exp_avg_sq.dtype, xp)
    return exp_avg, exp_avg_sq, d


def _adam_d(
    grad: Array,
    exp_avg: Array,
    exp_avg_sq: Array,
    step: Array,
    *,
    lr: Scalar,
    beta1: Scalar,
    beta2: Scalar,
    eps: Scalar,
    nesterov: bool,
    xp: Any,
) -> Array:
    """Adam's step ``d`` from the updated moments (see
    [`adam_step`][adamp_core.updates.adam_step])."""
    bias_correction1 = 1 - beta1**step
    sqrt_bc2 = xp.sqrt(1 - beta2**step)
    # The step size scales the numerator: in one expression with the division, a fusing
    # compiler computes the step in one loop instead of materializing it twice.
    step_size = lr / _as(bias_correction1, compute_dtype(exp_avg.dtype, xp), xp)
    return adam_direction(
        grad,
        exp_avg,
        exp_avg_sq,
        sqrt_bc2,
        beta1=beta1,
        eps=eps,
        nesterov=nesterov,
        xp=xp,
        scale=step_size,
    )


def _recomputes(xp: Any, inplace: bool) -> bool:
    """Whether the projection gets the update as a function that computes it afresh: with a
    namespace that can skip work (it supplies ``skip_unless``), the update is then computed
    only where a view fired, and a compiler may fuse it into the final pass instead of
    storing it. Not in place: the moments would be updated twice."""
    return not inplace and getattr(xp, "skip_unless", None) is not None


def sgd_momentum(
    grad: Array,
    buf: Array,
    *,
    momentum: Scalar,
    dampening: Scalar,
    inplace: bool = False,
    xp: Any = None,
) -> Array:
    """``buf = momentum*buf + (1-dampening)*g``; in place or a new array."""
    if inplace:
        xp = namespace_of(grad) if xp is None else xp
        return scale_add_(buf, momentum, grad, 1 - dampening, xp=xp)
    return buf * momentum + scaled(1 - dampening, grad)  # undamped: no 1.0 * grad pass


def sgd_direction(grad: Array, buf: Array, *, momentum: Scalar, nesterov: bool) -> Array:
    """SGD's direction: ``buf``, or ``g + momentum*buf`` with ``nesterov``."""
    return grad + momentum * buf if nesterov else buf


def apply_update(
    param: Array,
    update: Array,
    coef: Array | None,
    *,
    decay: Array,
    step_size: Scalar,
    inplace: bool = False,
    xp: Any,
) -> Array:
    """``param*decay - step_size*(update - coef*param)``, fused as
    ``param*(decay + step_size*coef) - step_size*update``.

    ``coef`` is [`Projection`][adamp_core.Projection]`.coef` (``None`` when ``update`` is already
    projected); ``decay`` and ``step_size`` are 0-d arrays or Python floats.
    """
    factor = decay if coef is None else decay + scaled(step_size, coef)
    if update.dtype != param.dtype:  # a float32 direction for a float16/bfloat16 weight
        wide = _as(param, update.dtype, xp) * factor - scaled(step_size, update)
        new = _as(wide, param.dtype, xp)
        if inplace:
            param[...] = new
            return param
        return new
    if not isinstance(factor, (int, float)):
        factor = _as(factor, param.dtype, xp)
    if not isinstance(step_size, (int, float)):
        step_size = _as(step_size, param.dtype, xp)
    if inplace:
        param *= factor
        return sub_product_(param, step_size, update, xp=xp)
    return param * factor - scaled(step_size, update)


class _View:
    """A parameter-shaped array in its state's layout, and back (reshapes only; the
    identity when the state has the parameter's shape)."""

    def __init__(self, shape: tuple, state_shape: tuple, channel_axis: int | None, xp: Any):
        self.shape, self.state_shape, self.xp = shape, state_shape, xp
        self.same = shape == state_shape
        self.axis = channel_axis if self.same else normalize_axis(channel_axis, len(shape))
        #: the channel axis in the state's layout: the same, or 0 / 1 of the 2-D view
        self.channel_axis = self.axis if self.same else min(self.axis, 1)

    def __call__(self, x: Array) -> Array:
        return x if self.same else self.xp.reshape(x, self.state_shape)

    def back(self, x: Array) -> Array:
        return x if self.same else self.xp.reshape(x, self.shape)

    def projection(self, proj: Projection) -> Projection:
        """``proj``, computed in the state's layout, with ``coef`` shaped for the parameter."""
        if self.same:
            return proj
        rows = math.prod(proj.coef.shape)  # 1 where nothing was tested
        coef_shape = tuple(rows if a == self.axis else 1 for a in range(len(self.shape)))
        return proj._replace(coef=self.xp.reshape(proj.coef, coef_shape))


def _state_view(param: Array, state_array: Array, channel_axis: int | None, xp: Any) -> _View:
    """The state's layout: the parameter's shape or, for a weight of 3 or more dimensions,
    the 2-D shape in which it is tested
    ([`channel_view_shape`][adamp_core.radial.channel_view_shape])."""
    shape, state_shape = tuple(param.shape), tuple(state_array.shape)
    if state_shape == shape:
        return _View(shape, shape, channel_axis, xp)
    view_shape = channel_view_shape(shape, channel_axis)
    if len(shape) < 3 or state_shape != view_shape:
        raise ValueError(
            f"state of shape {state_shape} for a parameter of shape {shape}: expected the "
            f"parameter's shape or {view_shape}"
        )
    return _View(shape, state_shape, channel_axis, xp)


def adamp_update(
    param: Array,
    grad: Array,
    state: AdamPState,
    *,
    lr: Scalar,
    beta1: Scalar,
    beta2: Scalar,
    eps: Scalar,
    weight_decay: Scalar,
    delta: Scalar,
    wd_ratio: Scalar,
    nesterov: bool,
    channel_axis: int | None = 0,
    inplace: bool = False,
    xp: Any = None,
) -> tuple[Array, AdamPState, Projection]:
    """One AdamP step of one parameter.

    Args:
      param, grad: arrays of one shape, dtype and device (real floating).
      state: the parameter's [`AdamPState`][adamp_core.AdamPState]. Its moments
        have the parameter's shape or, for a weight of 3+ dimensions, the 2-D shape
        in which it is tested ([`channel_view_shape`][adamp_core.radial.channel_view_shape]):
        the state math and the projection then run in that layout and only the
        final update in the parameter's.
      lr, beta1, beta2, eps, weight_decay, delta, wd_ratio: floats or 0-d arrays.
      nesterov: Python bool.
      channel_axis: the axis of the weight's output channels (0: first, -1: last), or
        ``None``: never projected.
      inplace: write ``param`` and ``state`` in place (they must be writable).
      xp: namespace override (see [`with_overrides`][adamp_core.with_overrides]).

    Returns:
      ``(new_param, new_state, projection)``; with ``inplace`` the first two are
      the input arrays, updated. ``projection.coef`` has ``param.ndim`` dimensions.

    Raises:
      ValueError: moments of another shape than these two.
    """
    xp = namespace_of(param, grad) if xp is None else xp
    view = _state_view(param, state.exp_avg, channel_axis, xp)
    if inplace:
        step = state.step
        step += 1
    else:
        step = xp.asarray(state.step + 1)  # a 0-d array: 0-d arithmetic may give a scalar
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, nesterov=nesterov)
    g = view(grad)
    exp_avg, exp_avg_sq, d = adam_step(
        g, state.exp_avg, state.exp_avg_sq, step, **hyper, inplace=inplace, xp=xp
    )
    update = d
    if _recomputes(xp, inplace):  # the same step, computed where the projection needs it
        update = partial(_adam_d, g, exp_avg, exp_avg_sq, step, **hyper, xp=xp)
    proj = view.projection(
        projection(
            view(param),
            g,
            update,
            delta=delta,
            wd_ratio=wd_ratio,
            eps=eps,
            channel_axis=view.channel_axis,
            xp=xp,
        )
    )
    decay = 1 - lr * weight_decay * proj.ratio
    d = view.back(d)
    param = apply_update(param, d, proj.coef, decay=decay, step_size=1, inplace=inplace, xp=xp)
    return param, AdamPState(step, exp_avg, exp_avg_sq), proj


def sgdp_update(
    param: Array,
    grad: Array,
    state: SGDPState,
    *,
    lr: Scalar,
    momentum: Scalar,
    dampening: Scalar,
    weight_decay: Scalar,
    nesterov: bool,
    eps: Scalar,
    delta: Scalar,
    wd_ratio: Scalar,
    channel_axis: int | None = 0,
    inplace: bool = False,
    xp: Any = None,
) -> tuple[Array, SGDPState, Projection]:
    """One SGDP step of one parameter; arguments as [`adamp_update`][adamp_core.adamp_update] (the
    momentum
    buffer may also be the ``(rows, fan)`` view of a weight of 3+ dimensions).

    Without ``nesterov`` the momentum buffer itself is projected and carried to
    the next step, as in ``adamp`` 0.3.0.
    """
    xp = namespace_of(param, grad) if xp is None else xp
    view = _state_view(param, state.momentum, channel_axis, xp)
    w, g = view(param), view(grad)
    buf = sgd_momentum(
        g, state.momentum, momentum=momentum, dampening=dampening, inplace=inplace, xp=xp
    )
    update = sgd_direction(g, buf, momentum=momentum, nesterov=nesterov)
    for_projection = update
    if _recomputes(xp, inplace):

        def for_projection() -> Array:
            # With nesterov the new buffer is the new state, stored anyway: read it. Without,
            # the stored state is the projected buffer, so recompute the buffer from the old.
            fresh = (
                buf
                if nesterov
                else sgd_momentum(g, state.momentum, momentum=momentum, dampening=dampening, xp=xp)
            )
            return sgd_direction(g, fresh, momentum=momentum, nesterov=nesterov)

    rows_proj = projection(
        w,
        g,
        for_projection,
        delta=delta,
        wd_ratio=wd_ratio,
        eps=eps,
        channel_axis=view.channel_axis,
        xp=xp,
    )
    proj = view.projection(rows_proj)
    decay = 1 - lr * weight_decay * proj.ratio / (1 - momentum)
    coef = proj.coef
    if not nesterov:  # the buffer is the update: project it and carry it on
        if inplace:
            sub_product_(buf, _as(rows_proj.coef, buf.dtype, xp), w, xp=xp)
        else:
            buf = project(buf, w, rows_proj, xp=xp)
        update, coef = buf, None
    update = view.back(update)
    param = apply_update(param, update, coef, decay=decay, step_size=lr, inplace=inplace, xp=xp)
    return param, SGDPState(buf), proj
