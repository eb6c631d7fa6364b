"""`adamp_core.batched`: the projection of a list at once equals the projection of each array.

The reference is [`adamp_core.projection`][adamp_core.projection] of each array alone (itself
checked against the official package in ``test_parity.py``), on every backend, with each
branch forced on some weights of the list.
"""

from __future__ import annotations

import array_api_compat.numpy as compat
import numpy as np
import pytest
from oracle import forced_grad

import adamp_core as ac
from adamp_core import batched

# tested weights of several row counts and fans, 1-D and 0-d arrays (one untested row each),
# an empty weight, and a weight with one row
SHAPES = [(6, 3, 2, 2), (5,), (4, 7), (5,), (0, 3), (9, 2), (), (1, 8)]
HYPER = dict(delta=0.1, wd_ratio=0.3, eps=1e-8)


def _lists(mode: str, seed: int = 3) -> tuple[list[np.ndarray], ...]:
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(s) for s in SHAPES]
    return ws, [forced_grad(w, mode, rng) for w in ws], [rng.standard_normal(s) for s in SHAPES]


@pytest.mark.parametrize("mode", ["random", "channel", "layer", "zero"])
def test_batched_projection_is_the_projection_of_each_array(backend, mode):
    ws, gs, us = ([backend.asarray(a) for a in arrays] for arrays in _lists(mode))
    rows = batched.Rows([tuple(w.shape) for w in ws], like=ws[0], dtype=backend.xp.float64)
    got = batched.projection(ws, gs, us, rows, **HYPER)
    assert tuple(got.coef.shape) == (sum(rows.rows),)
    assert tuple(got.ratio.shape) == tuple(got.branch.shape) == (len(SHAPES),)
    coefs = np.split(backend.to_numpy(got.coef), np.cumsum(rows.rows)[:-1])
    branches = set()
    for i, (w, g, u) in enumerate(zip(ws, gs, us, strict=True)):
        expected = ac.projection(w, g, u, **HYPER)
        branches.add(int(backend.to_numpy(expected.branch)))
        assert int(backend.to_numpy(got.branch)[i]) == int(backend.to_numpy(expected.branch))
        np.testing.assert_allclose(
            coefs[i], backend.to_numpy(expected.coef).reshape(-1), rtol=1e-12, atol=1e-300
        )
        np.testing.assert_array_equal(
            backend.to_numpy(got.ratio)[i], backend.to_numpy(expected.ratio)
        )
        # a cosine is in [0, 1]; where the layer is orthogonal it is rounding noise (~1e-16),
        # which the order of summation changes
        np.testing.assert_allclose(
            backend.to_numpy(got.cosine)[i],
            backend.to_numpy(expected.cosine),
            rtol=1e-12,
            atol=1e-14,
        )
    if mode in ("channel", "layer"):  # the forced branch fired somewhere in the list
        assert {"channel": ac.CHANNEL, "layer": ac.LAYER}[mode] in branches


def test_a_list_with_nothing_to_test_is_projected_without_a_sum(backend):
    """A list of 1-D, 0-d and empty arrays (the biases and norm weights of a no-decay group)
    gets each array's own projection, and takes no row sums: its shapes decide, as one
    array's do."""
    shapes = [(5,), (), (0, 3), (7,)]
    rng = np.random.default_rng(0)
    ws, gs, us = ([backend.asarray(rng.standard_normal(s)) for s in shapes] for _ in range(3))
    rows = batched.Rows(shapes, like=ws[0], dtype=backend.xp.float64)
    calls = []

    def row_dots(xs, ys, rows, **kwargs):
        calls.append(len(xs))
        return ac.kernels.list_row_dots(xs, ys, rows, **kwargs)

    xp = ac.with_overrides(backend.xp, list_row_dots=row_dots)
    got = batched.projection(ws, gs, us, rows, xp=xp, **HYPER)
    assert calls == []
    for field in got:
        assert tuple(field.shape) == (len(shapes),)
    for i, (w, g, u) in enumerate(zip(ws, gs, us, strict=True)):
        expected = ac.projection(w, g, u, **HYPER)
        for name, field in zip(got._fields, got, strict=True):
            value = backend.to_numpy(field)[i]
            want = backend.to_numpy(getattr(expected, name)).reshape(())
            assert value.dtype == want.dtype, name
            np.testing.assert_array_equal(value, want, err_msg=name)


def test_rows_lay_out_every_row_once():
    rows = batched.Rows(SHAPES, like=np.zeros(1), dtype=np.float64)
    # tested: 6 rows, 4 rows, 9 rows, 1 row; the 1-D, 0-d and empty arrays are one row each
    assert rows.rows == [6, 1, 4, 1, 1, 9, 1, 1]
    assert rows.tested_list == [True, False, True, False, False, True, False, True]
    assert rows.width == 9
    sums = np.arange(1.0, 25.0)  # the 24 rows' sums, 1..24 in list order
    padded = rows.padded(sums, compat)
    assert padded.shape == (8, 9)
    np.testing.assert_array_equal(padded[0], [1, 2, 3, 4, 5, 6, 0, 0, 0])
    np.testing.assert_array_equal(padded[1], [7, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(padded[5], [14, 15, 16, 17, 18, 19, 20, 21, 22])
    np.testing.assert_array_equal(padded[7], [24, 0, 0, 0, 0, 0, 0, 0, 0])


def test_half_precision_lists_are_projected_in_float32():
    """float16 weights are summed and decided in float32, as one weight alone is."""
    ws, gs, us = ([a.astype(np.float16) for a in arrays] for arrays in _lists("channel"))
    rows = batched.Rows([w.shape for w in ws], like=ws[0], dtype=np.float32)
    got = batched.projection(ws, gs, us, rows, xp=compat, **HYPER)
    assert got.coef.dtype == got.cosine.dtype == np.float32
    coefs = np.split(got.coef, np.cumsum(rows.rows)[:-1])
    for i, (w, g, u) in enumerate(zip(ws, gs, us, strict=True)):
        expected = ac.projection(w, g, u, xp=compat, **HYPER)
        assert int(got.branch[i]) == int(expected.branch)
        np.testing.assert_allclose(coefs[i], expected.coef.reshape(-1), rtol=1e-5, atol=1e-30)


def test_rows_of_an_empty_list_is_an_error():
    with pytest.raises(ValueError, match="at least one array"):
        batched.Rows([], like=np.zeros(1), dtype=np.float64)
