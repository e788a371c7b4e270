"""backends/expert.py: the scripted expert behind the PolicyBackend interface, checked in the simulator without ROS.

Its chunks, applied row by row to a SimRobot in the episode (a new chunk every 20 control periods, as the inference
node asks ahead of the 24-row chunk's end), must solve the episode by the task's own predicate; a chunk must be a
window of one time-indexed plan (the same target at the same time whichever chunk carries it); and it refuses to
act without the simulator's episode or on another instruction.
"""

from __future__ import annotations

import numpy as np
import pytest

import dreamzero_ros.sim  # noqa: F401 - headless GL before mujoco
from dreamzero_ros.backends import make_backend
from dreamzero_ros.backends.base import BackendError, Observation
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.sim.robot import SimRobot
from dreamzero_ros.sim.tasks import CUBE_HALF, is_success, reset_episode, task_layout

EMB = load_embodiment("franka_droid")
FRAMES = np.zeros((1, 8, 8, 3), np.uint8)  # the expert never looks at images


def sim_task(episode) -> dict:
    """The /sim/task JSON state sim_robot publishes for a freshly reset episode."""
    return {"task": episode.task, "seed": episode.seed, "instruction": episode.instruction, "success": False,
            "objects": {name: [x, y, CUBE_HALF] for name, (x, y) in episode.objects.items()},
            "pad": list(episode.pad)}


def state_of(robot: SimRobot) -> np.ndarray:
    q = robot.joint_positions()
    return np.array([q[j] for j in EMB.state_joints])


@pytest.fixture(scope="module")
def robot():
    with SimRobot(EMB, layout=task_layout(EMB)) as r:
        yield r


@pytest.mark.parametrize(("task", "seed"), [("reach", 1_000_000), ("reach", 1_000_001), ("lift", 1_000_000)])
def test_the_expert_backends_chunks_solve_the_episode_in_the_simulator(robot, task, seed):
    episode = reset_episode(robot, task, seed)
    backend = make_backend("expert", EMB)
    backend.set_sim_task(sim_task(episode))
    backend.set_instruction(episode.instruction)
    backend.reset()
    dt, t0 = EMB.control.dt, 1000.0
    assert not is_success(robot, episode), "the episode starts unsolved"
    solved_at = None
    for k in range(int(round(episode.max_duration / dt))):
        if k % 20 == 0:
            chunk = backend.infer(Observation(t0 + k * dt, FRAMES, state_of(robot)))
            assert chunk.positions.shape == (EMB.control.horizon, len(EMB.action_joints))
            assert chunk.joint_names == EMB.action_joints and chunk.dt == dt
            first = k
        robot.set_targets(EMB.action_joints, chunk.positions[k - first])
        robot.step(dt)
        if is_success(robot, episode):
            solved_at = (k + 1) * dt
            break
    assert solved_at is not None, f"{task} seed {seed} not solved within {episode.max_duration} s"
    assert backend.episode_seed == seed


def test_a_chunk_is_a_window_of_one_time_indexed_plan(robot):
    episode = reset_episode(robot, "reach", 1_000_002)
    backend = make_backend("expert", EMB)
    backend.set_sim_task(sim_task(episode))
    dt, t0 = EMB.control.dt, 50.0
    a = backend.infer(Observation(t0, FRAMES, state_of(robot))).positions
    # A later request (another state: the plan is made once per episode) 5 periods on: rows shifted by 5.
    b = backend.infer(Observation(t0 + 5 * dt, FRAMES, state_of(robot) + 0.05)).positions
    np.testing.assert_allclose(b[:-5], a[5:])
    assert not np.allclose(a[0], a[-1]), "the arm moves within a chunk"
    # Long after the plan's end the chunk holds its last target.
    late = backend.infer(Observation(t0 + 100.0, FRAMES, state_of(robot))).positions
    np.testing.assert_allclose(late, np.repeat(late[:1], len(late), axis=0))
    # A reset plans anew from the state given then.
    backend.reset()
    c = backend.infer(Observation(t0 + 5 * dt, FRAMES, state_of(robot))).positions
    np.testing.assert_allclose(c, a)


def test_the_expert_needs_the_simulators_episode_and_its_instruction(robot):
    episode = reset_episode(robot, "reach", 1_000_003)
    backend = make_backend("expert", EMB)
    assert backend.uses_sim_task
    with pytest.raises(BackendError, match="no episode from the simulator"):
        backend.infer(Observation(1.0, FRAMES, state_of(robot)))
    backend.set_sim_task(sim_task(episode))
    backend.set_instruction("wave at the camera")
    with pytest.raises(BackendError, match="only does the episode's task"):
        backend.infer(Observation(1.0, FRAMES, state_of(robot)))
    backend.set_instruction(episode.instruction)
    backend.set_sim_task({"task": "reach", "seed": 3, "instruction": episode.instruction})
    with pytest.raises(BackendError, match="not a task episode"):
        backend.infer(Observation(1.0, FRAMES, state_of(robot)))
    with pytest.raises(BackendError, match="state"):
        backend.infer(Observation(1.0, FRAMES, np.zeros(3)))


def test_the_expert_backend_exists_only_for_embodiments_with_simulated_tasks():
    with pytest.raises(ValueError, match="no simulated tasks for embodiment 'yam'"):
        make_backend("expert", load_embodiment("yam"))
