"""`dreamzero demo`'s defaults come from the embodiment YAML's `demo:` section, and a wrong one stops it by name."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from dreamzero_ros.apps.demo import resolve_demo_defaults, run_demo
from dreamzero_ros.core.embodiment import ConfigError, config_dir

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "franka_droid_sim_small_reach_push_forward"


def _args(embodiment: str = "franka_droid", **given) -> argparse.Namespace:
    values = {"embodiment": embodiment, "task": None, "checkpoint": None, "backend": "local"} | given
    return argparse.Namespace(**values)


def _embodiment_with_demo(tmp_path: Path, demo: dict) -> str:
    data = yaml.safe_load((config_dir() / "franka_droid.yaml").read_text())
    data["demo"] = demo
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_unset_task_and_checkpoint_become_the_yaml_demo_and_explicit_values_are_kept():
    args = resolve_demo_defaults(_args())
    assert (args.task, Path(args.checkpoint)) == ("reach", SHIPPED)
    # the expert backend plans itself: the task stays, no checkpoint
    assert (resolve_demo_defaults(_args(backend="expert")).task, resolve_demo_defaults(_args(backend="expert")).checkpoint) \
        == ("reach", "")
    # no demo section: the free-running loop on random weights
    yam = resolve_demo_defaults(_args("yam"))
    assert (yam.task, yam.checkpoint) == ("none", "")
    kept = resolve_demo_defaults(_args(task="lift", checkpoint="/some/run/checkpoint"))
    assert (kept.task, kept.checkpoint) == ("lift", "/some/run/checkpoint")
    assert resolve_demo_defaults(_args(checkpoint="")).checkpoint == ""  # random weights asked for


def test_an_unknown_demo_task_names_the_yaml_field(tmp_path):
    path = _embodiment_with_demo(tmp_path, {"task": "stack", "checkpoint": "franka_droid_sim_small"})
    with pytest.raises(ConfigError, match=rf"^{path}: demo\.task: unknown task 'stack'; tasks are \['lift', 'push', 'push_forward', 'reach'\]"):
        resolve_demo_defaults(_args(path))
    # an explicit --task does not read it
    assert resolve_demo_defaults(_args(path, task="reach")).task == "reach"


def test_a_demo_checkpoint_that_is_not_there_stops_the_demo_before_any_node_starts(tmp_path, capsys):
    path = _embodiment_with_demo(tmp_path, {"task": "reach", "checkpoint": "arm_small"})
    assert run_demo(_args(path)) == 2
    err = capsys.readouterr().err
    assert "error: checkpoint 'arm_small': no config.json in" in err and "checkpoints/arm_small" in err
