"""Every checkpoint under checkpoints/ loads through the released-layout loader with nothing missing or left over,
and its first chunks from DROID's rest pose stay inside what its own statistics allow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dreamzero_ros.backends.base import Observation
from dreamzero_ros.backends.local import LocalBackend
from dreamzero_ros.core.embodiment import load_embodiment

ROOT = Path(__file__).resolve().parents[2] / "checkpoints"
SHIPPED = sorted(p for p in ROOT.iterdir() if (p / "config.json").is_file())
EMB = load_embodiment("franka_droid")
REST = EMB.home_array()  # config/franka_droid.yaml's home pose (SI: the finger at 0.04 m, open)


def test_the_checkpoints_folder_ships_the_base_the_reach_and_the_two_task_checkpoints():
    assert [p.name for p in SHIPPED] == ["franka_droid_sim_small", "franka_droid_sim_small_reach",
                                         "franka_droid_sim_small_reach_push_forward"]
    for folder in SHIPPED:
        assert (folder / "model.safetensors").stat().st_size < 10_000_000, folder  # the repo carries them


def test_the_checkpoints_trained_at_a_cadence_carry_it_to_the_inference_node():
    # checkpoints/README.md: the two-task checkpoint's stage ran with --execute-steps 12, the others at the
    # release's spacing (the whole horizon), which records nothing.
    cadence = {p.name: LocalBackend(EMB, checkpoint=p).execute_steps for p in SHIPPED}
    assert cadence == {"franka_droid_sim_small": None, "franka_droid_sim_small_reach": None,
                       "franka_droid_sim_small_reach_push_forward": 12}


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_a_shipped_checkpoint_loads_whole_and_its_chunks_stay_within_its_statistics(folder):
    stats = json.loads((folder / "experiment_cfg/metadata.json").read_text())["oxe_droid"]["statistics"]["action"]
    q01, q99 = np.array(stats["joint_position"]["q01"]), np.array(stats["joint_position"]["q99"])
    backend = LocalBackend(EMB, checkpoint=folder)
    report = backend.model.load_report
    assert report.missing == [] and report.unexpected == []
    backend.set_instruction("push the red cube forward")
    frame = np.full((1, 352, 640, 3), 120, np.uint8)
    for _ in range(2):
        chunk = backend.infer(Observation(0.0, frame, REST))
        assert chunk.positions.shape == (24, 8) and np.all(np.isfinite(chunk.positions))
        # joints are relative to the state and q99-normalised in [-1, 1]: the de-normalised step lies in q01..q99
        delta = chunk.positions[:, :7] - REST[:7]
        assert np.all(delta >= q01 - 1e-5) and np.all(delta <= q99 + 1e-5), folder.name
        frame = np.repeat(frame, 4, axis=0)
