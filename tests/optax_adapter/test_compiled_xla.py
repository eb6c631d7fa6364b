"""Checks of the code XLA compiles for the Optax adapter on CPU: kernel counts read from the
compiled HLO and temporary-memory budgets from ``memory_analysis()``.

These check how XLA schedules and fuses the step, not what the step computes (that is
``test_transformations.py``). They were written against jax/jaxlib 0.10 on x86_64 CPU: a
failure on another version may mean XLA changed its plan, not that a value is wrong. They
are marked ``compiled_code``; ``pytest -m "not compiled_code"`` skips them.
"""

from __future__ import annotations

import functools
import math
import re

import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from adapters.optax import adamp, sgdp  # noqa: E402

pytestmark = pytest.mark.compiled_code


SHAPES_NO_STEP = [(64, 128), (64, 8, 4, 4)]
OPTIMIZERS = {
    "adamp": lambda: adamp(1e-3, weight_decay=1e-2, channel_axis=0),
    "sgdp": lambda: sgdp(0.1, momentum=0.9, channel_axis=0),
    "sgdp nesterov": lambda: sgdp(0.1, momentum=0.9, nesterov=True, channel_axis=0),
}

LAST = {
    "adamp": lambda: adamp(1e-3, weight_decay=1e-2),
    "sgdp": lambda: sgdp(0.1, momentum=0.9),
}


def _compiled_step(opt, params):
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step.lower(params, opt.init(params), params).compile()


def test_conv_weights_are_updated_one_after_another():
    """AdamP stores the step of a conv weight. XLA's CPU scheduler, left alone, runs the
    leaves stage by stage and keeps the step of every conv weight alive at once (6 MiB
    here); the adapter orders them."""
    weight = (256, 64, 4, 4)  # 1 MiB in float32
    params = {f"w{i}": jnp.zeros(weight, jnp.float32) for i in range(6)}
    params |= {f"b{i}": jnp.zeros(weight[:1], jnp.float32) for i in range(6)}
    compiled = _compiled_step(OPTIMIZERS["adamp"](), params)
    assert compiled.memory_analysis().temp_size_in_bytes < 2 * 2**20  # one weight's worth


@pytest.mark.parametrize(
    "kind, shape",
    [("adamp", (64, 128))] + [(k, s) for k in ("sgdp", "sgdp nesterov") for s in SHAPES_NO_STEP],
)
def test_the_step_is_not_stored(kind, shape):
    """For AdamP's linear weights and all of SGDP's, the core recomputes the step (the
    direction) inside the ``lax.cond`` branch that only a projected weight takes; outside,
    XLA fuses it into the final pass. So the only weight-sized arrays the compiled step
    writes are its results: the new weight and the new state (2 moments or 1 buffer)."""
    params = {"w": jnp.zeros(shape, jnp.float32)}
    text = _compiled_step(OPTIMIZERS[kind](), params).as_text()
    entry = text[text.index("\nENTRY") :]
    sizes = {f"f32[{','.join(map(str, s))}]" for s in (shape, (shape[0], math.prod(shape[1:])))}
    fusions = re.findall(r"= (f32\[[\d,]+\])\{[\d,]+\} fusion\(", entry)
    assert len([f for f in fusions if f in sizes]) == (3 if kind == "adamp" else 2)


def _weight_reductions(text: str, shape: tuple[int, ...]) -> int:
    """How many kernels of the compiled step's entry read a ``shape`` array into something
    smaller (reductions of a weight or its gradient)."""
    entry = text[text.index("\nENTRY") :]
    shapes = dict(re.findall(r"%(\S+) = (\S+?)\{", entry))
    weight = f"f32[{','.join(map(str, shape))}]"
    count = 0
    for out, operands in re.findall(r"= (.*?) fusion\(([^)]*)\)", entry):
        names = re.findall(r"%([^,\s]+)", operands)
        if not out.startswith(weight + "{") and any(shapes.get(n) == weight for n in names):
            count += 1
    return count


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
@pytest.mark.parametrize("channels", ["first", "last"])
def test_row_sums_are_one_kernel(kind, channels):
    """``<w,w>``, ``<g,g>`` and ``<w,g>`` of a linear weight come from one kernel that reads
    the weight and its gradient once: the only reduction of weight-sized arrays in the step
    (``<w,u>`` is in the ``lax.cond`` branch). Three plain sums would be three. Channels
    last (Flax's layout) as channels first."""
    shape = (64, 128) if channels == "first" else (128, 64)
    opt = OPTIMIZERS[kind]() if channels == "first" else LAST[kind]()
    params = {"w": jnp.zeros(shape, jnp.float32)}
    assert _weight_reductions(_compiled_step(opt, params).as_text(), shape) == 1


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
def test_row_sums_run_one_weight_after_another(kind):
    """The one-pass row sums leave partial sums of 3/24 of a weight; left alone XLA's CPU
    scheduler computes them for every weight at once (8 x 0.375 MiB here); the adapter
    chains them, so that at most two weights' are alive."""
    shape = (1024, 768)  # 3 MiB in float32; partial sums (1024, 4, 8) x 3: 0.375 MiB
    params = {f"w{i}": jnp.zeros(shape, jnp.float32) for i in range(8)}
    partial_sums = 3 * shape[0] * (shape[1] // 24) * 4
    compiled = _compiled_step(OPTIMIZERS[kind](), params)
    assert compiled.memory_analysis().temp_size_in_bytes <= 2 * partial_sums
