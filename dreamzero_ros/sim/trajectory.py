"""Joint trajectories for the simulated robot, followed the way ros2_control's joint_trajectory_controller does.

A trajectory starts from the commanded positions at the moment it is received (time_from_start 0) and is
linearly interpolated through its points; after the last point it holds that point. A new trajectory replaces
the one being followed from its own start on, so consecutive one-point messages splice into a continuous path.
Pure numpy: the sim node converts `trajectory_msgs/JointTrajectory` into `JointTrajectory` and samples it on
each physics tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class JointTrajectory:
    """Positions [P, J] (rad | m) of `joints` reached at `times` [P] (s after `start`, non-decreasing, >= 0)."""

    joints: tuple[str, ...]
    start: float  # s, on the clock `sample` is called with
    origin: np.ndarray  # [J] commanded positions at `start`
    times: np.ndarray  # [P]
    positions: np.ndarray  # [P, J]

    @classmethod
    def build(
        cls, joints: tuple[str, ...], start: float, origin: np.ndarray, times: list[float], positions: list[list[float]]
    ) -> JointTrajectory:
        """Validated trajectory; raises ValueError naming what is wrong (lengths, order, non-finite values)."""
        n = len(joints)
        if n == 0 or len(set(joints)) != n:
            raise ValueError(f"trajectory: joint names must be non-empty and unique, got {list(joints)}")
        if not times:
            raise ValueError("trajectory: no points")
        t = np.asarray(times, dtype=np.float64)
        if not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) < 0):
            raise ValueError(f"trajectory: time_from_start must be finite, >= 0 and non-decreasing, got {t.tolist()}")
        for i, row in enumerate(positions):
            if len(row) != n:
                raise ValueError(f"trajectory: point {i} has {len(row)} positions for {n} joints")
        p = np.asarray(positions, dtype=np.float64).reshape(len(times), n)
        if not np.all(np.isfinite(p)):
            raise ValueError("trajectory: non-finite positions")
        o = np.asarray(origin, dtype=np.float64).reshape(n)
        return cls(tuple(joints), float(start), o, t, p)

    @property
    def end(self) -> float:
        """s on the caller's clock at which the last point is reached."""
        return self.start + float(self.times[-1])

    def sample(self, now: float) -> np.ndarray:
        """[J] positions at `now` (s): origin -> point 0 -> ... -> last point, held after the end."""
        elapsed = now - self.start
        if elapsed >= self.times[-1]:
            return self.positions[-1].copy()
        knots = np.concatenate(([0.0], self.times))
        values = np.vstack((self.origin, self.positions))
        i = int(np.searchsorted(knots, max(elapsed, 0.0), side="right")) - 1  # segment [knots[i], knots[i+1])
        span = knots[i + 1] - knots[i]
        alpha = 1.0 if span <= 0 else (max(elapsed, 0.0) - knots[i]) / span
        return values[i] + alpha * (values[i + 1] - values[i])
