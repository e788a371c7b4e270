"""Expert demonstrations from the simulator, written as a LeRobot dataset (`dreamzero generate`).

Each (task, seed) episode is reset through `sim.tasks.reset_episode`, solved by `sim.expert.ScriptedExpert`
with every camera rendered at its source size each control step, and written by `LeRobotWriter` if the task's
predicate held (failed demonstrations are skipped and counted, as the release filters DROID's failures).
Seeds run from `first_seed`; keep evaluation seeds disjoint from them. With `colours`, each seed gives one
episode per colour listed, the same scene and start pose with each of those cubes named in turn (all of them: only
the instruction tells their actions apart; one: a set where the named colour never changes). Each episode's
task, seed and named colour are in meta/episodes.jsonl (`sim_task`, `seed`, `colour`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.datasets.lerobot import LeRobotWriter


@dataclass
class GenerateReport:
    written: dict[str, int] = field(default_factory=dict)  # task -> episodes written
    failed: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # task -> (seed, colour named) failed

    def failures(self, task: str) -> str:
        """The episodes of `task` the expert failed, as `seed 3 (red), seed 7 (blue)`, or `none`."""
        return ", ".join(f"seed {seed} ({colour})" for seed, colour in self.failed[task]) or "none"
    frames: int = 0
    seconds: float = 0.0


def generate(
    out: str | Path,
    embodiment: EmbodimentConfig,
    tasks: Sequence[str],
    episodes: int,
    *,
    first_seed: int = 0,
    action_noise: float = 0.0,
    colours: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GenerateReport:
    """`episodes` expert episodes per task (seeds first_seed, first_seed + 1, ...) into the dataset `out`.

    action_noise: std (rad) of noise on the executed arm targets, the recorded actions staying the expert's
    (see `sim.expert.rollout`); episodes it makes fail are skipped like any failure.
    colours: per seed, one episode naming each of these cube colours in turn (`sim.tasks.sample_episode`'s
    colour); None: the seed's own draw.
    """
    import dreamzero_ros.sim  # noqa: F401 - headless GL before mujoco
    from dreamzero_ros.sim.expert import ScriptedExpert, rollout
    from dreamzero_ros.sim.robot import SimRobot
    from dreamzero_ros.sim.tasks import COLOURS, get_task, reset_episode, task_layout

    for task in tasks:
        get_task(task)  # unknown names fail before any work
    if episodes < 1:
        raise ValueError(f"episodes per task must be >= 1, got {episodes}")
    unknown = sorted(set(colours or ()) - set(COLOURS))
    if unknown or (colours is not None and not colours):
        raise ValueError(f"colours: expected some of {list(COLOURS)}, got {list(colours)}")
    report = GenerateReport()
    t0 = time.perf_counter()
    with SimRobot(embodiment, layout=task_layout(embodiment)) as robot, \
            LeRobotWriter(out, embodiment, overwrite=overwrite) as writer:
        for task in tasks:
            report.written[task] = 0
            report.failed[task] = []
            named = list(colours) if colours else [None]
            for seed, colour in ((s, c) for s in range(first_seed, first_seed + episodes) for c in named):
                episode = reset_episode(robot, task, seed, colour)
                # a colour's noise does not depend on which others the set has
                noise_seed = seed if colour is None else seed * len(COLOURS) + list(COLOURS).index(colour)
                result = rollout(robot, episode, ScriptedExpert(robot, episode), cameras=embodiment.camera_names,
                                 action_noise=action_noise, noise_seed=noise_seed)
                if not result.success:
                    report.failed[task].append((seed, episode.colour))
                    continue
                writer.add_episode(result.states, result.actions, result.frames, episode.instruction, success=True,
                                   origin={"sim_task": task, "seed": seed, "colour": episode.colour})
                report.written[task] += 1
                report.frames += len(result.states)
                if progress is not None:
                    progress(f"{task} seed {seed}: {len(result.states)} steps, '{episode.instruction}'")
    report.seconds = time.perf_counter() - t0
    return report
