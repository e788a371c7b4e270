"""The action_executor node as a real process: chunks, joint states, arming and e-stop from the probe, commands out.

Expected command values are computed in the test from the chunk's stamp and each command's receive
time (row k is due at stamp + (k + 1) * dt). The chunks are linear ramps, which the node's
Savitzky-Golay smoothing (order 3) leaves unchanged, and cross-fade is off, so a running command
equals a chunk row exactly.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from dreamzero_msgs.msg import ActionChunk, ActionGroup, PolicyStatus
from geometry_msgs.msg import Twist
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from dreamzero_ros.core.embodiment import EmbodimentConfig, load_embodiment
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import (
    ARM_SERVICE,
    CHUNK_TOPIC,
    ESTOP_TOPIC,
    PREVIEW_TOPIC,
    RESET_ESTOP_SERVICE,
    STATUS_TOPIC,
    STITCHED_TOPIC,
)
from dreamzero_ros.ros.runtime import stamp_to_seconds
from dreamzero_ros.testing.probes import wait_until

MODULE = "dreamzero_ros.nodes.action_executor_node"
LATENCY = 0.03  # s allowed from a tick to the probe's receive (2 shared cores)
FRANKA_HOME = [0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.8, 0.02]
SLOPE = 0.3  # rad/s of the ramp on every arm joint (0.02 rad per 15 Hz step, far below the 2.2 rad/s limit)


def _ros_offset() -> float:
    """ROS (system) time minus the monotonic clock the probe stamps receptions with."""
    return time.time() - time.monotonic()


def _ramp(emb: EmbodimentConfig, start: list[float], slope: float) -> np.ndarray:
    """[H, J] rows start + slope * (k + 1) * dt on the arm joints; the gripper (last joint) constant."""
    dt, h = emb.control.dt, emb.control.horizon
    t = dt * np.arange(1, h + 1)[:, None]
    rows = np.array(start, dtype=np.float64) + slope * t * np.ones((1, len(start)))
    rows[:, -1] = start[-1]
    return rows


def _chunk(emb: EmbodimentConfig, rows: np.ndarray, stamp_msg, chunk_id: int, joint_names=None) -> ActionChunk:
    msg = ActionChunk(chunk_id=chunk_id, joint_names=list(joint_names or emb.action_joints), dt=emb.control.dt,
                      horizon=rows.shape[0], positions=rows.reshape(-1).tolist())
    msg.header.stamp = stamp_msg
    msg.extra_groups = [
        ActionGroup(name=g.name, names=list(g.components), values=[0.1] * (rows.shape[0] * len(g.components)))
        for g in emb.extra_actions
    ]
    return msg


def _joint_state(names, positions) -> JointState:
    return JointState(name=list(names), position=[float(p) for p in positions])


def _start(launcher, probe, embodiment: str, **params):
    node = launcher.start("action_executor", MODULE, {"embodiment": embodiment, "crossfade_steps": 0,
                                                       "status_rate": 10.0, **params})
    chunks = probe.publisher(ActionChunk, CHUNK_TOPIC, qos.COMMANDS, wait_for_subscribers=1, timeout=30)
    states = probe.publisher(JointState, "/joint_states", qos.JOINT_STATES, wait_for_subscribers=1, timeout=30)
    status = probe.collect(PolicyStatus, STATUS_TOPIC, qos.STATUS)
    probe.wait_for_publishers(STATUS_TOPIC, timeout=30)
    return node, chunks, states, status


def _call(probe, srv_type, name: str, request):
    """probe.call, retried: the first response of a new client can be lost while DDS is still
    matching the server's response writer to it (the request was served; these calls are idempotent)."""
    for attempt in range(3):
        try:
            return probe.call(srv_type, name, request, timeout=4.0)
        except TimeoutError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _arm(probe, node, states, names, positions) -> None:
    """Publish joint states until the node accepts arming (it needs one to hold)."""
    def armed() -> bool:
        states.publish(_joint_state(names, positions))
        return _call(probe, SetBool, ARM_SERVICE, SetBool.Request(data=True)).success

    assert wait_until(armed, 15, interval=0.1), node.output()


