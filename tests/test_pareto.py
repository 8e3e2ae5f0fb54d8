"""Pareto fronts, hypervolume and the kernel density of ``nni_nas_ext.core.pareto`` on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from nni_nas_ext.core.pareto import (
    HV_REFERENCE, density, hypervolume, normalise, normalised_hypervolume, pareto_front,
)


def test_front_of_a_known_set() -> None:
    points = [[1, 5], [2, 3], [3, 4], [4, 1], [5, 5], [2, 3.5]]
    # (3, 4) is dominated by (2, 3); (5, 5) by everything; (2, 3.5) by (2, 3)
    assert pareto_front(points).tolist() == [0, 1, 3]


def test_front_keeps_one_of_equal_points_and_handles_one_and_none() -> None:
    assert pareto_front([[1, 2], [1, 2], [2, 1]]).tolist() == [0, 2]
    assert pareto_front([[3.0, 4.0]]).tolist() == [0]
    assert pareto_front(np.zeros((0, 2))).tolist() == []


def test_front_in_three_objectives() -> None:
    points = [[0.1, 100, 5], [0.2, 50, 5], [0.3, 50, 6], [0.1, 100, 6]]
    assert pareto_front(points).tolist() == [0, 1]


def test_hypervolume_of_a_staircase() -> None:
    # three steps under the reference (4, 4): 1*1 + 1*2 + 1*3
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(6.0)
    # a dominated point adds nothing; one outside the reference box adds nothing
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0.5]], [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    assert hypervolume([[2, 2]], [1, 1]) == 0.0


def test_normalised_hypervolume_uses_stated_bounds() -> None:
    scaled = normalise([[0.1, 10_000], [0.3, 1000]], [0.0, 1000], [1.0, 11_000])
    assert scaled.shape == (2, 2) and scaled.ravel().tolist() == pytest.approx([0.1, 0.9, 0.3, 0.0])
    # the box of (0.1, 0.9) and (0.3, 0.0) under (1.01, 1.01)
    expected = (1.01 - 0.1) * (1.01 - 0.9) + (1.01 - 0.3) * (0.9 - 0.0)
    assert normalised_hypervolume([[0.1, 10_000], [0.3, 1000]], [0.0, 1000], [1.0, 11_000]) == \
        pytest.approx(expected)
    assert HV_REFERENCE == 1.01


@pytest.mark.parametrize(("call", "message"), [
    (lambda: pareto_front([1, 2, 3]), "must be a 2-D array"),
    (lambda: pareto_front([[1, float("nan")]]), r"row 0 column 1 is nan: drop failed trials"),
    (lambda: hypervolume([[1, 2]], [1, 2, 3]), "one value per objective"),
    (lambda: normalise([[1, 2]], [0, 5], [1, 5]), "lower < upper must hold"),
    (lambda: density(np.zeros((0, 1)), [[1.0]]), "at least one point"),
    (lambda: density([[1.0]], [[1.0, 2.0]]), "must have 1 objective"),
])
def test_bad_input_is_named(call, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        call()


def test_density_is_higher_inside_a_cluster_and_works_for_tiny_sets() -> None:
    rng = np.random.default_rng(0)
    cluster = np.concatenate([rng.normal(4.0, 0.1, (20, 1)), [[6.0]]])
    d = density(cluster, [[4.0], [6.0], [9.0]])
    assert d[0] > d[1] > d[2] >= 0
    # one point, and two equal points: the unit-width fallback, still a proper ordering by distance
    one = density([[5.0, 2.0]], [[5.0, 2.0], [6.0, 2.0], [8.0, 2.0]])
    assert one[0] > one[1] > one[2] > 0
    two = density([[5.0], [5.0]], [[5.0], [7.0]])
    assert two[0] > two[1] > 0
