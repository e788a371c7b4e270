"""Trajectory streaming: the trajectories a JointTrajectoryController gets, and what it does with them.

The controller side is sim.jtc.JtcModel, written from ros2_controllers' JTC rules (splice at the first
update after receipt from the last commanded state, cubic Hermite between points with positions and
velocities, rejection of trajectories that end in the past), sampled at 1 kHz.

Velocity-jump bound at a chunk switch, derived here once: the controller's command is a chain of cubic
Hermite segments; a new trajectory starts with two points on the path the controller is following
(at the send time and `lead` later), so at its first sample the controller lands in a segment that
retraces its old path: position and velocity are continuous, and between two 1 kHz samples the
velocity changes by at most max|acceleration| x 1 ms. On a cubic of span D from (p0, v0) to (p1, v1),
acceleration is linear in time with end values 6(p1 - p0)/D^2 - (4 v0 + 2 v1)/D and
-6(p1 - p0)/D^2 + (2 v0 + 4 v1)/D. The streamer limits every secant |p1 - p0| / D to the joint
velocity limit V and sends point velocities of at most V (PCHIP), while the controller's own velocity
inside a segment can reach 1.5 V (a cubic from rest to rest with secant V peaks at 1.5 V), and the
segment between the two path points spans |p1 - p0| <= 1.5 V D with such velocities at its ends.
So |a| <= 6 (1.5 V) / D + 6 (1.5 V) / D = 18 V / D and the jump per 1 ms sample is at most
18 V (1 ms) / D_min, D_min the shortest segment: min(lead, min_segment, dt).
"""

from __future__ import annotations

import numpy as np
import pytest

from dreamzero_ros.core.chunk import RawChunk
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.executor import ExecutorCore, ExecutorSettings
from dreamzero_ros.core.trajectory_stream import TrajectoryStreamer, limit_points, point_velocities
from dreamzero_ros.sim.jtc import JtcModel

FRANKA = load_embodiment("franka_droid")
NAMES = FRANKA.action_joints
DT = FRANKA.control.dt
H = FRANKA.control.horizon
LO, HI, VEL = FRANKA.limits_arrays()
START = np.array([0.0, -0.6283, 0.0, -2.5133, 0.0, 1.885, 0.7854, 0.04])
LEAD, MIN_SEGMENT, LATENCY = 0.05, 0.03, 0.01


def streamer(crossfade_steps: int = 3) -> TrajectoryStreamer:
    s = TrajectoryStreamer(LO, HI, VEL, lead=LEAD, min_segment=MIN_SEGMENT, crossfade_steps=crossfade_steps)
    s.start(START)
    return s


# ----------------------------------------------------------------------------- the trajectories


def test_a_chunk_becomes_one_trajectory_starting_lead_ahead_with_its_rows_at_their_own_times():
    s = streamer(crossfade_steps=0)
    now = 100.0
    times = now - 0.02 + DT * np.arange(1, H + 1)  # rows at the chunk's own times
    rows = START + 0.001 * np.arange(1, H + 1)[:, None] * np.ones(len(NAMES))
    rows[:, -1] = 0.03  # the finger (0.04 m open) closes by 1 cm
    traj = s.follow(times, rows, now)
    assert traj.stamp == now  # header stamp = the first point's time = the send time
    np.testing.assert_allclose(traj.time_from_start[:2], [0.0, LEAD])
    assert np.all(np.diff(traj.time_from_start) > 0)
    # The rows kept are those due at least min_segment after the hand-over point, at their own times.
    kept = times >= now + LEAD + MIN_SEGMENT
    np.testing.assert_allclose(traj.times[2:], times[kept])
    np.testing.assert_allclose(traj.positions[2:], rows[kept])
    # The first two points are where the controller is (START, at rest); the last point is at rest.
    np.testing.assert_allclose(traj.positions[:2], [START, START])
    np.testing.assert_array_equal(traj.velocities[:2], 0.0)
    np.testing.assert_array_equal(traj.velocities[-1], 0.0)


