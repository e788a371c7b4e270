"""Expert backend: the simulated tasks' scripted IK expert (sim/expert.py) behind the PolicyBackend interface.

A BASELINE for evaluation, like the scripted backend a test tool: it ignores the images and acts on privileged
simulator state, the episode the `sim_robot` node publishes on /sim/task (task, seed, instruction, where the cubes
and the pad are; the inference node hands it over through `set_sim_task` because `uses_sim_task` is set). Its
chunks flow inference -> executor -> simulator exactly as a model's do, so `dreamzero eval` measures the expert
and a checkpoint through the same stack.

On the first request of an episode it plans the whole episode at once: `ScriptedExpert` from the observed joint
state (on a MuJoCo model of the task scene of its own, used for kinematics only) for the episode's max duration,
one joint target per control period, target j due at t0 + (j + 1) dt where t0 is that request's observation
stamp. Every chunk is then a window of that plan: rows k = 0..H-1 of a chunk observed at stamp s are targets
round((s - t0) / dt) + k, held at the last target past the end. So a chunk is a pure function of its stamp, and
however the inference node schedules requests the expert's motion keeps the simulator's time.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import numpy as np

from dreamzero_ros.backends.base import BackendError, ChunkResult, Observation, PolicyBackend
from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.sim.expert import ScriptedExpert
from dreamzero_ros.sim.robot import SimRobot  # its package picks headless GL first (no rendering here)
from dreamzero_ros.sim.tasks import rig_for, sample_episode, task_layout


class ExpertBackend(PolicyBackend):
    """The scripted expert as a policy (see the module docstring)."""

    name = "expert"
    uses_sim_task = True

    def __init__(self, embodiment: EmbodimentConfig) -> None:
        try:
            rig_for(embodiment)
        except KeyError as exc:
            raise ValueError(f"expert backend: {exc.args[0]}") from None
        self.embodiment = embodiment
        self.joint_names = embodiment.action_joints
        self.dt = embodiment.control.dt
        self.horizon = embodiment.control.horizon
        self._robot = SimRobot(embodiment, layout=task_layout(embodiment))  # kinematics only: never stepped
        self._lower, self._upper, _ = embodiment.limits_arrays(embodiment.state_joints)
        self._lock = threading.Lock()
        self._task: dict | None = None
        self._plan: np.ndarray | None = None  # [steps, J] targets, row j due at t0 + (j + 1) dt
        self._t0 = 0.0
        self.episode_seed: int | None = None  # the seed of the episode planned (for logs and tests)
        self.instruction = ""

    def set_sim_task(self, task: dict) -> None:
        with self._lock:
            self._task = dict(task)

    def reset(self) -> None:
        with self._lock:
            self._plan = None
            self.episode_seed = None

    def set_instruction(self, instruction: str) -> None:
        if instruction != self.instruction:
            self.instruction = instruction
            self.reset()

    def plan_episode(self, task: dict, state: np.ndarray) -> np.ndarray:
        """[steps, J] expert targets (action_joints, SI) for the episode in `task` (a /sim/task state) from
        the joint state `state` [S] (state_joints, SI); steps cover the episode's max duration plus a chunk."""
        try:
            episode = sample_episode(self.embodiment, str(task["task"]), int(task["seed"]))
            # Where the simulator has the objects now (they start where the seed put them; a nudge moves them).
            objects = {name: (float(xyz[0]), float(xyz[1])) for name, xyz in task["objects"].items()}
            pad = (float(task["pad"][0]), float(task["pad"][1]))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise BackendError(f"expert: /sim/task state is not a task episode ({type(exc).__name__}: {exc}): "
                               f"{task!r}") from None
        if set(objects) != set(episode.objects):
            raise BackendError(f"expert: /sim/task names objects {sorted(objects)}, the {episode.task} task has "
                               f"{sorted(episode.objects)}")
        episode = dataclasses.replace(episode, objects=objects, pad=pad)
        q = np.clip(np.asarray(state, dtype=np.float64), self._lower, self._upper)
        self._robot.reset(dict(zip(self.embodiment.state_joints, q.tolist(), strict=True)))
        expert = ScriptedExpert(self._robot, episode)
        steps = math.ceil(episode.max_duration / self.dt) + self.horizon
        return np.stack([expert(self._robot) for _ in range(steps)])

    def infer(self, observation: Observation) -> ChunkResult:
        start = time.perf_counter()
        state = self.checked_state(observation)
        with self._lock:
            plan, t0, task = self._plan, self._t0, self._task
        if plan is None:
            if task is None:
                raise BackendError("expert: no episode from the simulator yet (the expert needs sim_robot started "
                                   "with a task, publishing /sim/task)")
            if self.instruction and " ".join(str(task.get("instruction", "")).split()) != self.instruction:
                raise BackendError(f"expert: the instruction {self.instruction!r} is not the simulator's episode's "
                                   f"({task.get('instruction')!r}, seed {task.get('seed')}); the expert only does "
                                   "the episode's task")
            plan, t0 = self.plan_episode(task, state), observation.stamp
            with self._lock:
                self._plan, self._t0, self.episode_seed = plan, t0, int(task["seed"])
        first = int(round((observation.stamp - t0) / self.dt))
        rows = np.clip(np.arange(first, first + self.horizon), 0, len(plan) - 1)
        return ChunkResult(self.joint_names, plan[rows].copy(), self.dt, time.perf_counter() - start)
