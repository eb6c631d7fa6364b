"""PyTorch adapter: ``AdamP`` and ``SGDP`` as ``torch.optim`` optimizers over ``adamp_core``.

``from adapters.torch import AdamP`` replaces ``from adamp import AdamP``.
"""

from .optimizers import SGDP, AdamP, ProjectionInfo

__all__ = ["SGDP", "AdamP", "ProjectionInfo"]
