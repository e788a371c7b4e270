"""Robot profiles load, validate against their embodiment, and map values as their formulas say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from dreamzero_ros.core.embodiment import ConfigError, load_embodiment
from dreamzero_ros.core.robot_profile import (
    COMPRESSED_IMAGE,
    FLOAT64_ARRAY,
    GRIPPER_COMMAND,
    JOINT_STATE,
    JointStateAssembler,
    QosSpec,
    ValueMap,
    available_robot_profiles,
    load_robot,
    load_robot_profile,
    profile_from_embodiment,
)

ARM = [f"panda_joint{i}" for i in range(1, 8)]
FR3 = [f"fr3_joint{i}" for i in range(1, 8)]


def base() -> dict:
    """A valid two-input, two-output profile of franka_droid (arm renamed, gripper mapped)."""
    return {
        "name": "test_robot",
        "embodiment": "franka_droid",
        "cameras": {
            "exterior_1": {"topic": "/ext1/image", "type": "sensor_msgs/Image"},
            "exterior_2": {"topic": "/ext2/image", "type": "sensor_msgs/Image"},
            "wrist": {"topic": "/wrist/image/compressed", "type": "sensor_msgs/CompressedImage"},
        },
        "joint_states": [
            {"topic": "/joint_states", "joints": dict(zip(ARM, FR3, strict=True))},
            {"topic": "/gripper/joint_states", "joints": {"panda_finger_joint1": "fr3_finger_joint1"}},
        ],
        "commands": [
            {"topic": "/arm/commands", "type": "std_msgs/Float64MultiArray", "joints": dict(zip(ARM, FR3, strict=True))},
            {"topic": "/gripper/command", "type": "sensor_msgs/JointState",
             "joints": {"panda_finger_joint1": "gripper_width"},
             "map": {"panda_finger_joint1": {"from": [0.0, 0.04], "to": [0.0, 0.08]}}},
        ],
    }


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load(tmp_path: Path, data: dict):
    return load_robot_profile(write(tmp_path, data))


@pytest.mark.parametrize("name", available_robot_profiles())
def test_each_shipped_profile_loads_against_the_embodiment_it_names(name):
    profile = load_robot_profile(name)
    assert profile.name == name
    emb = profile.embodiment
    assert [c.name for c in profile.cameras] == list(emb.camera_names)
    commanded = [j for c in profile.commands for j in c.slice.joints] + list(profile.uncommanded)
    assert sorted(commanded) == sorted(emb.action_joints)
    read = [j for s in profile.joint_states for j in s.slice.joints]
    assert sorted(read) == sorted(set(emb.state_joints) | set(emb.action_joints))


def test_the_simulator_profile_of_franka_droid_is_todays_wiring():
    profile = load_robot_profile("franka_droid_sim")
    default = profile_from_embodiment(load_embodiment("franka_droid"))
    a, b = profile, default
    assert [(c.topic, c.type) for c in a.cameras] == [(c.topic, c.type) for c in b.cameras]
    assert [(s.topic, s.slice.joints, s.slice.robot_joints) for s in a.joint_states] == [
        (s.topic, s.slice.joints, s.slice.robot_joints) for s in b.joint_states]
    assert [(c.topic, c.type, c.slice.joints) for c in a.commands] == [
        (c.topic, c.type, c.slice.joints) for c in b.commands]
    assert default.commands[0].type == FLOAT64_ARRAY
    assert default.commands[0].topic == "/forward_position_controller/commands"


def test_an_empty_robot_name_means_the_embodiments_own_wiring():
    profile = load_robot("", "yam")
    assert profile.embodiment.name == "yam"
    assert profile.commands[0].type == JOINT_STATE and profile.commands[0].topic == "/yam/joint_command"


def test_a_valid_profile_keeps_names_in_model_order_and_maps_per_joint(tmp_path):
    p = load(tmp_path, base())
    arm, grip = p.commands
    assert arm.slice.joints == tuple(ARM) and arm.slice.robot_joints == tuple(FR3)
    assert arm.indices == tuple(range(7)) and grip.indices == (7,)
    assert p.camera("wrist").type == COMPRESSED_IMAGE and p.camera("wrist").compressed
    assert p.cameras[0].qos == QosSpec("best_effort", "volatile", 5)
    action = np.array([0.1, 0.2, 0.3, -1.0, 0.5, 1.2, 0.7, 0.025])
    np.testing.assert_allclose(arm.robot_values(action), action[:7])
    # from [0, 0.04] to [0, 0.08]: y = 2 x -> 0.025 m per finger is a 0.05 m width.
    np.testing.assert_allclose(grip.robot_values(action), [0.05])


def test_unknown_top_level_key_is_rejected_naming_the_allowed_keys(tmp_path):
    data = base() | {"comands": []}
    with pytest.raises(ConfigError, match=r"robot\.yaml: comands: unknown key; allowed keys are \[.*'commands'"):
        load(tmp_path, data)


def test_unknown_key_in_a_command_output_is_rejected(tmp_path):
    data = base()
    data["commands"][0]["rate"] = 30
    with pytest.raises(ConfigError, match=r"commands\[0\]\.rate: unknown key; allowed keys are"):
        load(tmp_path, data)


def test_a_joint_commanded_twice_is_rejected_naming_both_outputs(tmp_path):
    data = base()
    data["commands"][1]["joints"] = {"panda_joint7": "x", "panda_finger_joint1": "gripper_width"}
    with pytest.raises(ConfigError, match=r"commands\[1\]\.joints\.panda_joint7: .*already commanded by commands\[0\]"):
        load(tmp_path, data)


def test_an_action_joint_no_output_sends_is_rejected_by_name(tmp_path):
    data = base()
    del data["commands"][1]
    with pytest.raises(ConfigError, match=r"commands: action joints \['panda_finger_joint1'\] are sent by no output"):
        load(tmp_path, data)


def test_an_uncommanded_list_accounts_for_joints_no_output_sends(tmp_path):
    data = base()
    del data["commands"][1]
    data["uncommanded"] = ["panda_finger_joint1"]
    assert load(tmp_path, data).uncommanded == ("panda_finger_joint1",)


def test_a_state_joint_no_input_reads_is_rejected_by_name(tmp_path):
    data = base()
    del data["joint_states"][1]
    with pytest.raises(ConfigError, match=r"joint_states: model joints \['panda_finger_joint1'\] are read from no input"):
        load(tmp_path, data)


def test_a_joint_read_from_two_inputs_is_rejected(tmp_path):
    data = base()
    data["joint_states"][1]["joints"] = {"panda_joint1": "a", "panda_finger_joint1": "b"}
    with pytest.raises(ConfigError, match=r"joint_states\[1\]\.joints\.panda_joint1: .*already read from joint_states\[0\]"):
        load(tmp_path, data)


def test_joints_listed_out_of_model_order_are_rejected_with_a_hint_to_rename(tmp_path):
    data = base()
    data["commands"][0]["joints"] = dict(reversed(list(zip(ARM, FR3, strict=True))))
    with pytest.raises(ConfigError, match=r"commands\[0\]\.joints: list model joints in the embodiment's order.*rename"):
        load(tmp_path, data)


def test_a_joint_the_embodiment_does_not_have_is_rejected(tmp_path):
    data = base()
    data["commands"][1]["joints"] = {"fr3_finger_joint1": "gripper_width"}
    data["commands"][1].pop("map")
    with pytest.raises(ConfigError, match=r"commands\[1\]\.joints\.fr3_finger_joint1: expected a action joint"):
        load(tmp_path, data)


def test_a_zero_scale_map_is_rejected_as_not_invertible(tmp_path):
    data = base()
    data["commands"][1]["map"] = {"panda_finger_joint1": {"scale": 0.0, "offset": 0.5}}
    with pytest.raises(ConfigError, match=r"commands\[1\]\.map\.panda_finger_joint1: a scale of 0 .*cannot be inverted"):
        load(tmp_path, data)


def test_a_map_for_a_joint_outside_its_entry_is_rejected(tmp_path):
    data = base()
    data["commands"][1]["map"] = {"panda_joint1": {"scale": 2.0}}
    with pytest.raises(ConfigError, match=r"commands\[1\]\.map\.panda_joint1: expected one of this entry's joints"):
        load(tmp_path, data)


def test_an_unknown_message_type_is_rejected_listing_the_known_ones(tmp_path):
    data = base()
    data["commands"][0]["type"] = "std_msgs/Float32MultiArray"
    with pytest.raises(ConfigError, match=r"commands\[0\]\.type: expected one of \[.*'std_msgs/Float64MultiArray'.*got"):
        load(tmp_path, data)


def test_a_gripper_action_output_needs_max_effort_and_exactly_one_joint(tmp_path):
    data = base()
    data["commands"][1] = {"topic": "/fr3_gripper/gripper_action", "type": GRIPPER_COMMAND,
                           "joints": {"panda_finger_joint1": "fr3_finger_joint1"}}
    with pytest.raises(ConfigError, match=r"commands\[1\]\.max_effort: missing required field"):
        load(tmp_path, data)
    data["commands"][1]["max_effort"] = 20.0
    data["commands"][1]["deadband"] = 0.002
    out = load(tmp_path, data).commands[1]
    assert (out.max_effort, out.deadband, out.per_tick) == (20.0, 0.002, False)
    data["commands"][0]["max_effort"] = 20.0
    with pytest.raises(ConfigError, match=r"commands\[0\]\.max_effort: only a control_msgs/action/GripperCommand"):
        load(tmp_path, data)


def test_a_camera_missing_from_the_profile_is_rejected_naming_the_embodiments_cameras(tmp_path):
    data = base()
    del data["cameras"]["wrist"]
    with pytest.raises(ConfigError, match=r"cameras\.wrist: missing: every camera of franka_droid"):
        load(tmp_path, data)


def test_a_camera_type_other_than_image_or_compressed_is_rejected(tmp_path):
    data = base()
    data["cameras"]["wrist"]["type"] = "sensor_msgs/PointCloud2"
    with pytest.raises(ConfigError, match=r"cameras\.wrist\.type: expected one of \['sensor_msgs/Image'"):
        load(tmp_path, data)


def test_qos_is_read_per_topic_and_bad_values_are_named(tmp_path):
    data = base()
    data["commands"][0]["qos"] = {"reliability": "reliable", "durability": "transient_local", "depth": 30}
    assert load(tmp_path, data).commands[0].qos == QosSpec("reliable", "transient_local", 30)
    data["commands"][0]["qos"]["reliability"] = "sometimes"
    with pytest.raises(ConfigError, match=r"commands\[0\]\.qos\.reliability: expected one of \['reliable', 'best_effort'\], got 'sometimes'"):
        load(tmp_path, data)


def test_a_malformed_topic_name_is_rejected(tmp_path):
    data = base()
    data["commands"][0]["topic"] = "/arm commands"
    with pytest.raises(ConfigError, match=r"commands\[0\]\.topic: expected a ROS name"):
        load(tmp_path, data)


def test_an_unloadable_embodiment_is_named_in_the_profile_error(tmp_path):
    data = base() | {"embodiment": "no_such_robot"}
    with pytest.raises(ConfigError, match=r"robot\.yaml: embodiment: cannot load embodiment 'no_such_robot'"):
        load(tmp_path, data)


def test_one_minus_a_clipped_maps_and_inverts_as_written():
    m = ValueMap(scale=-1.0, offset=1.0, clip=(0.0, 1.0))  # clip(1 - a, 0, 1)
    assert m.apply(0.3) == pytest.approx(0.7)
    assert m.apply(1.4) == 0.0 and m.apply(-0.2) == 1.0
    assert m.invert(0.7) == pytest.approx(0.3)
    assert m.invert(5.0) == pytest.approx(0.0)  # outside the range: inverted from the clipped end


def test_a_from_to_map_is_the_straight_line_through_its_two_points(tmp_path):
    data = base()
    data["commands"][1]["map"] = {"panda_finger_joint1": {"from": [0.0, 0.04], "to": [1.0, 0.0]}}
    m = load(tmp_path, data).commands[1].slice.maps[0]
    # through (0, 1) and (0.04, 0): y = 1 - 25 x.
    assert (m.scale, m.offset) == (pytest.approx(-25.0), pytest.approx(1.0))
    assert m.apply(0.01) == pytest.approx(0.75)
    assert m.invert(0.75) == pytest.approx(0.01)


def test_the_assembler_waits_for_every_topic_and_returns_model_order_and_values(tmp_path):
    data = base()
    # The gripper topic reports the full width; the model's finger joint is half of it.
    data["joint_states"][1]["joints"] = {"panda_finger_joint1": "width"}
    data["joint_states"][1]["map"] = {"panda_finger_joint1": {"scale": 0.5}}
    asm = JointStateAssembler(load(tmp_path, data))
    arm = [0.1, -0.2, 0.3, -1.5, 0.0, 1.1, 0.6]
    assert asm.update(0, list(reversed(FR3)) + ["fr3_finger_joint1"], list(reversed(arm)) + [9.0], now=10.0) == ""
    assert asm.complete() is None and asm.waiting_for() == ["/gripper/joint_states"]
    assert asm.update(1, ["width"], [0.06], now=10.2) == ""
    names, values, oldest = asm.complete()
    assert names == ARM + ["panda_finger_joint1"]
    np.testing.assert_allclose(values, arm + [0.03])
    assert oldest == 10.0


def test_the_assembler_names_the_topic_and_joints_a_message_lacks(tmp_path):
    asm = JointStateAssembler(load(tmp_path, base()))
    assert asm.update(0, FR3[:6], [0.0] * 6, now=1.0) == "joint_states is missing ['fr3_joint7'] on /joint_states"
    assert asm.update(1, ["a", "b"], [0.0], now=1.0) == "joint_states has 2 names but 1 positions on /gripper/joint_states"


GENIE_ARMS = [f"idx2{i}_arm_l_joint{i}" for i in range(1, 8)] + [f"idx6{i}_arm_r_joint{i}" for i in range(1, 8)]


def test_the_genie_sim_profile_carries_genie_sims_names_topics_qos_and_gripper_formulas():
    p = load_robot_profile("agibot_g1_genie_sim")
    assert p.use_sim_time is True
    assert [(c.topic, c.type) for c in p.cameras] == [
        ("/sim/head_img", COMPRESSED_IMAGE), ("/sim/left_wrist_img", COMPRESSED_IMAGE),
        ("/sim/right_wrist_img", COMPRESSED_IMAGE)]
    (cmd,) = p.commands
    assert (cmd.topic, cmd.type, cmd.qos) == ("/sim/target_joint_state", JOINT_STATE,
                                               QosSpec("reliable", "transient_local", 30))
    # The order the sim's callback_joint_command reads by index: left arm, right arm, then the two grippers.
    assert cmd.slice.robot_joints == (*GENIE_ARMS, "idx41_gripper_l_outer_joint1", "idx81_gripper_r_outer_joint1")
    assert set(p.uncommanded) == {"head_yaw_joint", "head_pitch_joint", "waist_pitch_joint", "waist_lift_joint"}
    action = np.zeros(20)
    action[14], action[15] = 0.3, 1.2  # left / right effector, model units
    out = cmd.robot_values(action)
    # clip(1 - a, 0, 1): 0.3 -> 0.7, 1.2 -> 0 (clipped).
    assert out[14] == pytest.approx(0.7) and out[15] == 0.0
    (inp,) = p.joint_states
    assert inp.topic == "/joint_states"
    k = inp.slice.joints.index("left_effector_joint")
    assert inp.slice.robot_joints[k] == "idx41_gripper_l_outer_joint1"
    # clip(0.8 - joint, 0, 1): 0.1 -> 0.7; -0.5 -> 1 (clipped).
    assert inp.slice.maps[k].apply(0.1) == pytest.approx(0.7) and inp.slice.maps[k].apply(-0.5) == 1.0
    by_model = dict(zip(inp.slice.joints, inp.slice.robot_joints, strict=True))
    assert (by_model["waist_lift_joint"], by_model["waist_pitch_joint"]) == ("idx01_body_joint1", "idx02_body_joint2")


def test_the_yam_profile_has_one_output_and_one_input_per_arm_with_a_normalised_gripper():
    p = load_robot_profile("yam_i2rt")
    names = ("joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper")
    assert [(c.topic, c.type, c.slice.robot_joints) for c in p.commands] == [
        ("/left/command", JOINT_STATE, names), ("/right/command", JOINT_STATE, names)]
    assert [(s.topic, s.slice.robot_joints) for s in p.joint_states] == [
        ("/left/joint_states", names), ("/right/joint_states", names)]
    left, right = p.commands
    action = np.zeros(14)
    action[6], action[13] = 0.0185, 0.05  # finger travel (m): half open, beyond fully open
    # x / 0.037 clipped to [0, 1]: 0.0185 m -> 0.5; 0.05 m -> 1.
    assert left.robot_values(action)[6] == pytest.approx(0.5)
    assert right.robot_values(action)[6] == 1.0
    assert right.indices == tuple(range(7, 14))
    # observed: normalised g -> 0.037 g m.
    assert p.joint_states[0].slice.maps[6].apply(0.25) == pytest.approx(0.00925)


def test_the_fr3_profile_streams_the_arm_to_fr3_arm_controller_and_the_gripper_to_its_action():
    p = load_robot_profile("fr3_franka_ros2")
    arm, grip = p.commands
    assert (arm.topic, arm.type, arm.slice.robot_joints) == (
        "/fr3_arm_controller/joint_trajectory", "trajectory_msgs/JointTrajectory", tuple(FR3))
    assert (grip.topic, grip.type, grip.slice.robot_joints) == (
        "/fr3_gripper/gripper_action", GRIPPER_COMMAND, ("fr3_finger_joint1",))
    assert grip.slice.maps[0].is_identity  # command.position is width / 2, i.e. the finger joint itself
    assert [s.topic for s in p.joint_states] == ["/franka/joint_states", "/fr3_gripper/joint_states"]
    assert p.joint_states[1].qos.reliability == "best_effort"  # the gripper node publishes SensorDataQoS