def _latest(status, since: float = 0.0):
    got = [m for t, m in list(status) if t >= since]
    return got[-1] if got else None


def _wait_status(status, predicate, timeout: float = 5.0, since: float | None = None):
    since = time.monotonic() if since is None else since
    assert wait_until(lambda: (m := _latest(status, since)) is not None and predicate(m), timeout), _latest(status)
    return _latest(status, since)


def _row_index(rows: np.ndarray, values: np.ndarray) -> int | None:
    err = np.abs(rows - values).max(axis=1)
    k = int(np.argmin(err))
    return k if err[k] < 1e-9 else None


def test_a_chunk_streams_at_15_hz_with_its_rows_aligned_in_time_only_once_armed_then_holds_when_chunks_stop(
    launcher, probe
):
    emb = load_embodiment("franka_droid")
    node, chunks, states, status = _start(launcher, probe, "franka_droid")
    commands = probe.collect(Float64MultiArray, emb.command.topic, qos.COMMANDS)
    probe.wait_for_publishers(emb.command.topic, timeout=30)
    names = [*emb.action_joints, "panda_finger_joint2"]  # an extra joint is ignored

    # Arming needs a joint state; before one arrives it is refused, saying why.
    refused = _call(probe, SetBool, ARM_SERVICE, SetBool.Request(data=True))
    assert not refused.success and "no joint state" in refused.message

    # Not armed: a chunk and joint states give no command at all.
    states.publish(_joint_state(names, [*FRANKA_HOME, 0.02]))
    stamp = probe.now_msg()
    chunks.publish(_chunk(emb, _ramp(emb, FRANKA_HOME, SLOPE), stamp, chunk_id=1))
    idle = _wait_status(status, lambda m: m.chunks_produced == 1)
    assert idle.state == "idle" and not idle.armed
    time.sleep(0.5)
    assert commands == []

    _arm(probe, node, states, names, [*FRANKA_HOME, 0.02])
    stamp_msg = probe.now_msg()
    stamp, offset = stamp_to_seconds(stamp_msg), _ros_offset()
    rows = _ramp(emb, FRANKA_HOME, SLOPE)
    chunks.publish(_chunk(emb, rows, stamp_msg, chunk_id=2))
    end = stamp + emb.control.horizon * emb.control.dt  # 1.6 s later the chunk is used up
    time.sleep(end - time.time() + 1.0)
    holding = _wait_status(status, lambda m: m.state == "holding")
    got = [(t + offset, np.array(m.data)) for t, m in list(commands)]

    # Rate: 15 Hz over the whole ~2.6 s (running, then holding), mean period within 3 %.
    times = np.array([t for t, _ in got])
    assert len(got) >= 30, len(got)
    period = float(np.mean(np.diff(times)))
    assert abs(period - emb.control.dt) < 0.03 * emb.control.dt, f"mean period {period * 1e3:.2f} ms"

    # Running (until the last row's time): every command is exactly a chunk row, the one due at its
    # tick. A command for row k is sent at a tick after row k - 1's time has passed and no later
    # than row k's time, so it is received in (stamp + k dt, stamp + (k + 1) dt + latency).
    running = [(t, v) for t, v in got if t <= end + LATENCY]
    indices = []
    for t, values in running:
        k = _row_index(rows, values)
        if k is None:
            continue
        indices.append(k)
        assert stamp + k * emb.control.dt < t < stamp + (k + 1) * emb.control.dt + LATENCY, (k, t - stamp)
    assert len(indices) >= emb.control.horizon - 3, f"only {len(indices)} commands were chunk rows"
    assert indices == sorted(indices) and indices[-1] == emb.control.horizon - 1

    # Chunks stopped: the executor holds the last commanded position (never zeros) and says so.
    after = [v for t, v in got if t > end + LATENCY]
    assert len(after) >= 10
    for values in after:
        np.testing.assert_array_equal(values, running[-1][1])
    assert holding.armed and ("used up" in holding.reason or "timed out" in holding.reason), holding.reason
    assert holding.chunks_produced == 2 and holding.holds >= 10
    assert abs(holding.control_rate - emb.control.rate_hz) < 1.0


