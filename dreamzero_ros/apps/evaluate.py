"""`dreamzero eval`: seeded episodes of the simulated tasks in closed loop through the real nodes.

Per task it starts the bringup plan once (sim_robot with the task, camera_stitcher, inference, action_executor and,
for the videos, the recorder) as processes in a private ROS domain, then drives each episode through the graph's
public interfaces, as an operator would (no node of its own beyond the operator's):

1. `/sim/reset`: the simulator starts the next seeded episode (the reply names seed and instruction);
2. wait until `/sim/task` shows that episode and the cameras had `SETTLE` s to show it; send the instruction
   and reset the policy's episode;
3. wait for the policy's first chunk of the episode (so a slow model's first inference is not episode time),
   arm the executor, and watch `/sim/task` until the task's predicate holds or its max duration passed;
4. disarm; the executor's holds and rejected/dropped chunks are the PolicyStatus counters gained meanwhile, the
   chunk latencies those of the ActionChunks published meanwhile.

Policies: a checkpoint or `random` (a preset's random weights) run the local backend; `expert` runs the scripted
expert backend (backends/expert.py); `hold` never arms the executor, so the arm stays at the episode's start.
The simulator's reset teleports the arm to the episode's start pose, so the executor's arm_tolerance (which
makes an operator home a robot that moved while disarmed) is opened for this simulated run.

Writes into the output folder: summary.json (every episode and the summary per task), table.md, and per task
nodes.log, recording.mcap and <task>/seed_<seed>/frames.mp4 (the recorder's stitched frames of that episode, beside
the model's predicted frames with --predicted-video). The numbers come from core/evaluation.py; with
--predicted-video (local backend) also the PSNR of the predicted frames vs the real frames of the times they stand
for, beside repeating each chunk's last real frame (runs/report.py prediction_psnr), in a second table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamzero_ros.bringup.plan import BringupOptions, NodeSpec, node_plan, start_plan
from dreamzero_ros.bringup.ros_env import pick_domain_id, ros_environment
from dreamzero_ros.core.embodiment import DEFAULT_EMBODIMENT, load_embodiment
from dreamzero_ros.core.evaluation import (
    EVAL_FIRST_SEED,
    EpisodeResult,
    check_eval_seeds,
    closest_approach,
    format_psnr_table,
    format_table,
    named_cube_track,
    push_progress,
    summarize_task,
    track_length,
)
from dreamzero_ros.ros.names import (
    CHUNK_TOPIC,
    PREDICTED_VIDEO_TOPIC,
    SIM_RESET_SERVICE,
    SIM_TASK_TOPIC,
    STATUS_TOPIC,
    STITCHED_TOPIC,
    resolve,
)

POLICIES = ("checkpoint", "expert", "hold", "random")
#: the backend each policy runs (hold: any cheap one, the executor is never armed)
BACKENDS = {"checkpoint": "local", "random": "local", "expert": "expert", "hold": "scripted"}
SETTLE = 0.5  # s after the reset's episode shows on /sim/task: frames rendered after it reach the inference node
STARTUP_TIMEOUT = 180.0  # s: bringing up the nodes (torch imports, the model build) on a 2-core machine
CHUNK_TIMEOUT = 60.0  # s for the policy's first chunk of a later episode
RESET_REPLY_TIMEOUT = 15.0  # s for /sim/reset's reply once the service is up (the reset itself takes ms)
RESET_ATTEMPTS = 3
#: rad: more than any simulated joint's whole range. The sim reset teleports the arm to the episode's start from
#: wherever the last episode's policy left it (a random policy: joint 7 3.4 rad away), see the module docstring.
ARM_TOLERANCE = 4 * math.pi
_RESET_REPLY = re.compile(r"task=(\w+) seed=(\d+) instruction='([^']*)'")


class EvalError(RuntimeError):
    """The evaluation could not run (a node died, a service did not answer); the message says which."""


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """What `dreamzero eval` was asked (see `add_arguments`)."""

    tasks: tuple[str, ...]
    episodes: int
    first_seed: int
    policy: str
    out: Path
    checkpoint: str = ""
    embodiment: str = DEFAULT_EMBODIMENT
    video: bool = True
    predicted_video: bool = False
    allow_seed_overlap: bool = False

    def __post_init__(self) -> None:
        from dreamzero_ros.sim.tasks import get_task  # imports mujoco; only here, for the names of the tasks

        if self.policy not in POLICIES:
            raise ValueError(f"policy: expected one of {list(POLICIES)}, got {self.policy!r}")
        if (self.policy == "checkpoint") != bool(self.checkpoint):
            raise ValueError("checkpoint: give a checkpoint directory with the checkpoint policy, and only then")
        if self.checkpoint and not Path(self.checkpoint).is_dir():
            raise ValueError(f"checkpoint: no such directory {self.checkpoint!r}")
        if not self.tasks:
            raise ValueError("tasks: expected at least one task")
        for task in self.tasks:
            get_task(task)  # ValueError naming the tasks
        check_eval_seeds(self.first_seed, self.episodes, allow_overlap=self.allow_seed_overlap)

    @property
    def backend(self) -> str:
        return BACKENDS[self.policy]

    @property
    def label(self) -> str:
        """How the table names the policy: a checkpoint by its folder, or by run/folder when `dreamzero train`
        named it `checkpoint` (out/train/checkpoint -> "checkpoint train/checkpoint")."""
        if self.policy != "checkpoint":
            return self.policy
        path = Path(self.checkpoint)
        name = f"{path.resolve().parent.name}/{path.name}" if path.name == "checkpoint" else path.name
        return f"checkpoint {name}"


def eval_plan(cfg: EvalConfig, task: str, recording: Path | None, record_all: bool = False) -> list[NodeSpec]:
    """The bringup plan of one task: the simulator in the task scene from the first eval seed, the executor's arm
    check opened (the sim reset moves the arm), the recorder (with `recording`) on the topics the videos use, or on
    everything the robot and the nodes publish with `record_all` (the demo's report needs joint states and
    commands)."""
    options = BringupOptions(embodiment=cfg.embodiment, backend=cfg.backend, checkpoint=cfg.checkpoint, sim=True,
                             record=str(recording) if recording else "",
                             predicted_video=cfg.predicted_video and cfg.backend == "local")
    extra: dict[str, dict[str, Any]] = {
        "sim_robot": {"task": task, "seed": cfg.first_seed},
        "action_executor": {"arm_tolerance": ARM_TOLERANCE},
    }
    if not record_all:
        # Only what the episode videos and a later look need; the camera topics would be most of the file.
        extra["recorder"] = {"embodiment": "", "robot": "",
                             "topics": [resolve(t) for t in (STITCHED_TOPIC, PREDICTED_VIDEO_TOPIC, CHUNK_TOPIC,
                                                             STATUS_TOPIC, SIM_TASK_TOPIC)]}  # fmt: skip
    return [dataclasses.replace(spec, parameters={**spec.parameters, **extra.get(spec.name, {})})
            for spec in node_plan(options)]


class Harness:
    """Drives the episodes of one running bringup (see the module docstring); its rclpy node is an Operator's."""

    def __init__(self, group: Any, embodiment: str, arm: bool) -> None:
        from dreamzero_msgs.msg import ActionChunk, PolicyStatus
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from dreamzero_ros.apps.operator_commands import Operator
        from dreamzero_ros.ros import qos

        self.group = group
        self.arm = arm
        self.emb = load_embodiment(embodiment)
        self.op = Operator(timeout=STARTUP_TIMEOUT)
        self.task_state: dict | None = None  # the latest /sim/task
        self.success_stamp: dict[int, float] = {}  # seed -> sim stamp of the first message with success
        self.closest: dict[int, tuple[float, float]] = {}  # seed -> (tool to named object, to the nearest other), m
        self.closest_until: dict[int, float] = {}  # seed -> its time limit (stamp), as success counts it
        self.to_pad: dict[int, tuple[float | None, float | None]] = {}  # seed -> push: cube to pad (start, end), m
        self.cube_track: dict[int, tuple] = {}  # seed -> the named cube's table position (start, latest), m
        self.chunks: list[tuple[float, float, float]] = []  # (receive time, stamp, inference_latency)
        self.executor_status: tuple[float, Any] | None = None  # (header stamp s, PolicyStatus)
        node = self.op.node
        node.create_subscription(String, SIM_TASK_TOPIC, self._on_task, qos.LATCHED)
        node.create_subscription(ActionChunk, CHUNK_TOPIC, self._on_chunk, qos.COMMANDS)
        node.create_subscription(PolicyStatus, STATUS_TOPIC, self._on_status, qos.STATUS)
        self.reset_client = node.create_client(Trigger, SIM_RESET_SERVICE)

    def close(self) -> None:
        self.op.close()

    def _on_task(self, msg: Any) -> None:
        state = json.loads(msg.data)
        self.task_state = state
        seed = int(state["seed"])
        if state.get("success"):
            self.success_stamp.setdefault(seed, float(state["stamp"]))
        if seed in self.closest:
            self.closest[seed] = closest_approach(self.closest[seed], state, self.closest_until[seed])
            self.to_pad[seed] = push_progress(self.to_pad[seed], state, self.closest_until[seed])
            self.cube_track[seed] = named_cube_track(self.cube_track[seed], state, self.closest_until[seed])

    def _on_chunk(self, msg: Any) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.chunks.append((time.time(), stamp, float(msg.inference_latency)))

    def _on_status(self, msg: Any) -> None:
        if msg.node == "action_executor":
            self.executor_status = (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, msg)

    def _check_alive(self, what: str) -> None:
        """Raise EvalError naming the first required node that exited, with its last output."""
        dead = self.group.first_required_exit()
        if dead is not None:
            raise EvalError(f"{dead.name} exited with code {dead.returncode} while waiting for {what}:\n"
                            f"{dead.output()[-3000:]}")

    def _wait(self, done: Any, timeout: float, what: str) -> None:
        """Spin until done() or raise EvalError naming `what`; a dead required node stops it at once, also when
        done() already holds (an episode that ran out its time while the simulator died has no result)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(what)
            if done():
                return
            if time.monotonic() > deadline:
                raise EvalError(f"timed out after {timeout:g} s waiting for {what}")
            self.op.spin_until(lambda: False, 0.05)

    def _counters(self, after: float) -> tuple[int, int, int]:
        """The executor's (holds, rejected, dropped) from a status stamped after `after` (s, ROS time)."""
        self._wait(lambda: self.executor_status is not None and self.executor_status[0] > after, 60.0,
                   "the executor's status")
        msg = self.executor_status[1]
        return msg.holds, msg.chunks_rejected, msg.chunks_dropped

    def _arm(self, armed: bool) -> None:
        from dreamzero_ros.apps.operator_commands import OperatorError

        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                self.op.arm(armed)
                return
            except OperatorError as exc:  # the executor refuses until its first joint state
                if "no joint state" not in str(exc) or time.monotonic() > deadline:
                    raise EvalError(f"could not {'arm' if armed else 'disarm'} the executor: {exc}") from exc
                self.op.spin_until(lambda: False, 0.2)

    def run(self, first_seed: int, count: int) -> Iterator[tuple[EpisodeResult, tuple[float, float]]]:
        """`count` episodes from `first_seed`, as the simulator's resets go through its seeds: see `episode`."""
        for i in range(count):
            yield self.episode(first_seed + i, first=i == 0)

    def _sim_reset(self) -> tuple[str, int, str]:
        """Start the simulator's next episode: (task, seed, instruction).

        A request is never sent twice for one reset (that would skip a seed): when its reply is lost (DDS can
        drop it, see ros/runtime.RESEND_AFTER_S), /sim/task's count of resets served says whether it happened,
        and then /sim/task names the episode; only a reset that did not happen is asked for again.
        """
        from dreamzero_ros.apps.operator_commands import OperatorError

        self._wait(lambda: self.task_state is not None, STARTUP_TIMEOUT, "/sim/task")
        # Waited for here, not in the Operator: a simulator that died is named at once instead of after the
        # Operator's wait for a service that will not come.
        service = resolve(SIM_RESET_SERVICE, self.op.namespace)
        self._wait(self.reset_client.service_is_ready, STARTUP_TIMEOUT, f"the service {service}")
        served = self.task_state.get("resets", 0)
        for _ in range(RESET_ATTEMPTS):
            try:
                reply = self.op.sim_reset(reply_timeout=RESET_REPLY_TIMEOUT)
            except OperatorError as exc:
                self._check_alive(f"the reply of {service}")
                if "did not answer" not in str(exc):
                    raise EvalError(str(exc)) from exc
                if self.op.spin_until(lambda: self.task_state.get("resets", 0) > served, 2.0):
                    state = self.task_state
                    return str(state["task"]), int(state["seed"]), str(state["instruction"])
                continue
            match = _RESET_REPLY.search(reply)
            if not match:
                raise EvalError(f"sim reset: the reply names no episode: {reply!r}")
            return match.group(1), int(match.group(2)), match.group(3)
        raise EvalError(f"sim reset: no reply and no reset on /sim/task after {RESET_ATTEMPTS} requests "
                        f"of {RESET_REPLY_TIMEOUT:g} s")

    def episode(self, expected_seed: int, first: bool) -> tuple[EpisodeResult, tuple[float, float]]:
        """Reset the simulator to its next episode (which must be `expected_seed`) and run it: the result and
        the (start, end) of its closed loop (s, ROS time)."""
        from dreamzero_ros.sim.tasks import get_task

        task, seed, instruction = self._sim_reset()
        if seed != expected_seed:
            raise EvalError(f"sim reset: expected episode seed {expected_seed}, the simulator started seed {seed}")
        self._wait(lambda: self.task_state is not None and self.task_state.get("seed") == seed, 10.0,
                   f"/sim/task to show seed {seed}")
        self.op.spin_until(lambda: False, SETTLE)
        self.op.instruct(instruction)
        self.op.reset_episode()
        reset_at = time.time()
        counters0 = self._counters(reset_at)
        if self.arm:
            # The node drops a chunk whose generation a reset interrupted, so the first one received after the
            # reset's reply is the new episode's (its observation may predate the reply by a frame or two).
            self._wait(lambda: any(received >= reset_at for received, _, _ in self.chunks),
                       STARTUP_TIMEOUT if first else CHUNK_TIMEOUT, f"the policy's first chunk of seed {seed}")
            self._arm(True)
        start = time.time()
        max_duration = get_task(task).max_duration
        self.success_stamp.pop(seed, None)  # only successes after the start count
        self.closest_until[seed] = start + max_duration
        self.closest[seed] = (math.inf, math.inf)
        self.to_pad[seed] = (None, None)
        self.cube_track[seed] = (None, None)
        self._wait(lambda: seed in self.success_stamp or time.time() >= start + max_duration, max_duration + 30.0,
                   f"seed {seed} to finish")
        if self.arm:
            self._arm(False)
        end = time.time()
        counters1 = self._counters(end)
        success_at = self.success_stamp.get(seed)
        closest = [None if math.isinf(d) else round(d, 4) for d in self.closest.pop(seed)]
        to_pad = [None if d is None else round(d, 4) for d in self.to_pad.pop(seed)]
        moved = track_length(self.cube_track.pop(seed))
        success = success_at is not None and success_at - start <= max_duration
        # Hold-still executes no chunk: the latencies of the idle backend's chunks would describe nothing.
        latencies = [lat for received, _, lat in self.chunks if reset_at <= received <= end] if self.arm else []
        return EpisodeResult(
            task=task, seed=seed, instruction=instruction, success=success,
            time_to_success=max(0.0, success_at - start) if success else None, duration=end - start,
            holds=counters1[0] - counters0[0], chunks_rejected=counters1[1] - counters0[1],
            chunks_dropped=counters1[2] - counters0[2], chunk_latencies=latencies,
            video=None, closest_target=closest[0], closest_other=closest[1], to_pad_start=to_pad[0],
            to_pad_end=to_pad[1], cube_moved=None if moved is None else round(moved, 4),
        ), (start, end)


