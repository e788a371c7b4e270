"""`dreamzero aim`: where a policy's first chunk aims the hand on seeded episodes, against the scripted expert.

Open loop, in this process, without ROS: for each seed the simulator is reset to the task's episode (as `dreamzero
eval` resets it), the views rendered and stitched as the camera_stitcher stitches them, and the policy asked for
its first chunk with the robot at rest. The chunk's joint targets at the compared steps go through forward
kinematics (`sim.tasks.tcp_at`), and so do the scripted expert's targets for the same steps from the same start
(what it commands, without physics or noise). The statistics and the table are core/aim.py's. It takes about a
second an episode on two cores, where a closed-loop evaluation takes twelve, and it says what a success rate
cannot: whether the aim is biased, lags, or shrinks toward the start.

Policies: a checkpoint (the local backend, as the inference node loads it); `random` (the tiny preset's random
weights, as `dreamzero eval --policy random`); `hold` (the chunk holds the start pose: progress 0, gain 0).
Steps compared: the checkpoint's execute_steps (the chunk's share that runs before the next one is asked for;
half the horizon without one) and the horizon, counted in control periods after the observation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_ros.core.aim import AimEpisode, AimSummary, format_aim_table, summarize_aim
from dreamzero_ros.core.embodiment import DEFAULT_EMBODIMENT, EmbodimentConfig, load_embodiment
from dreamzero_ros.core.evaluation import EVAL_FIRST_SEED, check_eval_seeds

POLICIES = ("checkpoint", "random", "hold")


class _Hold:
    """The hold-still baseline as a chunk source: every row is the targets held at the start."""

    execute_steps = None

    def __init__(self, embodiment: EmbodimentConfig) -> None:
        self.horizon = embodiment.control.horizon

    def first_chunk(self, instruction: str, frame: np.ndarray, state: np.ndarray, held: np.ndarray) -> np.ndarray:
        return np.repeat(held[None], self.horizon, axis=0)


class _Backend:
    """The local backend (a checkpoint, or random weights) as a chunk source."""

    def __init__(self, embodiment: EmbodimentConfig, checkpoint: str | None) -> None:
        from dreamzero_ros.backends.local import LocalBackend

        self.backend = LocalBackend(embodiment, checkpoint=checkpoint)
        self.execute_steps = getattr(self.backend, "execute_steps", None)

    def first_chunk(self, instruction: str, frame: np.ndarray, state: np.ndarray, held: np.ndarray) -> np.ndarray:
        from dreamzero_ros.backends.base import Observation

        self.backend.reset()
        self.backend.set_instruction(instruction)
        return self.backend.infer(Observation(stamp=0.0, frames=frame[None], state=state)).positions


def run_aim(embodiment: EmbodimentConfig, tasks: Sequence[str], episodes: int, first_seed: int, *,
            checkpoint: str | None = None, policy: str = "checkpoint",
            progress: Callable[[str], None] = lambda line: None) -> tuple[list[AimSummary], list[AimEpisode]]:
    """Summaries (per task, per compared step) and the episodes behind them; see the module docstring."""
    import dreamzero_ros.sim  # noqa: F401 - headless GL before mujoco
    from dreamzero_ros.model.stitching import stitch_views
    from dreamzero_ros.sim.expert import ScriptedExpert
    from dreamzero_ros.sim.robot import SimRobot
    from dreamzero_ros.sim.tasks import reset_episode, rig_for, task_layout, tcp_at, tcp_position

    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {list(POLICIES)}, got {policy!r}")
    if (policy == "checkpoint") != bool(checkpoint):
        raise ValueError("checkpoint: give a checkpoint directory with the checkpoint policy, and only then")
    rig = rig_for(embodiment)
    source: Any = _Hold(embodiment) if policy == "hold" else _Backend(embodiment, checkpoint)
    horizon = embodiment.control.horizon
    steps = sorted({source.execute_steps or horizon // 2, horizon})
    arm = [embodiment.action_joints.index(j) for j in rig.arm_joints]
    robot = SimRobot(embodiment, layout=task_layout(embodiment))

    def point(row: np.ndarray) -> tuple[float, float, float]:
        """The tool centre point with the arm at `row`'s targets (action_joints order)."""
        return tuple(float(v) for v in tcp_at(robot, {rig.arm_joints[i]: float(row[j]) for i, j in enumerate(arm)}))

    summaries, everything = [], []
    try:
        for task in tasks:
            results = []
            for seed in range(first_seed, first_seed + episodes):
                episode = reset_episode(robot, task, seed)
                q, held = robot.joint_positions(), robot.targets()
                _, views = robot.render_all()
                chunk = source.first_chunk(episode.instruction, stitch_views(views, embodiment),
                                           np.array([q[j] for j in embodiment.state_joints]),
                                           np.array([held[j] for j in embodiment.action_joints]))
                expert = ScriptedExpert(robot, episode)
                plan = np.stack([expert(robot) for _ in range(horizon)])  # its targets alone: no physics
                objects = {name: tuple(float(v) for v in robot.body_position(name)) for name in episode.objects}
                results.append(AimEpisode(
                    seed=seed, instruction=episode.instruction,
                    start=tuple(float(v) for v in tcp_position(robot)), target=objects[episode.target],
                    others=tuple(p for name, p in objects.items() if name != episode.target),
                    expert={s: point(plan[s - 1]) for s in steps}, policy={s: point(chunk[s - 1]) for s in steps},
                ))
            summaries += [summarize_aim(task, s, results) for s in steps]
            everything += results
            progress(f"{task}: {len(results)} episodes")
    finally:
        robot.close()
    return summaries, everything


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", dest="tasks", nargs="+", default=["reach"],
                        help="simulated task(s): reach, push, push_forward, lift (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=60, help="episodes per task (default: %(default)s)")
    parser.add_argument("--first-seed", type=int, default=EVAL_FIRST_SEED,
                        help="seed of the first episode, as for `dreamzero eval` (default: %(default)s)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", default="", help="checkpoint directory (the local backend)")
    which.add_argument("--policy", choices=[p for p in POLICIES if p != "checkpoint"], default=None,
                       help="a baseline instead: random (the tiny preset's random weights), hold (the start pose)")
    parser.add_argument("--out", default="", help="also write aim.json (episodes and summaries) and aim.md here")
    parser.add_argument("--embodiment", default=DEFAULT_EMBODIMENT, help="embodiment (default: %(default)s)")
    parser.add_argument("--allow-seed-overlap", action="store_true",
                        help="use seeds below 1,000,000 although a generated dataset may hold them")


def main(args: argparse.Namespace) -> int:
    try:
        check_eval_seeds(args.first_seed, args.episodes, allow_overlap=args.allow_seed_overlap)
        emb = load_embodiment(args.embodiment)
        started = time.monotonic()
        summaries, episodes = run_aim(emb, args.tasks, args.episodes, args.first_seed,
                                      checkpoint=args.checkpoint or None, policy=args.policy or "checkpoint",
                                      progress=lambda line: print(line, flush=True))
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a checkpoint that does not load, a backend that refuses it
        print(f"error: {exc}", file=sys.stderr)
        return 1
    table = format_aim_table(summaries)
    print()
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "aim.json").write_text(json.dumps({
            "checkpoint": args.checkpoint or None, "policy": args.policy or "checkpoint", "first_seed": args.first_seed,
            "episodes_per_task": args.episodes, "wall_s": time.monotonic() - started,
            "summaries": [s.to_json() for s in summaries], "episodes": [e.to_json() for e in episodes],
        }, indent=2) + "\n")  # fmt: skip
        (out / "aim.md").write_text(table + "\n")
        print(f"\n{out / 'aim.json'}")
    return 0