def test_the_e_stop_latches_a_hold_until_reset_and_rearm(launcher, probe):
    emb = load_embodiment("franka_droid")
    dt = emb.control.dt
    node, chunks, states, status = _start(launcher, probe, "franka_droid")
    commands = probe.collect(Float64MultiArray, emb.command.topic, qos.COMMANDS)
    # A default-QoS (volatile) publisher, as a teleop or safety node would create: it must be heard.
    estop = probe.publisher(Bool, ESTOP_TOPIC, 10, wait_for_subscribers=1, timeout=30)
    probe.wait_for_publishers(emb.command.topic, timeout=30)
    _arm(probe, node, states, emb.action_joints, FRANKA_HOME)

    stamp = probe.now_msg()
    chunks.publish(_chunk(emb, _ramp(emb, FRANKA_HOME, SLOPE), stamp, chunk_id=1))
    assert wait_until(lambda: len(commands) >= 8, 5), node.output()
    pressed = time.monotonic()
    estop.publish(Bool(data=True))
    time.sleep(0.6)

    # Within one control period every command is the same held position.
    held = [np.array(m.data) for t, m in list(commands) if t > pressed + dt + LATENCY]
    assert len(held) >= 5
    moving = [np.array(m.data) for t, m in list(commands) if t < pressed]
    assert not np.array_equal(moving[-1], moving[-2]), "the ramp was moving before the e-stop"
    for values in held:
        np.testing.assert_array_equal(values, held[0])
    stopped = _wait_status(status, lambda m: m.estopped)
    assert stopped.state == "stopped" and not stopped.armed

    # A new chunk does not move it, and arming is refused until reset.
    chunks.publish(_chunk(emb, _ramp(emb, FRANKA_HOME, -SLOPE), probe.now_msg(), chunk_id=2))
    new_chunk = time.monotonic()
    time.sleep(0.5)
    for t, m in list(commands):
        if t > new_chunk:
            np.testing.assert_array_equal(np.array(m.data), held[0])
    refused = _call(probe, SetBool, ARM_SERVICE, SetBool.Request(data=True))
    assert not refused.success and "e-stop" in refused.message

    reset = _call(probe, Trigger, RESET_ESTOP_SERVICE, Trigger.Request())
    assert reset.success
    _wait_status(status, lambda m: not m.estopped and m.state == "idle")
    # Where a real arm would be: at the held command (arming is refused far from the last command).
    _arm(probe, node, states, emb.action_joints, held[0])
    stamp_msg = probe.now_msg()
    rows = _ramp(emb, FRANKA_HOME, -SLOPE)
    chunks.publish(_chunk(emb, rows, stamp_msg, chunk_id=3))
    rearmed = time.monotonic()
    assert wait_until(lambda: sum(t > rearmed for t, _ in list(commands)) >= 8, 5), node.output()
    resumed = [np.array(m.data) for t, m in list(commands) if t > rearmed]
    following = [k for v in resumed if (k := _row_index(rows, v)) is not None]
    assert len(following) >= 5 and following == sorted(following), following
    assert _latest(status).state == "running"


def test_a_latched_e_stop_published_before_the_executor_starts_stops_it_on_arrival(launcher, probe):
    emb = load_embodiment("yam")
    estop = probe.publisher(Bool, ESTOP_TOPIC, qos.LATCHED)
    estop.publish(Bool(data=True))
    node, chunks, states, status = _start(launcher, probe, "yam", arm_on_start=True)
    lower, upper, _ = emb.limits_arrays()
    states.publish(_joint_state(emb.action_joints, (lower + upper) / 2))
    stopped = _wait_status(status, lambda m: m.estopped, timeout=10)
    assert stopped.state == "stopped" and not stopped.armed
    refused = _call(probe, SetBool, ARM_SERVICE, SetBool.Request(data=True))
    assert not refused.success and "e-stop" in refused.message
    assert node.output().count("E-STOP latched") == 1  # heard on both subscriptions, latched once


