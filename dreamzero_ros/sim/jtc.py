"""A model of ros2_controllers' joint_trajectory_controller (JTC) sampling, for stand-ins and benchmarks.

Follows joint_trajectory_controller.cpp / trajectory.cpp (read from ros-controls/ros2_controllers):
- validation on receipt: time_from_start strictly increasing, sizes match the joints, and a message
  with a non-zero stamp whose last point (stamp + time_from_start) is before now is rejected;
- the newest accepted message replaces the current trajectory at the next update (no blending); at
  that first sample the controller records its "state before" (open loop: the last commanded
  position and velocity) and a zero stamp becomes that sample's time;
- before the first point: interpolation from the state before to the first point; between points:
  cubic Hermite through positions and velocities (linear when a point has no velocities); after the
  last point: the last point (its velocities, or zero when it has none).
Pure numpy, written from those rules and not from the executor's streaming code, so a test can hold
one against the other. Times are seconds on one clock.
"""

from __future__ import annotations

import numpy as np


def _interpolate(
    ta: float, pa: np.ndarray, va: np.ndarray | None, tb: float, pb: np.ndarray, vb: np.ndarray | None, t: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, velocity, acceleration) at t between state a at ta and b at tb, as JTC's
    interpolate_between_points: cubic when both have velocities, else linear; clamped to [ta, tb]."""
    span = tb - ta
    s = t - ta
    cubic = va is not None and vb is not None
    if s < 0.0:
        s, cubic = 0.0, False
    if s > span:
        s, cubic = span, False
    if not cubic:
        slope = (pb - pa) / span if span != 0.0 else np.zeros_like(pa)
        return pa + slope * s, slope, np.zeros_like(pa)
    c2 = (-3.0 * pa + 3.0 * pb - 2.0 * va * span - vb * span) / span**2
    c3 = (2.0 * pa - 2.0 * pb + va * span + vb * span) / span**3
    return (
        pa + va * s + c2 * s**2 + c3 * s**3,
        va + 2.0 * c2 * s + 3.0 * c3 * s**2,
        2.0 * c2 + 6.0 * c3 * s,
    )


class JtcModel:
    """One JTC in open-loop mode, sampled by the caller at its update rate (e.g. 1 kHz).

    position: [J] where the controller starts (it holds there until a trajectory arrives).
    """

    def __init__(self, position: np.ndarray) -> None:
        self.position = np.asarray(position, dtype=np.float64).copy()
        self.velocity = np.zeros_like(self.position)
        self.acceleration = np.zeros_like(self.position)
        self._pending: tuple[float, np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._active: tuple[float, np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._before: tuple[float, np.ndarray, np.ndarray] | None = None
        self.accepted = 0
        self.rejected: list[str] = []

    def receive(
        self, stamp: float, time_from_start: np.ndarray, positions: np.ndarray, velocities: np.ndarray | None, now: float
    ) -> bool:
        """A JointTrajectory arrives at `now`; False (and the reason in `rejected`) when JTC would refuse it."""
        tfs = np.asarray(time_from_start, dtype=np.float64)
        pos = np.asarray(positions, dtype=np.float64)
        vel = None if velocities is None or len(velocities) == 0 else np.asarray(velocities, dtype=np.float64)
        reason = ""
        if tfs.size == 0:
            reason = "no points"
        elif np.any(np.diff(tfs) <= 0.0):
            reason = "time_from_start not strictly increasing"
        elif pos.shape != (tfs.size, self.position.size) or (vel is not None and vel.shape != pos.shape):
            reason = f"point sizes {pos.shape} do not match {tfs.size} points x {self.position.size} joints"
        elif stamp != 0.0 and stamp + tfs[-1] < now:
            reason = f"ends in the past: last point at {stamp + tfs[-1]:.4f} s, now {now:.4f} s"
        if reason:
            self.rejected.append(reason)
            return False
        self._pending = (stamp, tfs, pos, vel)
        self.accepted += 1
        return True

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One controller update at time t: (position, velocity, acceleration) commanded, [J] each."""
        if self._pending is not None:
            stamp, tfs, pos, vel = self._pending
            self._pending = None
            self._active = (t if stamp == 0.0 else stamp, tfs, pos, vel)
            self._before = (t, self.position.copy(), self.velocity.copy())
        if self._active is None or self._before is None:
            return self.position.copy(), self.velocity.copy(), self.acceleration.copy()
        start, tfs, pos, vel = self._active
        t_before, p_before, v_before = self._before
        if t < t_before:
            return self.position.copy(), self.velocity.copy(), self.acceleration.copy()
        times = start + tfs
        if t < times[0]:
            out = _interpolate(t_before, p_before, v_before, times[0], pos[0], None if vel is None else vel[0], t)
        elif t >= times[-1]:
            out = (pos[-1].copy(), np.zeros_like(pos[-1]) if vel is None else vel[-1].copy(), np.zeros_like(pos[-1]))
        else:
            i = int(np.searchsorted(times, t, side="right")) - 1
            va, vb = (None, None) if vel is None else (vel[i], vel[i + 1])
            out = _interpolate(times[i], pos[i], va, times[i + 1], pos[i + 1], vb, t)
        self.position, self.velocity, self.acceleration = (np.array(x, dtype=np.float64) for x in out)
        return self.position.copy(), self.velocity.copy(), self.acceleration.copy()
