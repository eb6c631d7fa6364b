"""`adamp_core.radial`, one step of the projection at a time, on examples worked by hand.

Each expected value below is computed in the comment beside it from the paper's definitions
(cosines, ``delta / sqrt(n)``, ``<w, u> / |w|^2``), not by the code under test. Properties
that hold for any input (orthogonality, agreement of backends) are in ``test_properties.py``.
"""

from __future__ import annotations

import math

import array_api_compat.numpy as xp
import numpy as np
import pytest

import adamp_core as ac
from adamp_core import radial

HYPER = dict(delta=0.1, eps=0.0, xp=xp)

# Two rows (output channels) of two elements each.
W_EYE = np.array([[1.0, 0.0], [0.0, 1.0]])
G_ORTHOGONAL = np.array([[0.0, 1.0], [1.0, 0.0]])  # each row orthogonal to w's: cos 0, 0
W_TWIN = np.array([[1.0, 0.0], [1.0, 0.0]])
G_TILTED = np.array([[1.0, 1.0], [-1.0, 1.0]])  # rows at 45 degrees: |cos| 1/sqrt(2) each;
# the whole layer: <w, g> = 1 - 1 = 0, so cos 0


def sums(w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (w * w).sum(1), (g * g).sum(1), (w * g).sum(1)


def test_threshold_is_delta_over_root_n():
    assert radial.threshold(0.1, 4) == 0.05
    np.testing.assert_allclose(radial.threshold(0.3, np.array([9.0, 100.0]), xp), [0.1, 0.03])


def test_channel_test_fires_when_every_row_is_orthogonal():
    d = radial.decide(*sums(W_EYE, G_ORTHOGONAL), fan=2, size=4, **HYPER)
    assert (bool(d.channel), bool(d.layer), float(d.cosine)) == (True, False, 0.0)
    assert float(d.ww_layer) == 2.0  # |w|^2 = 1 + 1


def test_layer_test_fires_where_the_rows_fail_but_the_layer_passes():
    d = radial.decide(*sums(W_TWIN, G_TILTED), fan=2, size=4, **HYPER)
    # channel: max |cos| = 1/sqrt(2) > 0.1/sqrt(2); layer: 0 < 0.1/sqrt(4)
    assert (bool(d.channel), bool(d.layer), float(d.cosine)) == (False, True, 0.0)


def test_neither_test_fires_for_a_gradient_along_the_weight():
    d = radial.decide(*sums(W_EYE, 3 * W_EYE), fan=2, size=4, **HYPER)
    # every cosine is 1; the deciding one reported is the layer's
    assert (bool(d.channel), bool(d.layer)) == (False, False)
    assert float(d.cosine) == pytest.approx(1.0)


def test_the_channel_bound_is_strict():
    # one row with |cos| exactly 0.5 against delta / sqrt(fan) = 1 / sqrt(4) = 0.5: not below
    w = np.array([[1.0, 0.0, 0.0, 0.0]])
    g = np.array([[1.0, math.sqrt(3.0), 0.0, 0.0]])  # |g| = 2, <w, g> = 1: cos 0.5
    d = radial.decide(*sums(w, g), fan=4, size=4, delta=1.0, eps=0.0, xp=xp)
    assert (bool(d.channel), bool(d.layer)) == (False, False)


def test_coefficients_per_channel_and_per_layer():
    u = np.array([[1.0, 5.0], [7.0, 1.0]])
    w = np.array([[2.0, 0.0], [0.0, 3.0]])
    channel = radial.Decision(np.True_, np.False_, np.float64(0.0), np.float64(13.0))
    coef = radial.radial_coefficients(channel, (w * u).sum(1), (w * w).sum(1), eps=0.0, xp=xp)
    np.testing.assert_allclose(coef, [2 / 4, 3 / 9])  # <w_i, u_i> / |w_i|^2
    layer = channel._replace(channel=np.False_, layer=np.True_)
    coef = radial.radial_coefficients(layer, (w * u).sum(1), (w * w).sum(1), eps=0.0, xp=xp)
    np.testing.assert_allclose(coef, [5 / 13, 5 / 13])  # <w, u> / |w|^2 = (2 + 3) / 13
    neither = channel._replace(channel=np.False_)
    coef = radial.radial_coefficients(neither, (w * u).sum(1), (w * w).sum(1), eps=0.0, xp=xp)
    np.testing.assert_array_equal(coef, [0.0, 0.0])


def test_decay_ratio_is_wd_ratio_only_where_a_view_fired():
    fired = radial.Decision(np.array([True, False, False]), np.array([False, True, False]), 0, 0)
    np.testing.assert_array_equal(radial.decay_ratio(fired, 0.25, np.float64, xp), [0.25, 0.25, 1])
    np.testing.assert_array_equal(radial.branch(fired, xp), [ac.CHANNEL, ac.LAYER, ac.NONE])


def test_projection_removes_each_rows_radial_part():
    u = np.array([[3.0, 4.0], [5.0, 6.0]])
    proj = ac.projection(W_EYE, G_ORTHOGONAL, u, wd_ratio=0.5, **HYPER)
    # coef_i = <w_i, u_i> / |w_i|^2 = 3, 6: u' = u - coef * w
    np.testing.assert_array_equal(ac.project(u, W_EYE, proj), [[0.0, 4.0], [5.0, 0.0]])
    assert (int(proj.branch), float(proj.ratio)) == (ac.CHANNEL, 0.5)
    assert proj.coef.shape == (2, 1)


def test_projection_by_layer_removes_the_whole_weights_radial_part():
    u = np.array([[1.0, 2.0], [3.0, 4.0]])
    proj = ac.projection(W_TWIN, G_TILTED, u, wd_ratio=0.5, **HYPER)
    # coef = <w, u> / |w|^2 = (1 + 3) / 2 = 2: u' = u - 2 w (|w| = sqrt(2) rounds)
    np.testing.assert_allclose(ac.project(u, W_TWIN, proj), [[-1.0, 2.0], [1.0, 4.0]])
    assert (int(proj.branch), float(proj.ratio)) == (ac.LAYER, 0.5)


def test_channels_last_tests_the_columns():
    u = np.array([[3.0, 4.0], [5.0, 6.0]])
    # the same weight and gradient, transposed: the channels are the columns
    proj = ac.projection(W_EYE.T, G_ORTHOGONAL.T, u.T, wd_ratio=0.5, channel_axis=-1, **HYPER)
    assert proj.coef.shape == (1, 2)
    np.testing.assert_array_equal(ac.project(u.T, W_EYE.T, proj), [[0.0, 5.0], [4.0, 0.0]])


@pytest.mark.parametrize(
    ("shape", "axis"), [((3,), 0), ((0, 4), 0), ((2, 2), None)], ids=["1-D", "empty", "no axis"]
)
def test_untested_weights_are_left_alone(shape, axis):
    w = np.ones(shape)
    proj = ac.projection(w, np.zeros(shape), w, wd_ratio=0.5, channel_axis=axis, **HYPER)
    assert (int(proj.branch), float(proj.ratio), math.isnan(proj.cosine)) == (ac.NONE, 1.0, True)
    np.testing.assert_array_equal(ac.project(w, w, proj), w)


@pytest.mark.parametrize(
    ("shape", "axis", "view"),
    [
        ((4, 3, 5), 0, (4, 15)),
        ((4, 3, 5), -1, (12, 5)),
        ((4, 3, 5), 1, (4, 3, 5)),
        ((7,), 0, (7,)),
        ((4, 3), None, (4, 3)),
    ],
)
def test_channel_view_shape(shape, axis, view):
    assert radial.channel_view_shape(shape, axis) == view


def test_a_missing_axis_is_a_value_error():
    with pytest.raises(ValueError, match="channel_axis 2 is out of range for a 2-D weight"):
        radial.normalize_axis(2, 2)


def test_deciding_threshold_names_the_bound_of_the_last_test_made():
    # (4, 3, 3): 4 rows of fan 9, size 36; delta 0.3: 0.3/sqrt(9) = 0.1, 0.3/sqrt(36) = 0.05
    assert radial.deciding_threshold((4, 3, 3), ac.CHANNEL, 0.3) == pytest.approx(0.1)
    assert radial.deciding_threshold((4, 3, 3), ac.LAYER, 0.3) == pytest.approx(0.05)
    # neither fired: the layer test was the last one made
    assert radial.deciding_threshold((4, 3, 3), ac.NONE, 0.3) == pytest.approx(0.05)
    # channels last: (9, 4) has 4 rows of fan 9
    assert radial.deciding_threshold((9, 4), ac.CHANNEL, 0.3, -1) == pytest.approx(0.1)
    for shape, axis in (((5,), 0), ((0, 3), 0), ((4, 3), None)):  # never tested
        assert math.isnan(radial.deciding_threshold(shape, ac.NONE, 0.3, axis))
