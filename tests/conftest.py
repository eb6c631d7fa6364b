"""Shared fixtures: one parametrized suite over every installed array backend."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Deterministic in CI: derandomized, no example database.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

if importlib.util.find_spec("jax") is not None:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 parity needs it; float32 stays float32


@dataclass(frozen=True)
class Backend:
    """An array library under test: how to move NumPy arrays in and out of it."""

    name: str
    xp: Any
    asarray: Callable[[np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    writeable: bool = True


def _numpy() -> Backend:
    import array_api_compat.numpy as xp

    return Backend("numpy", xp, lambda a: np.array(a, copy=True), np.asarray)


def _strict() -> Backend:
    import array_api_strict as xp

    return Backend("array_api_strict", xp, lambda a: xp.asarray(np.array(a)), np.from_dlpack)


def _torch() -> Backend:
    import array_api_compat.torch as xp
    import torch

    return Backend(
        "torch",
        xp,
        lambda a: torch.from_numpy(np.array(a, copy=True)),
        lambda t: t.detach().cpu().numpy(),
    )


def _jax() -> Backend:
    import jax.numpy as jnp

    return Backend("jax", jnp, jnp.asarray, np.asarray, writeable=False)


def _cupy() -> Backend:
    import cupy

    return Backend("cupy", cupy, cupy.asarray, cupy.asnumpy)


def _gpu_reason() -> str | None:
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA GPU visible to cupy"
    except Exception as err:  # no driver, no runtime
        return f"no usable CUDA GPU for cupy ({type(err).__name__}: {err})"
    return None


def _availability() -> dict[str, tuple[Callable[[], Backend], str | None]]:
    def needs(module: str) -> str | None:
        return None if importlib.util.find_spec(module) else f"{module} is not installed"

    return {
        "numpy": (_numpy, None),
        "array_api_strict": (_strict, needs("array_api_strict")),
        "torch": (_torch, needs("torch")),
        "jax": (_jax, needs("jax")),
        "cupy": (_cupy, _gpu_reason()),
    }


BACKENDS = _availability()
BACKEND_NAMES = list(BACKENDS)


def load_backend(name: str) -> Backend:
    make, reason = BACKENDS[name]
    if reason is not None:
        pytest.skip(reason)
    return make()


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each array backend in turn, skipped with a reason where it is unavailable."""
    return load_backend(request.param)


@pytest.fixture(params=[n for n in BACKEND_NAMES if n != "jax"])
def writable_backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend whose arrays can be written in place."""
    return load_backend(request.param)
