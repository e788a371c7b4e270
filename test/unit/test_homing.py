"""Homing to the start pose and the arming check against the last command."""

from __future__ import annotations

import numpy as np
import pytest

from dreamzero_ros.core.chunk import RawChunk
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.executor import ExecutorCore, ExecutorSettings
from dreamzero_ros.core.homing import HomingPath

FRANKA = load_embodiment("franka_droid")
NAMES = FRANKA.action_joints
DT = FRANKA.control.dt
LO, HI, VEL = FRANKA.limits_arrays()
# DROID's reset pose as written in config/franka_droid.yaml (home.pose), finger open.
START_POSE = np.array([0.0, -0.6283, 0.0, -2.5133, 0.0, 1.885, 0.7854, 0.04])
SPEED = 0.1 * VEL  # home.velocity_scale 0.1 of the joint_limits velocities
PLAIN = ExecutorSettings(crossfade_steps=0, smoothing=False)


def test_the_shipped_configs_have_a_start_pose_inside_their_limits():
    np.testing.assert_array_equal(FRANKA.home_array(), START_POSE)
    assert FRANKA.home.velocity_scale == 0.1
    for name in ("agibot_g1", "yam"):
        emb = load_embodiment(name)
        lo, hi, _ = emb.limits_arrays()
        pose = emb.home_array()
        assert pose.shape == (len(emb.action_joints),) and np.all((lo <= pose) & (pose <= hi))


def test_a_homing_path_takes_15_8_of_the_slowest_joints_mean_time_and_never_exceeds_its_speed():
    start = START_POSE.copy()
    start[1] += 0.5  # joint 2 is 0.5 rad away; at 0.2175 rad/s the mean-speed time is 2.299 s
    start[6] -= 0.1  # joint 7: 0.1 rad at 0.261 rad/s needs less
    path = HomingPath.plan(start, START_POSE, SPEED, t0=3.0)
    assert path.duration == pytest.approx(15 / 8 * 0.5 / 0.2175)
    t = np.linspace(2.0, path.end + 1.0, 20001)
    v = path.velocities(t)
    assert np.all(np.abs(v) <= SPEED * (1 + 1e-9))
    # the slowest joint reaches exactly its speed, at the middle
    assert np.abs(v[:, 1]).max() == pytest.approx(SPEED[1], rel=1e-6)
    np.testing.assert_allclose(path.positions(2.0), start)
    np.testing.assert_allclose(path.positions(path.end), START_POSE)
    np.testing.assert_allclose(path.velocities(np.array([3.0, path.end])), 0.0, atol=1e-12)
    # positions and velocities agree (central differences of the positions)
    h = 1e-5
    mid = np.array([3.5, 4.2, 5.0])
    np.testing.assert_allclose((path.positions(mid + h) - path.positions(mid - h)) / (2 * h), path.velocities(mid),
                               atol=1e-6)
    times, rows = path.samples(3.0, DT)
    assert times[-1] == pytest.approx(path.end) and np.all(np.diff(times) > 0)
    np.testing.assert_allclose(rows[-1], START_POSE)


def away_core(offset: float = 0.4, settings: ExecutorSettings = PLAIN) -> tuple[ExecutorCore, np.ndarray]:
    core = ExecutorCore(FRANKA, settings)
    away = START_POSE.copy()
    away[:7] += offset
    assert core.on_joint_state(NAMES, away, 10.0).ok
    return core, away


def test_home_drives_to_the_start_pose_at_the_configured_speed_then_is_idle_and_can_arm():
    core, away = away_core()
    verdict = core.home(10.0)
    assert verdict.ok and "s to the start pose" in verdict.message
    assert core.status().state == "homing"
    expected_duration = 15 / 8 * 0.4 / SPEED[:7].min()
    previous, t, commands = away, 10.0, []
    while core.status().state == "homing":
        t += DT
        cmd = core.tick(t)
        assert cmd is not None and cmd.source == "home" and not cmd.holding
        step = np.abs(cmd.positions - previous)
        assert np.all(step <= SPEED * DT * (1 + 1e-9)), step / DT
        previous = cmd.positions
        commands.append(cmd)
        assert t < 10.0 + expected_duration + 2 * DT
    np.testing.assert_allclose(commands[-1].positions, START_POSE, atol=1e-12)
    status = core.status()
    assert status.state == "idle" and "start pose" in status.reason and not status.armed
    assert core.tick(t + DT) is None  # idle again: nothing more is sent
    core.on_joint_state(NAMES, START_POSE, t + DT)
    assert core.arm(t + DT).ok


