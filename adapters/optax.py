"""Optax adapter: AdamP and SGDP as Optax gradient transformations over ``adamp_core``.

Optax has no AdamP. Here it is, in Optax's conventions: ``adamp``/``sgdp`` aliases
built, like ``optax.adamw``, by chaining a ``scale_by_*`` piece with
``optax.scale_by_learning_rate``; the projection alone as a wrapper
([`with_projection`][adapters.optax.with_projection]) that adds it to any other optimizer. Every
leaf is
updated by the core's ``adamp_update``/``sgdp_update`` on ``jax.numpy`` arrays;
this module only maps pytrees and turns "new parameters" into Optax "updates".

Output channels are on the **last** axis by default, as in Flax and Haiku kernels
(``Conv`` ``(kh, kw, in, out)``, ``Dense`` ``(in, out)``); ``channel_axis`` sets it for
other layouts (Equinox and PyTorch-style weights: 0).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adamp_core
from adamp_core.radial import channel_view_shape
from adamp_core.state import step_dtype

from ._xla import computed_after, map_in_order, namespace, order_token, xp

__all__ = [
    "LeafProjection",
    "ScaleByAdamPState",
    "ScaleBySGDPState",
    "WithProjectionState",
    "adamp",
    "projection_info",
    "scale_by_adamp",
    "scale_by_sgdp",
    "sgdp",
    "with_projection",
]

MaskOrFn = Any | Callable[[optax.Params], Any] | None
#: The output-channel axis of each leaf: one ``int``, ``"first"``, ``"last"`` or ``None``
#: for every leaf, a pytree of them matching the params, or a function of the params
#: returning such a pytree.
ChannelAxisOrFn = int | str | None | Any | Callable[[optax.Params], Any]


class LeafProjection(NamedTuple):
    """What the last step's projection did to one leaf (arrays; read them after the step)."""

    branch: jax.Array  #: 0-d int32: 0 none, 1 channel, 2 layer (``adamp_core.NONE`` ...)
    cosine: jax.Array  #: 0-d: the deciding ``|cos(grad, w)|`` (NaN if not tested)


class ScaleByAdamPState(NamedTuple):
    """State of [`scale_by_adamp`][adapters.optax.scale_by_adamp]: the official per-parameter AdamP
    state, with one
    step count shared by all leaves (as Optax keeps one ``count``; the official per-parameter
    counts are all equal unless parameters join late, which a pytree cannot do)."""

    step: jax.Array  #: 0-d float array: steps taken (float64 if any leaf is, else float32)
    exp_avg: optax.Updates  #: first moments; weights of 3+ dimensions in their 2-D view
    exp_avg_sq: optax.Updates  #: second moments, laid out as ``exp_avg``
    projection: Any  #: per leaf, the last step's [`LeafProjection`][adapters.optax.LeafProjection]


class ScaleBySGDPState(NamedTuple):
    """State of [`scale_by_sgdp`][adapters.optax.scale_by_sgdp]: per leaf, the (projected) momentum
    buffer."""

    momentum: optax.Updates  #: like the params; weights of 3+ dimensions in their 2-D view
    projection: Any  #: per leaf, the last step's [`LeafProjection`][adapters.optax.LeafProjection]


class WithProjectionState(NamedTuple):
    """State of [`with_projection`][adapters.optax.with_projection]: the wrapped transformation's
    state."""

    inner: optax.OptState
    projection: Any  #: per leaf, the last step's [`LeafProjection`][adapters.optax.LeafProjection]


def _validate(config_type: type, **kwargs: Any) -> None:
    """ValueError for bad hyperparameters. Concrete arrays (``inject_hyperparams`` makes
    arrays of numbers) are checked by value; traced ones, and the checks that involve them,
    are left to the caller's values."""
    concrete: dict[str, Any] = {}
    for name, value in kwargs.items():
        values = value if name == "betas" else (value,)
        if any(isinstance(v, jax.core.Tracer) for v in values):
            continue
        concrete[name] = value
    if "momentum" not in concrete:  # nesterov's requirement cannot be checked
        concrete.pop("nesterov", None)
    defaults = {"lr": 0.0} if config_type is adamp_core.SGDPConfig else {}
    config_type(**{**defaults, **concrete})


def _learning_rate(learning_rate: optax.ScalarOrSchedule) -> None:
    """ValueError for a learning rate that is a bad number; schedules are called only by
    Optax (a schedule of a negative value is the caller's choice, as in ``optax.adamw``)."""
    if not callable(learning_rate) and not isinstance(learning_rate, jax.core.Tracer):
        adamp_core.AdamPConfig(lr=learning_rate)


