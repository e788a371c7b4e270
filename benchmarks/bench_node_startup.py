"""Start-up cost of each node module: import time, peak RSS and whether torch is loaded.

Each sample is a fresh interpreter that imports `dreamzero_ros.nodes.<node>_node` (everything the node
process loads before it creates its rclpy node) and reports its wall time, ru_maxrss and whether
`torch` ended up in sys.modules. `--tree DIR` measures another source tree (e.g. a checkout of an
older commit) with the same interpreter, for before/after figures. Usage:
    python benchmarks/bench_node_startup.py [--repeat 7] [--tree DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_output, print_table, summarize, write_json

NODES = ("action_executor", "recorder", "sim_robot", "camera_stitcher", "inference")

PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
import {module}
dt = time.perf_counter() - t0
print(json.dumps({{"s": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch": "torch" in sys.modules, "file": {module}.__file__}}))
"""


def sample(node: str, tree: Path | None) -> dict:
    module = f"dreamzero_ros.nodes.{node}_node"
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = f"{tree}{os.pathsep}{env.get('PYTHONPATH', '')}"
    # `python -c` puts the working directory first on sys.path, so run it from the tree measured.
    cwd = tree if tree is not None else Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], env=env, cwd=cwd, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="fresh interpreters per node")
    parser.add_argument("--tree", type=Path, default=None, help="source tree to measure (default: installed package)")
    parser.add_argument("--out", type=Path, default=default_output("node_startup"), help="JSON result path")
    args = parser.parse_args()

    rows = []
    for node in NODES:
        sample(node, args.tree)  # warm the file cache; not counted
        runs = [sample(node, args.tree) for _ in range(args.repeat)]
        seconds = summarize([r["s"] * 1e3 for r in runs])
        rss = summarize([r["rss_mb"] for r in runs])
        rows.append({"node": node, "import_ms_p50": seconds["p50"], "import_ms_max": seconds["max"],
                     "rss_mb_p50": rss["p50"], "torch": all(r["torch"] for r in runs), "file": runs[0]["file"]})
    print_table(rows, ["node", "import_ms_p50", "import_ms_max", "rss_mb_p50", "torch"],
                title=f"node module start-up, {args.repeat} fresh interpreters each"
                      + (f" (tree {args.tree})" if args.tree else ""))
    write_json(args.out, {"tree": str(args.tree or ""), "results": rows})


if __name__ == "__main__":
    main()
