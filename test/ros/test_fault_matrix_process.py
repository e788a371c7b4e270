"""Safety-matrix rows that need the whole loop: every node a real process in the simulator, one fault injected.

The scripted backend drives the arm along a sinusoid so "moving" and "holding" are told apart
exactly: a hold repeats the last command bit for bit (the executor re-sends its last commanded
position), a running row never does. Reaction times are taken from the commands the robot
receives (probe receive times, monotonic s) and printed, so `pytest -s` shows the figures quoted
in the issue notes. The sim runs on the system clock, so ROS stamps convert to the probe's clock
with one offset.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from dreamzero_msgs.msg import ActionChunk, PolicyStatus
from dreamzero_msgs.srv import SetInstruction
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from dreamzero_ros.bringup.plan import BringupOptions, node_plan, params_file, process_argv, start_plan
from dreamzero_ros.bringup.processes import ManagedProcess
from dreamzero_ros.core.embodiment import EmbodimentConfig, load_embodiment
from dreamzero_ros.core.stitch import stale_views_of
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import (
    ARM_SERVICE,
    CHUNK_TOPIC,
    ESTOP_TOPIC,
    RESET_ESTOP_SERVICE,
    SET_INSTRUCTION_SERVICE,
    STATUS_TOPIC,
    STITCHED_TOPIC,
)
from dreamzero_ros.ros.runtime import stamp_to_seconds
from dreamzero_ros.testing.probes import wait_until

pytestmark = pytest.mark.slow

EMBODIMENT = "franka_droid"  # Float64MultiArray commands: the values arrive exactly as commanded
LATENCY = 0.05  # s allowed from a control tick to the probe's receive on 2 shared cores


@dataclass
class Loop:
    cfg: EmbodimentConfig
    group: object
    commands: list
    chunks: list
    statuses: list
    logs: list = field(default_factory=list)

    def commands_since(self, t: float) -> list[tuple[float, np.ndarray]]:
        return [(tr, np.asarray(m.data)) for tr, m in list(self.commands) if tr > t]

    def executor_status(self, since: float) -> list[PolicyStatus]:
        return [s for t, s in list(self.statuses) if t > since and s.node == "action_executor"]

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.logs[-n:])


def sec_nanosec(seconds: float) -> tuple[int, int]:
    """(sec, nanosec) of float seconds, carrying a nanosecond count that rounds up to a whole second.

    Summing 0.01 s ticks gives values like 1000.9999999999998: int() of it is 1000 while its fraction rounds
    to 1e9 ns, which the modulo turned into 0, a stamp a whole second early (CI saw the chunk start 1 s in
    the past, so the executor had played it to its end before the clock jump it tests)."""
    return divmod(round(seconds * 1e9), 1_000_000_000)


def clock_offset() -> float:
    """ROS (system) time minus the monotonic clock the probe stamps receptions with."""
    return time.time() - time.monotonic()


def start_loop(probe, tmp_path, remap_sim: tuple[tuple[str, str], ...] = (), before_start=None) -> Loop:
    cfg = load_embodiment(EMBODIMENT)
    plan = node_plan(BringupOptions(embodiment=EMBODIMENT, backend="scripted", sim=True))
    plan = [replace(s, remappings=remap_sim) if s.name == "sim_robot" else s for s in plan]
    if before_start is not None:
        before_start()
    logs: list[str] = []
    group = start_plan(plan, env=dict(os.environ), sink=logs.append, workdir=tmp_path)
    loop = Loop(cfg, group,
                probe.collect(Float64MultiArray, cfg.command.topic, qos.COMMANDS),
                probe.collect(ActionChunk, CHUNK_TOPIC, qos.COMMANDS),
                probe.collect(PolicyStatus, STATUS_TOPIC, qos.STATUS), logs)
    resp = probe.call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction="wave"), timeout=90)
    assert resp.success, resp.message
    armed = wait_until(lambda: probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=True), timeout=30).success,
                       30, interval=0.2)
    assert armed, "executor never armed\n" + loop.tail()
    assert wait_until(lambda: len(loop.chunks) >= 2, 90), "no chunks\n" + loop.tail()
    time.sleep(2.0)  # past the start-up cross-fade: the arm follows the scripted sinusoid
    moving = loop.commands_since(time.monotonic() - 1.0)
    assert len(moving) > 5 and not np.array_equal(moving[-1][1], moving[-2][1]), "not moving\n" + loop.tail()
    return loop


def first_hold(commands: list[tuple[float, np.ndarray]]) -> int | None:
    """Index of the first command that repeats its predecessor exactly and is repeated by every later one."""
    for i in range(1, len(commands)):
        if all(np.array_equal(q, commands[i - 1][1]) for _, q in commands[i:]):
            return i
    return None


def assert_no_jump(cfg: EmbodimentConfig, commands: list[tuple[float, np.ndarray]]) -> float:
    """No step between consecutive commands exceeds the velocity limit x dt; returns the largest step ratio."""
    _, _, velocity = cfg.limits_arrays()
    steps = np.abs(np.diff(np.array([q for _, q in commands]), axis=0))
    ratio = float((steps / (velocity * cfg.control.dt)).max()) if len(steps) else 0.0
    assert ratio <= 1.0 + 1e-9, f"a command jumped {ratio:.2f} x the velocity limit"
    return ratio


def test_killing_inference_mid_chunk_finishes_the_chunk_then_holds_and_a_restarted_node_resumes_armed(
    probe, tmp_path
):
    loop = start_loop(probe, tmp_path)
    cfg, dt = loop.cfg, loop.cfg.control.dt
    inference = next(p for p in loop.group.processes if p.name == "inference")
    try:
        killed = time.monotonic()
        inference.send_signal(signal.SIGKILL)
        assert inference.wait(5.0) is not None
        # The last chunk the executor can have: the newest one published before the kill.
        last = max((m for t, m in list(loop.chunks) if t <= killed + 0.2), key=lambda m: m.chunk_id)
        runs_out = stamp_to_seconds(last.header.stamp) + last.horizon * last.dt - clock_offset()
        assert wait_until(lambda: time.monotonic() > runs_out + 1.0, 5.0)

        after = loop.commands_since(killed - 0.5)
        ratio = assert_no_jump(cfg, after)
        hold = first_hold(after)
        assert hold is not None, "the executor never held after the chunks stopped\n" + loop.tail()
        hold_latency = after[hold][0] - runs_out
        print(f"\n[fault] inference SIGKILL: hold {hold_latency * 1e3:+.1f} ms after the last chunk ran out "
              f"(control period {dt * 1e3:.1f} ms); largest step {ratio:.2f} x velocity limit")
        # It finished the chunk (no early hold) and held within one control period of it running out.
        assert -dt - LATENCY <= hold_latency <= dt + LATENCY, f"hold {hold_latency:.3f} s after the chunk ran out"
        assert wait_until(lambda: any(s.state == "holding" and s.holds > 0 for s in loop.executor_status(runs_out)), 3)
        holding = loop.executor_status(runs_out)[-1]
        assert holding.armed and ("used up" in holding.reason or "timed out" in holding.reason), holding.reason
        assert loop.group.first_required_exit() is inference  # the runner sees who died

        # Restart the same node with the same parameters: chunks resume and the arm moves again
        # without a new arm call (the executor stayed armed, holding, the whole time).
        spec = next(s for s in node_plan(BringupOptions(embodiment=EMBODIMENT, backend="scripted", sim=True))
                    if s.name == "inference")
        restarted = loop.group.start(ManagedProcess(
            "inference", process_argv(spec, params_file([spec], tmp_path)), env=dict(os.environ),
            sink=loop.logs.append))
        resp = probe.call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction="wave"),
                          timeout=90)
        assert resp.success, resp.message
        back = time.monotonic()
        assert wait_until(lambda: any(t > back for t, _ in list(loop.chunks)), 60), loop.tail()
        assert wait_until(lambda: len(loop.commands_since(back)) > 10, 10)
        time.sleep(1.5)
        resumed = loop.commands_since(back)
        assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(resumed, resumed[1:], strict=False)), \
            "no motion after the restart"
        assert_no_jump(cfg, loop.commands_since(killed - 0.5))
        assert all(s.armed for s in loop.executor_status(killed)), "the executor disarmed on its own"
        assert restarted.running
    finally:
        loop.group.stop_all()


def test_an_e_stop_during_motion_holds_within_one_control_period_until_reset_and_rearm(probe, tmp_path):
    loop = start_loop(probe, tmp_path)
    dt = loop.cfg.control.dt
    try:
        estop = probe.publisher(Bool, ESTOP_TOPIC, qos.LATCHED, wait_for_subscribers=1, timeout=30)
        pressed = time.monotonic()
        estop.publish(Bool(data=True))
        time.sleep(0.5)
        estop.publish(Bool(data=False))  # releasing the button does not clear the latch
        chunks_before = len(loop.chunks)
        time.sleep(2.0)
        assert len(loop.chunks) > chunks_before, "chunks kept coming while stopped"

        after = loop.commands_since(pressed - 0.3)
        hold = first_hold(after)
        assert hold is not None, loop.tail()
        latency = after[hold][0] - pressed
        print(f"\n[fault] e-stop during motion: first held command {latency * 1e3:.1f} ms after the press "
              f"(control period {dt * 1e3:.1f} ms)")
        assert latency <= dt + LATENCY, f"held {latency:.3f} s after the e-stop"
        assert_no_jump(loop.cfg, after)
        stopped = loop.executor_status(pressed + 0.5)
        assert stopped and all(s.estopped and s.state == "stopped" and not s.armed for s in stopped)

        refused = probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=True))
        assert not refused.success and "e-stop" in refused.message
        reset = probe.call(Trigger, RESET_ESTOP_SERVICE, Trigger.Request())
        assert reset.success, reset.message
        cleared = time.monotonic()
        time.sleep(1.0)  # cleared but not re-armed: nothing moves
        held = after[hold][1]
        assert all(np.array_equal(q, held) for _, q in loop.commands_since(cleared))
        rearmed = probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=True))
        assert rearmed.success, rearmed.message
        again = time.monotonic()
        time.sleep(2.0)
        resumed = loop.commands_since(again)
        assert any(not np.array_equal(q, held) for _, q in resumed), "no motion after reset + arm"
        assert_no_jump(loop.cfg, loop.commands_since(pressed - 0.3))
    finally:
        codes = loop.group.stop_all()
    assert all(code == 0 for code in codes.values()), loop.group.exit_report(codes)


def test_a_camera_that_stops_is_blacked_out_inference_stops_with_the_camera_named_and_the_executor_holds(
    probe, tmp_path
):
    """The sim's wrist camera reaches the stitcher only through a relay in the test process; the
    relay stops (the camera "dies") and later resumes."""
    cfg = load_embodiment(EMBODIMENT)
    wrist = cfg.camera("wrist")
    relay = {"on": True}
    out = probe.publisher(Image, wrist.topic, qos.SENSOR)

    def forward(msg: Image) -> None:
        if relay["on"]:
            out.publish(msg)

    frames = probe.collect(Image, STITCHED_TOPIC, qos.FRAMES)
    loop = start_loop(probe, tmp_path, remap_sim=((wrist.topic, "/fault/wrist_raw"),),
                      before_start=lambda: probe.node.create_subscription(Image, "/fault/wrist_raw", forward, qos.SENSOR))
    dt, timeout = cfg.control.dt, cfg.stitch.stale_timeout
    try:
        stopped = time.monotonic()
        relay["on"] = False
        time.sleep(timeout + cfg.control.chunk_duration + 1.5)

        # The stitcher: black wrist tile, frame marked stale, within the stale timeout (+ one publish period).
        marked = [(t, m) for t, m in list(frames) if t > stopped and stale_views_of(m.header.frame_id) == ("wrist",)]
        assert marked, "no stitched frame marked wrist-stale\n" + loop.tail()
        react = marked[0][0] - stopped
        period = 1.0 / cfg.video.fps
        print(f"\n[fault] camera stopped: stitcher marked it stale after {react * 1e3:.0f} ms "
              f"(stale_timeout {timeout * 1e3:.0f} ms, publish period {period * 1e3:.0f} ms)")
        assert react <= timeout + period + LATENCY
        pixels = np.frombuffer(bytes(marked[-1][1].data), dtype=np.uint8).reshape(352, 640, 3)
        assert not pixels[:176].any() and pixels[176:].any(), "the wrist tile (top row) is black, the rest is not"

        # Inference: nothing conditioned on a frame observed after the camera went stale; status names it.
        stale_since = stopped + timeout + period + LATENCY
        offset = clock_offset()
        late = [m for _, m in list(loop.chunks) if stamp_to_seconds(m.header.stamp) - offset > stale_since]
        assert not late, f"{len(late)} chunks conditioned on stale input"
        reasons = [s.reason for t, s in list(loop.statuses) if t > stale_since and s.node == "inference"]
        assert reasons and all("camera wrist stale" in r for r in reasons[-3:]), reasons[-3:]

        # Executor: it finishes the last chunk and holds within one control period of it running out.
        last = max((m for _, m in list(loop.chunks)), key=lambda m: m.chunk_id)
        runs_out = stamp_to_seconds(last.header.stamp) + last.horizon * last.dt - offset
        after = loop.commands_since(stopped - 0.5)
        assert_no_jump(cfg, after)
        hold = first_hold(after)
        assert hold is not None, loop.tail()
        hold_latency = after[hold][0] - runs_out
        print(f"[fault] camera stopped: executor held {hold_latency * 1e3:+.1f} ms after the last chunk ran out")
        assert -dt - LATENCY <= hold_latency <= dt + LATENCY

        # The camera comes back: chunks resume and the arm moves again (still armed).
        relay["on"] = True
        back = time.monotonic()
        assert wait_until(lambda: any(t > back for t, _ in list(loop.chunks)), 15), loop.tail()
        time.sleep(1.5)
        resumed = loop.commands_since(back)
        assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(resumed, resumed[1:], strict=False))
    finally:
        codes = loop.group.stop_all()
    assert all(code == 0 for code in codes.values()), loop.group.exit_report(codes)


# -- rows that need only the executor process: bad, late and out-of-limit chunks --------------------


def test_bad_and_late_chunks_are_refused_with_their_reason_and_the_previous_chunk_keeps_running(launcher, probe):
    from test_action_executor_process import FRANKA_HOME, SLOPE, _arm, _chunk, _ramp, _start

    emb = load_embodiment(EMBODIMENT)
    node, chunks, states, status = _start(launcher, probe, EMBODIMENT)
    commands = probe.collect(Float64MultiArray, emb.command.topic, qos.COMMANDS)
    probe.wait_for_publishers(emb.command.topic, timeout=30)
    _arm(probe, node, states, emb.action_joints, FRANKA_HOME)
    good = _ramp(emb, FRANKA_HOME, SLOPE)
    chunks.publish(_chunk(emb, good, probe.now_msg(), chunk_id=1))
    assert wait_until(lambda: len(commands) >= 3, 5), node.output()

    sent = time.monotonic()
    nan = good.copy()
    nan[5, 2] = float("nan")
    chunks.publish(_chunk(emb, nan, probe.now_msg(), chunk_id=2))
    chunks.publish(_chunk(emb, good, probe.now_msg(), chunk_id=3, joint_names=[*emb.action_joints[:-1], "bogus"]))
    short = _chunk(emb, good, probe.now_msg(), chunk_id=4)
    short.positions = short.positions[:-1]
    chunks.publish(short)
    empty = _chunk(emb, good[:0], probe.now_msg(), chunk_id=5)
    chunks.publish(empty)
    late_stamp = probe.now_msg()
    late_stamp.sec -= 3  # its 1.6 s of rows all passed before it arrived
    chunks.publish(_chunk(emb, good, late_stamp, chunk_id=6))

    counted = lambda m: m.chunks_rejected == 4 and m.chunks_dropped == 1  # noqa: E731
    assert wait_until(lambda: any(counted(m) for t, m in list(status) if t > sent), 5), list(status)[-1]
    log = node.output()
    for reason in ("chunk 2 not used", "non-finite value nan at step 5", "chunk 3 not used", "missing",
                   "'bogus'", "chunk 4 not used", "expected horizon x 8 = 192 values", "chunk 5 not used",
                   "horizon must be an integer >= 1", "chunk 6 not used", "late"):
        assert reason in log, f"{reason!r} not logged\n{log}"
    # The robot kept following chunk 1: every command after the bad ones is one of its rows.
    time.sleep(0.4)
    for _, m in [(t, m) for t, m in list(commands) if t > sent]:
        q = np.asarray(m.data)
        assert np.abs(good - q).max(axis=1).min() < 1e-9, "a command left chunk 1's rows"


def test_targets_outside_the_joint_limits_or_too_fast_are_clamped_and_no_command_leaves_the_limits(launcher, probe):
    from test_action_executor_process import FRANKA_HOME, _arm, _chunk, _start

    emb = load_embodiment(EMBODIMENT)
    lower, upper, velocity = emb.limits_arrays()
    node, chunks, states, status = _start(launcher, probe, EMBODIMENT)
    commands = probe.collect(Float64MultiArray, emb.command.topic, qos.COMMANDS)
    probe.wait_for_publishers(emb.command.topic, timeout=30)
    _arm(probe, node, states, emb.action_joints, FRANKA_HOME)
    # Every row far beyond the upper limits: a jump of metres/radians in one step.
    wild = np.tile(upper + 5.0, (emb.control.horizon, 1))
    sent = time.monotonic()
    chunks.publish(_chunk(emb, wild, probe.now_msg(), chunk_id=1))
    time.sleep(emb.control.chunk_duration + 0.3)
    got = np.array([m.data for t, m in list(commands) if t > sent])
    assert len(got) >= emb.control.horizon - 2
    assert np.all(got >= lower - 1e-12) and np.all(got <= upper + 1e-12), "a command left the joint limits"
    steps = np.abs(np.diff(np.vstack([FRANKA_HOME, got]), axis=0))
    assert np.all(steps <= velocity * emb.control.dt + 1e-9), "a step exceeded velocity x dt"
    assert np.allclose(got[-1], upper), "the arm is driven to the limit, not past it"


# -- rows at start-up: bad YAML, bad parameter override -----------------------------------------------


@pytest.mark.parametrize("module", ["action_executor_node", "camera_stitcher_node", "inference_node"])
def test_a_malformed_embodiment_yaml_stops_the_node_with_exit_2_naming_the_file_and_field(launcher, tmp_path, module):
    import yaml

    from dreamzero_ros.core.embodiment import config_dir

    data = yaml.safe_load((config_dir() / f"{EMBODIMENT}.yaml").read_text())
    data["control"]["rate_hz"] = -15
    bad = tmp_path / "broken_robot.yaml"
    bad.write_text(yaml.safe_dump(data))
    node = launcher.start(module, f"dreamzero_ros.nodes.{module}", {"embodiment": str(bad), "backend": "scripted"}
                          if module == "inference_node" else {"embodiment": str(bad)})
    assert node.wait(60) == 2, node.output()
    assert "broken_robot.yaml" in node.output() and "rate_hz" in node.output(), node.output()


@pytest.mark.parametrize("module,param,value", [
    ("action_executor_node", "savgol_window", 4),
    ("camera_stitcher_node", "stale_policy", "explode"),
    ("inference_node", "latency_margin", -1.0),
])
def test_a_bad_parameter_override_stops_the_node_with_exit_2_naming_the_parameter(launcher, module, param, value):
    node = launcher.start(module, f"dreamzero_ros.nodes.{module}", {"embodiment": EMBODIMENT, param: value})
    assert node.wait(60) == 2, node.output()
    assert f"'{param}'" in node.output() or f"{param}:" in node.output(), node.output()


def test_malformed_instructions_over_ros_are_refused_with_the_reason_and_the_node_keeps_serving(launcher, probe):
    node = launcher.start("inference", "dreamzero_ros.nodes.inference_node",
                          {"embodiment": EMBODIMENT, "backend": "scripted"})
    for text, reason in (("", "empty"), ("   ", "empty"), ("x" * 10_000_000, "the limit is")):
        resp = probe.call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction=text), timeout=60)
        assert not resp.success and reason in resp.message, resp.message
    resp = probe.call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction="wave"), timeout=30)
    assert resp.success, resp.message
    assert node.running, node.output()


def test_a_backward_sim_clock_jump_holds_without_replaying_rows_then_resumes_where_it_was(launcher, probe):
    """The executor on sim time (/clock from the probe at 100 Hz); mid-chunk the clock jumps back 0.6 s."""
    import threading

    from rosgraph_msgs.msg import Clock
    from test_action_executor_process import FRANKA_HOME, SLOPE, _arm, _chunk, _ramp, _start

    emb = load_embodiment(EMBODIMENT)
    dt = emb.control.dt
    clock_pub = probe.publisher(Clock, "/clock", 10)
    sim = {"t": 1000.0, "stop": False}

    def tick_clock() -> None:
        while not sim["stop"]:
            sim["t"] += 0.01
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = sec_nanosec(sim["t"])
            clock_pub.publish(msg)
            time.sleep(0.01)

    ticker = threading.Thread(target=tick_clock, daemon=True)
    ticker.start()
    try:
        node, chunks, states, status = _start(launcher, probe, EMBODIMENT, use_sim_time=True)
        commands = probe.collect(Float64MultiArray, emb.command.topic, qos.COMMANDS)
        probe.wait_for_publishers(emb.command.topic, timeout=30)
        _arm(probe, node, states, emb.action_joints, FRANKA_HOME)
        rows = _ramp(emb, FRANKA_HOME, SLOPE)
        start = sim["t"]
        stamp = Clock().clock
        stamp.sec, stamp.nanosec = sec_nanosec(start)
        chunks.publish(_chunk(emb, rows, stamp, chunk_id=1))
        assert wait_until(lambda: sim["t"] > start + 0.6, 5)
        jumped = time.monotonic()
        sim["t"] -= 0.6  # NTP step / sim reset: the clock goes back 0.6 s
        assert wait_until(lambda: sim["t"] > start + 1.4, 5)
        time.sleep(0.2)

        def row(q: np.ndarray) -> int | None:
            err = np.abs(rows - q).max(axis=1)
            return int(np.argmin(err)) if err.min() < 1e-9 else None

        got = [(t, np.asarray(m.data)) for t, m in list(commands)]
        while got and row(got[0][1]) is None:
            got.pop(0)  # armed before the chunk arrived: the measured home pose was held
        indices = [row(q) for _, q in got]
        assert None not in indices, "every command is a row of the chunk (a hold repeats one)"
        assert indices == sorted(indices), f"rows replayed after the jump: {indices}"
        assert max(np.diff(indices)) <= 2, f"rows skipped: {indices}"
        held = [k for (t, _), k in zip(got, indices, strict=True) if jumped + dt + LATENCY < t < jumped + 0.4]
        assert held and len(set(held)) == 1, f"no hold while the clock was behind: {held}"
        assert indices[-1] > held[0], "it resumed once the clock passed where it was"
        print(f"\n[fault] clock back 0.6 s: held row {held[0]} for the replayed span, rows {indices[0]}..{indices[-1]}")
    finally:
        sim["stop"] = True
        ticker.join(1.0)
