"""Each shipped robot profile drives a stand-in of its robot stack: right topics, types, names, mapped values, rate.

The real nodes (stitcher, inference with the scripted backend, executor) start from the bringup plan with
`robot:=<profile>` and no simulator; a stand-in of the stack (test/ros/stacks/, built from the stack's public
sources) publishes joint states and images the way the stack does and records what reaches the topics its
controller or wrapper subscribes to. Expected values come from the profile's formulas applied by hand to the
scripted backend's trajectory: each action joint follows centre + a sin(...), the centre being the first
observed state in MODEL units (the stand-in's start through the input map) and |a| <= 0.1 x 0.45 x the joint's
range in the embodiment (amplitude 0.1 of the half range inside a 5 % margin).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from dreamzero_msgs.msg import ActionChunk
from dreamzero_msgs.srv import SetInstruction
from stacks.franka_ros2 import ARM as FR3_ARM
from stacks.franka_ros2 import GRIPPER_ACTION, JTC_TOPIC, FrankaRos2StandIn
from stacks.genie_sim import COMMAND_JOINTS, COMMAND_TOPIC, GenieSimStandIn
from stacks.i2rt_yam import NAMES as YAM_NAMES
from stacks.i2rt_yam import YamWrapperStandIn
from std_srvs.srv import SetBool

from dreamzero_ros.bringup.plan import BringupOptions, node_plan, start_plan
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.robot_profile import resolve_profile_path
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import ARM_SERVICE, CHUNK_TOPIC, SET_INSTRUCTION_SERVICE
from dreamzero_ros.testing.probes import wait_until

pytestmark = pytest.mark.slow

SETTLE = 2.0  # s after the first chunk before measuring (the first chunk fades in from the held state)
WINDOW = 4.0  # s measured: one full period of the scripted sinusoid
RATE_TOLERANCE = 0.05


def run_with_stack(robot: str, probe, tmp_path: Path, command_topics: list[str], standin) -> dict:
    """Bring the nodes up on `robot`, arm, and return the stand-in's commands received in the window."""
    plan = node_plan(BringupOptions(robot=robot, backend="scripted", sim=False))
    logs: list[str] = []
    group = start_plan(plan, env=dict(os.environ), sink=logs.append, workdir=tmp_path)
    try:
        chunks = probe.collect(ActionChunk, CHUNK_TOPIC, qos.COMMANDS)
        resp = probe.call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction="wave"),
                          timeout=90)
        assert resp.success, resp.message
        armed = wait_until(lambda: probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=True), timeout=30).success,
                           60, interval=0.3)
        assert armed, "executor never armed (joint states not assembled?)\n" + "\n".join(logs[-60:])
        assert wait_until(lambda: len(chunks) > 0, 90), "no chunk\n" + "\n".join(logs[-80:])
        time.sleep(SETTLE)
        t0 = time.monotonic()
        time.sleep(WINDOW)
        t1 = time.monotonic()
    finally:
        group.stop_all()
    window = {topic: [m for t, m in standin.messages(topic) if t0 <= t <= t1] for topic in command_topics}
    times = {topic: [t for t, _ in standin.messages(topic) if t0 <= t <= t1] for topic in command_topics}
    for topic in command_topics:
        assert window[topic], f"nothing reached {topic}\n" + "\n".join(logs[-60:])
    return {"messages": window, "times": times, "logs": logs, "chunks": [m for _, m in list(chunks)]}


def assert_rate(times: list[float], rate_hz: float, topic: str) -> None:
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert abs(rate - rate_hz) / rate_hz < RATE_TOLERANCE, f"{topic}: {rate:.2f} Hz, configured {rate_hz:g} Hz"


def amplitude_bound(emb, joint: str) -> float:
    lim = emb.joint_limits[joint]
    return 0.1 * 0.45 * (lim.upper - lim.lower) + 1e-3


