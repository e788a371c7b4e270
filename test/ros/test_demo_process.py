"""`dreamzero demo`, the README's first command, as a user runs it: the CLI in a subprocess.

By default it runs the shipped checkpoint on seeded episodes of the reach task: each episode's result is printed
and lands in summary.json, and the recording holds the model's predicted frames for the video's second panel.
With `--task none` it runs the tiny random model on the plain scene for a fixed time; the MCAP is opened and its
topics and message counts checked against the rates the embodiment promises. Both must exit 0 and leave the
recording, report and video.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.runs.recording import topic_counts, topic_types

# The demo runs in the root namespace: the recording holds the fully qualified names.
CHUNK_TOPIC, STITCHED_TOPIC = "/dreamzero/action_chunk", "/dreamzero/stitched_image"
PREDICTED_TOPIC = "/dreamzero/predicted_video"
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "franka_droid_sim_small_reach_push_forward"

pytestmark = pytest.mark.slow

DURATION = 15.0  # s of closed loop (the default is 60 s)


def test_the_default_demo_runs_the_shipped_checkpoint_on_reach_episodes_and_reports_each(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "dreamzero_ros.apps.cli", "demo", "--episodes", "2",
                           "--output", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert f"({SHIPPED})" in proc.stdout and "task=reach" in proc.stdout, log
    lines = re.findall(r"episode (\d)/2 seed (\d+) '(touch the (?:red|green|blue) cube)': (success|failure)", proc.stdout)
    assert [(n, seed) for n, seed, _, _ in lines] == [("1", "1000000"), ("2", "1000001")], log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "reach" and len(summary["episodes"]) == 2
    assert summary["successes"] == sum(outcome == "success" for *_, outcome in lines)
    assert [e["instruction"] for e in summary["episodes"]] == [text for _, _, text, _ in lines]
    counts = topic_counts(out / "recording.mcap")
    assert counts.get(PREDICTED_TOPIC, 0) >= counts.get(CHUNK_TOPIC, 0) >= 2, counts  # a plan per chunk
    assert summary["chunks_rejected"] == 0 and summary["video"], summary
    # the rate while commanding, whatever the pause between the episodes (the reset)
    rate = load_embodiment("franka_droid").control.rate_hz
    assert abs(summary["control_rate_hz"] - rate) / rate < 0.1, summary


def test_the_demo_without_a_task_runs_the_tiny_model_in_the_sim_and_leaves_a_recording_report_and_video(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "dreamzero_ros.apps.cli", "demo", "--task", "none", "--checkpoint",
                           "", "--duration", str(DURATION), "--output", str(out)],
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert "executor armed" in proc.stdout and "summary" in proc.stdout, log
    for name in ("recording.mcap", "report.png", "summary.json", "nodes.log"):
        assert (out / name).stat().st_size > 0, f"{name} missing\n{log}"
    assert any((out / f"frames.{ext}").exists() for ext in ("mp4", "gif")), log

    cfg = load_embodiment("franka_droid")
    counts, types = topic_counts(out / "recording.mcap"), topic_types(out / "recording.mcap")
    assert types[CHUNK_TOPIC] == "dreamzero_msgs/msg/ActionChunk"
    assert types[cfg.command.topic] == "std_msgs/msg/Float64MultiArray"
    for cam in cfg.cameras:
        assert counts.get(cam.topic, 0) >= DURATION * 0.5 * cfg.video.fps, (cam.topic, counts)
    assert counts.get(STITCHED_TOPIC, 0) >= DURATION * 0.5 * cfg.video.fps, counts
    assert counts.get(cfg.command.joint_states_topic, 0) >= DURATION * 0.9 * cfg.control.rate_hz, counts
    # Commands stream from arming to the end at the control rate; chunks keep coming every chunk.
    assert counts.get(cfg.command.topic, 0) >= 0.9 * DURATION * cfg.control.rate_hz, counts
    assert counts.get(CHUNK_TOPIC, 0) >= DURATION / cfg.control.chunk_duration, counts

    summary = json.loads((out / "summary.json").read_text())
    assert summary["chunks"] == counts[CHUNK_TOPIC]
    assert summary["chunks_rejected"] == 0
    assert abs(summary["control_rate_hz"] - cfg.control.rate_hz) / cfg.control.rate_hz < 0.05, summary
