"""Command period of the action_executor node as a real process, idle machine vs CPU hogs.

The executor node (default yam, 30 Hz, JointState commands) runs as its own process, armed on its
first joint state and fed a fresh chunk every --chunk-period s, as the inference node would. This
script's RosProbe (an rclpy node on its own thread) observes every command. Per case it reports the
period between consecutive commands, in ms:
  - "send": from the command's header stamp (the node's clock when it published): the timer itself;
  - "receive": from the probe's receive time: what a controller on the same machine would see.
The "cpu load" case runs --hogs extra processes (default: one per core) that multiply 256x256
matrices in a loop on one thread each, for the whole measurement. Warm-up (--warmup s) is dropped.
Usage:
    python benchmarks/bench_executor_period.py [--duration 30] [--embodiment yam] [--cases idle,load]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_output, percentile, print_table, write_json

from dreamzero_ros.bringup.ros_env import pick_domain_id, ros_environment

HOG = (
    "import numpy as np\n"
    "a = np.random.default_rng(0).random((256, 256)); b = a.copy()\n"
    "while True:\n"
    "    b = np.tanh(a @ b)\n"
)


def period_stats(times: list[float], dt: float) -> dict[str, float]:
    """Period statistics (ms) of event times (s), plus the achieved rate (Hz) and late ticks."""
    periods = np.diff(np.asarray(times)) * 1e3
    if len(periods) == 0:
        return {"n": 0}
    return {
        "n": int(len(periods)),
        "mean_ms": float(periods.mean()),
        "std_ms": float(periods.std()),
        "p50_ms": percentile(periods, 50),
        "p99_ms": percentile(periods, 99),
        "max_ms": float(periods.max()),
        "rate_hz": float(len(periods) / (times[-1] - times[0])),
        "late_1.5dt": int(np.count_nonzero(periods > 1.5 * dt * 1e3)),
    }


def run_case(name: str, args: argparse.Namespace, hogs: int) -> list[dict]:
    from dreamzero_msgs.msg import ActionChunk, ActionGroup, PolicyStatus
    from sensor_msgs.msg import JointState

    from dreamzero_ros.bringup.processes import ManagedProcess
    from dreamzero_ros.core.embodiment import load_embodiment
    from dreamzero_ros.ros import qos
    from dreamzero_ros.ros.names import CHUNK_TOPIC, STATUS_TOPIC
    from dreamzero_ros.ros.runtime import stamp_to_seconds
    from dreamzero_ros.testing.probes import NodeLauncher, RosProbe

    emb = load_embodiment(args.embodiment)
    dt = emb.control.dt
    lower, upper, _ = emb.limits_arrays()
    home = (lower + upper) / 2
    launcher, probe, hog_procs = NodeLauncher(), None, []
    try:
        node = launcher.start("action_executor", "dreamzero_ros.nodes.action_executor_node",
                              {"embodiment": args.embodiment, "arm_on_start": True, "status_rate": 2.0})
        probe = RosProbe("bench_executor_probe")
        commands = probe.collect(_command_type(emb), emb.command.topic, qos.COMMANDS)
        status = probe.collect(PolicyStatus, STATUS_TOPIC, qos.STATUS)
        chunks = probe.publisher(ActionChunk, CHUNK_TOPIC, qos.COMMANDS, wait_for_subscribers=1, timeout=60)
        states = probe.publisher(JointState, emb.command.joint_states_topic, qos.JOINT_STATES,
                                 wait_for_subscribers=1, timeout=60)
        probe.wait_for_publishers(emb.command.topic, timeout=60)
        states.publish(JointState(name=list(emb.action_joints), position=home.tolist()))
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        for i in range(hogs):
            hog_procs.append(ManagedProcess(f"hog{i}", [sys.executable, "-c", HOG], env=env, echo=False).start())

        # A gentle sine about home in every chunk, a new one every chunk_period s (stamped now).
        t_end = time.monotonic() + args.warmup + args.duration
        next_chunk, chunk_id = 0.0, 0
        while time.monotonic() < t_end:
            if time.monotonic() >= next_chunk:
                stamp = probe.now_msg()
                t0 = stamp_to_seconds(stamp)
                k = np.arange(1, emb.control.horizon + 1)[:, None]
                rows = home + 0.05 * np.sin(2 * np.pi * 0.5 * (t0 + k * dt))
                msg = ActionChunk(chunk_id=chunk_id, joint_names=list(emb.action_joints), dt=dt,
                                  horizon=emb.control.horizon, positions=rows.reshape(-1).tolist())
                msg.header.stamp = stamp
                for g in emb.extra_actions:
                    msg.extra_groups.append(ActionGroup(name=g.name, names=list(g.components),
                                                        values=[0.0] * (emb.control.horizon * len(g.components))))
                chunks.publish(msg)
                chunk_id += 1
                next_chunk = time.monotonic() + args.chunk_period
            time.sleep(0.01)
        if not node.running:
            raise RuntimeError(f"executor died:\n{node.output()}")
        start = t_end - args.duration
        got = [(t, m) for t, m in list(commands) if t >= start]
        if not got:
            raise RuntimeError(f"no commands received:\n{node.output()}")
        recv = [t for t, _ in got]
        send = [stamp_to_seconds(m.header.stamp) for _, m in got] if hasattr(got[0][1], "header") else []
        reported = [m.control_rate for t, m in list(status) if t >= start]
        rows = [{"case": name, "clock": "receive", **period_stats(recv, dt)}]
        if send:
            rows.append({"case": name, "clock": "send", **period_stats(send, dt)})
        for r in rows:
            r["node_rate_hz"] = statistics.fmean(reported) if reported else float("nan")
            r["target_hz"] = emb.control.rate_hz
            r["hogs"] = hogs
        return rows
    finally:
        for p in hog_procs:
            p.stop(timeout=2.0)
        if probe is not None:
            probe.close()
        launcher.stop_all()


def _command_type(emb):
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    return {"joint_state": JointState, "joint_trajectory": JointTrajectory,
            "forward_position": Float64MultiArray}[emb.command.interface]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embodiment", default="yam", help="a 30 Hz embodiment: yam or agibot_g1")
    parser.add_argument("--duration", type=float, default=30.0, help="s measured per case")
    parser.add_argument("--warmup", type=float, default=2.0, help="s dropped at the start of each case")
    parser.add_argument("--chunk-period", type=float, default=0.5, help="s between fed chunks")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="CPU-hog processes in the load case")
    parser.add_argument("--cases", default="idle,load", help="comma list of: idle, load")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/executor_period.json)")
    args = parser.parse_args()

    # Own domain, localhost-only DDS with the large-SHM profile, as the tests and bringup use.
    os.environ.update(ros_environment(pick_domain_id()))
    results = []
    for case in args.cases.split(","):
        hogs = {"idle": 0, "load": args.hogs}[case]
        print(f"case {case}: {args.duration:g} s, {hogs} hog process(es)", flush=True)
        results += run_case(case, args, hogs)
    cols = ["case", "clock", "n", "mean_ms", "std_ms", "p50_ms", "p99_ms", "max_ms", "rate_hz", "late_1.5dt",
            "node_rate_hz", "target_hz", "hogs"]
    print_table(results, cols, title=f"action_executor command period ({args.embodiment})")
    path = write_json(args.out or default_output("executor_period"), {
        "embodiment": args.embodiment, "duration_s": args.duration, "warmup_s": args.warmup,
        "chunk_period_s": args.chunk_period, "results": results,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