_AXIS_NAMES = {"first": 0, "last": -1}


def _axis(value: Any) -> int | None:
    """One leaf's channel axis: an int, ``"first"``, ``"last"`` or None."""
    if isinstance(value, str) and value in _AXIS_NAMES:
        return _AXIS_NAMES[value]
    if isinstance(value, jax.core.Tracer):  # inject_hyperparams turned an int into an array
        raise ValueError(
            "channel_axis is traced: with optax.inject_hyperparams, give it as 'first' or "
            "'last', or list it in static_args"
        )
    if isinstance(value, (jax.Array, np.ndarray)) and value.shape == ():
        value = value.item()
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"channel_axis must be an int, 'first', 'last' or None, got {value!r}")
    return value


def _leaf_axes(channel_axis: ChannelAxisOrFn, params: Any) -> list[Any]:
    """The channel axis of each leaf of ``params``, in ``jax.tree.leaves`` order."""
    axes = channel_axis(params) if callable(channel_axis) else channel_axis
    structure = jax.tree.structure(params)
    if axes is None or isinstance(axes, (int, str, jax.Array, np.ndarray)):
        return [_axis(axes)] * structure.num_leaves
    try:
        leaves = structure.flatten_up_to(axes)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"channel_axis must be an int, 'first', 'last', None, or a pytree of them like "
            f"the params ({err})"
        ) from None
    return [_axis(leaf) for leaf in leaves]


def _check_leaves(params: Any, name: str) -> None:
    for path, p in jax.tree_util.tree_leaves_with_path(params):
        if not jnp.issubdtype(p.dtype, jnp.floating):
            where = jax.tree_util.keystr(path) or "the parameter"
            raise TypeError(f"{name}: {where} has dtype {p.dtype}; it needs real floating params")


def _zeros(p: Any, axis: int | None) -> jax.Array:
    """Zeros in the state layout of leaf ``p`` (an array, a tracer or a ``ShapeDtypeStruct``)."""
    view = channel_view_shape(tuple(p.shape), axis)
    zeros = jnp.zeros_like(p)
    return zeros if view == tuple(p.shape) else zeros.reshape(view)


def _no_projection(p: Any) -> LeafProjection:
    nan = jnp.asarray(jnp.nan, jnp.float64 if p.dtype == jnp.float64 else jnp.float32)
    return LeafProjection(jnp.zeros((), jnp.int32), nan)


def _leaf_projection(proj: adamp_core.Projection) -> LeafProjection:
    cosine = proj.cosine if proj.cosine.dtype == jnp.float64 else proj.cosine.astype(jnp.float32)
    return LeafProjection(proj.branch.astype(jnp.int32), cosine)


def _map_leaves(params: Any, fn: Callable[..., Any], *trees: Any) -> Any:
    structure = jax.tree.structure(params)
    columns = [structure.flatten_up_to(t) for t in (params, *trees)]
    return structure.unflatten([fn(*leaves) for leaves in zip(*columns)])


def _need_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(
            f"{name} needs the parameters: call update(updates, state, params); the projection "
            "looks at the weights"
        )


def _decay_mask(mask: MaskOrFn, params: Any) -> Any:
    """Per leaf, True where weight decay applies (``optax.adamw``'s ``mask`` semantics)."""
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    return mask(params) if callable(mask) else mask


def _descent(new: jax.Array, param: jax.Array) -> jax.Array:
    """The update that ``scale_by_learning_rate`` turns into ``new - param`` at lr 1."""
    return param - new


