"""Trajectory streaming to a joint_trajectory_controller (JTC): whole chunks as one trajectory each.

Owns what the executor sends to a JointTrajectory output. Instead of one stepped target per control
tick (which a 1 kHz robot sees as a position step every 1/15 s), the remaining smoothed, cross-faded
chunk goes out once as one trajectory, re-sent only when a new chunk takes over, a hold begins or
homing starts; the controller interpolates between the points at its own rate.

How ros2_controllers' JTC treats a new trajectory (joint_trajectory_controller.cpp and trajectory.cpp,
read for this module): a message whose last point (header.stamp + time_from_start) lies before the
controller's now is rejected outright (a zero stamp means "start when first sampled"); an accepted one
replaces the current one at the first update after it arrives (there is no blending with the old
trajectory): the controller takes its state at that instant (the last commanded position and
velocity with open_loop_control, else the measured state) and, until the first point's time,
interpolates from that state to the first point; between points it interpolates a cubic through
positions and velocities (quintic when accelerations are given too, linear with positions alone);
points before now are skipped over; after the last point it holds that point.

So the stream keeps every trajectory's first point a little in the future (`lead`, longer than the
publish-to-controller latency) and makes that first point the continuation of the previous
trajectory at that time: position and velocity of the cubic the controller is following (this module
evaluates the same Hermite cubics). The controller's splice segment from its state to the first point
then retraces the old path, and the new chunk's rows take over from there with continuous position
and velocity. Rows closer than `min_segment` after the first point are left out, so no segment is
so short that its cubic needs a large acceleration.

Velocities at the points are the derivative of the monotone piecewise-cubic (PCHIP, scipy) through
the limited points, at the first point the continuation velocity and zero at the last (the
controller holds the last point and a nonzero velocity there would be a step). PCHIP rather than a
global cubic spline or plain central differences: its derivative at a point is zero where the path
turns and otherwise a weighted harmonic mean of the two adjacent secants, so it never exceeds the
larger secant (the points obey the velocity limit, so the sent velocities do too) and it never
invents an overshoot between points; a global spline's derivatives depend on every point and can
exceed the secants. The controller's cubic between two points can still peak above the secant
(at most 1.5x, for a segment that starts and ends at rest).

Limits apply to every point: clamped into the position limits, and each point within
velocity_limit x (its time - the previous point's time) of the previous one, the first point being the
continuation of what was already sent (itself limited) or the held position after arming.

A hold is two points at the held position with zero velocity (`lead` and `lead + hold_span` ahead),
so even a late delivery never makes it a trajectory that ends in the past.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicHermiteSpline, PchipInterpolator

from dreamzero_ros.core.safety import JointLimiter


@dataclass(frozen=True, slots=True)
class StreamedTrajectory:
    """One JointTrajectory to publish.

    stamp: s, header.stamp = the time of the first point (never zero, always ahead of the send time).
    time_from_start: [P] s, 0 for the first point, strictly increasing.
    positions, velocities: [P, J] (rad | m, rad/s | m/s) in the executor's joint order.
    holding: True for a hold (two points at one position).
    """

    stamp: float
    time_from_start: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    holding: bool

    @property
    def times(self) -> np.ndarray:
        """[P] absolute time of each point (s)."""
        return self.stamp + self.time_from_start

    @property
    def end(self) -> float:
        """s, when the last point is reached."""
        return float(self.stamp + self.time_from_start[-1])


def point_velocities(
    times: np.ndarray, positions: np.ndarray, first: np.ndarray | None = None, last: np.ndarray | None = None
) -> np.ndarray:
    """[P, J] velocities at the points: the PCHIP derivative (see the module docstring).

    times: [P] strictly increasing s; positions: [P, J]. first / last: [J] replace the derivative at
    the first / last point (e.g. a continuation velocity, zero at rest).
    """
    times = np.asarray(times, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape[0] == 1:
        v = np.zeros_like(positions)
    elif positions.shape[0] == 2:
        v = np.repeat((positions[1:] - positions[:1]) / (times[1] - times[0]), 2, axis=0)
    else:
        v = PchipInterpolator(times, positions, axis=0).derivative()(times)
    if first is not None:
        v[0] = first
    if last is not None:
        v[-1] = last
    return v


def limit_points(
    times: np.ndarray, positions: np.ndarray, lower: np.ndarray, upper: np.ndarray, velocity: np.ndarray
) -> np.ndarray:
    """[P, J] the points clamped into [lower, upper] and each within velocity x dt of the previous.

    The first point is only clamped (it is the reference the rest are limited from). Non-finite
    targets keep the previous point's value (JointLimiter.limit).
    """
    times = np.asarray(times, dtype=np.float64)
    out = np.array(positions, dtype=np.float64, copy=True)
    out[0] = np.clip(out[0], lower, upper)
    for k in range(1, out.shape[0]):
        gap = float(times[k] - times[k - 1])
        out[k] = JointLimiter(lower, upper, velocity * gap).limit(out[k], out[k - 1])
    return out


@dataclass(frozen=True, slots=True)
class _Piece:
    """Part of the path the controller is expected to follow, from `since` on."""

    since: float
    times: np.ndarray  # [P] absolute
    positions: np.ndarray  # [P, J]
    velocities: np.ndarray  # [P, J]

    def state(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        if self.times.size == 1 or t <= self.times[0]:
            return self.positions[0].copy(), (self.velocities[0] if t >= self.times[0] else 0 * self.velocities[0])
        if t >= self.times[-1]:
            return self.positions[-1].copy(), self.velocities[-1].copy()
        spline = CubicHermiteSpline(self.times, self.positions, self.velocities, axis=0)
        return spline(t), spline(t, 1)


class TrajectoryStreamer:
    """Turns the executor's per-tick decisions into the few trajectories a JTC needs.

    lower, upper, velocity: [J] limits (rad | m, rad/s | m/s). lead: s between sending and the first
    point (> publish-to-controller latency). min_segment: s, the shortest gap from the first point to
    the next. hold_span: s between the two points of a hold.
    """

    def __init__(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        velocity: np.ndarray,
        lead: float = 0.05,
        min_segment: float = 0.03,
        hold_span: float = 1.0,
    ) -> None:
        for name, v in (("lead", lead), ("min_segment", min_segment), ("hold_span", hold_span)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"TrajectoryStreamer: {name} must be a positive number of seconds, got {v!r}")
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.velocity = np.asarray(velocity, dtype=np.float64)
        self.lead = float(lead)
        self.min_segment = float(min_segment)
        self.hold_span = float(hold_span)
        self._pieces: list[_Piece] = []
        self._key: Hashable | None = None
        self._held: np.ndarray | None = None
        self.sent = 0

    # -------------------------------------------------------------- state

    def start(self, position: np.ndarray) -> None:
        """The controller is at rest at `position` (after arming, before homing): stream from there."""
        p = np.clip(np.asarray(position, dtype=np.float64), self.lower, self.upper)
        self._pieces = [_Piece(-np.inf, np.array([-np.inf]), p[None, :], np.zeros((1, p.size)))]
        self._key = None

    def expected(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """([J] position, [J] velocity) the controller follows at time t, by what was sent."""
        if not self._pieces:
            raise RuntimeError("TrajectoryStreamer: start(position) first")
        piece = next(p for p in reversed(self._pieces) if p.since <= t or p is self._pieces[0])
        pos, vel = piece.state(t)
        return np.clip(pos, self.lower, self.upper), np.clip(vel, -self.velocity, self.velocity)

    # -------------------------------------------------------------- trajectories

    def follow(self, times: np.ndarray, targets: np.ndarray, now: float) -> StreamedTrajectory:
        """The trajectory for rows `targets` [n, J] due at absolute `times` [n] (s), sent at `now`."""
        times = np.asarray(times, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64)
        t0 = now + self.lead
        p0, v0 = self.expected(t0)
        keep = times >= t0 + self.min_segment - 1e-9
        if keep.any():
            pt, pp = times[keep], targets[keep]
        else:  # every row is due before the first point could be: go to where the rows end
            pt, pp = np.array([t0 + self.min_segment]), targets[-1:]
        point_times = np.concatenate(([t0], pt))
        positions = limit_points(point_times, np.vstack((p0, pp)), self.lower, self.upper, self.velocity)
        velocities = point_velocities(point_times, positions, first=v0, last=np.zeros_like(p0))
        return self._emit(point_times, positions, velocities, now, holding=False)

    def hold(self, position: np.ndarray, now: float) -> StreamedTrajectory:
        """Two points at `position` (limited from the expected path), at rest."""
        t0 = now + self.lead
        p_now, _ = self.expected(now)
        point_times = np.array([t0, t0 + self.hold_span])
        # The hold position is the executor's last command, normally within reach; limited anyway.
        target = np.asarray(position, dtype=np.float64)
        held = limit_points(np.array([now, t0]), np.vstack((p_now, target)), self.lower, self.upper, self.velocity)[1]
        positions = np.vstack((held, held))
        return self._emit(point_times, positions, np.zeros_like(positions), now, holding=True)

    def on_command(
        self,
        key: Hashable,
        position: np.ndarray,
        holding: bool,
        now: float,
        remaining: tuple[np.ndarray, np.ndarray] | None,
    ) -> StreamedTrajectory | None:
        """What to send after one executor tick, or None (the controller already has it).

        key: what is being executed (e.g. ("chunk", id), ("home", start time)); a new key is a new
        trajectory. position: [J] the tick's command. holding: the tick held. remaining: the executor's
        rows still ahead (core.ExecutorCore.remaining()) when not holding. Without start() first,
        the controller is taken to rest at `position`.
        """
        if not self._pieces:
            self.start(position)
        if holding:
            if self._key == ("hold",) and self._held is not None and np.array_equal(self._held, position):
                return None
            traj = self.hold(position, now)
            self._key, self._held = ("hold",), np.asarray(position, dtype=np.float64).copy()
            return traj
        if key == self._key or remaining is None or len(remaining[0]) == 0:
            return None
        traj = self.follow(remaining[0], remaining[1], now)
        self._key = key
        return traj

    def _emit(
        self, times: np.ndarray, positions: np.ndarray, velocities: np.ndarray, now: float, holding: bool
    ) -> StreamedTrajectory:
        # The controller's path from now: its splice cubic from the expected state now to the first
        # point, then the points. Older pieces are kept only while something may still evaluate them.
        p_now, v_now = self.expected(now)
        piece = _Piece(
            now,
            np.concatenate(([now], times)),
            np.vstack((p_now, positions)),
            np.vstack((v_now, velocities)),
        )
        self._pieces = [p for p in self._pieces if p.since < now][-1:] + [piece]
        self.sent += 1
        return StreamedTrajectory(float(times[0]), times - times[0], positions, velocities, holding)