def test_genie_sim_gets_one_jointstate_of_arms_and_grippers_with_clip_one_minus_a_on_sim_time(probe, tmp_path):
    emb = load_embodiment("agibot_g1")
    arm_start = [0.3, -0.5, 0.2, -1.0, 0.1, 0.4, -0.2]
    start = {name: v for name, v in zip(COMMAND_JOINTS[:7], arm_start, strict=True)}
    start |= {name: v for name, v in zip(COMMAND_JOINTS[7:14], arm_start, strict=True)}
    # Observed gripper = clip(0.8 - joint, 0, 1): 0.6 -> model 0.2 (left), 0.7 -> model 0.1 (right).
    start |= {"idx41_gripper_l_outer_joint1": 0.6, "idx81_gripper_r_outer_joint1": 0.7}
    start |= {"idx01_body_joint1": 0.5, "idx02_body_joint2": 0.2, "idx11_head_joint1": 0.0, "idx12_head_joint2": 0.1}
    standin = GenieSimStandIn(start, sim_time_start=1000.0)
    try:
        run = run_with_stack("agibot_g1_genie_sim", probe, tmp_path, [COMMAND_TOPIC], standin)
    finally:
        standin.close()
    msgs = run["messages"][COMMAND_TOPIC]
    for msg in msgs:
        assert list(msg.name) == COMMAND_JOINTS  # arms, then grippers, as the sim reads them; head and waist never
        assert len(msg.position) == 16 and all(math.isfinite(v) for v in msg.position)
        # Stamped on Genie Sim's clock (use_sim_time from the profile), not on the wall clock.
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        assert 1000.0 < stamp < 1000.0 + 600.0
    pos = np.array([list(m.position) for m in msgs])
    a_eff = amplitude_bound(emb, "left_effector_joint")
    # Command = clip(1 - a, 0, 1), a = the effector's model value around the scripted centre. Genie Sim's two
    # maps do not round-trip (command c -> joint 0.8 c -> observed 0.8 - 0.8 c, so holding a reads back 0.8 a):
    # the gripper state creeps while it is held before the first chunk, so the centre is the one the chunks
    # carry (the middle of the effector's sinusoid over the full period measured), not the start's 0.2 / 0.1.
    for col, joint, start in ((14, "left_effector_joint", 0.2), (15, "right_effector_joint", 0.1)):
        values = np.concatenate([np.asarray(c.positions).reshape(c.horizon, -1)[:, list(c.joint_names).index(joint)]
                                 for c in run["chunks"]])
        centre = (values.max() + values.min()) / 2
        assert 0.0 <= centre <= start + 1e-6, (joint, centre)  # from the start state, only ever creeping closed
        assert np.all(np.abs(pos[:, col] - (1.0 - centre)) <= a_eff), (joint, centre, pos[:, col])
    for k, joint in enumerate(["left_arm_joint1", "left_arm_joint2", "left_arm_joint3"]):
        assert np.all(np.abs(pos[:, k] - arm_start[k]) <= amplitude_bound(emb, joint)), joint
    assert np.ptp(pos[:, 0]) > 0.5 * amplitude_bound(emb, "left_arm_joint1")  # the sinusoid really arrives
    assert_rate(run["times"][COMMAND_TOPIC], emb.control.rate_hz, COMMAND_TOPIC)


def test_the_yam_wrapper_gets_one_command_per_arm_with_the_gripper_normalised(probe, tmp_path):
    emb = load_embodiment("yam")
    left = [0.2, 1.5, 1.2, 0.1, -0.2, 0.3, 0.75]  # gripper 0.75 open -> model 0.75 x 0.037 = 0.02775 m
    right = [-0.3, 1.2, 1.0, -0.1, 0.2, -0.3, 0.4]  # gripper 0.4 -> 0.0148 m
    standin = YamWrapperStandIn({"left": left, "right": right}, ["/top/image_raw", "/left/wrist/image_raw",
                                                                  "/right/wrist/image_raw"])
    topics = ["/left/command", "/right/command"]
    try:
        run = run_with_stack("yam_i2rt", probe, tmp_path, topics, standin)
    finally:
        standin.close()
    # Model -> robot for the gripper: x / 0.037 m, so |command - start| <= a / 0.037.
    grip_bound = amplitude_bound(emb, "left_gripper_joint") / 0.037
    for topic, start in zip(topics, (left, right), strict=True):
        msgs = run["messages"][topic]
        for msg in msgs:
            assert list(msg.name) == YAM_NAMES and len(msg.position) == 7
            assert all(math.isfinite(v) for v in msg.position)
        pos = np.array([list(m.position) for m in msgs])
        assert np.all((pos[:, 6] >= 0.0) & (pos[:, 6] <= 1.0))
        assert np.all(np.abs(pos[:, 6] - start[6]) <= grip_bound), (topic, pos[:, 6].min(), pos[:, 6].max())
        for k in range(6):
            assert np.all(np.abs(pos[:, k] - start[k]) <= amplitude_bound(emb, f"left_joint{k + 1}")), (topic, k)
        assert_rate(run["times"][topic], emb.control.rate_hz, topic)