def run_task(cfg: EvalConfig, task: str, env: dict[str, str], progress: Any = print) -> list[EpisodeResult]:
    """Bring up the nodes for `task`, run cfg.episodes episodes from cfg.first_seed, stop, write the videos."""
    from dreamzero_ros.runs.report import ReportError, prediction_psnr, write_video

    folder = cfg.out / task
    folder.mkdir(parents=True, exist_ok=True)
    recording = folder / "recording.mcap" if cfg.video else None
    if recording is not None and recording.exists():
        recording.unlink()
    log = (folder / "nodes.log").open("w")

    def sink(line: str) -> None:
        log.write(line + "\n")
        log.flush()

    group = start_plan(eval_plan(cfg, task, recording), env=env, sink=sink, workdir=folder)
    results: list[EpisodeResult] = []
    windows: list[tuple[float, float]] = []
    harness = None
    try:
        harness = Harness(group, cfg.embodiment, arm=cfg.policy != "hold")
        for result, window in harness.run(cfg.first_seed, cfg.episodes):
            results.append(result)
            windows.append(window)
            progress(f"  {task} {result.line()}")
    finally:
        if harness is not None:
            harness.close()
        group.stop_all(timeout=10.0)
        log.close()
    if recording is not None and recording.exists():
        for result, (start, end) in zip(results, windows, strict=True):
            try:
                video, _ = write_video(recording, cfg.embodiment, folder / f"seed_{result.seed}",
                                       window=(int((start - SETTLE) * 1e9), int((end + SETTLE) * 1e9)))
            except ReportError as exc:
                progress(f"  {task} seed {result.seed}: no video ({exc})")
                continue
            result.video = str(video) if video is not None else None
            if cfg.predicted_video and cfg.backend == "local":
                # Chunks observed and real frames shown inside the closed loop (after the sim reset, before the
                # next); the read runs on past the end by the chunks' latency, for the last chunks' frames.
                tail = max(result.chunk_latencies, default=0.0) + 2.0
                result.psnr_predicted, result.psnr_baseline = prediction_psnr(
                    recording, cfg.embodiment, window=(int((start - SETTLE) * 1e9), int((end + tail) * 1e9)),
                    loop=(int((start - SETTLE) * 1e9), int(end * 1e9)))
    return results


