"""Soak: the full closed loop in the simulator (scripted backend) for minutes, per-window statistics.

Starts the bringup plan (sim_robot, camera_stitcher, inference with the scripted backend,
action_executor; no recorder) as processes in a private ROS domain, sets the instruction, arms,
drops --warmup s after the first action chunk, then measures --duration s. An observer (a
RosProbe in this process; see dreamzero_ros/soak.py for why not a separate process) records
every robot command, ActionChunk id, joint state, PolicyStatus and the executor's publish counter;
the RSS and CPU time of each node process (children included) are sampled every --rss-interval s.

Per --window s it reports the command rate as received (mean = periods / time spanned), the
period p50/p99/max (ms), commands received vs expected (rate x window; lost = the difference),
chunk-id gaps (chunk loss), executor holds and the 1-min load average; per process the RSS at the
first sample after the warm-up and at the end, growth %, and CPU in cores. At the end every node
is stopped (SIGINT) and the script checks that each exited 0 and that no pid is left.
Exit status 1 when a node died, exited non-zero or left a pid behind.

Usage:
    python benchmarks/bench_soak.py [--embodiment franka_droid] [--duration 600] [--window 60]
                                    [--warmup 10] [--output benchmarks/results/soak_<embodiment>.json]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_output, print_table, write_json

from dreamzero_ros.bringup.ros_env import pick_domain_id, ros_environment
from dreamzero_ros.testing.soak import SoakOptions, overall, process_table, rss_series, run_soak, window_table

WINDOW_COLUMNS = ("window", "start_s", "rate_hz_mean", "period_p50_ms", "period_p99_ms", "period_max_ms",
                  "send_p99_ms", "late", "received", "expected", "lost", "chunks", "chunk_ids_missing", "holds",
                  "stale_inputs", "executor_rate_hz", "load1")
PROCESS_COLUMNS = ("process", "pid", "rss_start_mb", "rss_end_mb", "rss_max_mb", "growth_pct", "cpu_cores",
                   "exit_code")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embodiment", default="franka_droid", help="franka_droid (15 Hz), agibot_g1 or yam (30 Hz)")
    parser.add_argument("--duration", type=float, default=600.0, help="s measured after the warm-up")
    parser.add_argument("--window", type=float, default=60.0, help="s per statistics window")
    parser.add_argument("--warmup", type=float, default=10.0, help="s dropped after the first action chunk")
    parser.add_argument("--rss-interval", type=float, default=5.0, help="s between RSS samples")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/soak_<embodiment>.json)")
    parser.add_argument("--log", default=None, help="write every node's output to this file")
    args = parser.parse_args()

    options = SoakOptions(embodiment=args.embodiment, backend="scripted", duration=args.duration, warmup=args.warmup,
                          window=args.window, rss_interval=args.rss_interval)
    # The observer's rclpy Context reads the process environment: join the nodes' private domain.
    os.environ.update(ros_environment(pick_domain_id()))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"soak: embodiment={args.embodiment} duration={args.duration:g}s window={args.window:g}s "
          f"warmup={args.warmup:g}s domain={os.environ['ROS_DOMAIN_ID']} load={os.getloadavg()}", flush=True)
    run = run_soak(options, env=dict(os.environ), progress=lambda line: print(f"  {line}", flush=True))
    if args.log:
        Path(args.log).write_text("\n".join(run.logs) + "\n")

    per_window, per_process, total = window_table(run), process_table(run), overall(run)
    print_table(per_window, [c for c in WINDOW_COLUMNS if any(c in r for r in per_window)],
                title=f"\nper window ({args.window:g} s), commands at {run.rate_hz:g} Hz target")
    print_table(per_process, PROCESS_COLUMNS, title="\nper process (RSS in MB, first sample after warm-up -> end)")
    print_table([total], title="\nwhole measured span")

    problems = []
    if run.died:
        problems.append(f"node died during the run: {run.died}")
    bad = {name: code for name, code in run.exit_codes.items() if code != 0}
    if bad:
        problems.append(f"non-zero exit codes at stop: {bad}")
    if run.pids_left:
        problems.append(f"pids still alive after stop: {run.pids_left}")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print(f"\nexit codes at stop: {run.exit_codes}; pids left: {run.pids_left or 'none'}")

    out = write_json(args.output or default_output(f"soak_{args.embodiment}"), {
        "options": {"embodiment": args.embodiment, "backend": "scripted", "duration_s": args.duration,
                    "window_s": args.window, "warmup_s": args.warmup, "rss_interval_s": args.rss_interval,
                    "domain_id": int(os.environ["ROS_DOMAIN_ID"])},
        "interface": run.interface,
        "rate_hz_target": run.rate_hz,
        "overall": total,
        "windows": per_window,
        "processes": per_process,
        "rss_mb_series": rss_series(run),
        "exit_codes": run.exit_codes,
        "pids_left": run.pids_left,
        "problems": problems,
    })
    print(f"wrote {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
