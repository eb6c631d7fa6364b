"""Configs: the official defaults, and a ValueError naming each bad argument."""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import pytest

import adamp_core as ac


def test_signatures_match_official():
    import adamp

    for ours, theirs in ((ac.AdamPConfig, adamp.AdamP), (ac.SGDPConfig, adamp.SGDP)):
        official = list(inspect.signature(theirs.__init__).parameters.values())[2:]
        mine = list(inspect.signature(ours).parameters.values())
        positional = [p for p in mine if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        assert [p.name for p in positional] == [p.name for p in official]
        assert ours.official_names() == tuple(p.name for p in official)
        # our one addition is keyword-only, so official positional calls mean the same
        assert [p.name for p in mine if p not in positional] == ["channel_axis"]
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
    ("nesterov", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)),  # as torch's SGD
    ("lr", dict(lr=np.array([0.1, 0.2]))),  # two elements: not a learning rate
    ("channel_axis", dict(lr=0.1, channel_axis=1.0)),
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
    ac.SGDPConfig(lr=0.0, momentum=0.99, dampening=1.0)
    ac.SGDPConfig(lr=0.0, momentum=0.99, nesterov=True)
    assert ac.AdamPConfig(betas=[0.9, 0.99]).betas == (0.9, 0.99)


def test_numpy_scalars_and_one_element_arrays_are_numbers():
    """torch.optim and Optax accept NumPy scalars and 0-d tensors; so do the configs, which
    store Python floats (a float64 NumPy scalar would otherwise promote float32 arrays)."""
    torch = pytest.importorskip("torch")
    cfg = ac.AdamPConfig(
        lr=np.float32(0.5),
        betas=(torch.tensor(0.8, dtype=torch.float64), np.float64(0.99)),
        weight_decay=np.int64(0),
        eps=torch.tensor([[1e-6]], dtype=torch.float64),
    )
    assert (cfg.lr, cfg.betas, cfg.weight_decay, cfg.eps) == (0.5, (0.8, 0.99), 0.0, 1e-6)
    assert all(type(v) is float for v in (cfg.lr, *cfg.betas, cfg.weight_decay, cfg.eps))
    assert (
        ac.SGDPConfig(lr=torch.tensor(0.1, dtype=torch.float64), momentum=np.float16(0.5)).lr == 0.1
    )
    with pytest.raises(ValueError, match="lr must be a real number or a one-element array"):
        ac.SGDPConfig(lr=torch.ones(2))
    with pytest.raises(ValueError, match="lr must be a real number"):
        ac.AdamPConfig(lr=torch.tensor(1e-3 + 1j))


def test_update_kwargs_from_group_values_keep_arrays():
    """A param group's values, keyed as the config's fields, reach the update as they are
    (arrays stay arrays), with AdamP's betas split."""
    lr = np.asarray(0.5)
    values = dict(
        lr=lr, betas=(0.8, 0.9), eps=1e-8, weight_decay=0.0, delta=0.1, wd_ratio=0.1, nesterov=False
    )
    kwargs = ac.AdamPConfig.as_update_kwargs(values)
    assert kwargs["lr"] is lr and (kwargs["beta1"], kwargs["beta2"]) == (0.8, 0.9)
    assert "betas" not in kwargs and "betas" in values  # the group is not modified
    sgdp = ac.SGDPConfig(0.1, momentum=0.9)
    assert ac.SGDPConfig.as_update_kwargs(dataclasses.asdict(sgdp)) == sgdp.update_kwargs()
    update_names = set(inspect.signature(ac.adamp_update).parameters) - {
        "param",
        "grad",
        "state",
        "inplace",
        "xp",
    }
    assert set(ac.AdamPConfig().update_kwargs()) == update_names
