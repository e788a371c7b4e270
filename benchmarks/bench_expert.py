"""Benchmark the simulated tasks' scripted expert: success rate per task over seeded episodes, the hold-still
baseline, simulated time to success, and CPU seconds per episode (physics only, no rendering); optionally the
cost of rendering demonstrations (all cameras every control step, as `dreamzero generate` does).

    python benchmarks/bench_expert.py --episodes 50            # success table, ~1 min on one core
    python benchmarks/bench_expert.py --episodes 3 --render    # + demonstration frames per second
    python benchmarks/bench_expert.py --episodes 12 --tasks push lift --offsets 0 1 2 3 4   # error tolerance

--offsets: the expert plans for a named cube moved by that many cm (a different direction per seed) while the real
one stays: how far off a learned policy may aim and still solve the task open loop.

Success rates come with a 95% Wilson interval. Seeds start at --seed (default 1_000_000, disjoint from the
seeds `dreamzero generate` uses by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

from _common import default_output, print_table, summarize, write_json

import dreamzero_ros.sim  # noqa: F401 - chooses the headless GL backend before mujoco is first imported
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.evaluation import EVAL_FIRST_SEED, wilson_interval
from dreamzero_ros.sim.expert import ScriptedExpert, hold_still, rollout
from dreamzero_ros.sim.robot import SimRobot
from dreamzero_ros.sim.tasks import TASKS, reset_episode, task_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embodiment", default="franka_droid")
    parser.add_argument("--tasks", nargs="+", default=sorted(TASKS))
    parser.add_argument("--episodes", type=int, default=50, help="seeded episodes per task and policy")
    parser.add_argument("--seed", type=int, default=EVAL_FIRST_SEED)
    parser.add_argument("--render", action="store_true", help="also time episodes with every camera rendered")
    parser.add_argument("--offsets", type=float, nargs="*", default=[],
                        help="also: cm of error in where the expert believes the named cube is")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    emb = load_embodiment(args.embodiment)
    rows, render_rows, offset_rows = [], [], []
    with SimRobot(emb, layout=task_layout(emb)) as robot:
        for task in args.tasks:
            for name in ("expert", "hold_still"):
                ok, tts, cpu, failed = 0, [], [], []
                for seed in range(args.seed, args.seed + args.episodes):
                    episode = reset_episode(robot, task, seed)
                    policy = ScriptedExpert(robot, episode) if name == "expert" else hold_still
                    t0 = time.process_time()
                    result = rollout(robot, episode, policy)
                    cpu.append(time.process_time() - t0)
                    ok += result.success
                    if result.success:
                        tts.append(result.time_to_success)
                    else:
                        failed.append(seed)
                lo, hi = wilson_interval(ok, args.episodes)
                rows.append({
                    "task": task, "policy": name, "success": f"{ok}/{args.episodes}", "rate": ok / args.episodes,
                    "ci95_lo": lo, "ci95_hi": hi, "tts_p50_s": summarize(tts)["p50"], "tts_max_s": summarize(tts)["max"],
                    "cpu_s_per_ep_p50": summarize(cpu)["p50"],
                    "failed_seeds": failed[:10] if name == "expert" else "-",
                })
            for offset in args.offsets:
                ok = 0
                for seed in range(args.seed, args.seed + args.episodes):
                    episode = reset_episode(robot, task, seed)
                    angle = seed * 2.399963  # the golden angle: directions spread evenly over the seeds
                    x, y = episode.objects[episode.target]
                    moved = {**episode.objects, episode.target: (x + offset / 100 * math.cos(angle),
                                                                  y + offset / 100 * math.sin(angle))}
                    believed = dataclasses.replace(episode, objects=moved)
                    ok += rollout(robot, episode, ScriptedExpert(robot, believed)).success
                lo, hi = wilson_interval(ok, args.episodes)
                offset_rows.append({"task": task, "offset_cm": offset, "success": f"{ok}/{args.episodes}",
                                    "rate": ok / args.episodes, "ci95_lo": lo, "ci95_hi": hi})
            if args.render:
                frames, t0 = 0, time.perf_counter()
                for seed in range(args.seed, args.seed + min(args.episodes, 3)):
                    episode = reset_episode(robot, task, seed)
                    result = rollout(robot, episode, ScriptedExpert(robot, episode), cameras=emb.camera_names)
                    frames += len(result.states)
                wall = time.perf_counter() - t0
                render_rows.append({"task": task, "steps": frames, "wall_s": wall, "steps_per_s": frames / wall,
                                    "views": len(emb.camera_names)})
    print_table(rows, title=f"scripted expert vs hold-still, {args.embodiment}, seeds {args.seed}..")
    if offset_rows:
        print_table(offset_rows, title="the expert aiming at a named cube moved by offset_cm (the real one stays)")
    if render_rows:
        print_table(render_rows, title="demonstrations with every camera rendered (control steps per wall s)")
    write_json(args.out or default_output("expert"), {"results": rows, "render": render_rows, "offsets": offset_rows,
                                                       "episodes": args.episodes, "seed": args.seed})


if __name__ == "__main__":
    main()
