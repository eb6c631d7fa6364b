"""How the Optax adapter gets good code out of XLA: its forms of the core's kernels, the
namespace each leaf uses, and the order in which the leaves are updated.

Nothing here is AdamP math: each kernel computes what [`adamp_core.kernels`][adamp_core.kernels]
defines
(up to the order of summation), and the ordering only adds data dependencies that leave
every value unchanged. The figures quoted are XLA CPU's (JAX 0.10), measured by
``benchmarks/jax_step.py``; see ``docs/optax.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import adamp_core

__all__ = ["OrderToken", "computed_after", "map_in_order", "namespace", "order_token", "xp"]


def _rowdot(x1: jax.Array, x2: jax.Array, /, *, axis: int = -1) -> jax.Array:
    """The standard ``vecdot`` for real arrays as a fused multiply-reduce, which XLA on CPU
    runs faster than ``jnp.vecdot``'s ``dot_general`` on weight-sized rows.

    On CPU, channels last, ``(fan, rows)``, are summed by groups of 8 rows first (as in
    ``_column_dots_cpu``).

    Behind an optimization barrier: the core sums these row sums into layer sums, and XLA
    rewrites a sum of row sums into one sum over the whole weight, which re-reads it (and
    stores the product) instead of adding up a few numbers."""

    def plain(x1: jax.Array, x2: jax.Array) -> jax.Array:
        return jnp.sum(x1 * x2, axis=axis)

    def by_groups(x1: jax.Array, x2: jax.Array) -> jax.Array:
        fan, rows = x1.shape
        return jnp.sum(jnp.sum((x1 * x2).reshape(fan // 8, 8, rows), axis=1), axis=0)

    if axis == -2 and x1.ndim == 2 and x1.shape[0] % 8 == 0:
        sums = jax.lax.platform_dependent(x1, x2, cpu=by_groups, default=plain)
    else:
        sums = plain(x1, x2)
    return jax.lax.optimization_barrier(sums)


def _skip_unless(pred: jax.Array, fn: Callable[[], jax.Array], placeholder: Callable) -> jax.Array:
    """On CPU ``jax.lax.cond``: the projection's ``<w_i, u_i>`` only where a view fired.

    Elsewhere ``fn()``: XLA:GPU runs a conditional by copying its predicate to the host
    and waiting for it, a stream synchronization per weight, which costs far more there
    than the reduction it would skip."""
    return jax.lax.platform_dependent(
        pred, cpu=lambda p: jax.lax.cond(p, fn, placeholder), default=lambda p: fn()
    )


def computed_after(x: jax.Array, done: jax.Array | None) -> jax.Array:
    """``x`` (an array >= 0) unchanged, but computed only once ``done`` is, on CPU:
    ``max(x, -1 - isnan(done[0]))``, a data dependency that XLA cannot fold away (it folds
    ``x + 0 * y``) and that costs one scalar op. ``done`` None, or another platform (where
    such chains would stop XLA from merging small kernels): ``x`` itself."""
    if done is None:
        return x

    def chained(x: jax.Array, done: jax.Array) -> jax.Array:
        return jnp.maximum(x, -1 - jnp.isnan(done.reshape(-1)[0]).astype(x.dtype))

    return jax.lax.platform_dependent(x, done, cpu=chained, default=lambda x, done: x)


def _inner_length(fan: int) -> int | None:
    """How many 8-element vectors of a row each lane of ``_row_dots_cpu`` adds up: the
    largest of 24, 16, 12, 8 such that a row splits into whole groups of that many vectors,
    or None. LLVM unrolls a loop this short, which lets it vectorize across the 8 lanes."""
    return next((n for n in (24, 16, 12, 8) if fan % (8 * n) == 0), None)


def _add_pairs(a: tuple, b: tuple) -> tuple:
    return tuple(x + y for x, y in zip(a, b))


def _row_dots_cpu(w: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    rows, fan = w.shape
    n = _inner_length(fan)
    w4, g4 = (x.reshape(rows, fan // (8 * n), n, 8) for x in (w, g))
    zero = jnp.zeros((), w.dtype)
    lanes = jax.lax.reduce((w4 * w4, g4 * g4, w4 * g4), (zero,) * 3, _add_pairs, (2,))
    return tuple(jnp.sum(x, axis=(1, 2)) for x in lanes)


def _column_dots_cpu(w: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The channels-last form of ``_row_dots_cpu``, for ``(fan, rows)``: each group of 8
    consecutive rows of the view is added up in one variadic reduction over the middle axis
    of ``(fan / 8, 8, rows)``, which vectorizes along the contiguous channels, leaving
    ``(fan / 8, rows)`` partial sums for a small sum to finish."""
    fan, rows = w.shape
    w3, g3 = (x.reshape(fan // 8, 8, rows) for x in (w, g))
    zero = jnp.zeros((), w.dtype)
    parts = jax.lax.reduce((w3 * w3, g3 * g3, w3 * g3), (zero,) * 3, _add_pairs, (1,))
    return tuple(jnp.sum(x, axis=0) for x in parts)


def _row_dots_plain(
    w: jax.Array, g: jax.Array, axis: int = -1
) -> tuple[jax.Array, jax.Array, jax.Array]:
    return _rowdot(w, w, axis=axis), _rowdot(g, g, axis=axis), _rowdot(w, g, axis=axis)


def _row_dots(
    w: jax.Array, g: jax.Array, *, axis: int = -1, after: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """[`adamp_core.kernels.row_dots`][adamp_core.kernels.row_dots] on CPU in one pass, for
    ``(rows, fan)`` arrays (``axis=-1``) and for channels last, ``(fan, rows)`` (``axis=-2``).

    Three ``jnp.sum`` are three kernels that read ``w`` twice and ``g`` twice: XLA CPU does
    not fuse sibling reductions, and runs each through its YNNPACK reduction, well below the
    copy bandwidth. One variadic ``lax.reduce`` reads each once, and XLA's own loop emitter
    vectorizes
    it when the reduced axis is short and not the last: here each row is viewed as
    ``(fan / 8n, n, 8)`` and reduced over ``n``, leaving ``(rows, fan / 8n, 8)`` partial sums
    (3/n of the weight) that a small sum finishes (``benchmarks/jax_step.py`` measures it).
    Channels last take ``_column_dots_cpu`` when the fan is a multiple of 8.
    Other backends fuse the three sums themselves and get them;
    so do other fans, and processes with several CPU devices, where
    a weight may be sharded: XLA's SPMD partitioner gathers the operands of a variadic
    reduction over a sharded axis instead of reducing each shard.

    ``after``: an array this reduction must wait for (see ``map_in_order``); it
    multiplies ``w`` by one inside the fused kernel, so costs no pass.
    ``axis``: -1 for ``(rows, fan)`` (the one-pass form's), -2 for ``(fan, rows)``.
    """
    if len(jax.devices("cpu")) > 1:
        return _row_dots_plain(w, g, axis)
    if axis == -1 and _inner_length(w.shape[1]) is not None:
        one_pass = _row_dots_cpu
    elif axis == -2 and w.shape[0] % 8 == 0:
        one_pass = _column_dots_cpu
    else:
        return _row_dots_plain(w, g, axis)
    if after is not None:
        w = w * computed_after(jnp.ones((), w.dtype), after)
    sums = jax.lax.platform_dependent(
        w, g, cpu=one_pass, default=partial(_row_dots_plain, axis=axis)
    )
    return jax.lax.optimization_barrier(sums)  # as in _rowdot


#: ``jax.numpy`` with the faster row dot products: the namespace of the core calls that
#: are not ordered (``namespace`` gives the per-leaf ones).
xp = adamp_core.with_overrides(jnp, vecdot=_rowdot, row_dots=_row_dots)
_xp_branched = adamp_core.with_overrides(xp, skip_unless=_skip_unless)


def namespace(*, branch: bool, previous: OrderToken | None) -> Any:
    """The namespace of one weight's step: its row sums wait for ``previous.cosine`` (the
    previous weight's, see ``map_in_order``); with ``branch``, ``skip_unless`` runs one
    ``lax.cond`` branch.

    With the branch the core computes ``<w, u>`` (``u``: Adam's step, SGDP's direction)
    only where the projection fires, recomputing ``u`` there; XLA then fuses ``u`` into the
    final pass instead of storing it. That saves two passes over the weight when nothing
    is projected, and costs about two when it is, where the branch recomputes a square root
    and a division. So AdamP takes it for linear weights (2-D), which in transformers are
    usually not followed by a normalization, and not for conv weights, which usually are;
    SGDP's direction is cheap to recompute: always.
    """
    base = _xp_branched if branch else xp
    if previous is None:
        return base
    return adamp_core.with_overrides(base, row_dots=partial(_row_dots, after=previous.cosine))


class OrderToken(NamedTuple):
    """Two values of a weight's projection that the next weight's step waits for."""

    cosine: jax.Array  #: the next weight's row sums wait for it
    coef: jax.Array  #: the next weight's Adam step waits for it


def order_token(
    param: jax.Array, proj: adamp_core.Projection, channel_axis: int | None
) -> OrderToken | None:
    """What the next leaf waits for: from the projection of a weight that was tested, else
    None."""
    if param.ndim >= 2 and param.size and channel_axis is not None:
        return OrderToken(proj.cosine, proj.coef)
    return None


def map_in_order(fn: Callable[..., tuple], tree: Any, *rest: Any) -> Any:
    """``jax.tree.map(partial(fn, previous), tree, *rest)`` for ``fn(previous, *leaves)``
    returning ``(*outputs, order_token(param, projection))``. ``previous`` is the last token
    that was not None before this leaf (None at first): from the projection of the previous
    weight, for ``fn`` to wait on:

    - its row sums wait for the previous weight's ``cosine`` (``namespace``), so that
      the reductions run one after another, each on one core while the other streams the
      moments and final passes of other weights. Left alone, XLA's CPU scheduler runs them
      all at once, keeping the partial sums of every weight alive and leaving the final
      passes to run alone at the end.
    - AdamP's step count waits for the previous ``coef`` (``computed_after``), so that the Adam
      step of the weights that store it (conv weights, ``namespace``) is alive for one
      weight at a time instead of every weight's at once.

    Each leaf waits for the previous weight only, not for a running chain: XLA would fuse a
    chain of scalar ops, whole, into every leaf's kernels (ten times the compile time).
    """
    structure = jax.tree.structure(tree)
    columns = [structure.flatten_up_to(t) for t in (tree, *rest)]
    out, previous = [], None
    for args in zip(*columns):
        *result, token = fn(previous, *args)
        out.append(tuple(result))
        previous = previous if token is None else token
    return structure.unflatten(out)
