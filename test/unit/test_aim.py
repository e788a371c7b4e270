"""`dreamzero aim`: the open-loop endpoint statistics on points built by hand, and the command on the simulator
(hold still, the shipped two-task checkpoint, bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dreamzero_ros.apps.cli import main as cli_main
from dreamzero_ros.core.aim import AIM_HEADER, AimEpisode, format_aim_table, summarize_aim

ROOT = Path(__file__).resolve().parents[2]
TWO_TASK = ROOT / "checkpoints" / "franka_droid_sim_small_reach_push_forward"


def _episode(seed: int, start, expert, policy, target=(9.0, 9.0, 0.0), others=((-9.0, -9.0, 0.0),)) -> AimEpisode:
    return AimEpisode(seed=seed, instruction="touch the red cube", start=tuple(start), target=tuple(target),
                      others=tuple(others), expert={24: tuple(expert)}, policy={24: tuple(policy)})  # fmt: skip


def test_a_policy_that_covers_a_share_of_the_experts_way_has_that_gain_and_progress_and_lags_along_the_path() -> None:
    rng = np.random.default_rng(0)
    episodes = []
    lengths = []
    for seed in range(9):
        start = np.array([0.36, 0.0, 0.4]) + rng.uniform(-0.02, 0.02, 3)
        travel = np.array([*rng.uniform(0.05, 0.25, 1), *rng.uniform(-0.2, 0.2, 1), -0.3])
        lengths.append(np.linalg.norm(travel[:2]))
        episodes.append(_episode(seed, start, start + travel, start + 0.75 * travel))
    s = summarize_aim("reach", 24, episodes)
    assert s.gain == pytest.approx((0.75, 0.75), abs=1e-9)
    assert s.bias == pytest.approx((0.0, 0.0), abs=1e-9)
    assert s.progress == pytest.approx(0.75, abs=1e-9)
    # 3/4 of the way: a quarter of each travel short, straight along it, none across
    assert s.along == pytest.approx(-0.25 * np.median(lengths), abs=1e-9)
    assert s.across == pytest.approx(0.0, abs=1e-9)
    assert s.offset[2] == pytest.approx(0.25 * 0.3, abs=1e-9)  # and a quarter of the 30 cm descent above it
    assert s.episodes == 9 and s.nearer_other == 0


def test_a_shift_that_does_not_depend_on_the_target_is_the_bias_and_resolves_into_along_and_across() -> None:
    shift = np.array([0.01, 0.03, 0.0])
    episodes = []
    for seed, (dx, dy) in enumerate([(0.1, 0.0), (0.2, 0.0), (0.15, 0.0), (0.3, 0.0)]):
        start = np.array([0.36, 0.0, 0.4])
        expert = start + [dx, dy, 0.0]
        episodes.append(_episode(seed, start, expert, expert + shift))
    s = summarize_aim("reach", 24, episodes)
    assert s.offset == pytest.approx(tuple(shift), abs=1e-12)
    assert s.distance == pytest.approx(np.hypot(0.01, 0.03), abs=1e-12)
    # every travel is +x: along is the shift's x, across (positive to the left of the travel, +y) its y
    assert s.along == pytest.approx(0.01, abs=1e-12) and s.across == pytest.approx(0.03, abs=1e-12)
    assert s.gain is None  # no spread in y to fit a gain on
    spread = [_episode(i, (0.0, 0.0, 0.0), (0.1 * i, 0.05 * (i - 2), 0.0), (0.1 * i + 0.01, 0.05 * (i - 2) + 0.03, 0.0))
              for i in range(5)]  # fmt: skip
    fitted = summarize_aim("reach", 24, spread)
    assert fitted.gain == pytest.approx((1.0, 1.0), abs=1e-9) and fitted.bias == pytest.approx((0.01, 0.03), abs=1e-9)


def test_nearer_other_counts_a_policy_off_to_another_object_only_where_the_expert_is_not() -> None:
    start, target, other = (0.0, 0.0, 0.4), (0.3, 0.2, 0.03), (0.3, -0.2, 0.03)
    to_other = _episode(0, start, (0.3, 0.19, 0.1), (0.3, -0.17, 0.1), target, [other])
    on_way = _episode(1, start, (0.2, -0.05, 0.1), (0.2, -0.05, 0.1), target, [other])  # both nearer the other
    right = _episode(2, start, (0.3, 0.19, 0.1), (0.28, 0.15, 0.1), target, [other])
    assert summarize_aim("reach", 24, [to_other, on_way, right]).nearer_other == 1


def test_bad_input_is_refused_by_name_and_the_table_has_a_row_per_summary() -> None:
    with pytest.raises(ValueError, match="no episodes"):
        summarize_aim("reach", 24, [])
    e = _episode(7, (0, 0, 0), (0.1, 0, 0), (0.05, 0.01, 0))
    with pytest.raises(ValueError, match=r"step 12 was not compared in episodes \[7\]"):
        summarize_aim("reach", 12, [e])
    lines = format_aim_table([summarize_aim("reach", 24, [e]), summarize_aim("lift", 24, [e])]).splitlines()
    assert len(lines) == 4 and all(h in lines[0] for h in AIM_HEADER)
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:7] == ["reach", "24", "1", "-5.0/+1.0/+0.0", "5.1", "-5.0", "+1.0"]
    assert cells[7] == "0.50" and cells[8] == "-"  # one episode: no gain to fit


def test_holding_still_aims_at_the_start_progress_zero_gain_zero(tmp_path: Path) -> None:
    out = tmp_path / "aim"
    assert cli_main(["aim", "--policy", "hold", "--task", "reach", "--episodes", "3", "--out", str(out)]) == 0
    report = json.loads((out / "aim.json").read_text())
    assert [s["step"] for s in report["summaries"]] == [12, 24]  # half the horizon, the horizon
    for s in report["summaries"]:
        assert s["progress"] == pytest.approx(0.0, abs=1e-9) and s["gain"] == pytest.approx([0.0, 0.0], abs=1e-9)
    for e in report["episodes"]:
        assert e["policy"]["24"] == pytest.approx(e["start"], abs=1e-9)
        # the expert is on its way: horizontally nearer the named cube than it started, and lower
        assert np.linalg.norm(np.subtract(e["expert"]["24"], e["target"])[:2]) < \
            np.linalg.norm(np.subtract(e["start"], e["target"])[:2]) - 0.05
        assert e["expert"]["24"][2] < e["start"][2] - 0.1
    assert "| reach" in (out / "aim.md").read_text()


def test_the_shipped_two_task_checkpoint_heads_for_the_named_cube_at_its_cadence(capsys) -> None:
    assert cli_main(["aim", "--checkpoint", str(TWO_TASK), "--task", "reach", "--episodes", "6"]) == 0
    table = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| reach")]
    assert [r[1] for r in rows] == ["12", "24"]  # its recorded execute_steps, then the horizon
    # most of the expert's way, within a few centimetres of its point (random weights: progress ~0, tens of cm)
    assert float(rows[1][7]) > 0.5 and float(rows[1][4]) < 10.0


def test_aim_refuses_training_seeds_a_missing_policy_an_unknown_task_and_a_missing_checkpoint_by_name(capsys) -> None:
    assert cli_main(["aim", "--policy", "hold", "--first-seed", "5", "--episodes", "2"]) == 2
    assert "seeds 5..6 may be training episodes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["aim", "--task", "reach"])
    assert "one of the arguments --checkpoint --policy is required" in capsys.readouterr().err
    assert cli_main(["aim", "--policy", "hold", "--task", "fly", "--episodes", "1"]) == 2
    assert "unknown task 'fly'" in capsys.readouterr().err
    assert cli_main(["aim", "--checkpoint", "/no/such/checkpoint", "--episodes", "1"]) == 1
    assert "/no/such/checkpoint: checkpoint folder not found" in capsys.readouterr().err
