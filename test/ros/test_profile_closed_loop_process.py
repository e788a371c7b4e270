"""Every shipped profile runs closed loop on the built-in simulator, through the profile's own wiring.

`dreamzero bringup --robot <profile> --sim` with the scripted backend: the simulator publishes joint
states and cameras on the profile's topics in the robot's names and units and takes the profile's command
outputs; the loop homes, arms, chunks flow, and an arm joint (identity map, renamed) tracks its command.
A JointTrajectory output (FR3's arm controller) is streamed, one trajectory per chunk: its command at
a time is the latest trajectory received by then, between its points at their absolute times.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from dreamzero_msgs.msg import ActionChunk
from dreamzero_msgs.srv import SetInstruction
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from dreamzero_ros.bringup.plan import BringupOptions, node_plan, start_plan
from dreamzero_ros.core.robot_profile import QosSpec
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import ARM_SERVICE, CHUNK_TOPIC, HOME_SERVICE, SET_INSTRUCTION_SERVICE
from dreamzero_ros.testing.probes import wait_until

pytestmark = pytest.mark.slow

# profile -> (command topic, its type, the arm joint's robot name there, joint-state topic, its name there)
CASES = {
    "franka_droid_sim": ("/forward_position_controller/commands", Float64MultiArray, 0, "/joint_states",
                         "panda_joint1"),
    "fr3_franka_ros2": ("/fr3_arm_controller/joint_trajectory", JointTrajectory, "fr3_joint1",
                        "/franka/joint_states", "fr3_joint1"),
    "agibot_g1_genie_sim": ("/sim/target_joint_state", JointState, "idx21_arm_l_joint1", "/joint_states",
                            "idx21_arm_l_joint1"),
    "yam_i2rt": ("/right/command", JointState, "joint_2", "/right/joint_states", "joint_2"),
}
GENIE_QOS = qos.from_spec(QosSpec("reliable", "transient_local", 30))
RUN = 6.0  # s measured after the first chunk
TRACKING_P95 = 0.06  # rad between the command and the measured position one control period later


def command_value(msg, key) -> float:
    if isinstance(msg, Float64MultiArray):
        return msg.data[key]
    return msg.position[list(msg.name).index(key)]


def trajectory_values(received: list, key: str, t0: float, t1: float, dt: float = 1 / 15) -> list:
    """(t, value) every dt in [t0, t1] from streamed trajectories (receive times monotonic, stamps ROS time)."""
    offset = time.time() - time.monotonic()
    out = []
    for t in np.arange(t0, t1, dt):
        latest = [m for r, m in received if r <= t]
        if not latest:
            continue
        msg = latest[-1]
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        times = [stamp + p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        j = list(msg.joint_names).index(key)
        out.append((t, float(np.interp(t + offset, times, [p.positions[j] for p in msg.points]))))
    return out


@pytest.mark.parametrize("robot", list(CASES))
def test_each_profile_runs_closed_loop_on_the_simulator_through_its_own_wiring(robot, probe, tmp_path):
    cmd_topic, cmd_type, cmd_key, state_topic, state_name = CASES[robot]
    plan = node_plan(BringupOptions(robot=robot, backend="scripted", sim=True))
    logs: list[str] = []
    group = start_plan(plan, env=dict(os.environ), sink=logs.append, workdir=tmp_path)
    try:
        commands = probe.collect(cmd_type, cmd_topic, GENIE_QOS if robot == "agibot_g1_genie_sim" else 10)
        states = probe.collect(JointState, state_topic, 10)
        chunks = probe.collect(ActionChunk, CHUNK_TOPIC, qos.COMMANDS)
        resp = probe.call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction="wave"),
                          timeout=90)
        assert resp.success, resp.message
        # Start from the start pose (refused until the executor has its first joint state: retry).
        assert wait_until(lambda: probe.call(Trigger, HOME_SERVICE, Trigger.Request(), timeout=30).success,
                          90, interval=0.3), "executor never homed\n" + "\n".join(logs[-60:])
        armed = wait_until(lambda: probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=True), timeout=30).success,
                           90, interval=0.3)
        assert armed, "executor never armed\n" + "\n".join(logs[-60:])
        assert wait_until(lambda: len(chunks) > 0, 120), "no chunk\n" + "\n".join(logs[-80:])
        time.sleep(2.0)
        t0 = time.monotonic()
        time.sleep(RUN)
        t1 = time.monotonic()
    finally:
        group.stop_all()
    if cmd_type is JointTrajectory:
        sent = trajectory_values(list(commands), cmd_key, t0, t1)
    else:
        sent = [(t, command_value(m, cmd_key)) for t, m in commands if t0 <= t <= t1]
    measured = [(t, m.position[list(m.name).index(state_name)]) for t, m in states
                if t0 <= t <= t1 + 0.5 and state_name in m.name]
    assert len(sent) > 10 and len(measured) > 10, (len(sent), len(measured), "\n".join(logs[-40:]))
    mt = np.array([t for t, _ in measured])
    mv = np.array([v for _, v in measured])
    errors = []
    for t, v in sent[:-3]:
        k = np.searchsorted(mt, t + 0.07)  # the measurement a couple of control periods later
        if k < len(mv):
            errors.append(abs(mv[k] - v))
    assert np.percentile(errors, 95) < TRACKING_P95, f"tracking p95 {np.percentile(errors, 95):.3f}"
    values = np.array([v for _, v in sent])
    assert np.ptp(values) > 0.01, "the command never moved"
