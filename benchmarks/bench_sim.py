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
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import dreamzero_ros.sim  # noqa: F401 - chooses the headless GL backend before mujoco is first imported
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.sim.robot import SimRobot

REPO = Path(__file__).resolve().parents[1]
EMBODIMENTS = ("franka_droid", "agibot_g1", "yam")
CONTROL_DT = 1.0 / 30.0  # s


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "n": int(a.size),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "max_ms": float(a.max()),
        "mean_ms": float(a.mean()),
    }


def git_sha() -> str | None:
    """HEAD's sha (with '-dirty' for uncommitted changes), or None outside git / before the first commit."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    result["step_1_30s"] = percentiles(step_ms)
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
        result["render"][cam] = {"size_hw": [h, w], **percentiles(samples)}
    result["all_cameras_per_tick"] = percentiles(per_tick)
    result["all_cameras_fps_at_p95"] = 1e3 / result["all_cameras_per_tick"]["p95_ms"]
    sim.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embodiments", nargs="+", default=list(EMBODIMENTS), choices=EMBODIMENTS)
    parser.add_argument("--frames", type=int, default=60, help="timed render ticks per embodiment (all cameras)")
    parser.add_argument("--steps", type=int, default=150, help="timed 1/30 s physics steps per embodiment")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations before each measurement")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_sim.json")
    args = parser.parse_args(argv)
    if min(args.frames, args.steps) < 1 or args.warmup < 0:
        parser.error("--frames and --steps must be >= 1, --warmup >= 0")

    report = {
        "benchmark": "bench_sim",
        "device": {
            "cpu": cpu_name(),
            "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(),
        },
        "versions": {"python": sys.version.split()[0], "mujoco": importlib.metadata.version("mujoco"), "numpy": np.__version__},
        "env": {k: os.environ.get(k) for k in ("MUJOCO_GL", "LP_NUM_THREADS", "PYOPENGL_PLATFORM")},
        "git_sha": git_sha(),
        "settings": {"frames": args.frames, "steps": args.steps, "warmup": args.warmup, "control_dt_s": CONTROL_DT},
        "results": {},
    }
    for name in args.embodiments:
        report["results"][name] = bench_embodiment(name, args.frames, args.steps, args.warmup)

    print(f"MUJOCO_GL={report['env']['MUJOCO_GL']} LP_NUM_THREADS={report['env']['LP_NUM_THREADS']} "
          f"cpu={report['device']['cpu']} cores={report['device']['cores_available']} mujoco={report['versions']['mujoco']}")
    print(f"{'embodiment':<14} {'what':<26} {'size':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, res in report["results"].items():
        for cam, r in res["render"].items():
            size = "x".join(map(str, r["size_hw"]))
            print(f"{name:<14} {'render ' + cam:<26} {size:>9} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['max_ms']:8.2f}")
        r = res["all_cameras_per_tick"]
        print(f"{name:<14} {'render all cameras':<26} {'':>9} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['max_ms']:8.2f}"
              f"   -> {res['all_cameras_fps_at_p95']:.0f} fps at p95")
        r = res["step_1_30s"]
        print(f"{name:<14} {'step 1/30 s':<26} {'':>9} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['max_ms']:8.2f}")
        print(f"{'':<14} GL: {res['gl'].get('renderer', res['gl'].get('error'))}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