def fr3_forward_variant(tmp_path: Path) -> Path:
    """The shipped FR3 profile with the arm on a forward position controller and the gripper left out.

    The JointTrajectoryController and GripperCommand outputs are streamed per chunk (trajectory
    streaming); this variant exercises the per-tick path with the FR3's own names and topics.
    """
    data = yaml.safe_load(resolve_profile_path("fr3_franka_ros2").read_text())
    arm, _gripper = data["commands"]
    arm.update(topic="/fr3_position_controller/commands", type="std_msgs/Float64MultiArray")
    data["commands"] = [arm]
    data["uncommanded"] = ["panda_finger_joint1"]
    data["name"] = "fr3_forward_variant"
    path = tmp_path / "profile" / "fr3_forward_variant.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_franka_ros2_gets_fr3_named_per_tick_arm_commands_from_two_joint_state_topics(probe, tmp_path):
    emb = load_embodiment("franka_droid")
    robot = fr3_forward_variant(tmp_path)
    home = [0.0, -0.5, 0.1, -2.0, 0.05, 1.6, 0.7]
    standin = FrankaRos2StandIn(home, 0.06, arm_topic="/fr3_position_controller/commands",
                                cameras=["/exterior_1/image_raw", "/exterior_2/image_raw", "/wrist/image_raw"])
    topic = "/fr3_position_controller/commands"
    try:
        # Arming needs both topics: the arm's (reliable) and the gripper's (best effort, SensorDataQoS).
        run = run_with_stack(str(robot), probe, tmp_path, [topic], standin)
    finally:
        standin.close()
    msgs = run["messages"][topic]
    pos = np.array([list(m.data) for m in msgs])
    assert pos.shape[1] == len(FR3_ARM) and np.all(np.isfinite(pos))
    for k in range(7):
        assert np.all(np.abs(pos[:, k] - home[k]) <= amplitude_bound(emb, f"panda_joint{k + 1}")), k
    assert np.ptp(pos[:, 0]) > 0.5 * amplitude_bound(emb, "panda_joint1")
    assert_rate(run["times"][topic], emb.control.rate_hz, topic)


def test_franka_ros2_gets_the_shipped_profiles_arm_trajectories_and_gripper_action_goals(probe, tmp_path):
    """The shipped FR3 profile as is: the arm streams JointTrajectory messages in fr3 names to the
    JointTrajectoryController's topic, and the gripper gets GripperCommand goals on franka_gripper's action:
    position = the finger joint (width / 2, the profile maps nothing), max_effort 40 N from the profile, a new
    goal only when the target moved more than the profile's 0.002 m deadband."""
    emb = load_embodiment("franka_droid")
    home = [0.0, -0.5, 0.1, -2.0, 0.05, 1.6, 0.7]
    width = 0.05  # fingers at 0.025 m each
    standin = FrankaRos2StandIn(home, width, arm_topic=JTC_TOPIC,
                                cameras=["/exterior_1/image_raw", "/exterior_2/image_raw", "/wrist/image_raw"])
    try:
        run = run_with_stack("fr3_franka_ros2", probe, tmp_path, [JTC_TOPIC], standin)
        goals = [m for _, m in standin.messages(GRIPPER_ACTION)]
    finally:
        standin.close()
    for msg in run["messages"][JTC_TOPIC]:
        assert list(msg.joint_names) == FR3_ARM and msg.points
        assert all(len(p.positions) == 7 and all(math.isfinite(v) for v in p.positions) for p in msg.points)
    assert goals, "no GripperCommand goal reached the gripper's action server\n" + "\n".join(run["logs"][-40:])
    bound = amplitude_bound(emb, "panda_finger_joint1")
    positions = np.array([g.position for g in goals])
    assert np.all(np.abs(positions - width / 2) <= bound), positions
    assert all(g.max_effort == pytest.approx(40.0) for g in goals)
    assert np.all(np.abs(np.diff(positions)) > 0.002), positions  # the deadband: no goal for a smaller move