def test_agibot_joint_trajectory_output_gets_a_hold_then_each_chunk_as_one_trajectory_plus_per_tick_base_twists(
    launcher, probe
):
    emb = load_embodiment("agibot_g1")
    assert emb.command.interface == "joint_trajectory"
    dt, lead, min_segment = emb.control.dt, 0.1, 0.03  # the node's trajectory_lead / _min_segment defaults
    node, chunks, states, status = _start(launcher, probe, "agibot_g1", arm_on_start=True)
    trajectories = probe.collect(JointTrajectory, emb.command.topic, qos.COMMANDS)
    twists = probe.collect(Twist, emb.extra_actions[0].topic, qos.COMMANDS)
    probe.wait_for_publishers(emb.command.topic, timeout=30)
    probe.wait_for_publishers(emb.extra_actions[0].topic, timeout=30)

    lower, upper, _ = emb.limits_arrays()
    home = (lower + upper) / 2
    shuffled = list(reversed(emb.action_joints))  # joint states in another order are matched by name
    states.publish(_joint_state(shuffled, home[::-1]))
    assert wait_until(lambda: len(twists) >= 30, 10), node.output()  # 1 s of 30 Hz ticks
    offset = _ros_offset()
    # Holding: ONE trajectory (not one per tick): three points at the measured state, at rest, stamped
    # (= its first point) at the send time, so already past on arrival.
    assert len(trajectories) == 1, [len(m.points) for _, m in list(trajectories)]
    t, hold = trajectories[0]
    assert hold.joint_names == list(emb.action_joints) and len(hold.points) == 3
    for point in hold.points:
        np.testing.assert_allclose(point.positions, home, atol=1e-12)
        assert list(point.velocities) == [0.0] * len(home)
    np.testing.assert_allclose([stamp_to_seconds(p.time_from_start) for p in hold.points], [0.0, lead, lead + 1.0],
                               atol=1e-6)  # float seconds of a ~1.7e9 s stamp: 0.2 us
    sent = stamp_to_seconds(hold.header.stamp) - (t + offset)
    assert -0.1 < sent <= 0.0, sent
    assert all(m.linear.x == 0.0 and m.angular.z == 0.0 for _, m in list(twists))  # a held base stands still

    # A chunk: one trajectory: the held path up to the hand-over (send time + lead), then the chunk's
    # remaining rows at their own times (stamp + (k + 1) dt), positions and velocities per point; the
    # twist carries the chunk's base velocity every tick.
    stamp_msg = probe.now_msg()
    stamp = stamp_to_seconds(stamp_msg)
    rows = np.tile(home, (emb.control.horizon, 1))
    chunks.publish(_chunk(emb, rows, stamp_msg, chunk_id=1))
    running = time.monotonic()
    assert wait_until(lambda: any(t > running and m.linear.x == pytest.approx(0.1) for t, m in list(twists)), 5)
    assert _wait_status(status, lambda m: m.state == "running").control_rate == pytest.approx(30.0, abs=2.0)
    new = [(t, m) for t, m in list(trajectories) if t > running]
    assert len(new) == 1, len(new)
    t, traj = new[0]
    first = stamp_to_seconds(traj.header.stamp)
    assert -0.1 < first - (t + offset) <= 0.0
    times = first + np.array([stamp_to_seconds(p.time_from_start) for p in traj.points])
    assert times[1] - first <= lead + 1e-6  # the path points up to the hand-over, then the rows
    row_times = stamp + dt * np.arange(1, emb.control.horizon + 1)
    expected = row_times[row_times >= first + lead + min_segment - 1e-6]
    np.testing.assert_allclose(times[-len(expected):], expected, atol=1e-6)  # float seconds of the stamps
    assert np.all(times[:-len(expected)] <= first + lead + 1e-6)
    assert times[-1] == pytest.approx(stamp + emb.control.horizon * dt, abs=2e-9)
    for point in traj.points:
        np.testing.assert_allclose(point.positions, home, atol=1e-9)  # a still chunk at the measured state
        np.testing.assert_allclose(point.velocities, 0.0, atol=1e-9)

    # Disarming mid-chunk sends a hold (a JTC would otherwise play the rest of the chunk), then nothing.
    disarmed = time.monotonic()
    assert _call(probe, SetBool, ARM_SERVICE, SetBool.Request(data=False)).success
    time.sleep(0.5)
    after = [m for t, m in list(trajectories) if t > disarmed]
    assert len(after) == 1 and len(after[0].points) == 3, [len(m.points) for m in after]
    np.testing.assert_allclose(after[0].points[-1].positions, home, atol=1e-9)
    assert list(after[0].points[-1].velocities) == [0.0] * len(home)


