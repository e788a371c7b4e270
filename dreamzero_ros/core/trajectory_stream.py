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

A splice from the controller's own state would stall it for one update: at its first sample of a
new trajectory the state it starts from is the previous update's command, assigned the current
time (a repeated position, i.e. a one-cycle velocity drop, while moving). So every trajectory starts
with two points on the path the controller is already following (position and velocity of the cubics
this module sent, evaluated with the same Hermite rule): one at the send time (the header stamp,
already past when the controller first samples it, so the controller lands inside the segment
instead of splicing from its state) and one `lead` later (longer than the publish-to-controller
latency). Between the two the controller retraces its old path; the new chunk's rows take over after
the second with continuous position and velocity. A delivery later than `lead` would land the
controller on the new rows, which have left the old path by then: a step, so `lead` must exceed the
worst publish-to-controller latency (the node's default is 0.1 s). The first `crossfade_steps`
rows after the hand-over fade from the followed path into the new chunk (the executor's own
cross-fade acts on the rows due from the switch tick, which the hand-over mostly skips). Rows closer
than `min_segment` after the hand-over are left out, so no segment is so short that its cubic needs
a large acceleration. The trajectory's last point is always ahead, so it is never one that ends in
the past.

Velocities at the rows are the derivative of the monotone piecewise-cubic (PCHIP, scipy) through
the limited points, the path's own at the path points and zero at the last (the controller holds
the last point and a nonzero velocity there would be a step). PCHIP rather than a
global cubic spline or plain central differences: its derivative at a point is zero where the path
turns and otherwise a weighted harmonic mean of the two adjacent secants, so it never exceeds the
larger secant (the points obey the velocity limit, so the rows' velocities do too) and it never
invents an overshoot between points; a global spline's derivatives depend on every point and can
exceed the secants. The controller's cubic between two points can still peak above the secant
(at most 1.5x, for a segment that starts and ends at rest); the path points carry the velocity the
controller already has there.

Limits apply to every point: clamped into the position limits, and each point within
velocity_limit x (its time - the previous point's time) of the previous one, the first point being
where the controller already is by what was sent (itself limited) or the held position after arming.

A hold is the path point at the send time, then the held position at rest at `lead` and again
`hold_span` later, so even a late delivery never makes it a trajectory that ends in the past.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicHermiteSpline, PchipInterpolator

from dreamzero_ros.core.chunk import crossfade
from dreamzero_ros.core.safety import JointLimiter


@dataclass(frozen=True, slots=True)
class StreamedTrajectory:
    """One JointTrajectory to publish.

    stamp: s, header.stamp = the time of the first point = the send time (never zero).
    time_from_start: [P] s, 0 for the first point, `lead` for the second, strictly increasing.
    positions, velocities: [P, J] (rad | m, rad/s | m/s) in the executor's joint order.
    holding: True for a hold (ends with two points at one position, at rest).
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

    lower, upper, velocity: [J] limits (rad | m, rad/s | m/s). lead: s from sending (the first point)
    to the hand-over point (> publish-to-controller latency). min_segment: s, the shortest gap from the
    hand-over point to the first row. hold_span: s between the two held points of a hold.
    crossfade_steps: rows after the hand-over that fade from the followed path into the new rows
    (the executor's own cross-fade acts on the rows due from the switch tick, which the hand-over
    `lead` later mostly skips).
    """

    def __init__(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        velocity: np.ndarray,
        lead: float = 0.1,
        min_segment: float = 0.03,
        hold_span: float = 1.0,
        crossfade_steps: int = 3,
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
        if isinstance(crossfade_steps, bool) or not isinstance(crossfade_steps, int) or crossfade_steps < 0:
            raise ValueError(f"TrajectoryStreamer: crossfade_steps must be an integer >= 0, got {crossfade_steps!r}")
        self.crossfade_steps = crossfade_steps
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
        """([J] position, [J] velocity) the controller follows at time t, by what was sent.

        The velocity is the path's own (a cubic may exceed its points' by up to 1.5x): changing it would
        put the very step into the controller's command that the continuation points are there to avoid.
        """
        if not self._pieces:
            raise RuntimeError("TrajectoryStreamer: start(position) first")
        piece = next(p for p in reversed(self._pieces) if p.since <= t or p is self._pieces[0])
        pos, vel = piece.state(t)
        return np.clip(pos, self.lower, self.upper), vel

    def _knots(self, t_from: float, t_to: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times [k], positions [k, J], velocities [k, J]) of the followed path's points strictly inside (t_from, t_to)."""
        piece = next((p for p in reversed(self._pieces) if p.since <= t_from), self._pieces[0])
        inside = (piece.times > t_from + 1e-6) & (piece.times < t_to - 1e-6)
        return piece.times[inside], piece.positions[inside], piece.velocities[inside]

    # -------------------------------------------------------------- trajectories

    def follow(self, times: np.ndarray, targets: np.ndarray, now: float) -> StreamedTrajectory:
        """The trajectory for rows `targets` [n, J] due at absolute `times` [n] (s), sent at `now`."""
        times = np.asarray(times, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64)
        t0 = now + self.lead
        keep = times >= t0 + self.min_segment - 1e-9
        if keep.any():
            pt, pp = times[keep], targets[keep]
        else:  # every row is due before the hand-over: go to where the rows end
            pt, pp = np.array([t0 + self.min_segment]), targets[-1:]
        if self.crossfade_steps:
            source = np.array([self.expected(t)[0] for t in pt[: self.crossfade_steps]])
            pp = crossfade(pp, source, self.crossfade_steps)
        return self._emit(now, pt, pp, holding=False)

    def hold(self, position: np.ndarray, now: float) -> StreamedTrajectory:
        """From the current path point to `position` (limited), held there at rest."""
        target = np.asarray(position, dtype=np.float64)
        return self._emit(now, np.array([now + self.lead + self.hold_span]), target[None, :], holding=True)

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

    def _emit(self, now: float, times: np.ndarray, targets: np.ndarray, holding: bool) -> StreamedTrajectory:
        """The point on the current path at now, then (not holding) the one at now + lead, then
        `targets` [n, J] at `times` [n] (after now + lead), all limited. Velocities: the path's at the
        path points, PCHIP at the rows, zero at the last. A hold: the path point at now, then the held
        position at rest at now + lead and at `times[0]`."""
        t0 = now + self.lead
        p_now, v_now = self.expected(now)
        if holding:
            point_times = np.array([now, t0, times[0]])
            positions = limit_points(point_times, np.vstack((p_now, targets[0], targets[0])),
                                     self.lower, self.upper, self.velocity)
            positions[2] = positions[1]
            velocities = np.zeros_like(positions)
            velocities[0] = v_now
        else:
            # The path's own knots between now and the hand-over too: with them every segment up to
            # the hand-over is the very cubic the controller was following (a single cubic across a
            # knot would differ from it a little, which shows as an acceleration spike at 1 kHz).
            kt, kp, kv = self._knots(now, t0)
            p0, v0 = self.expected(t0)
            point_times = np.concatenate(([now], kt, [t0], times))
            positions = limit_points(point_times, np.vstack((p_now, kp, p0, targets)),
                                     self.lower, self.upper, self.velocity)
            velocities = point_velocities(point_times, positions, last=np.zeros_like(p0))
            n = kt.size + 2
            velocities[:n] = np.vstack((v_now, kv, v0))
        # The controller follows this trajectory from now on (older pieces are kept one deep).
        self._pieces = [p for p in self._pieces if p.since < now][-1:] + [_Piece(now, point_times, positions, velocities)]
        self.sent += 1
        return StreamedTrajectory(float(now), point_times - now, positions, velocities, holding)
