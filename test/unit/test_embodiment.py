"""Embodiment YAMLs load, and every malformed variant fails naming the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from dreamzero_ros.core.embodiment import (
    ConfigError,
    available_embodiments,
    check_checkpoint_timing,
    config_dir,
    load_embodiment,
    resolve_checkpoint,
)

EMBODIMENTS = ("franka_droid", "agibot_g1", "yam")


def raw(name: str) -> dict:
    return yaml.safe_load((config_dir() / f"{name}.yaml").read_text())


def write(tmp_path: Path, data: dict, name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("name", EMBODIMENTS)
def test_each_shipped_embodiment_loads(name):
    cfg = load_embodiment(name)
    assert cfg.name == name
    assert len(cfg.cameras) == 3
    assert cfg.stitch.frame_size == (352, 640)
    # released recipe: 24 control periods per chunk, 8 video frames at a stride of 3 periods
    assert cfg.control.horizon == 24 and cfg.video.frames_per_chunk == 8
    assert abs(cfg.control.chunk_duration - 24 / cfg.control.rate_hz) < 1e-9
    assert abs(cfg.video.fps - cfg.control.rate_hz / 3) < 1e-9
    assert set(cfg.joint_limits) >= set(cfg.action_joints)


def test_shipped_embodiments_are_discoverable_by_name():
    assert set(EMBODIMENTS) <= set(available_embodiments())


def test_the_facts_of_each_embodiment_are_in_its_config():
    droid, g1, yam = (load_embodiment(n) for n in EMBODIMENTS)
    assert (droid.control.rate_hz, droid.control.horizon) == (15, 24)
    assert (g1.control.rate_hz, g1.control.horizon) == (30, 24)
    assert (yam.control.rate_hz, yam.control.horizon) == (30, 24)
    # released recipe timing (DREAMZERO_FACTS.md): DROID 1.6 s at 5 fps, AgiBot G1 and YAM 0.8 s at 10 fps
    assert (droid.control.chunk_duration, droid.video.fps) == (1.6, 5)
    assert (g1.control.chunk_duration, g1.video.fps) == (0.8, 10)
    assert (yam.control.chunk_duration, yam.video.fps) == (0.8, 10)
    assert droid.stitch.layout == "droid" and g1.stitch.layout == yam.stitch.layout == "grid_2x2"
    assert [c.source_size for c in droid.cameras] == [(180, 320)] * 3
    assert [c.source_size for c in g1.cameras] == [(480, 640)] * 3
    assert len(droid.state_joints) == 8 and len(droid.action_joints) == 8
    assert [g.relative for g in droid.action] == [True, False]
    assert len(g1.state_joints) == 20 and len(g1.action_joints) == 20
    assert [e.name for e in g1.extra_actions] == ["robot_velocity"]
    assert len(yam.state_joints) == 14 and all(g.relative for g in yam.action)
    assert {droid.command.interface, g1.command.interface, yam.command.interface} == {
        "forward_position", "joint_trajectory", "joint_state"}
    assert droid.cameras[0].wire_key == "exterior_image_0_left"


def test_group_names_are_the_released_statistics_keys_in_the_released_concatenation_order():
    droid, g1, yam = (load_embodiment(n) for n in EMBODIMENTS)
    # DREAMZERO_FACTS.md, "Checkpoint statistics keys (and concatenation order) of the release"
    assert [(g.name, len(g.joints)) for g in droid.state] == [("joint_position", 7), ("gripper_position", 1)]
    assert [g.name for g in droid.action] == ["joint_position", "gripper_position"]
    g1_groups = [("left_arm_joint_position", 7), ("right_arm_joint_position", 7), ("left_effector_position", 1),
                 ("right_effector_position", 1), ("head_position", 2), ("waist_position", 2)]
    assert [(g.name, len(g.joints)) for g in g1.state] == g1_groups
    assert [(g.name, len(g.joints)) for g in g1.action] == g1_groups
    assert [(g.name, len(g.components)) for g in g1.extra_actions] == [("robot_velocity", 2)]
    yam_groups = [("left_joint_pos", 6), ("left_gripper_pos", 1), ("right_joint_pos", 6), ("right_gripper_pos", 1)]
    assert [(g.name, len(g.joints)) for g in yam.state] == yam_groups
    assert [(g.name, len(g.joints)) for g in yam.action] == yam_groups


def test_prompt_template_wraps_and_lower_cases_the_instruction():
    prompt = load_embodiment("franka_droid").format_prompt("Pick up the Cup")
    assert prompt.startswith("a multi-view video shows that a robot pick up the cup.")
    assert prompt.endswith("the robot pick up the cup.")


def test_effector_mapping_round_trips_between_joint_and_model_units():
    eff = load_embodiment("franka_droid").effector("panda_finger_joint1")
    assert eff.to_model(0.04) == pytest.approx(0.0) and eff.to_model(0.0) == pytest.approx(1.0)
    assert eff.to_joint(eff.to_model(0.013)) == pytest.approx(0.013)


def _set(path: str, value):
    def mutate(d: dict) -> None:
        keys = path.split(".")
        node = d
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if value is _DELETE:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


_DELETE = object()

# (case id, embodiment, mutation, expected field, expected message fragment)
MALFORMED = [
    ("missing field", "franka_droid", _set("control", _DELETE), "control", "missing required field"),
    ("wrong type", "franka_droid", _set("control.horizon", "24"), "control.horizon", "expected an integer"),
    ("joint not in urdf", "franka_droid", _set("state.0.joints.6", "panda_joint99"), r"state\[0\]\.joints\[6\]",
     "not a movable joint"),
    ("horizon dt mismatch", "franka_droid", _set("control.horizon", 30), "control.chunk_duration", "horizon x dt"),
    ("unknown layout", "yam", _set("stitch.layout", "grid_3x3"), "stitch.layout", "expected one of"),
    ("negative rate", "agibot_g1", _set("control.rate_hz", -30), "control.rate_hz", "positive"),
    ("limits reversed", "franka_droid", _set("joint_limits.panda_joint1.position", [2.0, -2.0]),
     r"joint_limits\.panda_joint1\.position", "lower limit must be below upper"),
    ("duplicate joint", "yam", _set("state.2.joints.0", "left_joint1"), r"state\[2\]\.joints\[0\]", "duplicate joint"),
    ("unknown key", "franka_droid", _set("control.rate", 15), "control.rate", "unknown key"),
    ("bad topic", "franka_droid", _set("cameras.1.topic", "camera/no_slash"), r"cameras\[1\]\.topic",
     "absolute ROS topic"),
    ("empty topic", "franka_droid", _set("cameras.1.topic", ""), r"cameras\[1\]\.topic", "non-empty string"),
    ("unknown interface", "agibot_g1", _set("command.interface", "effort"), "command.interface", "expected one of"),
    ("unknown stale policy", "franka_droid", _set("stitch.stale_policy", "freeze"), "stitch.stale_policy",
     "expected one of"),
    ("missing limits", "franka_droid", _set("joint_limits.panda_joint7", _DELETE), "joint_limits",
     "missing limits for joint 'panda_joint7'"),
    ("limits beyond urdf", "franka_droid", _set("joint_limits.panda_joint1.position", [-4.0, 2.0]),
     r"joint_limits\.panda_joint1\.position", "exceeds the URDF limits"),
    ("velocity not positive", "yam", _set("joint_limits.left_joint1.velocity", 0), r"joint_limits\.left_joint1\.velocity",
     "positive"),
    ("relative joint not in state", "agibot_g1", _set("state.3", _DELETE), r"action\[3\]\.joints\[0\]",
     "must also be in the state vector"),
    ("camera frame not in urdf", "yam", _set("cameras.0.frame", "nowhere_link"), r"cameras\[0\]\.frame",
     "not in the URDF"),
    ("template without placeholder", "yam", _set("prompt_template", "do something"), "prompt_template",
     "placeholder"),
    ("wrong camera count", "franka_droid", _set("cameras.2", _DELETE), "cameras", "exactly 3 views"),
    ("bool as number", "franka_droid", _set("video.fps", True), "video.fps", "finite number"),
    ("extra limits count", "agibot_g1", _set("extra_actions.0.limits", [[-1, 1]]), r"extra_actions\[0\]\.limits",
     "expected 2"),
    ("missing urdf", "franka_droid", _set("urdf", "no_such_robot.urdf"), "urdf", "not found"),
    ("demo without task", "franka_droid", _set("demo.task", _DELETE), r"demo\.task", "missing required field"),
    ("demo unknown key", "franka_droid", _set("demo.weights", "x"), "demo.weights", "unknown key"),
    ("demo empty checkpoint", "franka_droid", _set("demo.checkpoint", ""), "demo.checkpoint", "non-empty string"),
]


@pytest.mark.parametrize(("case", "name", "mutate", "field", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_config_fails_naming_the_file_and_the_field(tmp_path, case, name, mutate, field, fragment):
    data = copy.deepcopy(raw(name))
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=rf"^{path}: {field}: .*{fragment}") as info:
        load_embodiment(path)
    assert info.value.source == str(path)


def test_invalid_yaml_syntax_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{path}: invalid YAML"):
        load_embodiment(path)


def test_an_unknown_embodiment_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown embodiment 'nao'.*franka_droid"):
        load_embodiment("nao")


def test_a_checkpoint_with_other_chunk_timing_is_refused_naming_both_values():
    g1 = load_embodiment("agibot_g1")
    # the released recipe: 24 steps at 30 Hz, 8 frames per chunk = 10 fps -> agrees
    check_checkpoint_timing(g1, horizon=24, control_rate_hz=30.0, video_fps=10.0, frames_per_chunk=8, source="ckpt")
    # a checkpoint trained with the paper's 48-step AgiBot setting
    with pytest.raises(ConfigError, match=r"control\.horizon is 24 in the config but 48 in the checkpoint \(ckpt/a\)"):
        check_checkpoint_timing(g1, horizon=48, source="ckpt/a")
    with pytest.raises(ConfigError, match=r"control\.rate_hz is 30 in the config but 15 in the checkpoint.*"
                                          r"video\.fps is 10 in the config but 5 in the checkpoint"):
        check_checkpoint_timing(g1, horizon=24, control_rate_hz=15.0, video_fps=5.0, source="ckpt/b")
    # values a checkpoint does not state are not checked
    check_checkpoint_timing(load_embodiment("yam"), horizon=24, source="own save")


def test_the_demo_section_names_a_task_and_a_checkpoint_that_ships_and_defaults_to_the_free_loop():
    franka = load_embodiment("franka_droid").demo
    assert (franka.task, franka.checkpoint) == ("reach", "franka_droid_sim_small_reach_push_forward")
    shipped = resolve_checkpoint(franka.checkpoint)
    assert shipped == config_dir().parent / "checkpoints" / "franka_droid_sim_small_reach_push_forward"
    assert (shipped / "experiment_cfg" / "metadata.json").is_file()
    for name in ("agibot_g1", "yam"):  # no `demo:` section
        assert (load_embodiment(name).demo.task, load_embodiment(name).demo.checkpoint) == ("none", None)


def test_a_checkpoint_name_is_found_next_to_an_installed_config_and_a_missing_one_names_where_it_looked(
        tmp_path, monkeypatch):
    import dreamzero_ros.core.embodiment as embodiment

    share = tmp_path / "share" / "dreamzero_ros"
    (share / "config").mkdir(parents=True)
    (share / "checkpoints" / "arm_small").mkdir(parents=True)
    (share / "checkpoints" / "arm_small" / "config.json").write_text("{}")
    monkeypatch.setattr(embodiment, "config_dir", lambda: share / "config")
    assert resolve_checkpoint("arm_small") == share / "checkpoints" / "arm_small"
    assert resolve_checkpoint(str(share / "checkpoints" / "arm_small")) == share / "checkpoints" / "arm_small"
    with pytest.raises(FileNotFoundError, match=rf"checkpoint 'arm_large': no config.json in {share}/checkpoints/arm_large"):
        resolve_checkpoint("arm_large")
    (share / "checkpoints" / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="checkpoint 'empty': no config.json"):
        resolve_checkpoint("empty")
