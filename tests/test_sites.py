"""Reading a point of the heart from the voxels around it: footprints, and
the sites' activation times and traces read through them."""
from __future__ import annotations

import numpy as np
import pytest

from solver.patient.footprint import Footprint, nearest_footprint, soft_nearest
from solver.patient.sites import delayed, read_activation, read_traces

#: A 2.5 mm grid of 7 x 7 x 7 voxels.
GRID = 2.5 * np.stack(np.meshgrid(*[np.arange(7.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
EVERYWHERE = np.ones(len(GRID), bool)


def test_a_footprint_weighs_the_nearest_voxel_most_and_sums_to_one():
    target = np.array([7.0, 7.6, 8.1])
    footprint = nearest_footprint(GRID, EVERYWHERE, target, softness_mm=1.25)
    nearest = int(np.argmin(np.linalg.norm(GRID - target, axis=1)))
    assert footprint.heaviest == nearest
    np.testing.assert_allclose(footprint.weights.sum(), 1.0)
    # Its point lies near the target, nearer than the nearest voxel's centre.
    assert np.linalg.norm(footprint.point(GRID) - target) < np.linalg.norm(GRID[nearest] - target)


def test_softness_zero_reads_the_nearest_voxel_alone():
    footprint = nearest_footprint(GRID, EVERYWHERE, np.array([7.0, 7.6, 8.1]), softness_mm=0.0)
    assert len(footprint.voxels) == 1 and footprint.weights.tolist() == [1.0]


def test_a_footprint_moves_continuously_with_its_point():
    """Across the midpoint between two voxels, where the nearest voxel
    changes, the footprint's point moves by a fraction of the step."""
    points = []
    for x in np.linspace(6.0, 6.5, 11):  # the midpoint of 5.0 and 7.5 is 6.25
        points.append(nearest_footprint(GRID, EVERYWHERE, np.array([x, 7.5, 7.5]), 1.25).point(GRID))
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    assert steps.max() < 0.2  # the target steps 0.05 mm; the nearest voxel jumps 2.5 mm
    hard = [nearest_footprint(GRID, EVERYWHERE, np.array([x, 7.5, 7.5]), 0.0).point(GRID)
            for x in np.linspace(6.0, 6.5, 11)]
    assert np.linalg.norm(np.diff(hard, axis=0), axis=1).max() == pytest.approx(2.5)


def test_soft_nearest_of_no_candidate_is_an_error():
    with pytest.raises(ValueError, match="no candidate"):
        soft_nearest(np.array([], dtype=np.int64), np.array([]), 1.0)


def test_a_site_activates_at_its_voxels_weighted_mean_unless_most_never_do():
    sites = [Footprint(np.array([0, 1]), np.array([0.75, 0.25])),
             Footprint(np.array([1, 2]), np.array([0.6, 0.4])),
             Footprint(np.array([2, 3]), np.array([0.6, 0.4]))]
    activation = np.array([10.0, 14.0, np.nan, np.nan])  # voxels 2 and 3: a scar's core
    np.testing.assert_allclose(read_activation(sites, activation), [11.0, 14.0, np.nan])


def test_delayed_traces_match_linear_interpolation():
    t = np.arange(60.0)
    traces = np.stack([np.tanh(t - 20), np.tanh(0.5 * (t - 30))], axis=1)
    moved = delayed(traces, np.array([2.5, -3.25]))
    np.testing.assert_allclose(moved[:, 0], np.interp(t - 2.5, t, traces[:, 0]))
    np.testing.assert_allclose(moved[:, 1], np.interp(t + 3.25, t, traces[:, 1]))


def test_a_site_trace_keeps_the_upstroke_of_its_voxels():
    """Two voxels whose upstrokes are 6 ms apart: the site's trace, read
    halfway, rises as steeply as each voxel's, at the site's time; a plain
    average would rise in two steps."""
    t = np.arange(100.0)
    upstroke = lambda at: np.where(t < at, -80.0, 20.0)  # noqa: E731
    vm = np.stack([upstroke(30), upstroke(36)], axis=1)
    site = Footprint(np.array([4, 9]), np.array([0.5, 0.5]))
    activation = np.full(10, np.nan)
    activation[[4, 9]] = [29.5, 35.5]
    site_act = read_activation([site], activation)
    trace = read_traces([site], np.array([4, 9]), vm, 1.0, activation, site_act)[:, 0]
    assert site_act[0] == 32.5
    assert trace[32] == -80.0 and trace[34] == 20.0
