"""Stitch time per frame (decode excluded): 3 x 480x640 (AgiBot G1 / YAM) and 3 x 180x320 (DROID).

Runs on one torch thread, as the stitcher node does. Usage:
    python benchmarks/bench_stitch.py [--repeat 200] [--warmup 10] [--threads 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_output, print_table, summarize, time_calls, write_json

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.model.stitching import stitch_views

CASES = (
    ("agibot_g1 3x480x640", "agibot_g1", (480, 640)),
    ("yam 3x480x640", "yam", (480, 640)),
    ("franka_droid 3x180x320", "franka_droid", (180, 320)),
    ("franka_droid 3x720x1280 (pre-resize)", "franka_droid", (720, 1280)),
    ("franka_droid 3x480x640 (4:3, letterboxed)", "franka_droid", (480, 640)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="timed frames per case")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames per case")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (the node uses 1)")
    parser.add_argument("--out", type=Path, default=default_output("stitch"), help="JSON result path")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for label, name, size in CASES:
        emb = load_embodiment(name)
        views = {c: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for c in emb.camera_names}
        samples = time_calls(lambda emb=emb, views=views: stitch_views(views, emb), args.repeat, args.warmup)
        rows.append({"case": label, **summarize([s * 1e3 for s in samples])})
    print_table(
        rows, ["case", "n", "p50", "p95", "max", "mean"], title=f"stitch_views, ms per frame, {args.threads} thread(s)"
    )
    path = write_json(args.out, {"benchmark": "stitch", "unit": "ms", "threads": args.threads, "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