def test_the_first_rows_after_the_hand_over_fade_from_the_followed_path():
    s = streamer(crossfade_steps=3)  # the controller rests at START
    now = 100.0
    times = now + DT * np.arange(1, H + 1)
    rows = np.tile(START, (H, 1))
    rows[:, 0] += 0.03  # the new chunk wants joint 1 0.03 rad further
    traj = s.follow(times, rows, now)
    kept = times >= now + LEAD + MIN_SEGMENT
    # rows k = 0, 1, 2 after the hand-over: START + w_k * 0.03 with w_k = (k + 1) / 4; then the rows
    np.testing.assert_allclose(traj.positions[2:5, 0], START[0] + 0.03 * np.array([0.25, 0.5, 0.75]))
    np.testing.assert_allclose(traj.positions[5:], rows[kept][3:])


def test_point_velocities_of_a_straight_ramp_are_its_slope():
    t = 0.1 * np.arange(6)
    p = (2.0 + 0.3 * t)[:, None] * np.ones((1, 3))
    v = point_velocities(t, p)
    np.testing.assert_allclose(v, 0.3)


def test_point_velocities_are_zero_where_the_path_turns_and_never_above_the_larger_secant():
    t = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    p = np.array([[0.0], [0.05], [0.06], [0.0], [-0.1]])
    v = point_velocities(t, p)[:, 0]
    assert v[2] == 0.0  # 0.06 is a local maximum
    secants = np.abs(np.diff(p[:, 0]) / 0.1)
    for k in range(1, 4):
        assert abs(v[k]) <= max(secants[k - 1], secants[k]) + 1e-12


def test_every_point_is_clamped_and_velocity_limited_from_the_previous_one():
    t = np.array([0.0, 0.05, 0.1, 0.2])
    far = START.copy()
    far[0] += 1.0  # 1 rad away: at 2.175 rad/s only 0.10875 rad fits in 0.05 s
    far[5] = 10.0  # beyond the 3.7525 rad upper limit
    p = np.vstack([START, far, far, far])
    out = limit_points(t, p, LO, HI, VEL)
    np.testing.assert_allclose(out[1, 0], START[0] + VEL[0] * 0.05)
    np.testing.assert_allclose(out[2, 0], START[0] + VEL[0] * 0.10)
    np.testing.assert_allclose(out[3, 0], START[0] + VEL[0] * 0.20)
    assert np.all(out <= HI) and np.all(out >= LO)
    assert out[3, 5] == pytest.approx(min(HI[5], START[5] + VEL[5] * 0.2))


def test_a_hold_goes_from_the_current_path_point_to_the_held_position_at_rest_and_stays():
    s = streamer()
    held = START + 0.01
    held[-1] = 0.03  # the finger (0.04 m is fully open)
    traj = s.hold(held, 50.0)
    assert traj.holding and traj.stamp == 50.0
    np.testing.assert_allclose(traj.time_from_start, [0.0, LEAD, LEAD + 1.0])
    np.testing.assert_allclose(traj.positions, [START, held, held])
    np.testing.assert_array_equal(traj.velocities, 0.0)
    # and on_command sends a hold once, not again while the same position is held
    assert s.on_command(None, held, True, 50.1, None) is not None
    assert s.on_command(None, held, True, 50.2, None) is None


# ----------------------------------------------------------------------------- the closed chain


def chunk_rows(t_obs: float, offset: float, rng: np.random.Generator) -> np.ndarray:
    """[H, J] rows of a smooth motion (0.25 rad at 0.4 Hz around START) as predicted at t_obs, with a
    per-chunk disagreement `offset` (rad), so every switch lands on a slightly different path."""
    times = t_obs + DT * np.arange(1, H + 1)
    rows = START + 0.25 * np.sin(2 * np.pi * 0.4 * times[:, None] + np.arange(len(NAMES)))
    rows[:, -1] = 0.02
    rows[:, :-1] += offset * rng.standard_normal(len(NAMES) - 1)
    return rows


