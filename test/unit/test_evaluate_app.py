"""apps/evaluate.py without processes: what `dreamzero eval` asks the bringup for per policy, and the CLI's refusals."""

from __future__ import annotations

import pytest

from dreamzero_ros.apps.cli import main
from dreamzero_ros.apps.evaluate import EvalConfig, eval_plan
from dreamzero_ros.core.evaluation import EVAL_FIRST_SEED


def _cfg(tmp_path, **kw) -> EvalConfig:
    values = {"tasks": ("reach",), "episodes": 2, "first_seed": EVAL_FIRST_SEED, "policy": "expert", "out": tmp_path}
    return EvalConfig(**{**values, **kw})


@pytest.mark.parametrize(("policy", "backend"), [("expert", "expert"), ("hold", "scripted"), ("random", "local")])
def test_each_policy_runs_its_backend_in_the_task_scene_from_the_first_seed(tmp_path, policy, backend):
    plan = {spec.name: spec for spec in eval_plan(_cfg(tmp_path, policy=policy, first_seed=EVAL_FIRST_SEED + 7),
                                                  "push", tmp_path / "rec.mcap")}
    assert list(plan) == ["sim_robot", "camera_stitcher", "inference", "action_executor", "recorder"]
    assert plan["sim_robot"].parameters["task"] == "push"
    assert plan["sim_robot"].parameters["seed"] == EVAL_FIRST_SEED + 7
    assert plan["inference"].parameters["backend"] == backend
    assert plan["inference"].parameters["checkpoint"] == ""
    assert plan["action_executor"].parameters["arm_tolerance"] > 3.0, "the sim reset moves the arm"
    recorder = plan["recorder"].parameters
    assert recorder["output"] == str(tmp_path / "rec.mcap") and recorder["embodiment"] == ""
    assert "/sim/task" in recorder["topics"] and "/dreamzero/stitched_image" in recorder["topics"]


def test_a_checkpoint_runs_the_local_backend_on_it_and_without_videos_nothing_records(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    cfg = _cfg(tmp_path, policy="checkpoint", checkpoint=str(ckpt), video=False)
    assert cfg.label == "checkpoint ckpt"
    trained = tmp_path / "run7" / "checkpoint"  # what `dreamzero train --out run7` writes
    trained.mkdir(parents=True)
    assert _cfg(tmp_path, policy="checkpoint", checkpoint=str(trained)).label == "checkpoint run7/checkpoint"
    plan = {spec.name: spec for spec in eval_plan(cfg, "reach", None)}
    assert plan["inference"].parameters["checkpoint"] == str(ckpt)
    assert plan["inference"].parameters["backend"] == "local"
    assert "recorder" not in plan


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"policy": "checkpoint"}, "checkpoint directory"),
        ({"policy": "checkpoint", "checkpoint": "/no/such/dir"}, "no such directory"),
        ({"checkpoint": "/tmp"}, "checkpoint directory"),
        ({"policy": "gpu"}, "policy: expected one of"),
        ({"tasks": ("stack",)}, "unknown task 'stack'"),
        ({"first_seed": 0}, "may be training episodes"),
    ],
)
def test_bad_eval_options_are_refused_naming_what_was_wrong(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, **kw)


def test_the_cli_needs_a_policy_or_a_checkpoint_and_not_both(tmp_path, capsys):
    assert main(["eval", "--out", str(tmp_path)]) == 2
    assert "--checkpoint DIR or --policy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--out", str(tmp_path), "--policy", "expert", "--checkpoint", str(tmp_path)])
    assert main(["eval", "--out", str(tmp_path), "--policy", "expert", "--task", "stack"]) == 2
    assert "unknown task 'stack'" in capsys.readouterr().err
