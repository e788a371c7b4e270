"""The sim_robot node as a real process, per embodiment: joint states at the control rate, camera images of the
configured size, commands on the configured interface move the joint, /sim/reset brings it home, and bad
commands are rejected and counted without moving anything or stopping the node.

One node (and one probe) per embodiment serves all of that embodiment's tests, to keep the run short.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dreamzero_ros.bringup.processes import ManagedProcess
from dreamzero_ros.core.embodiment import EmbodimentConfig, load_embodiment
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import SIM_RESET_SERVICE
from dreamzero_ros.ros.runtime import stamp_to_seconds
from dreamzero_ros.testing.probes import NodeLauncher, RosProbe, wait_until

MODULE = "dreamzero_ros.nodes.sim_robot_node"
EMBODIMENTS = ("franka_droid", "agibot_g1", "yam")
CAMERA_RATE = 10.0  # Hz, the node's default
RATE_WINDOW = 3.0  # s of joint states the rate is measured over
OFFSET = 0.1  # rad, the commanded move
REACH_TIME = 1.5  # s for the joint to get within TOLERANCE of the target
TOLERANCE = 0.02  # rad


@dataclass
class SimUnderTest:
    embodiment: EmbodimentConfig
    process: ManagedProcess
    probe: RosProbe
    states: list[tuple[float, JointState]]
    images: dict[str, list[tuple[float, Image]]]
    diagnostics: list[tuple[float, DiagnosticArray]]
    command_pub: Any

    def position(self, joint: str) -> float:
        msg = self.states[-1][1]
        return msg.position[list(msg.name).index(joint)]

    def diagnostic(self, key: str) -> str | None:
        """`key` of the node's latest diagnostics status (other nodes of the session may publish theirs)."""
        for _, msg in reversed(self.diagnostics):
            for status in msg.status:
                if status.name == "dreamzero: sim_robot":
                    return {kv.key: kv.value for kv in status.values}.get(key)
        return None


@pytest.fixture(scope="module", params=EMBODIMENTS)
def sim(request) -> SimUnderTest:
    embodiment = load_embodiment(request.param)
    launcher, probe = NodeLauncher(), RosProbe(f"sim_probe_{request.param}")
    try:
        process = launcher.start("sim_robot", MODULE, {"embodiment": request.param, "camera_rate": CAMERA_RATE})
        states = probe.collect(JointState, embodiment.command.joint_states_topic, qos.JOINT_STATES)
        images = {cam.name: probe.collect(Image, cam.topic, qos.SENSOR) for cam in embodiment.cameras}
        diagnostics = probe.collect(DiagnosticArray, "/diagnostics", qos.STATUS)
        msg_type = {"forward_position": Float64MultiArray, "joint_trajectory": JointTrajectory,
                    "joint_state": JointState}[embodiment.command.interface]
        # Waiting for the node's subscription is waiting for the graph: the node is up and discovered.
        command_pub = probe.publisher(msg_type, embodiment.command.topic, qos.COMMANDS, wait_for_subscribers=1,
                                      timeout=60)
        assert wait_until(lambda: len(states) > 3, 30), process.output()
        yield SimUnderTest(embodiment, process, probe, states, images, diagnostics, command_pub)
    finally:
        launcher.stop_all()
        probe.close()


def _arm_joint(embodiment: EmbodimentConfig) -> str:
    return embodiment.action_joints[0]  # the first joint of the first (arm) group


def _target(sim: SimUnderTest, joint: str) -> float:
    lim = sim.embodiment.joint_limits[joint]
    home = sim.position(joint)
    return home + OFFSET if home + OFFSET <= lim.upper else home - OFFSET


def _command(sim: SimUnderTest, joint: str, value: float) -> Any:
    """A command in the embodiment's interface that sets `joint` to `value` and holds every other joint."""
    interface = sim.embodiment.command.interface
    if interface == "forward_position":
        data = [value if j == joint else sim.position(j) for j in sim.embodiment.action_joints]
        return Float64MultiArray(data=data)
    if interface == "joint_trajectory":
        point = JointTrajectoryPoint(positions=[value], time_from_start=Duration(sec=0, nanosec=100_000_000))
        return JointTrajectory(joint_names=[joint], points=[point])
    return JointState(name=[joint], position=[value])


