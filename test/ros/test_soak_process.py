"""The CI soak: the whole closed loop in the simulator (scripted backend) for 60 s, as real processes.

One run (module fixture, ~75 s wall on two cores) of dreamzero_ros.testing.soak.run_soak, the same code
as benchmarks/bench_soak.py's 10-minute soak; each test checks one property of it. The first
WARMUP s after the first action chunk are not measured: torch, MuJoCo's renderer and the DDS
history buffers allocate lazily on first use, so RSS grows in the first seconds without leaking,
and the arm is still settling onto the scripted trajectory.
"""

from __future__ import annotations

import math

import pytest

from dreamzero_ros.testing.soak import SoakOptions, overall, process_table, run_soak, window_table

pytestmark = pytest.mark.slow

EMBODIMENT = "franka_droid"
WARMUP = 10.0  # s after the first chunk, excluded (lazy allocations, settling)
MEASURED = 50.0  # s measured: with the warm-up, 60 s of closed loop
RATE_TOLERANCE = 0.02  # mean command rate within 2% of the embodiment's control rate
RSS_GROWTH = 0.10  # per node process, first sample after the warm-up -> end
COMMAND_LOSS = 0.01  # of the commands expected at the control rate over the measured span


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    options = SoakOptions(embodiment=EMBODIMENT, backend="scripted", duration=MEASURED, warmup=WARMUP,
                          window=MEASURED / 2, rss_interval=5.0)
    run = run_soak(options, workdir=tmp_path_factory.mktemp("soak"))
    summary = {"overall": overall(run), "windows": window_table(run), "processes": process_table(run)}
    report = "\n".join(f"{k}: {v}" for k, v in summary.items())
    assert not run.died, f"{run.died}\n{report}\n" + "\n".join(run.logs[-80:])
    return run, summary, report


def test_the_command_rate_over_the_measured_minute_is_within_two_percent_of_the_control_rate(soak):
    run, summary, report = soak
    total = summary["overall"]
    assert total["received"] > 0.9 * MEASURED * run.rate_hz, report
    assert abs(total["rate_error"]) < RATE_TOLERANCE, f"rate {total['rate_hz_mean']:.3f} Hz\n{report}"


def test_no_node_process_grows_its_rss_by_ten_percent_after_the_warm_up(soak):
    run, summary, report = soak
    assert len(run.samples) >= MEASURED / run.options.rss_interval, report
    rows = summary["processes"]
    assert {r["process"] for r in rows} == set(run.pids), report
    for row in rows:
        assert math.isfinite(row["growth_pct"]), f"{row['process']} has no RSS samples\n{report}"
        assert row["growth_pct"] < 100 * RSS_GROWTH, f"{row['process']} grew {row['growth_pct']:.1f}%\n{report}"


def test_commands_are_not_lost_beyond_one_percent(soak):
    _, summary, report = soak
    assert summary["overall"]["loss_fraction"] < COMMAND_LOSS, report


def test_every_action_chunk_id_arrives_without_a_gap(soak):
    _, summary, report = soak
    total = summary["overall"]
    assert total["chunks"] > 0, report
    assert total["chunk_ids_missing"] == 0 and total["chunk_ids_repeated"] == 0, report


def test_the_executor_does_not_hold_after_the_warm_up(soak):
    _, summary, report = soak
    total = summary["overall"]
    assert total["holds_start"] is not None and total["holds_end"] is not None, report
    assert total["holds"] == 0, report


def test_every_node_exits_with_code_zero_and_leaves_no_process_behind(soak):
    run, _, report = soak
    assert set(run.exit_codes) == set(run.pids), report
    assert all(code == 0 for code in run.exit_codes.values()), run.exit_codes
    assert run.pids_left == [], run.pids_left
