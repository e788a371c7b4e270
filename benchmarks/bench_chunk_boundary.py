"""Command discontinuity at chunk boundaries, with and without smoothing and cross-fade.

Scenario (Franka DROID, 15 Hz, 24-step chunks): the arm follows a smooth reference motion; every
0.8 s an observation is taken and, after an inference latency of 0.2-0.35 s, a chunk arrives that
was predicted from a slightly different state (a per-chunk offset, sigma --bias rad) with
per-step model noise (sigma --noise rad). So each new chunk lands mid-way through the previous one
and disagrees with it a little, as in asynchronous execution. ExecutorCore streams the commands.

Per configuration it reports, over all episodes, max |delta command| (rad, over joints) at the
first tick of each new chunk ("switch"), the largest delta within the cross-fade window after it
("window"), the deltas on all other ticks ("inside"), and the RMS tracking error against the
reference motion. Usage:
    python benchmarks/bench_chunk_boundary.py [--episodes 20] [--seconds 20] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_output, print_table, summarize, write_json

from dreamzero_ros.core.chunk import RawChunk
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.executor import ExecutorCore, ExecutorSettings

CONFIGS = {
    "raw (no smoothing, no fade)": ExecutorSettings(smoothing=False, crossfade_steps=0),
    "smoothing only": ExecutorSettings(smoothing=True, crossfade_steps=0),
    "smoothing + fade 3 from commanded": ExecutorSettings(crossfade_steps=3, crossfade_source="commanded"),
    "smoothing + fade 3 from trajectory": ExecutorSettings(crossfade_steps=3, crossfade_source="trajectory"),
    "smoothing + fade 6 from trajectory": ExecutorSettings(crossfade_steps=6, crossfade_source="trajectory"),
}


def reference(t: np.ndarray, home: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """[len(t), J] smooth motion: 0.25 rad at 0.4 Hz per arm joint (gripper 5 mm), around home."""
    amp = np.full(home.shape, 0.25)
    amp[-1] = 0.005
    return home + amp * np.sin(2 * np.pi * 0.4 * t[:, None] + phase)


def episode(settings: ExecutorSettings, seed: int, seconds: float, bias: float, noise: float) -> dict[str, list[float]]:
    emb = load_embodiment("franka_droid")
    names, dt, horizon = emb.action_joints, emb.control.dt, emb.control.horizon
    lo, hi, _ = emb.limits_arrays()
    home = (lo + hi) / 2
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, len(names))
    scale = np.ones(len(names))
    scale[-1] = 0.02  # the gripper's offsets and noise are in metres of a 4 cm stroke
    core = ExecutorCore(emb, settings)
    core.on_joint_state(names, reference(np.array([0.0]), home, phase)[0], 0.0)
    core.arm(0.0)

    # Pending chunks: (arrival time, RawChunk), one observation every 0.8 s at a camera phase offset.
    pending = []
    t_obs = 0.013
    chunk_id = 0
    while t_obs < seconds:
        latency = rng.uniform(0.2, 0.35)
        times = t_obs + dt * np.arange(1, horizon + 1)
        offset = rng.normal(0.0, bias, len(names)) * scale
        rows = reference(times, home, phase) + offset + rng.normal(0.0, noise, (horizon, len(names))) * scale
        chunk_id += 1
        pending.append((t_obs + latency, RawChunk(t_obs, names, dt, horizon, rows.ravel(), chunk_id=chunk_id)))
        t_obs += 0.8

    # d1: max |c[t] - c[t-1]| (the step); d2: max |c[t] - 2 c[t-1] + c[t-2]| (the change of step,
    # which is what a discontinuity adds on top of the motion's own velocity). Arm joints, rad.
    out: dict[str, list[float]] = {f"{m}_{w}": [] for m in ("d1", "d2") for w in ("switch", "window", "inside")}
    out["error"] = []
    # The switch tick, the rest of the fade, and one more tick (a step change shows in d2 twice).
    window = max(settings.crossfade_steps, 1) + 1
    history: list[np.ndarray] = []  # consecutive running commands (arm joints)
    prev_id, since_switch = None, 0
    for k in range(1, int(seconds / dt)):
        now = k * dt
        while pending and pending[0][0] <= now:
            core.on_chunk(pending.pop(0)[1], now)
        cmd = core.tick(now)
        if cmd is None or cmd.holding:
            history, prev_id = [], None
            continue
        arm = cmd.positions[:-1]
        out["error"].append(float(np.sqrt(np.mean((arm - reference(np.array([now]), home, phase)[0, :-1]) ** 2))))
        since_switch = 0 if prev_id is not None and cmd.chunk_id != prev_id else since_switch + 1
        history = [*history[-2:], arm]
        prev_id = cmd.chunk_id
        if cmd.chunk_id == 1 or len(history) < 3:
            # Start-up (holding, then catching up with the first chunk under the velocity limit) is
            # not a chunk boundary: statistics start at the switch to the second chunk.
            continue
        d1 = float(np.abs(history[-1] - history[-2]).max())
        d2 = float(np.abs(history[-1] - 2 * history[-2] + history[-3]).max())
        where = "switch" if since_switch == 0 else "window" if since_switch < window else "inside"
        for name, value in (("d1", d1), ("d2", d2)):
            out[f"{name}_{where}"].append(value)
            if where == "switch":
                out[f"{name}_window"].append(value)  # the window includes its switch tick
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one episode (s)")
    parser.add_argument("--bias", type=float, default=0.02, help="per-chunk state offset sigma (rad)")
    parser.add_argument("--noise", type=float, default=0.003, help="per-step model noise sigma (rad)")
    parser.add_argument("--out", type=Path, default=default_output("chunk_boundary"), help="JSON result path")
    args = parser.parse_args()

    rows = []
    for label, settings in CONFIGS.items():
        acc: dict[str, list[float]] = {}
        for seed in range(args.episodes):
            for key, values in episode(settings, seed, args.seconds, args.bias, args.noise).items():
                acc.setdefault(key, []).extend(values)
        st = {key: summarize(values) for key, values in acc.items()}
        rows.append(
            {
                "config": label,
                "switches": st["d1_switch"]["n"],
                "d1_switch_p50": st["d1_switch"]["p50"] * 1e3,
                "d1_switch_max": st["d1_switch"]["max"] * 1e3,
                "d1_inside_p50": st["d1_inside"]["p50"] * 1e3,
                "d1_inside_max": st["d1_inside"]["max"] * 1e3,
                "d2_switch_p50": st["d2_switch"]["p50"] * 1e3,
                "d2_switch_p95": st["d2_switch"]["p95"] * 1e3,
                "d2_window_max": st["d2_window"]["max"] * 1e3,
                "d2_inside_p50": st["d2_inside"]["p50"] * 1e3,
                "d2_inside_p95": st["d2_inside"]["p95"] * 1e3,
                "track_rms": float(np.mean(acc["error"])) * 1e3,
            }
        )
    print_table(
        rows,
        title="arm joints, mrad: d1 = max |step| per tick, d2 = max |change of step|; track_rms = RMS error vs reference",
    )
    path = write_json(
        args.out,
        {
            "benchmark": "chunk_boundary",
            "unit": "mrad",
            "scenario": {
                "embodiment": "franka_droid",
                "episodes": args.episodes,
                "seconds": args.seconds,
                "bias_rad": args.bias,
                "noise_rad": args.noise,
                "chunk_period_s": 0.8,
                "latency_s": [0.2, 0.35],
            },
            "configs": {k: {f: getattr(v, f) for f in v.field_names()} for k, v in CONFIGS.items()},
            "results": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