def run_eval(cfg: EvalConfig, env: dict[str, str] | None = None, progress: Any = print) -> dict[str, Any]:
    """Every task of `cfg`; writes summary.json and table.md into cfg.out and returns the summary.

    env: the nodes' environment; None = a private ROS domain (this process joins it too).
    """
    if env is None:
        env = ros_environment(pick_domain_id())
        os.environ.update(env)  # the harness's rclpy node joins the same private domain
    cfg.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    episodes: list[EpisodeResult] = []
    summaries = []
    for task in cfg.tasks:
        progress(f"{task}: bringing up the nodes ({cfg.label}, seeds {cfg.first_seed}.."
                 f"{cfg.first_seed + cfg.episodes - 1})")
        results = run_task(cfg, task, env, progress)
        episodes += results
        summaries.append(summarize_task(cfg.label, task, results, predicted_video=cfg.predicted_video and cfg.video
                                        and cfg.backend == "local"))
    table = format_table(summaries)
    if any("psnr_pairs" in s for s in summaries):
        table += "\n\nPredicted video vs the real frames (baseline: the chunk's last real frame repeated)\n"
        table += format_psnr_table(summaries)
    summary = {
        "policy": cfg.policy, "label": cfg.label, "checkpoint": cfg.checkpoint or None, "embodiment": cfg.embodiment,
        "first_seed": cfg.first_seed, "episodes_per_task": cfg.episodes, "wall_s": time.monotonic() - started,
        "tasks": summaries, "episodes": [e.to_json() for e in episodes], "table": table,
    }
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (cfg.out / "table.md").write_text(table + "\n")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", dest="tasks", nargs="+", default=["reach"],
                        help="simulated task(s): reach, push, push_forward, lift (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=30, help="episodes per task (default: %(default)s)")
    parser.add_argument("--first-seed", type=int, default=EVAL_FIRST_SEED,
                        help="seed of the first episode; evaluation seeds start at 1,000,000, disjoint from the "
                             "seeds `dreamzero generate` uses (default: %(default)s)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", default="", help="checkpoint directory to evaluate (the local backend)")
    which.add_argument("--policy", choices=[p for p in POLICIES if p != "checkpoint"], default=None,
                       help="a baseline instead of a checkpoint: expert (the scripted IK expert), hold (never "
                            "armed: the arm stays still), random (the tiny preset's random weights)")
    parser.add_argument("--out", required=True, help="output folder (summary.json, table.md, videos)")
    parser.add_argument("--embodiment", default=DEFAULT_EMBODIMENT, help="embodiment (default: %(default)s)")
    parser.add_argument("--no-video", dest="video", action="store_false", help="no recording, no episode videos")
    parser.add_argument("--predicted-video", action="store_true",
                        help="decode the model's predicted frames into the videos (costs inference time)")
    parser.add_argument("--allow-seed-overlap", action="store_true",
                        help="evaluate on seeds below 1,000,000 although a generated dataset may hold them")


def main(args: argparse.Namespace) -> int:
    if not args.checkpoint and args.policy is None:
        print("error: give --checkpoint DIR or --policy expert|hold|random", file=sys.stderr)
        return 2
    try:
        cfg = EvalConfig(tasks=tuple(args.tasks), episodes=args.episodes, first_seed=args.first_seed,
                         policy="checkpoint" if args.checkpoint else args.policy, out=Path(args.out).resolve(),
                         checkpoint=args.checkpoint, embodiment=args.embodiment, video=args.video,
                         predicted_video=args.predicted_video, allow_seed_overlap=args.allow_seed_overlap)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.first_seed < EVAL_FIRST_SEED:
        print(f"warning: seeds below {EVAL_FIRST_SEED:,} may be training episodes (--allow-seed-overlap)",
              file=sys.stderr)
    try:
        summary = run_eval(cfg, progress=lambda line: print(line, flush=True))
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print()
    print(summary["table"])
    print(f"\n{cfg.out / 'summary.json'} ({summary['wall_s']:.0f} s)")
    return 0
