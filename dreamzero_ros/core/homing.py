"""The move to the start pose: a slow, velocity-limited, smooth joint-space path.

Owns the path `dreamzero home` drives the robot along (the executor samples it per tick, or streams
it whole to a trajectory controller). Every joint follows the minimum-jerk profile
s(tau) = 10 tau^3 - 15 tau^4 + 6 tau^5 between its start and goal, all joints on one clock so they
arrive together along a straight line in joint space. Velocity and acceleration are zero at both
ends, so neither the start nor the arrival is a step for the robot's reflexes. The profile's peak
speed is 15/8 of its mean, so the duration is chosen such that the peak of each joint stays at or
below its speed: T = 15/8 * max_j |goal_j - start_j| / speed_j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PEAK_OVER_MEAN = 15.0 / 8.0  # max of ds/dtau for the minimum-jerk profile, at tau = 1/2


@dataclass(frozen=True, slots=True)
class HomingPath:
    """start, goal, speed: [J] (rad | m, rad/s | m/s); t0: s when the path starts; duration: s (>= 0)."""

    start: np.ndarray
    goal: np.ndarray
    speed: np.ndarray
    t0: float
    duration: float

    @classmethod
    def plan(cls, start: np.ndarray, goal: np.ndarray, speed: np.ndarray, t0: float) -> HomingPath:
        """The path from `start` to `goal` starting at t0, no joint faster than its `speed` (> 0)."""
        start = np.asarray(start, dtype=np.float64).copy()
        goal = np.asarray(goal, dtype=np.float64).copy()
        speed = np.asarray(speed, dtype=np.float64).copy()
        if not (start.shape == goal.shape == speed.shape and start.ndim == 1):
            raise ValueError(f"HomingPath: start, goal, speed must be [J] of one length, got "
                             f"{start.shape}, {goal.shape}, {speed.shape}")
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(goal))):
            raise ValueError("HomingPath: start and goal must be finite")
        if not (np.all(np.isfinite(speed)) and np.all(speed > 0)):
            raise ValueError(f"HomingPath: speed must be finite and > 0, got {speed.tolist()}")
        duration = float(PEAK_OVER_MEAN * np.max(np.abs(goal - start) / speed)) if start.size else 0.0
        for a in (start, goal, speed):
            a.flags.writeable = False
        return cls(start, goal, speed, float(t0), duration)

    def delayed(self, seconds: float) -> HomingPath:
        """The same path starting `seconds` later (a paused path resumes where it was)."""
        return HomingPath(self.start, self.goal, self.speed, self.t0 + float(seconds), self.duration)

    @property
    def end(self) -> float:
        """s when the goal is reached."""
        return self.t0 + self.duration

    def _tau(self, t: np.ndarray) -> np.ndarray:
        if self.duration <= 0.0:
            return np.ones_like(t)
        return np.clip((t - self.t0) / self.duration, 0.0, 1.0)

    def positions(self, t: np.ndarray | float) -> np.ndarray:
        """[J] (scalar t) or [n, J] positions at time(s) t; start before t0, goal after the end."""
        tau = self._tau(np.atleast_1d(np.asarray(t, dtype=np.float64)))
        s = tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)
        out = self.start + s[:, None] * (self.goal - self.start)
        return out[0] if np.ndim(t) == 0 else out

    def velocities(self, t: np.ndarray | float) -> np.ndarray:
        """[J] or [n, J] d/dt of `positions` (zero outside the path)."""
        tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if self.duration <= 0.0:
            out = np.zeros((tt.size, self.start.size))
        else:
            tau = self._tau(tt)
            ds = 30.0 * tau**2 * (1.0 - tau) ** 2 / self.duration
            out = ds[:, None] * (self.goal - self.start)
        return out[0] if np.ndim(t) == 0 else out

    def samples(self, t_from: float, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """(times [n], positions [n, J]) every dt from the first multiple of dt after t_from through the end.

        The goal is always the last sample (at `end`), so a trajectory built from them arrives exactly.
        """
        if dt <= 0:
            raise ValueError(f"HomingPath.samples: dt must be > 0, got {dt}")
        first = self.t0 + dt * (np.floor((t_from - self.t0) / dt + 1e-9) + 1.0)
        times = np.arange(first, self.end, dt) if first < self.end - 1e-9 else np.empty(0)
        times = np.concatenate((times[times < self.end - 1e-9], [max(self.end, t_from + 1e-6)]))
        return times, self.positions(times)
