"""Expert demonstrations from the simulator, written as a LeRobot dataset (`dreamzero generate`).

Each (task, seed) episode is reset through `sim.tasks.reset_episode`, solved by `sim.expert.ScriptedExpert`
with every camera rendered at its source size each control step, and written by `LeRobotWriter` if the task's
predicate held (failed demonstrations are skipped and counted, as the release filters DROID's failures). With
`workers` > 1 the episodes are simulated and rendered in that many processes, each with its own simulator, and
written by this one in the order of a single-process run, so the dataset is the same either way.
Seeds run from `first_seed`; keep evaluation seeds disjoint from them. With `colours`, each seed gives one
episode per colour listed, the same scene and start pose with each of those cubes named in turn (all of them: only
the instruction tells their actions apart; one: a set where the named colour never changes). Each episode's
task, seed and named colour are in meta/episodes.jsonl (`sim_task`, `seed`, `colour`).
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True, slots=True)
class _Job:
    embodiment: EmbodimentConfig
    task: str
    seed: int
    colour: str | None
    action_noise: float
    scene_tasks: tuple[str, ...] | None = None
    drift: float = 0.0


@dataclass
class _Demonstration:
    job: _Job
    instruction: str
    colour: str
    success: bool
    states: Any = None  # [T, S], kept only for a success (a failure is skipped, so it is not sent back)
    actions: Any = None
    frames: Any = None


_robots: dict[str, Any] = {}  # embodiment name -> this process's SimRobot, built on its first episode


def _demonstrate(job: _Job) -> _Demonstration:
    """Run the expert on one (task, seed, colour) episode with every camera rendered."""
    from dreamzero_ros.sim.expert import ScriptedExpert, rollout
    from dreamzero_ros.sim.robot import SimRobot
    from dreamzero_ros.sim.tasks import COLOURS, reset_episode, task_layout

    emb = job.embodiment
    robot = _robots.get(emb.name)
    if robot is None:
        robot = _robots[emb.name] = SimRobot(emb, layout=task_layout(emb))
    episode = reset_episode(robot, job.task, job.seed, job.colour, job.scene_tasks)
    # a colour's noise does not depend on which others the set has
    noise_seed = job.seed if job.colour is None else job.seed * len(COLOURS) + list(COLOURS).index(job.colour)
    expert = ScriptedExpert(robot, episode, drift=job.drift, drift_seed=noise_seed)
    result = rollout(robot, episode, expert, cameras=emb.camera_names, action_noise=job.action_noise,
                     noise_seed=noise_seed, executed=expert.executed_action if job.drift else None)
    demo = _Demonstration(job, episode.instruction, episode.colour, result.success)
    if result.success:
        demo.states, demo.actions, demo.frames = result.states, result.actions, result.frames
    return demo


def _close_robots() -> None:
    while _robots:
        _robots.popitem()[1].close()


def _worker_init() -> None:
    # Leaving the pool terminates its workers (SIGTERM: no atexit), so a simulator goes with its process.
    import dreamzero_ros.sim  # noqa: F401 - headless GL before mujoco


def _demonstrations(jobs: list[_Job], workers: int) -> Iterator[_Demonstration]:
    if workers == 1:
        import dreamzero_ros.sim  # noqa: F401 - headless GL before mujoco

        try:
            yield from map(_demonstrate, jobs)
        finally:
            _close_robots()
        return
    # spawn, not fork: a forked child would share the parent's GL and MuJoCo state
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
        # At most 2 episodes per worker in flight, taken in job order: when writing (video encoding) is slower
        # than simulating, finished episodes (tens of MB of frames each) must not pile up in this process.
        queue = iter(jobs)
        pending = deque(pool.apply_async(_demonstrate, (job,)) for job in islice(queue, 2 * workers))
        while pending:
            demo = pending.popleft().get()
            job = next(queue, None)
            if job is not None:
                pending.append(pool.apply_async(_demonstrate, (job,)))
            yield demo


def generate(
    out: str | Path,
    embodiment: EmbodimentConfig,
    tasks: Sequence[str],
    episodes: int,
    *,
    first_seed: int = 0,
    action_noise: float = 0.0,
    drift: float = 0.0,
    colours: Sequence[str] | None = None,
    shared_scenes: bool = False,
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> GenerateReport:
    """`episodes` expert episodes per task (seeds first_seed, first_seed + 1, ...) into the dataset `out`.

    action_noise: std (rad) of noise on the executed arm targets, the recorded actions staying the expert's
    (see `sim.expert.rollout`); episodes it makes fail are skipped like any failure.
    drift: std (m) of the horizontal drift of the expert's executed hand path, fading as the hand comes down to
    the cubes (see `sim.expert.ScriptedExpert`); the recorded actions stay the expert's.
    colours: per seed, one episode naming each of these cube colours in turn (`sim.tasks.sample_episode`'s
    colour); None: the seed's own draw.
    shared_scenes: per seed, every task's episodes in one scene and start pose (`sample_episode`'s scene_tasks),
    so that only the instruction tells the tasks apart; False: each task's own scene per seed.
    workers: processes that simulate and render (each holds a simulator and its renderer).
    """
    from dreamzero_ros.sim.tasks import COLOURS, get_task

    for task in tasks:
        get_task(task)  # unknown names fail before any work
    if episodes < 1:
        raise ValueError(f"episodes per task must be >= 1, got {episodes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not action_noise >= 0 or not drift >= 0:
        raise ValueError(f"action_noise and drift must be >= 0, got {action_noise} and {drift}")
    unknown = sorted(set(colours or ()) - set(COLOURS))
    if unknown or (colours is not None and not colours):
        raise ValueError(f"colours: expected some of {list(COLOURS)}, got {list(colours)}")
    named = list(colours) if colours else [None]
    scene_tasks = tuple(tasks) if shared_scenes else None
    jobs = [_Job(embodiment, task, seed, colour, action_noise, scene_tasks, drift)
            for task in tasks for seed in range(first_seed, first_seed + episodes) for colour in named]
    report = GenerateReport(written={task: 0 for task in tasks}, failed={task: [] for task in tasks})
    t0 = time.perf_counter()
    with LeRobotWriter(out, embodiment, overwrite=overwrite) as writer:
        for demo in _demonstrations(jobs, min(workers, len(jobs))):
            task, seed = demo.job.task, demo.job.seed
            if not demo.success:
                report.failed[task].append((seed, demo.colour))
                continue
            writer.add_episode(demo.states, demo.actions, demo.frames, demo.instruction, success=True,
                               origin={"sim_task": task, "seed": seed, "colour": demo.colour})
            report.written[task] += 1
            report.frames += len(demo.states)
            if progress is not None:
                progress(f"{task} seed {seed}: {len(demo.states)} steps, '{demo.instruction}'")
    report.seconds = time.perf_counter() - t0
    return report
