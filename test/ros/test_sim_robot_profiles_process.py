"""The simulator speaks each robot profile's wiring: the stack's topics, types, names and units, both ways.

sim_robot runs as a real process with `robot:=<profile>`; the probe talks to it exactly like the
robot stack's users do (Genie Sim's client, the i2rt wrapper's user, a franka_ros2 user). Expected
values come from the profile formulas by hand: Genie Sim observed gripper joint = 0.8 - model value and
command c -> model 1 - c; YAM gripper normalised = finger travel / 0.037 m; FR3 names renamed 1:1.
"""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dreamzero_ros.core.image import decode_compressed
from dreamzero_ros.testing.probes import NodeLauncher, RosProbe, wait_until

MODULE = "dreamzero_ros.nodes.sim_robot_node"
REACH = 5.0  # s for a commanded joint to settle (the sim renders cameras on the same two cores)
TOLERANCE = 0.02  # rad | normalised units
GENIE_QOS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=30, reliability=QoSReliabilityPolicy.RELIABLE,
                       durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)

pytestmark = pytest.mark.slow


@pytest.fixture
def nodes():
    launcher, probe = NodeLauncher(), RosProbe("sim_profile_probe")
    yield launcher, probe
    launcher.stop_all()
    probe.close()


def ours(states, name: str):
    """The newest message naming `name` (another test run that drew the same ROS domain may publish too)."""
    return next(msg for _, msg in reversed(states) if name in msg.name)


def latest(states, name: str) -> float:
    msg = ours(states, name)
    return msg.position[list(msg.name).index(name)]


def settles(states, name: str, target: float) -> bool:
    return wait_until(lambda: abs(latest(states, name) - target) < TOLERANCE, REACH)


def test_the_sim_speaks_genie_sim_compressed_cameras_idx_names_gripper_formulas_and_sim_time(nodes):
    launcher, probe = nodes
    proc = launcher.start("sim_robot", MODULE, {"robot": "agibot_g1_genie_sim", "camera_rate": 2.0,
                                                 "use_sim_clock": True})
    states = probe.collect(JointState, "/joint_states", 10)
    head = probe.collect(CompressedImage, "/sim/head_img", qos_profile_sensor_data)
    clock = probe.collect(Clock, "/clock", 10)
    cmd = probe.publisher(JointState, "/sim/target_joint_state", GENIE_QOS, wait_for_subscribers=1, timeout=90)
    assert wait_until(lambda: len(states) > 3 and len(head) > 0, 60), proc.output()
    names = list(ours(states, "idx21_arm_l_joint1").name)
    assert "idx21_arm_l_joint1" in names and "idx81_gripper_r_outer_joint1" in names and "idx01_body_joint1" in names
    assert not any(n.startswith(("left_", "right_", "head_", "waist_")) for n in names)  # no model names leak
    # The sim's effector joint starts inside [0, 1]: observed joint = 0.8 - model, so at most 0.8.
    assert latest(states, "idx41_gripper_l_outer_joint1") <= 0.8 + 1e-6
    rgb = decode_compressed(head[-1][1].format, head[-1][1].data)
    assert rgb.shape == (480, 640, 3)
    assert clock, "no /clock although use_sim_clock"
    stamp = ours(states, "idx21_arm_l_joint1").header.stamp
    assert abs(stamp.sec + stamp.nanosec * 1e-9 - (clock[-1][1].clock.sec + clock[-1][1].clock.nanosec * 1e-9)) < 1.0

    # Observed joint j0 = 0.8 - m0 (model m0). Aim the model at m1 = m0 + 0.2: the command is
    # c = 1 - m1 (clip(1 - a, 0, 1) inverted) and the joint must settle at 0.8 - m1.
    arm0, j0 = latest(states, "idx21_arm_l_joint1"), latest(states, "idx41_gripper_l_outer_joint1")
    m1 = (0.8 - j0) + 0.2
    assert 0.0 <= m1 <= 1.0
    msg = JointState(name=["idx21_arm_l_joint1", "idx41_gripper_l_outer_joint1"], position=[arm0 + 0.1, 1.0 - m1])
    cmd.publish(msg)
    assert settles(states, "idx21_arm_l_joint1", arm0 + 0.1), latest(states, "idx21_arm_l_joint1")
    assert settles(states, "idx41_gripper_l_outer_joint1", 0.8 - m1), latest(states, "idx41_gripper_l_outer_joint1")