def test_a_stalled_tick_pauses_homing_instead_of_catching_up_at_the_velocity_limit():
    # A process stalled (or a VM frozen) for 2 s in the middle of a 3.4 s homing path: on resuming,
    # each command is still at most the homing speed x dt from the one before, and the path takes
    # as many ticks as without the stall: the stall is a pause, not a skip.
    core, away = away_core()
    assert core.home(10.0).ok
    duration = 15 / 8 * 0.4 / SPEED[:7].min()
    previous, t, ticks = away, 10.0, 0
    while core.status().state == "homing":
        t += DT + (2.0 if ticks == 10 else 0.0)
        cmd = core.tick(t)
        assert cmd is not None and cmd.source == "home"
        step = np.abs(cmd.positions - previous)
        assert np.all(step <= SPEED * DT * (1 + 1e-9)), step / DT
        previous, ticks = cmd.positions, ticks + 1
        assert ticks < duration / DT + 3
    assert ticks >= duration / DT - 1
    np.testing.assert_allclose(previous, START_POSE, atol=1e-12)


def test_arming_is_refused_far_from_the_last_command_and_says_to_home_first():
    core, away = away_core(offset=0.0)
    core.home(10.0)
    core.tick(10.1)  # already there: one command at the start pose ends homing
    assert core.status().state == "idle"
    pushed = START_POSE.copy()
    pushed[3] += 0.15  # > arm_tolerance 0.1 rad
    core.on_joint_state(NAMES, pushed, 10.2)
    verdict = core.arm(10.2)
    assert not verdict.ok and "panda_joint4" in verdict.message and "home first" in verdict.message
    # the gripper is not checked (a grasped object keeps it from its command)
    gripping = START_POSE.copy()
    gripping[7] = 0.0
    core.on_joint_state(NAMES, gripping, 10.3)
    assert core.arm(10.3).ok


def test_while_homing_chunks_are_not_executed_arming_is_refused_and_disarm_cancels():
    core, away = away_core()
    core.home(10.0)
    rows = np.tile(away, (24, 1))
    assert core.on_chunk(RawChunk(10.0, NAMES, DT, 24, rows.ravel(), chunk_id=7), 10.0).ok
    cmd = core.tick(10.1)
    assert cmd.source == "home" and cmd.chunk_id is None
    refused = core.arm(10.1)
    assert not refused.ok and "homing" in refused.message
    assert core.disarm(10.2).ok
    assert core.tick(10.3) is None and core.status().state == "idle" and "cancelled" in core.status().reason


def test_the_e_stop_interrupts_homing_and_holds_its_last_command():
    core, _ = away_core()
    core.home(10.0)
    for k in range(1, 6):
        last = core.tick(10.0 + k * DT)
    core.estop(10.0 + 5.5 * DT)
    held = core.tick(10.0 + 6 * DT)
    assert held.holding and core.status().state == "stopped"
    np.testing.assert_array_equal(held.positions, last.positions)
    assert not core.home(10.5).ok  # refused while the e-stop is latched


@pytest.mark.parametrize("setup, needle", [
    ("armed", "disarm before homing"),
    ("estopped", "e-stop"),
    ("no_state", "no joint state"),
])
def test_homing_is_refused_when_armed_e_stopped_or_without_a_joint_state(setup, needle):
    core = ExecutorCore(FRANKA, PLAIN)
    if setup != "no_state":
        core.on_joint_state(NAMES, START_POSE, 10.0)
    if setup == "armed":
        core.arm(10.0)
    if setup == "estopped":
        core.estop(10.0)
    verdict = core.home(10.0)
    assert not verdict.ok and needle in verdict.message


def _home_yaml(tmp_path, mutate) -> str:
    import copy

    import yaml

    from dreamzero_ros.core.embodiment import config_dir

    data = copy.deepcopy(yaml.safe_load((config_dir() / "franka_droid.yaml").read_text()))
    mutate(data["home"])
    path = tmp_path / "bad_home.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.mark.parametrize(("mutate", "field", "fragment"), [
    (lambda h: h["pose"].pop("panda_joint3"), r"home\.pose", r"missing positions for action joints \['panda_joint3'\]"),
    (lambda h: h["pose"].update(elbow=0.0), r"home\.pose", r"\['elbow'\] are not action joints"),
    (lambda h: h["pose"].update(panda_joint4=0.5), r"home\.pose\.panda_joint4", r"outside joint_limits"),
    (lambda h: h.update(velocity_scale=1.5), r"home\.velocity_scale", r"\(0, 1\]"),
    (lambda h: h.pop("velocity_scale"), r"home\.velocity_scale", "missing required field"),
], ids=["missing joint", "unknown joint", "outside limits", "scale above 1", "no scale"])
def test_a_malformed_home_section_fails_naming_the_file_and_the_field(tmp_path, mutate, field, fragment):
    from dreamzero_ros.core.embodiment import ConfigError

    path = _home_yaml(tmp_path, mutate)
    with pytest.raises(ConfigError, match=rf"^{path}: {field}: .*{fragment}"):
        load_embodiment(path)


def test_without_a_home_section_homing_is_refused_saying_why(tmp_path):
    import yaml

    from dreamzero_ros.core.embodiment import config_dir

    data = yaml.safe_load((config_dir() / "franka_droid.yaml").read_text())
    del data["home"]
    path = tmp_path / "no_home.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    core = ExecutorCore(load_embodiment(str(path)), PLAIN)
    core.on_joint_state(NAMES, START_POSE, 1.0)
    verdict = core.home(1.0)
    assert not verdict.ok and "home:" in verdict.message
