"""Simulated tasks: seeded episodes, success predicates on hand-placed states, the scripted expert vs holding still.

Pure MuJoCo (no ROS, no rendering).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import dreamzero_ros.sim  # noqa: F401 - chooses the headless GL backend before mujoco is first imported
from dreamzero_ros.core.embodiment import load_embodiment

pytest.importorskip("mujoco")
from dreamzero_ros.sim.expert import ScriptedExpert, hold_still, rollout
from dreamzero_ros.sim.robot import SimRobot
from dreamzero_ros.sim.tasks import (
    CUBE_HALF,
    FORWARD_DISTANCE,
    MIN_OBJECT_GAP,
    MIN_PAD_DISTANCE,
    PAD_NAME,
    PUSH_LANE,
    TASKS,
    WORKSPACE_X,
    WORKSPACE_Y,
    is_success,
    reset_episode,
    sample_episode,
    task_layout,
    tcp_at,
    tcp_position,
)

EMB = load_embodiment("franka_droid")
FINGER_ORIGIN_TO_TIP = 0.052  # m: URDF finger box centre 0.027 + half length 0.025 along the hand's z


@pytest.fixture(scope="module")
def robot():
    sim = SimRobot(EMB, layout=task_layout(EMB))
    yield sim
    sim.close()


def _fingertips(sim: SimRobot) -> np.ndarray:
    """Midpoint of the two fingertips, from the finger bodies (not from the task code's tool centre point)."""
    d = sim.data
    mid = 0.5 * (d.body("panda_leftfinger").xpos + d.body("panda_rightfinger").xpos)
    return mid + d.body("panda_hand").xmat.reshape(3, 3)[:, 2] * FINGER_ORIGIN_TO_TIP


def test_an_episode_is_a_pure_function_of_task_and_seed_and_respects_the_placement_rules() -> None:
    for task in TASKS:
        episodes = [sample_episode(EMB, task, seed) for seed in range(6)]
        assert sample_episode(EMB, task, 3) == episodes[3]
        assert len({tuple(e.objects[e.target]) for e in episodes}) == 6, "every seed places the cube anew"
        for e in episodes:
            assert e.colour in e.instruction and "cube" in e.instruction
            xy = np.array(list(e.objects.values()))
            assert np.all((xy[:, 0] >= WORKSPACE_X[0]) & (xy[:, 0] <= WORKSPACE_X[1]))
            assert np.all((xy[:, 1] >= WORKSPACE_Y[0]) & (xy[:, 1] <= WORKSPACE_Y[1]))
            gaps = [np.linalg.norm(xy[i] - xy[j]) for i in range(3) for j in range(i + 1, 3)]
            assert min(gaps) >= MIN_OBJECT_GAP
            _assert_pushable(e)


def _assert_pushable(e) -> None:
    """push_forward: nothing in the way of the named cube's slide to +x; every other task: the pad far enough."""
    x, y = e.objects[e.target]
    if e.task != "push_forward":
        assert np.linalg.norm(np.array(e.pad) - np.array([x, y])) >= MIN_PAD_DISTANCE
        return
    # The lane runs along +x from behind the cube (a cube half and 5 cm) to 12 cm ahead of it.
    for name, (ox, oy) in e.objects.items():
        if name != e.target:
            along = min(max(ox, x - CUBE_HALF - 0.05), x + 0.12)
            assert np.hypot(ox - along, oy - y) >= PUSH_LANE, f"seed {e.seed}: {name} blocks the push"


def test_naming_a_colour_keeps_the_seeds_scene_and_start_with_every_cube_a_valid_target() -> None:
    colours = ("red", "green", "blue")
    for task in TASKS:
        for seed in range(4):
            episodes = [sample_episode(EMB, task, seed, colour) for colour in colours]
            for colour, e in zip(colours, episodes, strict=True):
                assert e.colour == colour and f"the {colour} cube" in e.instruction and e.target.startswith(colour)
                assert e.objects == episodes[0].objects and e.pad == episodes[0].pad and e.start == episodes[0].start
                _assert_pushable(e)  # whichever cube is named
    with pytest.raises(ValueError, match="colour must be one of .*got 'purple'"):
        sample_episode(EMB, "reach", 0, "purple")


def test_shared_scenes_give_every_task_of_a_seed_one_scene_that_each_tasks_rules_accept() -> None:
    pair = ("reach", "push_forward")
    for seed in range(6):
        for colour in ("red", "green", "blue"):
            reach, push = (sample_episode(EMB, task, seed, colour, scene_tasks=pair) for task in pair)
            assert reach.objects == push.objects and reach.pad == push.pad and reach.start == push.start
            assert (reach.instruction, push.instruction) == (f"touch the {colour} cube", f"push the {colour} cube forward")
            _assert_pushable(reach)  # the pad far from the named cube ...
            _assert_pushable(push)  # ... and the lane ahead of it clear
    # one task's own scene is what it draws without scene_tasks
    assert sample_episode(EMB, "reach", 3, scene_tasks=("reach",)) == sample_episode(EMB, "reach", 3)
    with pytest.raises(ValueError, match="must include the episode's task 'lift'"):
        sample_episode(EMB, "lift", 0, scene_tasks=pair)
    with pytest.raises(ValueError, match="unknown task 'stack'"):
        sample_episode(EMB, "reach", 0, scene_tasks=("reach", "stack"))


def test_bad_task_names_and_seeds_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown task 'stack'"):
        sample_episode(EMB, "stack", 0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        sample_episode(EMB, "reach", -1)


def test_the_demo_scene_is_unchanged_and_refuses_a_task_reset() -> None:
    with SimRobot(EMB) as sim:
        names = {sim.model.body(i).name for i in range(sim.model.nbody)}
        assert {"red_cube", "green_cylinder", "blue_block", "yellow_puck"} <= names
        assert PAD_NAME not in names
        with pytest.raises(ValueError, match="task_layout"):
            reset_episode(sim, "reach", 0)


def test_reset_puts_the_arm_at_the_episode_start_and_the_cubes_and_pad_where_the_episode_says(robot) -> None:
    episode = reset_episode(robot, "push", 4)
    q = robot.joint_positions()
    for joint, value in episode.start.items():
        assert q[joint] == pytest.approx(value, abs=1e-9)
    for name, (x, y) in episode.objects.items():
        assert robot.body_position(name) == pytest.approx([x, y, CUBE_HALF + 1e-4], abs=1e-6)
    assert robot.body_position(PAD_NAME)[:2] == pytest.approx(episode.pad, abs=1e-9)


def test_tcp_at_is_forward_kinematics_on_a_copy_turning_the_base_joint_turns_the_point_about_its_axis(robot) -> None:
    reset_episode(robot, "reach", 3)
    q0, here, tips = robot.joint_positions(), tcp_position(robot), _fingertips(robot)
    assert tcp_at(robot, {}) == pytest.approx(here, abs=1e-12)
    axis = robot.data.joint("panda_joint1").xanchor[:2].copy()  # a vertical axis through the base
    turn = 0.4
    turned = tcp_at(robot, {"panda_joint1": q0["panda_joint1"] + turn})
    before, after = here[:2] - axis, turned[:2] - axis
    assert np.linalg.norm(after) == pytest.approx(np.linalg.norm(before), abs=1e-3)
    assert np.arctan2(after[1], after[0]) - np.arctan2(before[1], before[0]) == pytest.approx(turn, abs=1e-3)
    assert turned[2] == pytest.approx(here[2], abs=1e-3)
    assert robot.joint_positions() == q0 and _fingertips(robot) == pytest.approx(tips, abs=1e-12)  # untouched
    with pytest.raises(ValueError, match="no joint 'elbow'"):
        tcp_at(robot, {"elbow": 0.0})


def test_reach_succeeds_with_the_cube_just_under_the_fingertips_and_fails_with_it_elsewhere(robot) -> None:
    episode = reset_episode(robot, "reach", 0)
    tip = _fingertips(robot)
    robot.place({episode.target: tip + np.array([0.0, 0.0, -CUBE_HALF])})  # top face touching the fingertips
    assert is_success(robot, episode)
    robot.place({episode.target: tip + np.array([0.0, 0.0, -CUBE_HALF - 0.05])})  # 5 cm below them
    assert not is_success(robot, episode)
    other = next(name for name in episode.objects if name != episode.target)
    robot.place({other: tip + np.array([0.0, 0.0, -CUBE_HALF]), episode.target: (*episode.objects[episode.target],
                                                                                  CUBE_HALF)})
    assert not is_success(robot, episode), "touching another colour's cube is not success"


def test_push_succeeds_with_the_cube_on_the_pad_only(robot) -> None:
    episode = reset_episode(robot, "push", 1)
    px, py = episode.pad
    robot.place({episode.target: (px + 0.03, py - 0.03, CUBE_HALF)})  # 4.2 cm off centre: on the pad
    assert is_success(robot, episode)
    robot.place({episode.target: (px + 0.06, py, CUBE_HALF)})  # half its width over the pad's edge
    assert not is_success(robot, episode)
    robot.place({episode.target: (px, py, CUBE_HALF + 0.1)})  # above the pad, not on it
    # False itself, not numpy's: sim_robot publishes it as JSON on /sim/task (a numpy bool stopped the node when
    # a random policy knocked the cube off the table)
    assert is_success(robot, episode) is False
    assert json.loads(json.dumps({"success": is_success(robot, episode)})) == {"success": False}


def test_push_forward_succeeds_once_the_named_cube_slid_far_enough_away_from_the_robot_on_the_table(robot) -> None:
    episode = reset_episode(robot, "push_forward", 3)
    assert episode.instruction == f"push the {episode.colour} cube forward"
    x, y = episode.objects[episode.target]
    assert not is_success(robot, episode)
    robot.place({episode.target: (x + FORWARD_DISTANCE + 0.005, y + 0.02, CUBE_HALF)})  # 8.5 cm on, a bit aside
    assert is_success(robot, episode) is True
    robot.place({episode.target: (x + FORWARD_DISTANCE - 0.005, y, CUBE_HALF)})  # 7.5 cm is short
    assert not is_success(robot, episode)
    robot.place({episode.target: (x, y + 0.1, CUBE_HALF)})  # 10 cm sideways is not forward
    assert not is_success(robot, episode)
    robot.place({episode.target: (x + 0.1, y, CUBE_HALF + 0.1)})  # carried, not slid
    assert not is_success(robot, episode)
    robot.place({episode.target: (x - 0.1, y, CUBE_HALF)})  # pulled towards the robot
    assert not is_success(robot, episode)
    robot.place({episode.target: (x, y, CUBE_HALF)})
    other = next(name for name in episode.objects if name != episode.target)
    ox, oy = episode.objects[other]
    robot.place({other: (ox + 0.1, oy, CUBE_HALF)})
    assert not is_success(robot, episode), "pushing another colour's cube forward is not success"


def test_lift_succeeds_with_the_cube_held_high_and_fails_with_it_on_the_table(robot) -> None:
    episode = reset_episode(robot, "lift", 2)
    assert not is_success(robot, episode)
    x, y = episode.objects[episode.target]
    robot.place({episode.target: (x, y, CUBE_HALF + 0.1)})
    assert is_success(robot, episode)
    robot.place({episode.target: (x, y, CUBE_HALF + 0.03)})  # 3 cm up is not a lift
    assert not is_success(robot, episode)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_scripted_expert_solves_the_task_and_holding_still_does_not(robot, task: str) -> None:
    for seed in (100, 101):
        episode = reset_episode(robot, task, seed)
        result = rollout(robot, episode, ScriptedExpert(robot, episode))
        assert result.success, f"{task} seed {seed}: expert failed"
        assert is_success(robot, episode), "still solved at the end of the settle time"
        assert result.states.shape == (len(result.actions), len(EMB.state_joints))
        assert result.actions.shape[1] == len(EMB.action_joints)
        assert np.all(np.isfinite(result.actions))

        episode = reset_episode(robot, task, seed)
        still = rollout(robot, episode, hold_still)
        assert not still.success, f"{task} seed {seed}: holding still counted as success"
        assert len(still.actions) == round(episode.max_duration * EMB.control.rate_hz)


def test_perturbed_demonstrations_leave_the_nominal_path_yet_record_the_experts_clean_targets(robot) -> None:
    episode = reset_episode(robot, "reach", 3)
    clean = rollout(robot, episode, ScriptedExpert(robot, episode), stop_on_success=False)
    episode = reset_episode(robot, "reach", 3)
    expert = ScriptedExpert(robot, episode)
    labels: list[np.ndarray] = []

    def recording_expert(sim: SimRobot) -> np.ndarray:
        labels.append(expert(sim))
        return labels[-1]

    noisy = rollout(robot, episode, recording_expert, stop_on_success=False, action_noise=0.02, noise_seed=1)
    assert noisy.success
    np.testing.assert_array_equal(noisy.actions, np.array(labels))  # recorded: what the expert asked for
    deviation = np.abs(noisy.states[:, :7] - clean.states[:, :7]).max()
    assert deviation > 0.005, f"noise on the executed targets moved the arm off the clean path ({deviation:.4f} rad)"


def test_drifting_demonstrations_are_off_over_the_cube_and_back_on_it_before_coming_down(robot) -> None:
    def tracked(expert: ScriptedExpert, path: list[np.ndarray]):
        def policy(sim: SimRobot) -> np.ndarray:
            path.append(tcp_position(sim))
            return expert(sim)

        return policy

    episode = reset_episode(robot, "reach", 3)
    clean_path: list[np.ndarray] = []
    clean = rollout(robot, episode, tracked(ScriptedExpert(robot, episode), clean_path), stop_on_success=False)
    episode = reset_episode(robot, "reach", 3)
    expert = ScriptedExpert(robot, episode, drift=0.03, drift_seed=1)
    path: list[np.ndarray] = []
    drifted = rollout(robot, episode, tracked(expert, path), stop_on_success=False, executed=expert.executed_action)
    assert drifted.success
    np.testing.assert_array_equal(drifted.actions, clean.actions)  # recorded: the expert's clean targets
    clean_path_, path_ = np.array(clean_path), np.array(path)
    off = np.linalg.norm(path_[:, :2] - clean_path_[:, :2], axis=1)
    cube_top = robot.layout.table_top + 2 * CUBE_HALF
    high = clean_path_[:, 2] > cube_top + 0.08
    at_cube = clean_path_[:, 2] < cube_top
    assert high.any() and at_cube.any()
    assert off[high].max() > 0.02, f"the hand stayed within {off[high].max():.3f} m of the clean path while high"
    # the servos lag the targets, so the last centimetre of drift is still fading as the fingers pass the top
    assert off[at_cube].max() < 0.015, f"the hand came down {off[at_cube].max():.3f} m off the clean path"
    assert off[-10:].max() < 0.005, "the drifted hand did not end where the clean one did"
    with pytest.raises(ValueError, match="drift"):
        ScriptedExpert(robot, episode, drift=-0.01)
