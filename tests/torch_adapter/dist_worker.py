"""One rank of a 2-process gloo job (run by tests/torch_adapter/test_distributed.py, never collected by pytest).

    python tests/torch_adapter/dist_worker.py SETUP KIND OUT.pt     with RANK, WORLD_SIZE, INIT_METHOD set

Trains a conv + GroupNorm + linear model (per-sample normalization, so data parallelism is
exact) for a few steps with AdamP or SGDP and saves the final parameters (and checkpoints).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))  # the repo

from adapters.torch import SGDP, AdamP

STEPS, BATCH = 6, 16


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, bias=False),
        torch.nn.GroupNorm(2, 8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, bias=False),
        torch.nn.GroupNorm(2, 8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 4),
    ).double()


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(BATCH, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(
        0, 4, (BATCH,), generator=g
    )


def optimizer(kind: str, params, **extra):
    if kind == "adamp":
        return AdamP(params, lr=1e-2, weight_decay=0.1, **extra)
    return SGDP(params, lr=0.05, momentum=0.9, weight_decay=1e-2, **extra)


def loss_of(net, x, y):
    return torch.nn.functional.cross_entropy(net(x), y)


def single(kind: str) -> dict:
    """The reference: one process, full batches."""
    net = model()
    opt = optimizer(kind, net.parameters())
    for t in range(STEPS):
        opt.zero_grad()
        x, y = batch(t)
        loss_of(net, x, y).backward()
        opt.step()
    out = {k: v.detach().clone() for k, v in net.state_dict().items()}
    branches = [i.branch for i in opt.projection_info()]
    out["__projected"] = torch.tensor(sum(b != "none" for b in branches))
    return out


def _shard(t: int, rank: int, world: int):
    x, y = batch(t)
    n = BATCH // world
    return x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]


def ddp(kind: str, rank: int, world: int) -> dict:
    net = torch.nn.parallel.DistributedDataParallel(model())
    opt = optimizer(kind, net.parameters())
    for t in range(STEPS):
        opt.zero_grad()
        loss_of(net, *_shard(t, rank, world)).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.module.state_dict().items()}


def zero(kind: str, rank: int, world: int) -> dict:
    from torch.distributed.optim import ZeroRedundancyOptimizer

    net = torch.nn.parallel.DistributedDataParallel(model())
    cls = AdamP if kind == "adamp" else SGDP
    hyper = (
        dict(lr=1e-2, weight_decay=0.1)
        if kind == "adamp"
        else dict(lr=0.05, momentum=0.9, weight_decay=1e-2)
    )
    opt = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=cls, **hyper)
    for t in range(STEPS // 2):
        opt.zero_grad()
        loss_of(net, *_shard(t, rank, world)).backward()
        opt.step()
    local_state = sum(len(s) for s in opt.optim.state.values())  # this rank's shard only
    opt.consolidate_state_dict(to=0)
    checkpoint = opt.state_dict() if rank == 0 else None
    # a fresh sharded optimizer resumes from the consolidated checkpoint
    box = [checkpoint]
    dist.broadcast_object_list(box, src=0)
    resumed = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=cls, **hyper)
    resumed.load_state_dict(box[0])
    for t in range(STEPS // 2, STEPS):
        resumed.zero_grad()
        loss_of(net, *_shard(t, rank, world)).backward()
        resumed.step()
    out = {k: v.detach().clone() for k, v in net.module.state_dict().items()}
    out["__local_state_entries"] = torch.tensor(local_state)
    out["__checkpoint_params"] = torch.tensor(len(box[0]["state"]))
    return out


def dtensor(kind: str, rank: int, world: int) -> dict:
    """FSDP2 (fully_shard): parameters are DTensors sharded on dim 0."""
    from torch.distributed.fsdp import fully_shard

    net = model()
    for layer in net:
        if any(p.requires_grad for p in layer.parameters(recurse=False)):
            fully_shard(layer)
    fully_shard(net)
    from torch.distributed.tensor import DTensor, Shard

    params = list(net.parameters())
    assert all(isinstance(p, DTensor) and p.placements == (Shard(0),) for p in params)
    opt = optimizer(kind, params)
    for t in range(STEPS):
        opt.zero_grad()
        loss_of(net, *_shard(t, rank, world)).backward()
        opt.step()
    return {
        k: v.full_tensor().detach().clone() if hasattr(v, "full_tensor") else v.detach().clone()
        for k, v in net.state_dict().items()
    }


def main() -> None:
    setup, kind, out = sys.argv[1], sys.argv[2], sys.argv[3]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(
        "gloo", init_method=os.environ["INIT_METHOD"], rank=rank, world_size=world
    )
    try:
        result = {"ddp": ddp, "zero": zero, "fsdp2": dtensor}[setup](kind, rank, world)
        if rank == 0:
            torch.save({"result": result, "single": single(kind)}, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
