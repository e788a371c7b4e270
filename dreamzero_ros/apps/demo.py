"""`dreamzero demo`: the closed loop on the built-in simulator, end to end.

Starts the bringup plan (sim_robot, camera_stitcher, inference, action_executor, recorder) as
processes in a private ROS domain and drives it through the same services an operator uses, then
stops everything and writes the report (summary, report.png, the stitched-vs-predicted video) next
to the MCAP recording. Two modes:

- a task: the simulator starts seeded episodes of the task; each gets its instruction, the
  policy's first chunk, the armed executor, and success from the task's predicate, as `dreamzero
  eval` runs them;
- `--task none`: the scene is the plain table, the instruction goes out once, the robot homes to
  the start pose and the loop runs for `--duration` seconds.

Left unset, --task and --checkpoint come from the embodiment YAML's `demo:` section (franka_droid:
`reach` with the checkpoint shipped in `checkpoints/`); without one, `--task none` and the tiny
preset's random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from dreamzero_ros.bringup.plan import node_plan, options_from_args, start_plan
from dreamzero_ros.bringup.ros_env import pick_domain_id, ros_environment
from dreamzero_ros.ros.names import STATUS_TOPIC

STARTUP_TIMEOUT = 90.0  # s: importing torch and building the model on a 2-core machine


def resolve_demo_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """--task and --checkpoint left unset come from the embodiment's `demo:` section (the checkpoint only with the
    local backend); an explicit value is kept. Raises ConfigError or FileNotFoundError naming what is wrong."""
    from dreamzero_ros.core.embodiment import ConfigError, load_embodiment, resolve_checkpoint

    embodiment = load_embodiment(args.embodiment)
    demo = embodiment.demo
    if args.task is None:
        args.task = demo.task
        if demo.task != "none":
            from dreamzero_ros.sim.tasks import get_task  # imports mujoco, which a task demo runs anyway

            try:
                get_task(demo.task)
            except ValueError as exc:
                raise ConfigError(embodiment.source, "demo.task", str(exc)) from None
    if args.checkpoint is None:
        use_shipped = args.backend == "local" and demo.checkpoint is not None
        args.checkpoint = str(resolve_checkpoint(demo.checkpoint)) if use_shipped else ""
    return args


def run_demo(args: argparse.Namespace) -> int:
    from dreamzero_ros.core.embodiment import ConfigError

    try:
        args = resolve_demo_defaults(args)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    mcap_path = out / "recording.mcap"
    if mcap_path.exists():
        mcap_path.unlink()
    try:
        if args.task != "none":
            plan = _task_plan(args, mcap_path)
        else:
            # The instruction is sent after start-up (below), as an operator would.
            options = options_from_args(args, record=str(mcap_path) if args.record else "", instruction="",
                                        predicted_video=args.backend == "local")  # fmt: skip
            plan = node_plan(options)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    env = ros_environment(pick_domain_id())
    os.environ.update(env)  # the monitor below joins the same private domain
    log_path = out / "nodes.log"
    log_file = log_path.open("w")

    def sink(line: str) -> None:
        log_file.write(line + "\n")
        log_file.flush()

    weights = args.checkpoint or ("tiny random weights" if args.backend == "local" else args.backend)
    length = f"episodes={args.episodes} task={args.task}" if args.task != "none" else f"duration={args.duration:g}s"
    print(f"dreamzero demo: embodiment={args.embodiment} backend={args.backend} ({weights}) {length} "
          f"domain={env['ROS_DOMAIN_ID']} output={out}", flush=True)
    print(f"  node logs: {log_path}", flush=True)
    group = start_plan(plan, env=env, sink=sink, workdir=out)
    code = 0
    episodes: list = []
    try:
        code = _drive_task(args, group, episodes) if args.task != "none" else _drive(args, group)
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        code = 130
    finally:
        group.stop_all(timeout=10.0)
        log_file.close()

    summary: dict = {}
    if args.record and mcap_path.exists():
        from dreamzero_ros.core.embodiment import load_embodiment
        from dreamzero_ros.runs.report import write_report

        summary = write_report(mcap_path, load_embodiment(args.embodiment), out)
        if args.task != "none":
            summary["task"] = args.task
            summary["episodes"] = [e.to_json() for e in episodes]
            summary["successes"] = sum(1 for e in episodes if e.success)
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _print_summary(summary, out)
    if code == 0 and args.record and not summary.get("chunks"):
        print("error: no action chunk was produced; see the node logs", file=sys.stderr)
        code = 1
    return code


def _drive(args: argparse.Namespace, group) -> int:
    from dreamzero_ros.apps.operator_commands import Operator, OperatorError

    with Operator(timeout=STARTUP_TIMEOUT) as op:
        try:
            op.instruct(args.instruction)
            op.timeout = 10.0
            # Episodes start from the start pose: home (slowly), then arm.
            print(f"  {_once_ready(op, lambda: op.home(timeout=STARTUP_TIMEOUT))}", flush=True)
            _once_ready(op, lambda: op.arm(not args.dry_run))
        except OperatorError as exc:
            dead = group.first_required_exit()
            why = f" ({dead.name} exited with {dead.returncode})" if dead else ""
            print(f"error: could not start the loop{why}: {exc}", file=sys.stderr)
            if dead:
                print(dead.output()[-3000:], file=sys.stderr)
            return 1
        print(f"  instruction: {args.instruction!r}; executor armed", flush=True)
        latest: dict = {}
        op.node.create_subscription(
            __import__("dreamzero_msgs.msg", fromlist=["PolicyStatus"]).PolicyStatus,
            STATUS_TOPIC, lambda m: latest.__setitem__(m.node, m), 10,
        )
        started = time.monotonic()
        next_print = started
        while (elapsed := time.monotonic() - started) < args.duration:
            dead = group.first_required_exit()
            if dead is not None:
                print(f"\nerror: required node {dead.name} exited with code {dead.returncode}", file=sys.stderr)
                print(dead.output()[-3000:], file=sys.stderr)
                return 1
            op.spin_until(lambda: False, 0.1)
            if time.monotonic() >= next_print:
                next_print += 1.0
                print("  " + _progress(elapsed, latest), flush=True)
    return 0


def _task_plan(args: argparse.Namespace, mcap_path: Path) -> list:
    """The eval harness's plan for one task (sim in the task scene from --seed, the arm check opened because a
    reset teleports the arm), recording everything the report reads."""
    from dreamzero_ros.apps.evaluate import EvalConfig, eval_plan

    if args.backend not in ("local", "expert"):
        raise ValueError(f"backend: a task demo runs the local or expert backend, got {args.backend!r}")
    policy = "expert" if args.backend == "expert" else ("checkpoint" if args.checkpoint else "random")
    cfg = EvalConfig(tasks=(args.task,), episodes=args.episodes, first_seed=args.seed, policy=policy,
                     out=mcap_path.parent, checkpoint=args.checkpoint if policy == "checkpoint" else "",
                     embodiment=args.embodiment, predicted_video=True, allow_seed_overlap=True)  # fmt: skip
    return eval_plan(cfg, args.task, mcap_path if args.record else None, record_all=True)


def _drive_task(args: argparse.Namespace, group, episodes: list) -> int:
    """Seeded episodes of the task through the eval harness; each one's result is printed as it ends."""
    from dreamzero_ros.apps.evaluate import EvalError, Harness

    harness = Harness(group, args.embodiment, arm=True)
    try:
        for i, (result, _) in enumerate(harness.run(args.seed, args.episodes)):
            episodes.append(result)
            print(f"  episode {i + 1}/{args.episodes} {result.line()}", flush=True)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        harness.close()
    print(f"  {args.task}: {sum(e.success for e in episodes)}/{len(episodes)} episodes succeeded", flush=True)
    return 0