def scale_by_adamp(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    mask: MaskOrFn = None,
    channel_axis: ChannelAxisOrFn = "last",
) -> optax.GradientTransformationExtraArgs:
    """AdamP's update at unit learning rate, to chain with ``optax.scale_by_learning_rate``.

    For each leaf ``w`` with gradient ``g`` it returns ``u'/(1 - b1**t) + weight_decay * r * w``:
    the Adam direction with its radial part removed for scale-invariant weights, plus
    decoupled weight decay scaled by ``r = wd_ratio`` when projected (1 otherwise).
    Multiplied by ``-lr`` this is exactly one step of the official ``adamp.AdamP``.

    Args: as [`adamp`][adapters.optax.adamp] (without ``learning_rate``).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.
    """
    _validate(
        adamp_core.AdamPConfig,
        betas=(b1, b2),
        eps=eps,
        weight_decay=weight_decay,
        delta=delta,
        wd_ratio=wd_ratio,
        nesterov=nesterov,
    )

    def init_fn(params: optax.Params) -> ScaleByAdamPState:
        _check_leaves(params, "scale_by_adamp")
        wide = any(p.dtype == jnp.float64 for p in jax.tree.leaves(params))
        step = jnp.zeros([], step_dtype(jnp.float64 if wide else jnp.float32, jnp))
        axes = _axes_tree(channel_axis, params)
        moments = [_map_leaves(params, _zeros, axes) for _ in range(2)]
        return ScaleByAdamPState(step, *moments, jax.tree.map(_no_projection, params))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params(params, "scale_by_adamp")
        _check_leaves(params, "scale_by_adamp")

        def leaf(previous, g, p, m, v, decays, axis):
            new, s, proj = adamp_core.adamp_update(
                p,
                g,
                adamp_core.AdamPState(
                    computed_after(state.step, None if previous is None else previous.coef), m, v
                ),
                lr=1.0,
                beta1=b1,
                beta2=b2,
                eps=eps,
                weight_decay=weight_decay if decays else 0.0,
                delta=delta,
                wd_ratio=wd_ratio,
                nesterov=nesterov,
                channel_axis=axis,
                xp=namespace(branch=p.ndim == 2, previous=previous),
            )
            return _descent(new, p), s, _leaf_projection(proj), order_token(p, proj, axis)

        out = map_in_order(
            leaf,
            updates,
            params,
            state.exp_avg,
            state.exp_avg_sq,
            _decay_mask(mask, params),
            _axes_tree(channel_axis, params),
        )
        new_updates, states, projections = _unzip(out, updates, 3)
        _, exp_avg, exp_avg_sq = _unzip(states, updates, 3)
        return new_updates, ScaleByAdamPState(state.step + 1, exp_avg, exp_avg_sq, projections)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_sgdp(
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    eps: float = 1e-8,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    mask: MaskOrFn = None,
    channel_axis: ChannelAxisOrFn = "last",
) -> optax.GradientTransformationExtraArgs:
    """SGDP's update at unit learning rate, to chain with ``optax.scale_by_learning_rate``.

    Returns ``u' + weight_decay * r / (1 - momentum) * w`` per leaf, with ``u'`` the
    projected momentum direction; without ``nesterov`` the projected buffer is carried,
    as in the official ``adamp.SGDP``.
    """
    _validate(
        adamp_core.SGDPConfig,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
        eps=eps,
        delta=delta,
        wd_ratio=wd_ratio,
    )

    def init_fn(params: optax.Params) -> ScaleBySGDPState:
        _check_leaves(params, "scale_by_sgdp")
        buffers = _map_leaves(params, _zeros, _axes_tree(channel_axis, params))
        return ScaleBySGDPState(buffers, jax.tree.map(_no_projection, params))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params(params, "scale_by_sgdp")
        _check_leaves(params, "scale_by_sgdp")

        def leaf(previous, g, p, buf, decays, axis):
            new, s, proj = adamp_core.sgdp_update(
                p,
                g,
                adamp_core.SGDPState(buf),
                lr=1.0,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay if decays else 0.0,
                nesterov=nesterov,
                eps=eps,
                delta=delta,
                wd_ratio=wd_ratio,
                channel_axis=axis,
                xp=namespace(branch=True, previous=previous),
            )
            return _descent(new, p), s.momentum, _leaf_projection(proj), order_token(p, proj, axis)

        out = map_in_order(
            leaf,
            updates,
            params,
            state.momentum,
            _decay_mask(mask, params),
            _axes_tree(channel_axis, params),
        )
        new_updates, buffers, projections = _unzip(out, updates, 3)
        return new_updates, ScaleBySGDPState(buffers, projections)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adamp(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    mask: MaskOrFn = None,
    channel_axis: ChannelAxisOrFn = "last",
) -> optax.GradientTransformationExtraArgs:
    r"""AdamP (Heo et al., ICLR 2021): Adam that removes the radial component of the update
    of scale-invariant weights, so that momentum does not inflate their norm.

    For each weight ``w`` with ``ndim >= 2`` whose gradient is almost orthogonal to it,
    per output channel (``max_i |cos(g_i, w_i)| < delta / sqrt(fan)``) or else per layer,
    the Adam update ``u`` loses its component along ``w`` and weight decay is scaled by
    ``wd_ratio``::

        m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2;   u = m / (sqrt(v)/sqrt(1-b2^t) + eps)
        u' = u - w <w,u> / (|w|+eps)^2   (projected weights only)
        w <- w (1 - lr wd r) - lr/(1-b1^t) u'

    Step for step the official ``adamp.AdamP`` (PyTorch), including its details, once
    the output channels are on the axis the official code uses (0).

    Args:
      learning_rate: a float or an Optax schedule; the decay uses the current rate.
      b1, b2: moment decay rates, in ``[0, 1)``.
      eps: Adam's epsilon and the epsilon of the projection's cosine and norms.
      weight_decay: decoupled weight decay (scaled by the learning rate).
      delta: threshold of the scale-invariance test.
      wd_ratio: weight-decay multiplier of projected weights.
      nesterov: Nesterov momentum.
      mask: a pytree of bools like the params, or a callable returning one: the leaves
        that get weight decay (as in ``optax.adamw``).
      channel_axis: the axis of each weight's output channels: ``"last"`` (default,
        -1) for Flax and Haiku kernels (``Conv`` ``(kh, kw, in, out)``, ``Dense``
        ``(in, out)``), ``"first"`` (0) for PyTorch-style layouts (Equinox, ported PyTorch
        weights), or any axis as an ``int``. One value for every leaf, ``None`` (never
        projected), a pytree of them matching the params, or a function of the params
        returning one (as ``mask``); per leaf, e.g.
        ``lambda params: jax.tree.map(lambda p: "first" if p.ndim == 4 else "last", params)``.
        With ``optax.inject_hyperparams``, give a name (``"first"``/``"last"``) or list
        ``channel_axis`` (and a callable ``mask``) in ``static_args``.

    Returns:
      ``chain(scale_by_adamp(...), scale_by_learning_rate(learning_rate))``, an
      ``optax.GradientTransformationExtraArgs``. ``update`` needs ``params``. The
      state records each leaf's last projection
      ([`projection_info`][adapters.optax.projection_info]).

    Raises:
      ValueError: for a bad hyperparameter (as [`adamp_core.AdamPConfig`][adamp_core.AdamPConfig]).
      TypeError: in ``init``/``update``, for a leaf that is not real floating point.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from adapters.optax import adamp
      >>> params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}
      >>> opt = adamp(1e-3, weight_decay=1e-2)
      >>> state = opt.init(params)
      >>> grads = {"w": jnp.full((3, 4), 0.1), "b": jnp.ones(4)}
      >>> updates, state = opt.update(grads, state, params)
      >>> params = optax.apply_updates(params, updates)

    References:
      Heo et al., `AdamP: Slowing Down the Slowdown for Momentum Optimizers on
      Scale-invariant Weights <https://arxiv.org/abs/2006.08217>`_, ICLR 2021.
    """
    _learning_rate(learning_rate)
    return optax.chain(
        scale_by_adamp(b1, b2, eps, weight_decay, delta, wd_ratio, nesterov, mask, channel_axis),
        optax.scale_by_learning_rate(learning_rate),
    )


