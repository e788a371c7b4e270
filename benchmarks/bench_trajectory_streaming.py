"""Peak acceleration and jerk at chunk switches at 1 kHz: per-tick commands vs trajectory streaming.

Scenario (Franka DROID, 15 Hz, 24-step chunks; as bench_chunk_boundary.py): the arm follows a smooth
reference motion; every 0.8 s an observation is taken and, 0.2-0.35 s later, a chunk arrives that was
predicted from a slightly different state (per-chunk offset, sigma --bias rad) with per-step model
noise (sigma --noise rad). ExecutorCore (default settings: smoothing, 3-step cross-fade from the
trajectory) executes the same chunks in three ways, and the robot's 1 kHz command is recorded:

- per-tick stepped: a forward position controller holds each 15 Hz command until the next (what
  franka_ros2's discontinuity reflexes see from stepped positions);
- per-tick linear: one-point JointTrajectory messages due one period ahead, interpolated linearly
  by the controller (positions only), i.e. the executor's former JointTrajectory output;
- streamed: core.trajectory_stream's whole-chunk trajectories (positions + velocities) into
  sim.jtc.JtcModel (the JTC's splice and cubic rules), delivered 10 ms after sending.

Acceleration and jerk are finite differences of the 1 kHz positions (rad/s^2, rad/s^3, max over the
arm joints). Per switch (the tick at which a new chunk first executes) the peak within the 0.4 s
after it; "inside" is the peak of each other 0.4 s stretch. Usage:
    python benchmarks/bench_trajectory_streaming.py [--episodes 6] [--seconds 15] [--out PATH]
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
from dreamzero_ros.core.trajectory_stream import TrajectoryStreamer
from dreamzero_ros.sim.jtc import JtcModel

MODES = ("per-tick stepped", "per-tick linear", "streamed")
RATE = 1000  # Hz of the robot's controller
LATENCY = 0.010  # s from sending a trajectory to the controller's first update with it
WINDOW = 0.4  # s after a switch: the hand-over (0.1 s) and the fade over 3 rows (0.2 s) fall inside


def reference(t: np.ndarray, home: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """[len(t), J] smooth motion: 0.25 rad at 0.4 Hz per arm joint (gripper 5 mm), around home."""
    amp = np.full(home.shape, 0.25)
    amp[-1] = 0.005
    return home + amp * np.sin(2 * np.pi * 0.4 * t[:, None] + phase)


def episode(mode: str, seed: int, seconds: float, bias: float, noise: float) -> tuple[np.ndarray, np.ndarray, list]:
    """(t [n], positions [n, J] at 1 kHz, switch times) for one mode; same chunks for every mode per seed."""
    emb = load_embodiment("franka_droid")
    names, dt, horizon = emb.action_joints, emb.control.dt, emb.control.horizon
    lo, hi, vel = emb.limits_arrays()
    home = emb.home_array()
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, len(names))
    scale = np.ones(len(names))
    scale[-1] = 0.02
    start = reference(np.array([0.0]), home, phase)[0]
    core = ExecutorCore(emb, ExecutorSettings())
    core.on_joint_state(names, start, 0.0)
    core.arm(0.0)
    pending = []
    t_obs, chunk_id = 0.013, 0
    while t_obs < seconds:
        latency = rng.uniform(0.2, 0.35)
        times = t_obs + dt * np.arange(1, horizon + 1)
        offset = rng.normal(0.0, bias, len(names)) * scale
        rows = reference(times, home, phase) + offset + rng.normal(0.0, noise, (horizon, len(names))) * scale
        chunk_id += 1
        pending.append((t_obs + latency, RawChunk(t_obs, names, dt, horizon, rows.ravel(), chunk_id=chunk_id)))
        t_obs += 0.8

    streamer = TrajectoryStreamer(lo, hi, vel)
    streamer.start(start)
    jtc = JtcModel(start)
    inbox: list = []
    held = start.copy()
    switches, prev_id = [], None
    n = int(seconds * RATE)
    out = np.empty((n, len(names)))
    next_tick = dt
    for i in range(n):
        t = i / RATE
        if t >= next_tick - 1e-9:
            next_tick += dt
            while pending and pending[0][0] <= t:
                core.on_chunk(pending.pop(0)[1], t)
            cmd = core.tick(t)
            if not cmd.holding and prev_id is not None and cmd.chunk_id != prev_id:
                switches.append(t)
            prev_id = cmd.chunk_id if not cmd.holding else prev_id
            if mode == "per-tick stepped":
                held = cmd.positions
            elif mode == "per-tick linear":
                jtc.receive(t, np.array([dt]), cmd.positions[None, :], None, t)
            else:
                traj = streamer.on_command((cmd.source, cmd.chunk_id), cmd.positions, cmd.holding, t, core.remaining())
                if traj is not None:
                    inbox.append((t + LATENCY, traj))
        while inbox and inbox[0][0] <= t:
            at, traj = inbox.pop(0)
            assert jtc.receive(traj.stamp, traj.time_from_start, traj.positions, traj.velocities, at), jtc.rejected
        out[i] = held if mode == "per-tick stepped" else jtc.sample(t)[0]
    return np.arange(n) / RATE, out, switches


def peaks(t: np.ndarray, q: np.ndarray, switches: list) -> dict[str, list[float]]:
    """Peak |acceleration| and |jerk| (arm joints) in the WINDOW after each switch, and per other stretch."""
    h = 1.0 / RATE
    acc = np.abs(np.diff(q[:, :-1], 2, axis=0) / h**2).max(axis=1)  # at t[1:-1]
    jerk = np.abs(np.diff(q[:, :-1], 3, axis=0) / h**3).max(axis=1)  # at t[1:-2] (+ h / 2)
    result: dict[str, list[float]] = {"acc_switch": [], "jerk_switch": [], "acc_inside": [], "jerk_inside": []}
    near = np.zeros(t.size, dtype=bool)
    for s in switches:
        w = (t >= s) & (t < s + WINDOW)
        near |= w
        result["acc_switch"].append(float(acc[w[1:-1]].max()))
        result["jerk_switch"].append(float(jerk[w[1:-2]].max()))
    # Other stretches: after the first switch (start-up is not a chunk boundary), away from every switch.
    first = switches[0] if switches else t[-1]
    for s in np.arange(first + WINDOW, t[-1] - WINDOW, WINDOW):
        w = (t >= s) & (t < s + WINDOW)
        if not (w & near).any():
            result["acc_inside"].append(float(acc[w[1:-1]].max()))
            result["jerk_inside"].append(float(jerk[w[1:-2]].max()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of one episode (s)")
    parser.add_argument("--bias", type=float, default=0.02, help="per-chunk state offset sigma (rad)")
    parser.add_argument("--noise", type=float, default=0.003, help="per-step model noise sigma (rad)")
    parser.add_argument("--out", type=Path, default=default_output("trajectory_streaming"), help="JSON result path")
    args = parser.parse_args()

    rows = []
    for mode in MODES:
        acc: dict[str, list[float]] = {}
        for seed in range(args.episodes):
            t, q, switches = episode(mode, seed, args.seconds, args.bias, args.noise)
            for key, values in peaks(t, q, switches).items():
                acc.setdefault(key, []).extend(values)
        for key in ("acc_switch", "jerk_switch", "acc_inside", "jerk_inside"):
            rows.append({"mode": mode, "metric": key, **summarize(acc[key])})
    print_table(rows, columns=["mode", "metric", "n", "p50", "p95", "max"],
                title="1 kHz command, arm joints: peak |acceleration| rad/s^2 and |jerk| rad/s^3 per 0.4 s "
                      "after each chunk switch (_switch) and per other 0.4 s (_inside)")
    path = write_json(args.out, {
        "benchmark": "trajectory_streaming",
        "units": {"acc": "rad/s^2", "jerk": "rad/s^3"},
        "scenario": {"embodiment": "franka_droid", "episodes": args.episodes, "seconds": args.seconds,
                     "bias_rad": args.bias, "noise_rad": args.noise, "chunk_period_s": 0.8,
                     "latency_s": [0.2, 0.35], "controller_rate_hz": RATE, "delivery_latency_s": LATENCY,
                     "window_s": WINDOW},
        "results": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