def play(seconds: float = 6.0, seed: int = 0, offset: float = 0.03, latency: float = LATENCY):
    """ExecutorCore at 15 Hz -> TrajectoryStreamer -> (LATENCY) -> JtcModel sampled at 1 kHz.

    Chunks are observed every 0.4 s and arrive 0.25 s later. Returns (t [n], position [n, J],
    velocity [n, J], receive times of trajectories that replaced a chunk, the model)."""
    rng = np.random.default_rng(seed)
    core = ExecutorCore(FRANKA, ExecutorSettings())
    core.on_joint_state(NAMES, START, 0.0)
    assert core.arm(0.0).ok
    s = streamer()
    jtc = JtcModel(START)
    pending = [(t + 0.25, RawChunk(t, NAMES, DT, H, chunk_rows(t, offset, rng).ravel(), chunk_id=i + 1))
               for i, t in enumerate(np.arange(0.0, seconds - 1.0, 0.4))]
    inbox: list[tuple[float, object]] = []
    switches: list[float] = []
    samples_t, samples_p, samples_v = [], [], []
    next_tick = DT
    for ms in range(int(seconds * 1000)):
        t = ms * 1e-3
        if t >= next_tick - 1e-9:
            while pending and pending[0][0] <= t:
                core.on_chunk(pending.pop(0)[1], t)
            cmd = core.tick(t)
            next_tick += DT
            key = ("chunk", cmd.chunk_id)
            traj = s.on_command(key, cmd.positions, cmd.holding, t, core.remaining())
            if traj is not None:
                inbox.append((t + latency, traj))
        while inbox and inbox[0][0] <= t:
            at, traj = inbox.pop(0)
            assert jtc.receive(traj.stamp, traj.time_from_start, traj.positions, traj.velocities, at), jtc.rejected
            if not traj.holding and s.sent > 2:
                switches.append(at)
        p, v, _ = jtc.sample(t)
        samples_t.append(t)
        samples_p.append(p)
        samples_v.append(v)
    return np.array(samples_t), np.array(samples_p), np.array(samples_v), switches, jtc


def test_streamed_chunks_played_through_a_1khz_jtc_are_continuous_and_never_jump_in_velocity_at_switches():
    t, p, v, switches, jtc = play()
    assert jtc.rejected == [] and len(switches) >= 10
    d_min = min(LEAD, MIN_SEGMENT, DT)
    bound_dv = 18 * VEL * 1e-3 / d_min  # rad/s per 1 ms sample (module docstring)
    # position: no 1 ms step beyond what 1.5 x the velocity limit covers (continuous, no step)
    dp = np.abs(np.diff(p, axis=0))
    assert np.all(dp <= 1.5 * VEL * 1e-3 + 1e-12), dp.max(axis=0)
    dv = np.abs(np.diff(v, axis=0))
    for at in switches:
        near = (t[1:] >= at - 0.005) & (t[1:] <= at + LEAD + 0.005)
        assert np.all(dv[near] <= bound_dv), (at, dv[near].max(axis=0), bound_dv)
    # the bound is far from what the streamed chunks need: every joint stays within a tenth of it
    assert np.all(dv.max(axis=0) < 0.1 * bound_dv), dv.max(axis=0) / bound_dv
    # and the robot follows the chunks: over the last seconds it is near the motion
    late = t > 2.0
    assert np.abs(p[late, 0] - START[0]).max() > 0.15  # it really moves (0.25 rad amplitude)


def test_the_same_chunks_sent_per_tick_as_one_point_each_step_the_jtc_at_switches():
    """Control for the test above: the old per-tick JointTrajectory (one point one period ahead,
    positions only) gives the 1 kHz JTC piecewise-linear motion whose velocity jumps every tick."""
    rng = np.random.default_rng(0)
    core = ExecutorCore(FRANKA, ExecutorSettings())
    core.on_joint_state(NAMES, START, 0.0)
    core.arm(0.0)
    jtc = JtcModel(START)
    pending = [(t + 0.25, RawChunk(t, NAMES, DT, H, chunk_rows(t, 0.03, rng).ravel(), chunk_id=i + 1))
               for i, t in enumerate(np.arange(0.0, 5.0, 0.4))]
    vs = []
    next_tick = DT
    for ms in range(6000):
        t = ms * 1e-3
        if t >= next_tick - 1e-9:
            while pending and pending[0][0] <= t:
                core.on_chunk(pending.pop(0)[1], t)
            cmd = core.tick(t)
            next_tick += DT
            jtc.receive(t, np.array([DT]), cmd.positions[None, :], None, t)
        vs.append(jtc.sample(t)[1])
    dv = np.abs(np.diff(np.array(vs), axis=0))
    d_min = min(LEAD, MIN_SEGMENT, DT)
    assert dv.max() > (18 * VEL * 1e-3 / d_min).min()  # per-tick violates the streaming bound


