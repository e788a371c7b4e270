"""Observation-to-chunk latency through the inference node (tiny model; local, and remote via a server process).

For each case it starts the real processes (the inference node; for `remote` also
`python -m dreamzero_ros.backends.server --backend local`), streams inputs from this process over DDS
(stitched frames at 5 Hz, joint states at 30 Hz, per-camera images for remote; every frame
stamped with the current ROS time) and measures, per ActionChunk:

  * obs_to_chunk: receipt time of the chunk here - its stamp (= the stamp of the frame it was
    conditioned on), i.e. frame age when the worker picked it up + generation + publish + DDS;
  * reported: ActionChunk.inference_latency (the node's ready time - stamp, no DDS);
  * backend_call: the node's time inside backend.infer() (diagnostics generation_s), which for
    remote includes the websocket round trip and the server's stitching.

The first `--warmup` chunks of each case are excluded. The server's per-request overhead
against calling the backend in-process is bench_server.py's measurement; `--server-overhead`
runs it here too (scripted and tiny) and adds it to the JSON.

    .venv/bin/python benchmarks/bench_inference_node.py --duration 20
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time

from _common import default_output, print_table, summarize, write_json

from dreamzero_ros.bringup.ros_env import pick_domain_id, ros_environment
from dreamzero_ros.core.embodiment import load_embodiment

INSTRUCTION = "pick up the cup"
MODULE = "dreamzero_ros.nodes.inference_node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_case(case: str, embodiment_name: str, duration: float, warmup: int, torch_threads: int) -> dict:
    """Start the processes for `case` ("local" | "remote"), stream for `duration` s, return the samples."""
    from diagnostic_msgs.msg import DiagnosticArray
    from dreamzero_msgs.msg import ActionChunk
    from dreamzero_msgs.srv import SetInstruction

    from dreamzero_ros.ros import qos
    from dreamzero_ros.ros.names import CHUNK_TOPIC, SET_INSTRUCTION_SERVICE
    from dreamzero_ros.testing.inputs import InputStreamer
    from dreamzero_ros.testing.probes import NodeLauncher, RosProbe, wait_until

    e = load_embodiment(embodiment_name)
    launcher, probe = NodeLauncher(), RosProbe(f"bench_inference_{case}")
    lock = threading.Lock()
    chunks: list[tuple[int, ActionChunk]] = []  # (receipt ROS time ns, chunk)
    generations: dict[int, float] = {}  # chunk id -> s inside backend.infer()

    def on_chunk(msg: ActionChunk) -> None:
        now = probe.node.get_clock().now().nanoseconds
        with lock:
            chunks.append((now, msg))

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "dreamzero: inference":
                v = {kv.key: kv.value for kv in status.values}
                with lock:
                    generations[int(v["generation_chunk_id"])] = float(v["generation_s"])

    try:
        params = {"embodiment": e.name, "torch_threads": torch_threads, "status_rate": 20.0}
        if case == "remote":
            port = free_port()
            server = launcher.start("server", "dreamzero_ros.backends.server", extra_args=[
                "--backend", "local", "--embodiment", e.name, "--port", str(port),
                "--torch-threads", str(torch_threads), "--log-level", "WARNING"])
            if not server.wait_for_line(lambda s: "listening on" in s, 120):
                raise RuntimeError(f"server did not start:\n{server.output()}")
            params.update(backend="remote", server=f"ws://127.0.0.1:{port}")
        else:
            params.update(backend="local")
        node = launcher.start("inference", MODULE, params)
        probe.node.create_subscription(ActionChunk, CHUNK_TOPIC, on_chunk, qos.COMMANDS)
        probe.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.STATUS)
        streamer = InputStreamer(probe, e, cameras=case == "remote")
        lo, hi, _ = e.limits_arrays(e.state_joints)
        streamer.state = 0.5 * (lo + hi)
        streamer.wait_for_subscribers(120)
        resp = probe.call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction=INSTRUCTION),
                          timeout=60)
        if not resp.success:
            raise RuntimeError(resp.message)
        with streamer:
            if not wait_until(lambda: len(chunks) >= warmup, 120, 0.05):
                raise RuntimeError(f"{case}: no chunks within 120 s\n{node.output()[-3000:]}")
            time.sleep(duration)
        time.sleep(0.2)
    finally:
        launcher.stop_all()
        probe.close()
    with lock:
        timed = chunks[warmup:]
        gen = [generations[c.chunk_id] for _, c in timed if c.chunk_id in generations]
    obs_to_chunk = [(t - (c.header.stamp.sec * 1_000_000_000 + c.header.stamp.nanosec)) * 1e-6 for t, c in timed]
    span_s = (timed[-1][0] - timed[0][0]) * 1e-9 if len(timed) > 1 else float("nan")
    return {
        "case": case,
        "embodiment": e.name,
        "chunks": len(timed),
        "chunk_rate_hz": (len(timed) - 1) / span_s if len(timed) > 1 else 0.0,
        "obs_to_chunk_ms": summarize(obs_to_chunk),
        "reported_inference_latency_ms": summarize([c.inference_latency * 1e3 for _, c in timed]),
        "backend_call_ms": summarize([g * 1e3 for g in gen]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embodiment", default="franka_droid")
    parser.add_argument("--cases", default="local,remote", help="comma-separated: local, remote")
    parser.add_argument("--duration", type=float, default=20.0, help="s of timed streaming per case")
    parser.add_argument("--warmup", type=int, default=3, help="chunks excluded at the start of each case")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--server-overhead", action="store_true",
                        help="also run bench_server's direct-vs-server comparison (scripted and tiny)")
    parser.add_argument("--output", default=str(default_output("bench_inference_node")))
    args = parser.parse_args(argv)
    # Before any rclpy context exists: a private domain on loopback for this process and its children.
    os.environ.update(ros_environment(pick_domain_id()))
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    results = [run_case(c.strip(), args.embodiment, args.duration, args.warmup, args.torch_threads)
               for c in args.cases.split(",") if c.strip()]
    rows = [{"case": r["case"], "metric": m, **r[f"{m}_ms"]}
            for r in results for m in ("obs_to_chunk", "reported_inference_latency", "backend_call")]
    print_table(rows, columns=["case", "metric", "n", "p50", "p95", "max", "mean"],
                title=f"inference node, tiny model, {args.embodiment} (ms, {args.warmup} warm-up chunks excluded)")
    print_table([{k: r[k] for k in ("case", "chunks", "chunk_rate_hz")} for r in results])
    payload = {"benchmark": "bench_inference_node", "args": vars(args), "results": results}
    if args.server_overhead:
        import bench_server
        import torch

        from dreamzero_ros.backends.local import LocalBackend
        from dreamzero_ros.backends.scripted import ScriptedBackend

        torch.set_num_threads(args.torch_threads)
        e = load_embodiment(args.embodiment)
        overhead = [bench_server.bench("scripted", lambda: ScriptedBackend(e), e, 30, 3),
                    bench_server.bench("tiny", lambda: LocalBackend(e, seed=0), e, 8, 3)]
        print_table(bench_server.table_rows(overhead), columns=["backend", "path", "n", "p50", "p95", "max", "mean"],
                    title="policy server per-request cost (ms; bench_server.py)")
        payload["server_overhead"] = overhead
    out = write_json(args.output, payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
