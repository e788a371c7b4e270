"""sim.trajectory: joint trajectories interpolated from the commanded position through their points, then held."""

from __future__ import annotations

import numpy as np
import pytest

from dreamzero_ros.sim.trajectory import JointTrajectory

JOINTS = ("a", "b")


def _trajectory(start: float = 10.0) -> JointTrajectory:
    return JointTrajectory.build(JOINTS, start, np.array([0.0, 1.0]), [0.5, 1.5], [[1.0, 1.0], [3.0, -1.0]])


def test_a_trajectory_starts_at_the_commanded_position_and_interpolates_linearly_through_its_points():
    traj = _trajectory()
    np.testing.assert_allclose(traj.sample(10.0), [0.0, 1.0])
    np.testing.assert_allclose(traj.sample(10.25), [0.5, 1.0])
    np.testing.assert_allclose(traj.sample(10.5), [1.0, 1.0])
    np.testing.assert_allclose(traj.sample(11.0), [2.0, 0.0])
    assert traj.end == pytest.approx(11.5)


def test_after_its_last_point_a_trajectory_holds_it_and_before_its_start_it_holds_the_origin():
    traj = _trajectory()
    np.testing.assert_allclose(traj.sample(20.0), [3.0, -1.0])
    np.testing.assert_allclose(traj.sample(9.0), [0.0, 1.0])


def test_a_point_due_at_time_zero_is_reached_at_once():
    traj = JointTrajectory.build(("a",), 0.0, np.array([0.0]), [0.0], [[2.0]])
    np.testing.assert_allclose(traj.sample(0.0), [2.0])


@pytest.mark.parametrize(
    ("times", "positions", "match"),
    [
        ([], [], "no points"),
        ([0.5, 0.2], [[0, 0], [0, 0]], "non-decreasing"),
        ([-0.1], [[0, 0]], ">= 0"),
        ([float("nan")], [[0, 0]], "finite"),
        ([0.5], [[0.0]], "point 0 has 1 positions for 2 joints"),
        ([0.5], [[0.0, float("nan")]], "non-finite positions"),
    ],
)
def test_malformed_trajectories_are_rejected_with_the_reason(times, positions, match):
    with pytest.raises(ValueError, match=match):
        JointTrajectory.build(JOINTS, 0.0, np.zeros(2), times, positions)


def test_duplicate_joint_names_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        JointTrajectory.build(("a", "a"), 0.0, np.zeros(2), [0.5], [[0.0, 0.0]])
