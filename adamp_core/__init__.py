"""adamp_core: AdamP and SGDP on arrays of any array-API library.

The one home of the math. ``init``/``step`` run whole optimizers on raw arrays
(NumPy, CuPy, PyTorch, JAX, array-api-strict); the building blocks in
:mod:`adamp_core.updates` and :mod:`adamp_core.projection` are what the
framework adapters in :mod:`adapters` call.

Importing this package imports no framework.
"""

from .config import AdamPConfig, SGDPConfig
from .namespace import with_overrides
from .projection import CHANNEL, LAYER, NONE, Projection, project, projection
from .state import AdamPState, SGDPState
from .step import init, step
from .updates import adamp_update, sgdp_update

__version__ = "0.1.0"

__all__ = [
    "CHANNEL",
    "LAYER",
    "NONE",
    "AdamPConfig",
    "AdamPState",
    "Projection",
    "SGDPConfig",
    "SGDPState",
    "adamp_update",
    "init",
    "project",
    "projection",
    "sgdp_update",
    "step",
    "with_overrides",
]