def _once_ready(op, command):
    """Run an executor command (home, arm) like an operator who waits for the robot: the executor
    refuses until its first joint state (the sim renders its GL contexts before it publishes one), so
    retry that refusal until STARTUP_TIMEOUT."""
    from dreamzero_ros.apps.operator_commands import OperatorError

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            return command()
        except OperatorError as exc:
            if "no joint state" not in str(exc) or time.monotonic() > deadline:
                raise
            op.spin_until(lambda: False, 0.2)


def _progress(elapsed: float, latest: dict) -> str:
    inf, ex = latest.get("inference"), latest.get("action_executor")
    parts = [f"t={elapsed:5.1f}s"]
    if inf is not None:
        parts += [f"chunks={inf.chunks_produced}", f"latency={inf.latency_last * 1000:.0f}ms (p95 {inf.latency_p95 * 1000:.0f})"]
        if inf.reason:
            parts.append(f"inference: {inf.reason}")
    if ex is not None:
        parts += [f"rate={ex.control_rate:.1f}Hz", f"state={ex.state}", f"holds={ex.holds}"]
    return "  ".join(parts)


def _print_summary(summary: dict, out: Path) -> None:
    from dreamzero_ros.runs.report import GAP_PERIODS

    def fmt(value, scale: float = 1.0, unit: str = "") -> str:
        return "n/a" if value is None else f"{value * scale:.3g}{unit}"

    tracking = summary.get("tracking_error") or {}
    rms = [v["rms"] for v in tracking.values() if v.get("rms") is not None]
    worst = [v["max"] for v in tracking.values() if v.get("max") is not None]
    print("\nsummary", flush=True)
    if "successes" in summary:
        print(f"  task                {summary['task']}: {summary['successes']}/{len(summary['episodes'])} "
              "episodes succeeded")
    print(f"  duration            {fmt(summary.get('duration_s'), unit=' s')}")
    print(f"  chunks produced     {summary.get('chunks')}")
    print(f"  latency p50 / p95   {fmt(summary.get('latency_p50_s'), 1000, ' ms')} / "
          f"{fmt(summary.get('latency_p95_s'), 1000, ' ms')}")
    print(f"  control rate        {fmt(summary.get('control_rate_hz'), unit=' Hz')} "
          f"(target {fmt(summary.get('control_rate_target_hz'), unit=' Hz')}, "
          f"period p99 {fmt(summary.get('period_p99_s'), 1000, ' ms')}; {summary.get('command_gaps')} pauses "
          f"over {GAP_PERIODS} periods, left out of the rate: resets between episodes, or stalls)")
    print(f"  holds               {summary.get('holds')}")
    print(f"  rejected chunks     {summary.get('chunks_rejected')}")
    print(f"  tracking error      rms {fmt(max(rms) if rms else None)} / max {fmt(max(worst) if worst else None)} "
          "(worst joint, rad or m)")
    print(f"  files in {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