def _wait_for_joint(sim: SimUnderTest, joint: str, value: float, timeout: float) -> float | None:
    """Seconds until `joint` is within TOLERANCE of `value`, or None."""
    start = time.monotonic()
    if wait_until(lambda: abs(sim.position(joint) - value) < TOLERANCE, timeout):
        return time.monotonic() - start
    return None


def test_joint_states_arrive_at_the_control_rate_with_exactly_the_configured_joints(sim):
    time.sleep(0.5)  # past start-up
    first = len(sim.states)
    time.sleep(RATE_WINDOW)
    window = sim.states[first:]
    rate = sim.embodiment.control.rate_hz
    # Stamps (the sim's clock) say what the node produced; receive times add this process's scheduling.
    stamps = np.array([stamp_to_seconds(m.header.stamp) for _, m in window])
    received = np.array([t for t, _ in window])
    stamp_rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    # A receive time is late by however long this probe waited to be scheduled, never early (a starved probe takes
    # a burst at once), so the rate is judged between the least-delayed message of the window's first and last third
    # (at least a second apart).
    offsets = stamps - received
    third = len(offsets) // 3
    a, b = int(np.argmax(offsets[:third])), 2 * third + int(np.argmax(offsets[2 * third:]))
    receive_rate = (b - a) / (received[b] - received[a])
    assert stamp_rate == pytest.approx(rate, rel=0.03), f"stamp rate {stamp_rate:.2f} Hz"
    assert receive_rate == pytest.approx(rate, rel=0.05), f"receive rate {receive_rate:.2f} Hz"
    assert np.all(np.diff(stamps) > 0)
    # Stamps are the wall time of the state (physics runs in real time): the newest is at most a few periods old.
    age = time.time() - stamp_to_seconds(sim.states[-1][1].header.stamp)
    assert -0.01 < age < 3.0 / rate + 0.05, f"newest joint state is {age:.3f} s old"
    expected = set(sim.embodiment.state_joints) | set(sim.embodiment.action_joints)
    msg = window[-1][1]
    assert set(msg.name) == expected and len(msg.name) == len(expected)
    assert len(msg.position) == len(msg.velocity) == len(msg.name)
    assert all(math.isfinite(v) for v in msg.position)


def test_every_camera_delivers_rgb8_images_of_its_source_size_all_stamped_at_one_instant(sim):
    assert wait_until(lambda: all(len(v) >= 5 for v in sim.images.values()), 15), {
        k: len(v) for k, v in sim.images.items()}
    for cam in sim.embodiment.cameras:
        msg = sim.images[cam.name][-1][1]
        height, width = cam.source_size
        assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", height, width, 3 * width), cam.name
        assert len(msg.data) == 3 * width * height and msg.header.frame_id == cam.frame
        assert np.frombuffer(msg.data, np.uint8).std() > 5, f"{cam.name}: a flat image"
    # Every camera of a set is rendered at one sim instant: the stamp sets coincide (best effort may drop one).
    stamp_sets = [{stamp_to_seconds(m.header.stamp) for _, m in v} for v in sim.images.values()]
    assert len(set.intersection(*stamp_sets)) >= 3
    received = sim.images[sim.embodiment.cameras[0].name]
    count = len(received)
    time.sleep(2.0)
    rate = (len(received) - count) / 2.0
    assert rate >= 0.8 * CAMERA_RATE, f"camera rate {rate:.1f} Hz"


def test_a_command_moves_an_arm_joint_there_and_reset_brings_it_home(sim):
    joint = _arm_joint(sim.embodiment)
    home = sim.position(joint)
    target = _target(sim, joint)
    sim.command_pub.publish(_command(sim, joint, target))
    reached = _wait_for_joint(sim, joint, target, REACH_TIME)
    assert reached is not None, f"{joint} at {sim.position(joint):.4f}, target {target:.4f}"
    assert abs(sim.position(joint) - target) < TOLERANCE

    response = sim.probe.call(Trigger, SIM_RESET_SERVICE, Trigger.Request(), timeout=15)
    assert response.success, response.message
    assert _wait_for_joint(sim, joint, home, REACH_TIME) is not None, f"{joint} at {sim.position(joint):.4f}"
    time.sleep(0.3)  # and it stays there: the targets were reset too
    assert abs(sim.position(joint) - home) < TOLERANCE


