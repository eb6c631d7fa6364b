"""adamp_core: AdamP and SGDP on arrays of any array-API library.

The one home of the math. ``init``/``step`` run whole optimizers on raw arrays
(any library ``array_api_compat`` supports); the building blocks in
[`adamp_core.updates`][adamp_core.updates] and ``adamp_core.radial`` are what the
framework adapters in ``adapters`` call.

Importing this package imports no framework.
"""

from .config import AdamPConfig, SGDPConfig
from .namespace import with_overrides
from .radial import CHANNEL, LAYER, NONE, Projection, project, projection
from .raw import init, step
from .state import AdamPState, SGDPState
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