def test_when_consecutive_chunks_agree_a_switch_accelerates_no_more_than_the_motion_between_switches():
    """The splice itself adds nothing: with chunks on one path (no disagreement) the peak 1 kHz
    acceleration within 0.25 s after each switch is within 20 % of the peak away from switches
    (the motion's own 1.58 rad/s^2, as the controller's cubics between 15 Hz points render it)."""
    t, p, v, switches, jtc = play(offset=0.0)
    accel = np.abs(np.diff(v, axis=0))[:, :7].max(axis=1) / 1e-3
    near = np.zeros(accel.size, dtype=bool)
    for at in switches:
        near |= (t[1:] >= at - 0.005) & (t[1:] <= at + 0.25)
    away = ~near & (t[1:] > 1.0)  # after the start-up catch-up to the first chunk
    assert accel[near].max() <= 1.2 * accel[away].max(), (accel[near].max(), accel[away].max())



def test_lead_must_exceed_the_delivery_latency_a_later_delivery_steps_onto_the_new_path():
    """Why `lead` exists: delivered 45 ms after sending (< the 50 ms lead) the controller lands on its
    own path and no 1 ms step exceeds 1.5 V x 1 ms; delivered 80 ms after (> lead) its first sample falls
    past the hand-over point, on the new rows, which have left the old path by then: a position step."""
    bound = 1.5 * VEL * 1e-3 + 1e-12
    t, p, v, switches, jtc = play(latency=0.045)
    assert jtc.rejected == [] and np.all(np.abs(np.diff(p, axis=0)) <= bound)
    t, p, v, switches, jtc = play(latency=0.08)
    assert np.any(np.abs(np.diff(p, axis=0)) > bound)


def test_homing_streamed_to_a_1khz_jtc_is_one_trajectory_that_reaches_the_start_pose_at_the_homing_speed():
    """A trajectory controller gets the homing path as ONE trajectory (points every control period on
    the minimum-jerk path, PCHIP velocities); interpolated at 1 kHz its velocity stays within 1 % of
    home.velocity_scale x the velocity limits (0.1 x, config/franka_droid.yaml) and it ends exactly at
    the start pose."""
    start_pose = np.array([0.0, -0.6283, 0.0, -2.5133, 0.0, 1.885, 0.7854, 0.04])
    speed = 0.1 * VEL
    away = start_pose.copy()
    away[:7] += np.array([0.4, 0.3, 0.0, 0.3, 0.0, -0.3, 0.0])
    core = ExecutorCore(FRANKA, ExecutorSettings())
    core.on_joint_state(NAMES, away, 0.0)
    assert core.home(0.0).ok
    s = TrajectoryStreamer(LO, HI, VEL, lead=LEAD, min_segment=MIN_SEGMENT)
    s.start(away)
    jtc = JtcModel(away)
    inbox, velocities, next_tick = [], [], DT
    for ms in range(6000):
        t = ms * 1e-3
        if t >= next_tick - 1e-9:
            next_tick += DT
            cmd = core.tick(t)
            if cmd is not None:
                traj = s.on_command((cmd.source, cmd.chunk_id), cmd.positions, cmd.holding, t, core.remaining())
                if traj is not None:
                    inbox.append((t + LATENCY, traj))
        while inbox and inbox[0][0] <= t:
            at, traj = inbox.pop(0)
            assert jtc.receive(traj.stamp, traj.time_from_start, traj.positions, traj.velocities, at), jtc.rejected
        velocities.append(jtc.sample(t)[1])
    assert s.sent == 1 and core.status().state == "idle"
    assert np.all(np.abs(np.array(velocities)) <= speed * 1.01), np.abs(np.array(velocities)).max(axis=0) / speed
    np.testing.assert_allclose(jtc.position, start_pose, atol=1e-9)