def test_commands_with_an_unknown_joint_or_nan_are_rejected_counted_and_survived(sim):
    joint = _arm_joint(sim.embodiment)
    before = sim.position(joint)
    target = _target(sim, joint)
    bad_nan = _command(sim, joint, math.nan)
    if sim.embodiment.command.interface == "forward_position":  # no names: a wrong length stands in for one
        bad_name = Float64MultiArray(data=[target])
    elif sim.embodiment.command.interface == "joint_trajectory":
        bad_name = _command(sim, joint, target)
        bad_name.joint_names = ["elbow_of_doom"]
    else:
        bad_name = JointState(name=[joint, "elbow_of_doom"], position=[target, 0.0])
    sim.command_pub.publish(bad_name)
    sim.command_pub.publish(bad_nan)
    # Diagnostics come at 1 Hz: wait for the count, then check nothing moved in the meantime.
    assert wait_until(lambda: int(sim.diagnostic("commands_rejected") or 0) >= 2, 5), sim.diagnostics[-1:]
    assert abs(sim.position(joint) - before) < 0.005
    assert sim.process.running, sim.process.output()
    n = len(sim.states)
    assert wait_until(lambda: len(sim.states) > n + 5, 2), "joint states stopped after a bad command"


def test_embodiments_with_a_mobile_base_listen_for_twist_on_the_base_velocity_topic(sim):
    groups = [g for g in sim.embodiment.extra_actions if tuple(g.components) == ("linear_x", "angular_z")]
    for group in groups:
        assert wait_until(lambda g=group: sim.probe.node.count_subscribers(g.topic) >= 1, 10), group.topic
    if not groups:
        assert sim.probe.node.count_subscribers("/cmd_vel") == 0


def test_with_use_sim_clock_it_publishes_clock_and_stamps_joint_states_with_sim_time_across_a_reset(launcher, probe):
    embodiment = load_embodiment("franka_droid")
    # The module's last per-embodiment node may still be up: remap this one's state topic and reset service.
    topic, reset = "/sim_clock_test/joint_states", "/sim_clock_test/reset"
    process = launcher.start(
        "sim_robot", MODULE, {"embodiment": embodiment.name, "camera_rate": 0.0, "use_sim_clock": True},
        extra_args=["--ros-args", "-r", f"{embodiment.command.joint_states_topic}:={topic}",
                    "-r", f"{SIM_RESET_SERVICE}:={reset}"])
    clock = probe.collect(Clock, "/clock", 10)
    states = probe.collect(JointState, topic, qos.JOINT_STATES)
    assert wait_until(lambda: len(states) > 10 and len(clock) > 10, 30), process.output()
    # Sim time started at 0 with the node, while the wall clock is decades past the epoch.
    assert stamp_to_seconds(states[-1][1].header.stamp) < 1e6
    assert probe.call(Trigger, reset, Trigger.Request(), timeout=15).success
    n = len(states)
    assert wait_until(lambda: len(states) > n + 10, 5)
    received = list(states)
    stamps = [stamp_to_seconds(m.header.stamp) for _, m in received]
    ticks = [stamp_to_seconds(m.clock) for _, m in list(clock)]
    assert np.all(np.diff(stamps) > 0) and np.all(np.diff(ticks) >= 0), "sim time went backwards at the reset"
    # Sim time keeps pace with the wall clock (physics runs in real time). A receive time is late by however long
    # this probe waited to be scheduled, never early, so the least-delayed message of each half of the run carries
    # the clocks' offset: it must not drift.
    offsets = np.array(stamps) - np.array([t for t, _ in received])
    half = len(offsets) // 2
    assert offsets[half:].max() - offsets[:half].max() == pytest.approx(0.0, abs=0.1), \
        f"sim time drifted from the wall clock over {stamps[-1] - stamps[0]:.2f} s of sim time"
