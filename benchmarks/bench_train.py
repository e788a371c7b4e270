"""Benchmark `dreamzero train`: training throughput (samples/s) of a preset, and the one-time cost of preparing
the samples (stitching, frozen VAE/CLIP/text encoders).

    python benchmarks/bench_train.py                             # sim_small, batch 16, 10 steps, synthetic data
    python benchmarks/bench_train.py --dataset data/sim --steps 30   # on a generated dataset

Without --dataset, a synthetic franka_droid dataset is written first (LeRobotWriter, --episodes episodes of
--length steps, smooth moving gradients as frames): throughput does not depend on what the pixels show. The
trainer draws the noised chunk k in 1..chunks per step (a step with k chunks runs 110 + 245 k tokens for
sim_small), so the step time varies; samples/s is reported from the median step and from the mean step (the
mean is what a long run's wall time follows). Time it alone: other work on the same cores cuts it badly.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import default_output, print_table, summarize, write_json

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.datasets.lerobot import LeRobotWriter
from dreamzero_ros.training.trainer import TrainConfig, train


def synthetic_dataset(root: Path, episodes: int, length: int) -> Path:
    emb = load_embodiment("franka_droid")
    rng = np.random.default_rng(0)
    with LeRobotWriter(root, emb) as writer:
        for e in range(episodes):
            states = np.cumsum(rng.normal(0, 0.02, size=(length, 8)), axis=0)
            states[:, 7] = np.linspace(0.04, 0.0, length)
            actions = np.roll(states, -1, axis=0)
            frames = {}
            for k, cam in enumerate(emb.camera_names):
                h, w = next(c.source_size for c in emb.cameras if c.name == cam)
                y, x = np.mgrid[0:h, 0:w]
                clip = np.empty((length, h, w, 3), np.uint8)
                for t in range(length):
                    clip[t, ..., 0] = (x * 255 // w + 3 * t + 40 * k) % 256
                    clip[t, ..., 1] = (y * 255 // h + 30 * e) % 256
                    clip[t, ..., 2] = 100
                frames[cam] = clip
            writer.add_episode(states, actions, frames, ["touch the red cube", "pick up the green cube"][e % 2])
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sim_small")
    parser.add_argument("--dataset", default=None, help="a LeRobot dataset (default: a synthetic one)")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--length", type=int, default=60, help="steps per synthetic episode")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        dataset = Path(args.dataset) if args.dataset else synthetic_dataset(tmp_path / "ds", args.episodes, args.length)
        write_s = time.perf_counter() - t0
        result = train(TrainConfig(dataset=str(dataset), out=str(tmp_path / "run"), preset=args.preset,
                                   steps=args.steps, batch=args.batch, chunks=args.chunks, threads=args.threads,
                                   device=args.device, save_every=args.steps, progress=True))  # fmt: skip
        episodes = len(list((dataset / "data").rglob("*.parquet")))
    # the first step pays one-off allocations: leave it out when there are enough steps
    seconds = result.step_seconds[1:] if len(result.step_seconds) > 3 else result.step_seconds
    step = summarize(seconds)
    row = {
        "preset": args.preset, "batch": args.batch, "steps": len(seconds), "device": args.device,
        "step_s_p50": step["p50"], "step_s_mean": step["mean"], "step_s_max": step["max"],
        "samples_per_s_median": args.batch / step["p50"], "samples_per_s_mean": args.batch / step["mean"],
        "prepare_s": result.prepare_seconds, "prepare_s_per_episode": result.prepare_seconds / max(episodes, 1),
        "final_loss": result.losses[-1]["loss"] if result.losses else float("nan"),
    }  # fmt: skip
    print_table([row], title="dreamzero train throughput")
    if not args.dataset:
        print(f"(synthetic dataset of {args.episodes} x {args.length} steps written in {write_s:.1f} s)")
    print(f"-> {write_json(args.out or default_output('train'), {'results': [row]})}")


if __name__ == "__main__":
    main()
