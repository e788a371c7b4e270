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
import sys
import time
from collections.abc import Callable

import numpy as np
from _common import default_output, print_table, summarize, write_json

from dreamzero_ros.backends.base import Observation, PolicyBackend
from dreamzero_ros.backends.remote import RemoteBackend
from dreamzero_ros.backends.scripted import ScriptedBackend
from dreamzero_ros.backends.server import PolicyServer
from dreamzero_ros.core.embodiment import EmbodimentConfig, load_embodiment
from dreamzero_ros.model.stitching import stitch_views


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


def bench(name: str, make: Callable[[], PolicyBackend], e: EmbodimentConfig, iterations: int, warmup: int) -> dict:
    """{direct, via_server, overhead} summaries in ms for one backend (`make` builds a fresh one)."""
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
    d, r = summarize([x * 1e3 for x in direct_s]), summarize([x * 1e3 for x in remote_s])
    overhead = {k: r[k] - d[k] for k in ("p50", "p95", "mean")}
    return {"backend": name, "embodiment": e.name, "direct_ms": d, "via_server_ms": r, "overhead_ms": overhead,
            "request_bytes_4_frames": int(sum(v.nbytes for v in obs[0].views.values()))}


def table_rows(rows: list[dict]) -> list[dict]:
    """One table row per backend and path (direct, via_server, overhead = difference), in ms."""
    out = []
    for row in rows:
        for path in ("direct_ms", "via_server_ms"):
            out.append({"backend": row["backend"], "path": path[:-3], **row[path]})
        out.append({"backend": row["backend"], "path": "overhead", "n": "", "mean": row["overhead_ms"]["mean"],
                    "min": "", **{k: row["overhead_ms"][k] for k in ("p50", "p95")}, "max": ""})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embodiment", default="franka_droid")
    parser.add_argument("--iterations", type=int, default=50, help="timed requests for the scripted backend")
    parser.add_argument("--local-iterations", type=int, default=8, help="timed requests for the tiny model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-local", action="store_true", help="skip the tiny local model")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--output", default=str(default_output("bench_server")))
    args = parser.parse_args(argv)
    e = load_embodiment(args.embodiment)

    rows = [bench("scripted", lambda: ScriptedBackend(e), e, args.iterations, args.warmup)]
    if not args.no_local:
        import torch

        torch.set_num_threads(args.torch_threads)
        from dreamzero_ros.backends.local import LocalBackend

        rows.append(bench("tiny", lambda: LocalBackend(e, seed=0), e, args.local_iterations, args.warmup))
    print_table(table_rows(rows), columns=["backend", "path", "n", "p50", "p95", "max", "mean"],
                title="policy server per-request cost (ms, warm-up excluded)")
    out = write_json(args.output, {"benchmark": "bench_server", "args": vars(args), "results": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
