"""`adamp_core.kernels` and `adamp_core.namespace`: the definitions compute their formulas,
and a namespace that supplies a kernel is the one called."""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest

import adamp_core as ac
from adamp_core import kernels
from adamp_core.namespace import compute_dtype, namespace_of, zeros_beside


def test_in_place_kernels_compute_their_formulas_in_place():
    y, x = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    assert kernels.scale_add_(y, 0.5, x, 2.0, xp=xp) is y
    np.testing.assert_array_equal(y, [0.5 + 6.0, 1.0 + 8.0])  # y*beta + alpha*x
    assert kernels.scale_addcmul_(y, 2.0, x, x, 0.5, xp=xp) is y
    np.testing.assert_array_equal(y, [13.0 + 4.5, 18.0 + 8.0])  # y*beta + value*x1*x2
    assert kernels.sub_product_(y, np.array([1.0, 0.5]), x, xp=xp) is y
    np.testing.assert_array_equal(y, [17.5 - 3.0, 26.0 - 2.0])  # y - a*b


def test_scaled_by_one_is_the_array_itself():
    x = np.ones(3)
    assert kernels.scaled(1, x) is x
    np.testing.assert_array_equal(kernels.scaled(2.0, x), 2 * x)


@pytest.mark.parametrize(("axis", "expected"), [(-1, ([1, 25], [4, 4], [2, 6])), (-2, None)])
def test_row_dots(axis, expected):
    w, g = np.array([[1.0, 0.0], [3.0, 4.0]]), np.array([[2.0, 0.0], [2.0, 0.0]])
    if expected is None:  # columns: <w_:j, w_:j> = 1 + 9, 0 + 16, ...
        expected = ([10, 16], [8, 0], [8, 0])
    for got, want in zip(kernels.row_dots(w, g, axis=axis, xp=xp), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_quotient_and_skip_unless_definitions():
    np.testing.assert_array_equal(
        kernels.quotient_(np.ones(2), np.array([2.0, 4.0]), xp=xp), [0.5, 0.25]
    )
    calls = []
    assert kernels.skip_unless(np.False_, lambda: calls.append(1) or 7, lambda: 0, xp=xp) == 7
    assert calls == [1]  # the definition always computes: only a namespace may skip


def test_a_supplied_kernel_is_the_one_called():
    seen = []

    def skip_unless(pred, fn, placeholder):
        seen.append(bool(pred))
        return fn() if pred else placeholder()

    ns = ac.with_overrides(xp, skip_unless=skip_unless)
    assert kernels.skip_unless(np.False_, lambda: 1, lambda: 0, xp=ns) == 0
    assert seen == [False]


def test_with_overrides_refuses_unknown_names():
    with pytest.raises(AttributeError, match="no_such_kernel"):
        ac.with_overrides(xp, no_such_kernel=lambda: None)


def test_zeros_beside_and_compute_dtype():
    zero = zeros_beside(np.ones((2, 3), np.float32), (1, 1), np.float64, xp)
    assert (zero.shape, zero.dtype, float(zero.sum())) == ((1, 1), np.float64, 0.0)
    assert zeros_beside(np.ones(()), (), np.float32, xp).shape == ()
    assert compute_dtype(np.float16, xp) == np.float32
    assert compute_dtype(np.float64, xp) == np.float64


def test_arrays_of_two_libraries_are_named():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"one array library.*numpy\.ndarray.*torch\.Tensor"):
        namespace_of(np.ones(2), torch.ones(2))