def test_yam_commands_are_joint_states_and_nan_or_wrong_joint_chunks_are_rejected_and_counted(launcher, probe):
    emb = load_embodiment("yam")
    assert emb.command.interface == "joint_state"
    node, chunks, states, status = _start(launcher, probe, "yam", arm_on_start=True)
    commands = probe.collect(JointState, emb.command.topic, qos.COMMANDS)
    probe.wait_for_publishers(emb.command.topic, timeout=30)
    lower, upper, _ = emb.limits_arrays()
    home = (lower + upper) / 2
    states.publish(_joint_state(emb.action_joints, home))
    assert wait_until(lambda: len(commands) >= 5, 10), node.output()
    offset = _ros_offset()
    for t, msg in list(commands):
        assert msg.name == list(emb.action_joints) and len(msg.position) == 14
        np.testing.assert_allclose(msg.position, home, atol=1e-12)
        assert abs(stamp_to_seconds(msg.header.stamp) - (t + offset)) < 0.1

    rows = np.tile(home, (emb.control.horizon, 1))
    nan_rows = rows.copy()
    nan_rows[5, 3] = math.nan
    chunks.publish(_chunk(emb, nan_rows, probe.now_msg(), chunk_id=1))
    wrong = [*emb.action_joints[:-1], "elbow_of_another_robot"]
    chunks.publish(_chunk(emb, rows, probe.now_msg(), chunk_id=2, joint_names=wrong))
    rejected = _wait_status(status, lambda m: m.chunks_rejected == 2)
    assert "unexpected ['elbow_of_another_robot']" in rejected.last_error
    assert rejected.chunks_produced == 0 and rejected.state == "holding" and rejected.armed
    assert node.running and "non-finite value nan at step 5" in node.output()
    np.testing.assert_allclose(commands[-1][1].position, home, atol=1e-12)


def test_dry_run_publishes_only_to_the_preview_topic(launcher, probe):
    emb = load_embodiment("yam")
    node, chunks, states, status = _start(launcher, probe, "yam", arm_on_start=True, dry_run=True)
    preview = probe.collect(JointState, PREVIEW_TOPIC, qos.COMMANDS)
    real = probe.collect(JointState, emb.command.topic, qos.COMMANDS)
    probe.wait_for_publishers(PREVIEW_TOPIC, timeout=30)
    lower, upper, _ = emb.limits_arrays()
    states.publish(_joint_state(emb.action_joints, (lower + upper) / 2))
    assert wait_until(lambda: len(preview) >= 15, 10), node.output()
    assert preview[-1][1].name == list(emb.action_joints)
    assert real == [] and probe.node.count_publishers(emb.command.topic) == 0
    assert _latest(status).armed


def _torch_libraries(pid: int) -> set[str]:
    """Shared objects of torch mapped into process `pid` (what `import torch` loads: libtorch*, torch/_C)."""
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split()[-1] for line in maps if "/torch/" in line and ".so" in line}


def test_the_executor_process_runs_without_torch_while_the_stitcher_loads_it(launcher, probe):
    """The executor stays light (no torch in its address space); the stitcher, which runs the model-exact
    torch resize, is the control that shows the check sees torch where it is loaded."""
    executor = launcher.start("action_executor", MODULE, {"embodiment": "franka_droid", "status_rate": 10.0})
    stitcher = launcher.start("camera_stitcher", "dreamzero_ros.nodes.camera_stitcher_node",
                              {"embodiment": "franka_droid"})
    probe.wait_for_publishers(STATUS_TOPIC, timeout=30)
    probe.wait_for_publishers(STITCHED_TOPIC, timeout=30)
    assert executor.running and stitcher.running
    assert _torch_libraries(executor.pid) == set()
    assert any("libtorch" in path for path in _torch_libraries(stitcher.pid))