def sgdp(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    eps: float = 1e-8,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    mask: MaskOrFn = None,
    channel_axis: ChannelAxisOrFn = "last",
) -> optax.GradientTransformationExtraArgs:
    """SGDP (Heo et al., ICLR 2021): SGD with momentum and the AdamP projection.

    ``buf = momentum buf + (1-dampening) g``; ``u = buf`` (nesterov: ``g + momentum buf``);
    ``u`` is projected as in [`adamp`][adapters.optax.adamp];
    ``w <- w (1 - lr wd r / (1-momentum)) - lr u'``. Step for step the official
    ``adamp.SGDP``.

    Args:
      learning_rate, weight_decay, eps, delta, wd_ratio, mask, channel_axis: as in
        [`adamp`][adapters.optax.adamp] (``channel_axis`` defaults to ``"last"``, Flax's and
        Haiku's layout).
      momentum: in ``[0, 1)``.
      dampening: in ``[0, 1]``.
      nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).

    Returns:
      ``chain(scale_by_sgdp(...), scale_by_learning_rate(learning_rate))``.
    """
    _learning_rate(learning_rate)
    return optax.chain(
        scale_by_sgdp(
            momentum, dampening, weight_decay, nesterov, eps, delta, wd_ratio, mask, channel_axis
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def with_projection(
    inner: optax.GradientTransformation,
    delta: float = 0.1,
    eps: float = 1e-8,
    channel_axis: ChannelAxisOrFn = "last",
) -> optax.GradientTransformationExtraArgs:
    """Add the AdamP projection to any Optax optimizer.

    The scale-invariance test looks at the raw gradient and the weights; the output of
    ``inner`` then loses its radial component on the weights that pass it
    (``adamp_core.projection`` / ``project``). The projection is linear, so it commutes
    with the learning rate: wrap a whole optimizer such as ``optax.lion(1e-4)``. Note that
    weight decay inside ``inner`` is radial, so it is projected away on those weights;
    chain ``optax.add_decayed_weights`` outside the wrapper to keep it, or use
    [`adamp`][adapters.optax.adamp]/[`sgdp`][adapters.optax.sgdp] for the ``wd_ratio`` semantics.
    ``channel_axis`` as in
    [`adamp`][adapters.optax.adamp].
    """
    _validate(adamp_core.AdamPConfig, eps=eps, delta=delta)

    def init_fn(params):
        _check_leaves(params, "with_projection")
        return WithProjectionState(inner.init(params), jax.tree.map(_no_projection, params))

    def update_fn(updates, state, params=None, **extra_args):
        _need_params(params, "with_projection")
        inner_updates, inner_state = optax.with_extra_args_support(inner).update(
            updates, state.inner, params, **extra_args
        )

        def leaf(previous, u, g, p, axis):
            ns = namespace(branch=False, previous=previous)
            proj = adamp_core.projection(
                p, g, u, delta=delta, wd_ratio=1.0, eps=eps, channel_axis=axis, xp=ns
            )
            projected = adamp_core.project(u, p, proj, xp=xp)
            return projected, _leaf_projection(proj), order_token(p, proj, axis)

        out = map_in_order(leaf, inner_updates, updates, params, _axes_tree(channel_axis, params))
        projected, projections = _unzip(out, updates, 2)
        return projected, WithProjectionState(inner_state, projections)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def projection_info(state: optax.OptState, params: optax.Params) -> list[dict[str, Any]]:
    """Per leaf, which branch the last step's projection took and the cosine that decided it.

    Reads the [`LeafProjection`][adapters.optax.LeafProjection] records kept in the state of
    [`adamp`][adapters.optax.adamp],
    [`sgdp`][adapters.optax.sgdp] or [`with_projection`][adapters.optax.with_projection] (anywhere
    in a chain), so the jitted step itself
    never waits for them; this call copies them to the host (one transfer, on request).

    Args:
      state: the optimizer state after a step.
      params: the params (for the leaves' paths and shapes).

    Returns:
      One dict per leaf: ``path`` (``jax.tree_util.keystr``), ``shape``, ``branch``
      (``"channel"``, ``"layer"`` or ``"none"``) and ``cosine`` (NaN if not tested).
    """
    kinds = (ScaleByAdamPState, ScaleBySGDPState, WithProjectionState)
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, kinds))
        if isinstance(s, kinds)
    ]
    if not found:
        raise ValueError("no AdamP/SGDP projection state in this optimizer state")
    leaves = jax.tree_util.tree_leaves_with_path(params)
    # (branch, cosine) per leaf, in leaf order; flattened whole, since containers such as
    # nnx.Optimizer keep the records in their own variable types
    flat = jax.device_get(jax.tree.leaves(found[-1].projection))
    if len(flat) != 2 * len(leaves):
        raise ValueError(f"the state records {len(flat) // 2} leaves, params have {len(leaves)}")
    values = list(zip(flat[0::2], flat[1::2], strict=True))
    names = {adamp_core.NONE: "none", adamp_core.CHANNEL: "channel", adamp_core.LAYER: "layer"}
    return [
        dict(
            path=jax.tree_util.keystr(path),
            shape=tuple(p.shape),
            branch=names[int(b)],
            cosine=float(c),
        )
        for (path, p), (b, c) in zip(leaves, values, strict=True)
    ]


def _axes_tree(channel_axis: ChannelAxisOrFn, params: Any) -> Any:
    """The per-leaf channel axes as a pytree of the params' structure."""
    return jax.tree.structure(params).unflatten(_leaf_axes(channel_axis, params))


def _unzip(tree_of_tuples: Any, like: Any, n: int) -> tuple[Any, ...]:
    """A pytree whose leaves are n-tuples (in the structure of ``like``) -> n pytrees."""
    structure = jax.tree.structure(like)
    leaves = structure.flatten_up_to(tree_of_tuples)
    return tuple(structure.unflatten([leaf[i] for leaf in leaves]) for i in range(n))
