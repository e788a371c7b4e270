"""core/evaluation: the Wilson interval against hand-computed values, the eval-seed rule, the per-task summary
and the printed table (expected numbers worked out by hand in the comments, not by the code under test)."""

from __future__ import annotations

import math

import pytest

from dreamzero_ros.core.evaluation import (
    EVAL_FIRST_SEED,
    EpisodeResult,
    check_eval_seeds,
    format_table,
    summarize_task,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        # z^2 = 3.8415; 0/10: hi = z^2 / (n + z^2) = 3.8415 / 13.8415
        (0, 10, 0.0, 0.27753),
        # 10/10: lo = n / (n + z^2) = 10 / 13.8415
        (10, 10, 0.72247, 1.0),
        # 5/10: centre 0.5, half = z sqrt(0.025 + z^2/400) / (1 + z^2/10) = 1.96 x 0.18602 / 1.38415
        (5, 10, 0.23659, 0.76341),
        # 1/2: half = 1.96 x sqrt(0.125 + z^2/16) / (1 + z^2/2) = 1.96 x 0.60423 / 2.92073
        (1, 2, 0.09453, 0.90547),
        # 3/4: centre (0.75 + z^2/8) / (1 + z^2/4) = 1.23018 / 1.96037 = 0.62753;
        # half = 1.96 x sqrt(0.75 x 0.25 / 4 + z^2/64) / 1.96037 = 1.96 x 0.32695 / 1.96037 = 0.32689
        (3, 4, 0.30064, 0.95442),
    ],
)
def test_the_wilson_interval_matches_hand_computed_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_the_wilson_interval_refuses_impossible_counts_and_is_undefined_without_episodes():
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(-1, 2)
    with pytest.raises(TypeError, match="integer"):
        wilson_interval(0.5, 2)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_eval_seeds_below_a_million_are_refused_unless_the_overlap_is_allowed():
    with pytest.raises(ValueError, match=r"seeds 0\.\.29 may be training episodes"):
        check_eval_seeds(0, 30)
    with pytest.raises(ValueError, match="1,000,000"):
        check_eval_seeds(EVAL_FIRST_SEED - 1, 1)
    check_eval_seeds(EVAL_FIRST_SEED, 30)  # no error
    check_eval_seeds(5, 30, allow_overlap=True)  # no error
    with pytest.raises(ValueError, match="episodes"):
        check_eval_seeds(EVAL_FIRST_SEED, 0)


def _episode(seed: int, success: bool, tts: float | None, holds: int = 0, latencies=(), rejected: int = 0):
    return EpisodeResult("reach", seed, "touch the red cube", success, tts, tts or 5.0, holds=holds,
                         chunks_rejected=rejected, chunk_latencies=list(latencies))


def test_the_task_summary_counts_successes_times_holds_and_latencies():
    episodes = [
        _episode(1_000_000, True, 1.0, holds=2, latencies=[0.1, 0.2]),
        _episode(1_000_001, True, 3.0, latencies=[0.3]),
        _episode(1_000_002, False, None, holds=5, latencies=[0.4], rejected=1),
        _episode(1_000_003, True, 2.0, latencies=[0.5]),
    ]
    s = summarize_task("expert", "reach", episodes)
    assert (s["episodes"], s["successes"], s["success_rate"]) == (4, 3, 0.75)
    assert s["ci95"] == pytest.approx([0.30064, 0.95442], abs=1e-4)  # 3/4, as above
    # times of the successes only, sorted 1, 2, 3: p50 = 2; p95 at rank 0.95 x 2 = 1.9 -> 2 + 0.9 x 1 = 2.9
    assert s["time_to_success_p50_s"] == pytest.approx(2.0)
    assert s["time_to_success_p95_s"] == pytest.approx(2.9)
    assert (s["holds"], s["chunks_rejected"], s["chunks"]) == (7, 1, 5)
    # latencies 0.1 .. 0.5: p50 = 0.3; p95 at rank 0.95 x 4 = 3.8 -> 0.4 + 0.8 x 0.1 = 0.48
    assert s["chunk_latency_p50_s"] == pytest.approx(0.3)
    assert s["chunk_latency_p95_s"] == pytest.approx(0.48)
    assert s["failed_seeds"] == [1_000_002]


def test_a_summary_without_successes_or_chunks_has_no_times():
    s = summarize_task("hold", "reach", [_episode(7, False, None), _episode(8, False, None)])
    assert (s["successes"], s["time_to_success_p50_s"], s["chunk_latency_p50_s"]) == (0, None, None)
    with pytest.raises(ValueError, match="tasks"):
        summarize_task("hold", "push", [_episode(7, False, None)])


def test_the_table_has_one_aligned_row_per_summary():
    rows = [summarize_task("expert", "reach", [_episode(1, True, 1.0, latencies=[0.1]),
                                               _episode(2, True, 2.0, latencies=[0.3])]),
            summarize_task("hold", "reach", [_episode(1, False, None), _episode(2, False, None)])]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4  # header, rule, two rows
    assert len({len(line) for line in lines}) == 1, "columns are aligned"
    expert, hold = (line.split("|")[1:-1] for line in lines[2:])
    # 2/2: lo = 2 / (2 + z^2) = 0.342; tts sorted 1, 2: p50 1.5, p95 1 + 0.95 = 1.95; latency p50 200 ms, p95 290
    assert [c.strip() for c in expert] == ["expert", "reach", "2/2", "34-100%", "1.50/1.95", "0", "0", "200/290"]
    # 0/2: hi = z^2 / (2 + z^2) = 0.658
    assert [c.strip() for c in hold] == ["hold", "reach", "0/2", "0-66%", "-/-", "0", "0", "-/-"]