def test_the_sim_speaks_the_yam_wrapper_one_topic_pair_per_arm_with_a_normalised_gripper(nodes):
    launcher, probe = nodes
    proc = launcher.start("sim_robot", MODULE, {"robot": "yam_i2rt", "camera_rate": 0.0})
    left = probe.collect(JointState, "/left/joint_states", 10)
    right = probe.collect(JointState, "/right/joint_states", 10)
    cmd = probe.publisher(JointState, "/left/command", 10, wait_for_subscribers=1, timeout=90)
    assert wait_until(lambda: len(left) > 3 and len(right) > 3, 60), proc.output()
    names = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
    assert list(ours(left, "gripper").name) == names and list(ours(right, "gripper").name) == names
    start_right = list(ours(right, "gripper").position)
    start_left = list(ours(left, "gripper").position)
    # Gripper 0.5 normalised -> 0.5 x 0.037 = 0.0185 m in the sim -> reported back as 0.5.
    target = [v + 0.1 for v in start_left[:6]] + [0.5]
    cmd.publish(JointState(name=names, position=target))
    for k, name in enumerate(names):
        assert settles(left, name, target[k]), (name, latest(left, name))
    assert np.allclose(list(ours(right, "gripper").position)[:6], start_right[:6], atol=TOLERANCE)  # the other arm stays


def test_the_sim_speaks_franka_ros2_arm_and_gripper_states_on_their_own_topics_and_a_jtc_topic(nodes):
    launcher, probe = nodes
    proc = launcher.start("sim_robot", MODULE, {"robot": "fr3_franka_ros2", "camera_rate": 0.0})
    arm = probe.collect(JointState, "/franka/joint_states", 10)
    gripper = probe.collect(JointState, "/fr3_gripper/joint_states", qos_profile_sensor_data)
    traj = probe.publisher(JointTrajectory, "/fr3_arm_controller/joint_trajectory", 10, wait_for_subscribers=1,
                           timeout=90)
    assert wait_until(lambda: len(arm) > 3 and len(gripper) > 3, 60), proc.output()
    assert list(ours(arm, "fr3_joint1").name) == [f"fr3_joint{i}" for i in range(1, 8)]
    assert list(ours(gripper, "fr3_finger_joint1").name) == ["fr3_finger_joint1"]
    assert 0.0 <= latest(gripper, "fr3_finger_joint1") <= 0.04 + 1e-6  # the finger joint, width / 2
    target = latest(arm, "fr3_joint1") + 0.2
    msg = JointTrajectory(joint_names=["fr3_joint1"])
    msg.points = [JointTrajectoryPoint(positions=[target], time_from_start=Duration(sec=0, nanosec=500_000_000))]
    traj.publish(msg)
    assert settles(arm, "fr3_joint1", target), latest(arm, "fr3_joint1")
    # franka_gripper's action: a goal's position is the finger joint (width / 2); the sim moves the fingers there.
    from control_msgs.action import GripperCommand
    from rclpy.action import ActionClient

    client = ActionClient(probe.node, GripperCommand, "/fr3_gripper/gripper_action")
    assert client.wait_for_server(timeout_sec=30), proc.output()
    goal = GripperCommand.Goal()
    goal.command.position, goal.command.max_effort = 0.01, 40.0
    sent = client.send_goal_async(goal)
    assert wait_until(lambda: sent.done() and sent.result().accepted, 30), proc.output()
    assert settles(gripper, "fr3_finger_joint1", 0.01), latest(gripper, "fr3_finger_joint1")


@pytest.mark.parametrize("module", ["action_executor_node", "camera_stitcher_node", "inference_node",
                                    "sim_robot_node"])
def test_a_malformed_robot_profile_stops_each_node_with_exit_2_naming_the_file_and_field(nodes, tmp_path, module):
    import yaml

    from dreamzero_ros.core.robot_profile import resolve_profile_path

    launcher, _probe = nodes
    data = yaml.safe_load(resolve_profile_path("yam_i2rt").read_text())
    data["commands"][1]["joints"]["right_joint1"] = "joint_2"  # the robot joint named twice in one output
    bad = tmp_path / "broken_profile.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    params = {"robot": str(bad), **({"backend": "scripted"} if module == "inference_node" else {})}
    node = launcher.start(module, f"dreamzero_ros.nodes.{module}", params)
    assert node.wait(60) == 2, node.output()
    out = node.output()
    assert "broken_profile.yaml: commands[1].joints.right_joint2: robot joint 'joint_2' is named twice" in out, out
