"""Eval latency per chunk: observation -> chunk through the real nodes, as `dreamzero eval` runs a policy.

Runs the eval harness (apps/evaluate.py: sim_robot in the task scene, camera_stitcher, inference, action_executor
as processes) for a few seeded episodes of one task and reports, over every chunk of those episodes,
ActionChunk.inference_latency (the inference node's ready time - the stamp of the frame the chunk was conditioned
on: frame age when the worker took it + the backend's call + publishing), the chunks per episode, the executor's
holds per episode (ticks with no usable chunk: where inference does not keep up) and the success count. The default
is the checkpoint shipped for the embodiment (checkpoints/, the `sim_small` preset); `--checkpoint DIR` measures
another, `--policy random` the tiny preset's random weights, `--policy expert` the pipeline without a model (the
floor: frame pipeline and scheduling only). No videos are recorded (the recorder's CPU would count against
inference).

    .venv/bin/python benchmarks/bench_eval.py                      # shipped checkpoint, 3 reach episodes
    .venv/bin/python benchmarks/bench_eval.py --checkpoint out/train/checkpoint --episodes 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import default_output, print_table, summarize, write_json

from dreamzero_ros.apps.evaluate import EvalConfig, run_eval
from dreamzero_ros.core.embodiment import DEFAULT_EMBODIMENT, load_embodiment, resolve_checkpoint
from dreamzero_ros.core.evaluation import EVAL_FIRST_SEED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", default=None,
                       help="checkpoint directory (default: the embodiment's demo checkpoint, shipped in checkpoints/)")
    which.add_argument("--policy", choices=("random", "expert"), default=None)
    parser.add_argument("--task", default="reach")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=EVAL_FIRST_SEED)
    parser.add_argument("--embodiment", default=DEFAULT_EMBODIMENT)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.checkpoint is None and args.policy is None:
        shipped = load_embodiment(args.embodiment).demo.checkpoint
        if shipped is None:
            parser.error(f"no checkpoint ships for {args.embodiment}: give --checkpoint DIR or --policy")
        args.checkpoint = str(resolve_checkpoint(shipped))

    policy = "checkpoint" if args.checkpoint else args.policy
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        cfg = EvalConfig(tasks=(args.task,), episodes=args.episodes, first_seed=args.first_seed, policy=policy,
                         out=Path(tmp), checkpoint=args.checkpoint or "", embodiment=args.embodiment, video=False)
        t0 = time.perf_counter()
        summary = run_eval(cfg, progress=lambda line: print(line, flush=True))
        wall = time.perf_counter() - t0
    episodes = summary["episodes"]
    latencies = [x for e in episodes for x in e["chunk_latencies"]]
    [task] = summary["tasks"]
    rows = [{"policy": summary["label"], "task": args.task, "episodes": len(episodes),
             "success": f"{task['successes']}/{task['episodes']}",
             "chunks": len(latencies),
             **{f"latency_{k}_ms": v * 1e3 for k, v in summarize(latencies).items() if k != "n"},
             "chunks_per_episode": summarize([e["chunks"] for e in episodes])["mean"],
             "holds_per_episode": summarize([e["holds"] for e in episodes])["mean"],
             "wall_s": wall}]
    print_table(rows, title=f"eval latency per chunk (observation -> chunk), {args.embodiment}, seeds {args.first_seed}..")
    write_json(args.out or default_output("eval"), {"results": rows, "summary": summary})


if __name__ == "__main__":
    main()
