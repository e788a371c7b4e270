"""`dreamzero eval` as a user runs it (the CLI in a subprocess, real nodes over DDS): the harness must detect
success for the scripted expert and failure for a hold-still policy, 2 reach episodes each, and leave
summary.json, table.md and (expert) a video per episode; on push it measures the named cube's way to the pad
(Kilted only: one more bringup, and the harness code is the same on both distros).

The expected seeds and instructions come from sim/tasks.sample_episode, not from the harness; the expert solves
reach in ~2 s of the episode's 5 s (benchmarks/bench_expert.py), the hold-still arm never comes within reach.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.evaluation import EVAL_FIRST_SEED
from dreamzero_ros.sim.tasks import PUSH_TOLERANCE, REACH_DISTANCE, get_task, sample_episode

pytestmark = pytest.mark.slow

EMB = load_embodiment("franka_droid")
SEEDS = [EVAL_FIRST_SEED, EVAL_FIRST_SEED + 1]


def eval_cli(out, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`dreamzero eval --out out ARGS` as a user runs it; it must succeed. Its output and summary.json."""
    proc = subprocess.run([sys.executable, "-m", "dreamzero_ros.apps.cli", "eval", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300)
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log + "".join(p.read_text()[-4000:] for p in sorted(out.glob("*/nodes.log")))
    return proc, json.loads((out / "summary.json").read_text())


def run_eval(out, *args: str) -> dict:
    proc, summary = eval_cli(out, "--task", "reach", "--episodes", "2", *args)
    assert [e["seed"] for e in summary["episodes"]] == SEEDS
    for e in summary["episodes"]:
        assert e["instruction"] == sample_episode(EMB, "reach", e["seed"]).instruction
    assert (out / "table.md").read_text().strip() == summary["table"] and summary["table"] in proc.stdout
    return summary


@pytest.mark.every_distro
def test_eval_detects_the_experts_successes_with_videos_and_the_hold_still_failures(tmp_path):
    expert = run_eval(tmp_path / "expert", "--policy", "expert")
    [task] = expert["tasks"]
    assert (task["successes"], task["episodes"]) == (2, 2), expert["episodes"]
    max_duration = get_task("reach").max_duration
    for e in expert["episodes"]:
        assert 0.3 < e["time_to_success"] < max_duration, e
        assert e["chunks"] >= 1 and all(0 < x < 2.0 for x in e["chunk_latencies"]), e
        assert e["chunks_rejected"] == 0, e
        # success is the tool within REACH_DISTANCE of the named cube: the closest approach says so too
        assert e["closest_target"] < REACH_DISTANCE < e["closest_other"], e
        video = tmp_path / "expert" / "reach" / f"seed_{e['seed']}"
        assert e["video"] and any((video / f"frames.{ext}").stat().st_size > 0
                                  for ext in ("mp4", "gif") if (video / f"frames.{ext}").exists()), e
    assert task["ci95"][0] > 0.3 and task["ci95"][1] == 1.0  # 2/2: lo = 2 / (2 + 1.96^2) = 0.34

    hold = run_eval(tmp_path / "hold", "--policy", "hold", "--no-video")
    [task] = hold["tasks"]
    assert (task["successes"], task["episodes"], task["holds"]) == (0, 2, 0), hold["episodes"]
    for e in hold["episodes"]:
        # a failed episode runs its whole max duration (wall clock, so allow the harness a little slack)
        assert e["time_to_success"] is None and max_duration - 0.1 < e["duration"] < max_duration + 2.0, e
        assert e["video"] is None
        assert e["closest_target"] > REACH_DISTANCE, e  # the arm stayed at its start, out of reach
    assert not (tmp_path / "hold" / "reach" / "recording.mcap").exists()


@pytest.mark.every_distro
def test_eval_refuses_seeds_a_dataset_may_have_trained_on(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dreamzero_ros.apps.cli", "eval", "--policy", "expert",
                           "--first-seed", "10", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "seeds 10..39 may be training episodes" in proc.stderr, proc.stderr
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.every_distro
def test_eval_quotes_the_predicted_videos_psnr_beside_the_last_frame_baseline(tmp_path):
    """--predicted-video with random weights (the local backend decodes its predicted frames): one episode's pairs
    of predicted vs real frames give finite PSNR figures of both kinds, in summary.json and the printed table."""
    proc, summary = eval_cli(tmp_path, "--task", "reach", "--episodes", "1", "--policy", "random",
                             "--predicted-video")
    [task] = summary["tasks"]
    [episode] = summary["episodes"]
    # a 5 s episode at 5 fps with chunks of 8 predicted frames: many pairs, each with both figures
    assert task["psnr_pairs"] >= 8 and len(episode["psnr_predicted"]) == len(episode["psnr_baseline"]) == \
        task["psnr_pairs"], task
    for key in ("psnr_predicted_mean_db", "psnr_predicted_median_db", "psnr_baseline_mean_db",
                "psnr_baseline_median_db"):
        assert math.isfinite(task[key]) and 0 < task[key] <= 100.0, (key, task)
    assert "PSNR predicted mean/median dB" in proc.stdout and f"{task['psnr_predicted_mean_db']:.1f}/" in proc.stdout


def test_eval_measures_how_far_a_push_brought_the_named_cube_to_the_pad(tmp_path):
    """The expert's push: the cube-to-pad distance at the start is the sampled episode's (cube and pad as placed,
    independent of the harness), at the end inside the push predicate's tolerance, and the table shows both; how far
    the cube moved agrees with them."""
    _, summary = eval_cli(tmp_path, "--task", "push", "--episodes", "1", "--policy", "expert", "--no-video")
    [task] = summary["tasks"]
    [episode] = summary["episodes"]
    placed = sample_episode(EMB, "push", EVAL_FIRST_SEED)
    cube, pad = placed.objects[placed.target], placed.pad
    assert episode["success"], episode
    assert episode["to_pad_start"] == pytest.approx(math.hypot(cube[0] - pad[0], cube[1] - pad[1]), abs=0.005)
    assert episode["to_pad_end"] < PUSH_TOLERANCE, episode
    assert task["pushed_closer"] == 1
    # how far the cube moved, between the two distances by the triangle inequality (start, end and pad)
    start, end = episode["to_pad_start"], episode["to_pad_end"]
    assert start - end - 0.005 <= episode["cube_moved"] <= start + end + 0.005, episode
    assert f"{100 * task['to_pad_start_p50_m']:.1f}/{100 * task['to_pad_end_p50_m']:.1f}" in summary["table"]
