"""Benchmark the MuJoCo simulator core: offscreen render time per camera and physics cost per control period.

For each embodiment it builds a `SimRobot`, moves the joints along a slow sinusoid around home (so the
images and contacts are not frozen), and times, after a warm-up that is excluded:
  * `render(camera)` for every camera at its render size (ms per frame, and all cameras of one tick);
  * `step(1/30 s)` (ms of wall time per 1/30 s of simulated time).
Prints a p50/p95/max table and writes JSON with the device, library versions, GL renderer and git sha.

Mesa's llvmpipe (EGL without a GPU) renders on LP_NUM_THREADS threads (default: all cores); for the
one-core figure run `LP_NUM_THREADS=1 python benchmarks/bench_sim.py`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_output, print_table, summarize, write_json

import dreamzero_ros.sim  # noqa: F401 - chooses the headless GL backend before mujoco is first imported
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.sim.robot import SimRobot

EMBODIMENTS = ("franka_droid", "agibot_g1", "yam")
CONTROL_DT = 1.0 / 30.0  # s


def gl_strings(sim: SimRobot) -> dict[str, str]:
    """GL vendor/renderer/version of the cameras' context (e.g. 'llvmpipe' = CPU rendering)."""
    try:
        return sim.gl_info()
    except Exception as exc:  # noqa: BLE001 - informative only; never fail the benchmark over them
        return {"error": repr(exc)}


def move(sim: SimRobot, home: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: float) -> None:
    """A slow sinusoid around home (0.1 rad / 10% of a prismatic range), phase-shifted per joint."""
    phase = np.arange(home.size)
    amp = np.where(hi - lo < 0.2, 0.1 * (hi - lo), 0.1)
    sim.set_targets(sim.joint_names, np.clip(home + amp * np.sin(2 * np.pi * 0.5 * t + phase), lo, hi))


def bench_embodiment(name: str, frames: int, steps: int, warmup: int) -> dict:
    sim = SimRobot(load_embodiment(name))
    home = np.array([sim.home[j] for j in sim.joint_names])
    lo, hi, _ = sim.embodiment.limits_arrays(sim.joint_names)
    result: dict = {"render": {}, "gl": gl_strings(sim)}

    # Physics: wall time of one control period of simulated time.
    step_ms = []
    for i in range(warmup + steps):
        move(sim, home, lo, hi, sim.time)
        t0 = time.perf_counter()
        sim.step(CONTROL_DT)
        if i >= warmup:
            step_ms.append(1e3 * (time.perf_counter() - t0))
    result["step_1_30s"] = summarize(step_ms)
    result["physics_timestep_s"] = float(sim.model.opt.timestep)

    # Rendering: every camera once per tick, the arm moving between ticks.
    per_cam: dict[str, list[float]] = {c: [] for c in sim.camera_names}
    per_tick = []
    for i in range(warmup + frames):
        move(sim, home, lo, hi, sim.time)
        sim.step(CONTROL_DT)
        tick = 0.0
        for cam in sim.camera_names:
            t0 = time.perf_counter()
            sim.render(cam)
            dt_ms = 1e3 * (time.perf_counter() - t0)
            tick += dt_ms
            if i >= warmup:
                per_cam[cam].append(dt_ms)
        if i >= warmup:
            per_tick.append(tick)
    for cam, samples in per_cam.items():
        h, w = sim.render_size[cam]
        result["render"][cam] = {"size_hw": [h, w], **summarize(samples)}
    result["all_cameras_per_tick"] = summarize(per_tick)
    result["all_cameras_fps_at_p95"] = 1e3 / result["all_cameras_per_tick"]["p95"]
    sim.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embodiments", nargs="+", default=list(EMBODIMENTS), choices=EMBODIMENTS)
    parser.add_argument("--frames", type=int, default=60, help="timed render ticks per embodiment (all cameras)")
    parser.add_argument("--steps", type=int, default=150, help="timed 1/30 s physics steps per embodiment")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations before each measurement")
    parser.add_argument("--out", type=Path, default=default_output("sim"), help="JSON result path")
    args = parser.parse_args(argv)
    if min(args.frames, args.steps) < 1 or args.warmup < 0:
        parser.error("--frames and --steps must be >= 1, --warmup >= 0")

    results = {name: bench_embodiment(name, args.frames, args.steps, args.warmup) for name in args.embodiments}
    env = {k: os.environ.get(k) for k in ("MUJOCO_GL", "LP_NUM_THREADS", "PYOPENGL_PLATFORM")}
    rows = []
    for name, res in results.items():
        for cam, r in res["render"].items():
            rows.append({"embodiment": name, "what": f"render {cam}", "size": "x".join(map(str, r["size_hw"])), **r})
        rows.append({"embodiment": name, "what": "render all cameras", **res["all_cameras_per_tick"]})
        rows.append({"embodiment": name, "what": "step 1/30 s", **res["step_1_30s"]})
    print(f"MUJOCO_GL={env['MUJOCO_GL']} LP_NUM_THREADS={env['LP_NUM_THREADS']} "
          f"mujoco={importlib.metadata.version('mujoco')}; GL: "
          + ", ".join(f"{n}: {r['gl'].get('renderer', r['gl'].get('error'))}" for n, r in results.items()))
    print_table(rows, ["embodiment", "what", "size", "p50", "p95", "max"], title="sim, ms")
    out = write_json(args.out, {"env": env, "mujoco": importlib.metadata.version("mujoco"),
                                "settings": {"frames": args.frames, "steps": args.steps, "warmup": args.warmup,
                                             "control_dt_s": CONTROL_DT},
                                "results": results})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
