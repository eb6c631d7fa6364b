"""Configs: the official defaults, and a ValueError naming each bad argument."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest

import adamp_core as ac


def test_signatures_match_official():
    import adamp

    for ours, theirs in ((ac.AdamPConfig, adamp.AdamP), (ac.SGDPConfig, adamp.SGDP)):
        official = list(inspect.signature(theirs.__init__).parameters.values())[2:]
        mine = list(inspect.signature(ours).parameters.values())
        assert [p.name for p in mine] == [p.name for p in official]
        for a, b in zip(mine, official):
            if a.name == "lr" and ours is ac.SGDPConfig:
                assert a.default is inspect.Parameter.empty  # required, as torch's `required`
            else:
                assert a.default == b.default, a.name


def test_frozen():
    cfg = ac.AdamPConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


BAD_ADAMP = [
    ("lr", dict(lr=-1e-3)),
    ("lr", dict(lr=math.nan)),
    ("lr", dict(lr="0.1")),
    ("eps", dict(eps=-1.0)),
    ("weight_decay", dict(weight_decay=-0.1)),
    ("weight_decay", dict(weight_decay=math.inf)),
    ("delta", dict(delta=-0.1)),
    ("wd_ratio", dict(wd_ratio=-0.5)),
    ("betas[0]", dict(betas=(1.0, 0.999))),
    ("betas[0]", dict(betas=(-0.1, 0.999))),
    ("betas[1]", dict(betas=(0.9, 1.0))),
    ("betas[1]", dict(betas=(0.9, math.nan))),
    ("betas", dict(betas=(0.9,))),
    ("nesterov", dict(nesterov="yes")),
]

BAD_SGDP = [
    ("lr", dict(lr=-0.1)),
    ("lr", dict(lr=math.inf)),
    ("momentum", dict(lr=0.1, momentum=1.0)),
    ("momentum", dict(lr=0.1, momentum=-0.5)),
    ("dampening", dict(lr=0.1, dampening=1.5)),
    ("dampening", dict(lr=0.1, dampening=-0.1)),
    ("weight_decay", dict(lr=0.1, weight_decay=-1.0)),
    ("eps", dict(lr=0.1, eps=math.nan)),
    ("delta", dict(lr=0.1, delta=-1.0)),
    ("wd_ratio", dict(lr=0.1, wd_ratio=-0.1)),
    ("nesterov", dict(lr=0.1, nesterov=True)),  # without momentum
]


@pytest.mark.parametrize(
    ("name", "kwargs"), BAD_ADAMP, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_ADAMP)]
)
def test_adamp_config_rejects(name, kwargs):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        ac.AdamPConfig(**kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs"), BAD_SGDP, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_SGDP)]
)
def test_sgdp_config_rejects(name, kwargs):
    with pytest.raises(ValueError, match=name):
        ac.SGDPConfig(**kwargs)


def test_edges_accepted():
    ac.AdamPConfig(lr=0.0, betas=(0.0, 0.0), eps=0.0, delta=0.0, wd_ratio=0.0)
    ac.SGDPConfig(lr=0.0, momentum=0.99, dampening=1.0, nesterov=True)
    assert ac.AdamPConfig(betas=[0.9, 0.99]).betas == (0.9, 0.99)
