"""Policy server overhead: RemoteBackend -> PolicyServer -> backend vs calling the backend directly.

For each backend (scripted; the tiny local model with random weights unless --no-local) it times
`backend.infer()` in-process and the same request through the websocket server on 127.0.0.1
(msgpack encode, transfer of per-camera images, decode, stitch on the server, inference on the
server's worker thread, reply, effector mapping). Warm-up requests are excluded. Prints a
p50/p95/max table and writes JSON with device, versions and git sha.

    .venv/bin/python benchmarks/bench_server.py --embodiment franka_droid --iterations 50
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

from dreamzero_ros.backends.base import Observation, PolicyBackend
from dreamzero_ros.backends.remote import RemoteBackend
from dreamzero_ros.backends.scripted import ScriptedBackend
from dreamzero_ros.core.embodiment import PACKAGE_ROOT, EmbodimentConfig, load_embodiment
from dreamzero_ros.core.stitch import stitch_views
from dreamzero_ros.server import PolicyServer

# benchmarks/_common.py (shared summarize/print_table/write_json helpers) did not exist when this
# was written; the few helpers below are inline and can move there.


def summarize(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {"n": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}


def run_metadata() -> dict:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True,
                             timeout=5).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        sha = None
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "processor": platform.processor(), "git_sha": sha,
        "versions": {p: version(p) for p in ("numpy", "msgpack", "websockets", "torch")},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def observations(e: EmbodimentConfig, n: int, seed: int = 0) -> list[Observation]:
    """Random per-camera views (4 frames each, the protocol's later-call size) + their stitched frames."""
    rng = np.random.default_rng(seed)
    lo, hi, _ = e.limits_arrays(e.state_joints)
    out = []
    for k in range(n):
        views = {c.name: rng.integers(0, 256, (4, *c.source_size, 3), dtype=np.uint8) for c in e.cameras}
        frames = np.stack([stitch_views({name: v[t] for name, v in views.items()}, e) for t in range(4)])
        out.append(Observation(float(k), frames, lo + rng.random(len(lo)) * (hi - lo), views))
    return out


def time_calls(backend: PolicyBackend, obs: list[Observation], warmup: int) -> list[float]:
    samples = []
    for k, o in enumerate(obs):
        t0 = time.perf_counter()
        backend.infer(o)
        if k >= warmup:
            samples.append(time.perf_counter() - t0)
    return samples


def bench(name: str, make: callable, e: EmbodimentConfig, iterations: int, warmup: int) -> dict:
    obs = observations(e, iterations + warmup)
    direct = make()
    direct.set_instruction("pick up the cup")
    direct_s = time_calls(direct, obs, warmup)
    server = PolicyServer(make, e, port=0)
    server.start()
    try:
        remote = RemoteBackend(e, server.url)
        remote.set_instruction("pick up the cup")
        remote_s = time_calls(remote, obs, warmup)
        remote.close()
    finally:
        server.stop()
    d, r = summarize(direct_s), summarize(remote_s)
    overhead = {k: r[k] - d[k] for k in ("p50_ms", "p95_ms", "mean_ms")}
    return {"backend": name, "embodiment": e.name, "direct": d, "via_server": r, "overhead": overhead,
            "request_bytes_4_frames": int(sum(v.nbytes for v in obs[0].views.values()))}


def print_table(rows: list[dict]) -> None:
    print(f"{'backend':<10} {'path':<11} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    for row in rows:
        for path in ("direct", "via_server"):
            s = row[path]
            print(f"{row['backend']:<10} {path:<11} {s['n']:>4} "
                  f"{s['p50_ms']:>9.2f} {s['p95_ms']:>9.2f} {s['max_ms']:>9.2f}")
        o = row["overhead"]
        print(f"{row['backend']:<10} {'overhead':<11} {'':>4} {o['p50_ms']:>9.2f} {o['p95_ms']:>9.2f} {'':>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embodiment", default="franka_droid")
    parser.add_argument("--iterations", type=int, default=50, help="timed requests for the scripted backend")
    parser.add_argument("--local-iterations", type=int, default=8, help="timed requests for the tiny model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-local", action="store_true", help="skip the tiny local model")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--output", default=str(PACKAGE_ROOT / "benchmarks" / "results" / "bench_server.json"))
    args = parser.parse_args(argv)
    e = load_embodiment(args.embodiment)

    rows = [bench("scripted", lambda: ScriptedBackend(e), e, args.iterations, args.warmup)]
    if not args.no_local:
        import torch

        torch.set_num_threads(args.torch_threads)
        from dreamzero_ros.backends.local import LocalBackend

        rows.append(bench("tiny", lambda: LocalBackend(e, seed=0), e, args.local_iterations, args.warmup))
    print_table(rows)
    result = {"benchmark": "bench_server", "metadata": run_metadata(), "args": vars(args), "results": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
