"""core/evaluation: the Wilson interval against hand-computed values, the eval-seed rule, the per-task summary
and the printed table (expected numbers worked out by hand in the comments, not by the code under test)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from dreamzero_ros.core.evaluation import (
    EVAL_FIRST_SEED,
    PSNR_MAX_DB,
    EpisodeResult,
    PredictionPair,
    check_eval_seeds,
    closest_approach,
    cube_to_pad,
    format_psnr_table,
    format_table,
    named_cube_track,
    pair_predictions,
    psnr,
    push_progress,
    summarize_task,
    track_length,
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


def _episode(seed: int, success: bool, tts: float | None, holds: int = 0, latencies=(), rejected: int = 0,
             closest: tuple[float | None, float | None] = (None, None)):
    return EpisodeResult("reach", seed, "touch the red cube", success, tts, tts or 5.0, holds=holds,
                         chunks_rejected=rejected, chunk_latencies=list(latencies), closest_target=closest[0],
                         closest_other=closest[1])  # fmt: skip


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


def test_the_closest_approaches_summarise_and_count_episodes_nearer_another_object():
    episodes = [_episode(1, True, 1.0, closest=(0.03, 0.20)), _episode(2, False, None, closest=(0.25, 0.04)),
                _episode(3, False, None, closest=(0.12, 0.10)), _episode(4, False, None)]  # 4: no /sim/task seen
    s = summarize_task("policy", "reach", episodes)
    # named: 0.03, 0.12, 0.25 -> p50 0.12; other: 0.04, 0.10, 0.20 -> p50 0.10; nearer another: seeds 2 and 3
    assert s["closest_target_p50_m"] == pytest.approx(0.12) and s["closest_other_p50_m"] == pytest.approx(0.10)
    assert s["nearer_other"] == 2
    row = [c.strip() for c in format_table([s]).splitlines()[2].split("|")[1:-1]]
    assert row[5:7] == ["12.0/10.0", "2"]


def test_an_episode_prints_as_one_line_with_its_outcome_and_closest_approaches():
    done = _episode(5, True, 1.234, closest=(0.031, 0.2))
    assert done.line() == ("seed 5 'touch the red cube': success in 1.23 s (closest 3.1 cm named / 20.0 cm other, "
                           f"holds {done.holds}, chunks {len(done.chunk_latencies)})")
    unseen = _episode(6, False, None)
    assert unseen.line().startswith("seed 6 'touch the red cube': failure (closest - cm named / - cm other")


def _push_state(cube_xy, pad_xy, task="push") -> dict:
    return {"task": task, "target": "red_cube", "objects": {"red_cube": [*cube_xy, 0.03], "blue_cube": [0, 0, 0.03]},
            "pad": list(pad_xy), "stamp": 1.0, "tcp": [0.0, 0.0, 0.3]}


def test_a_push_is_measured_by_the_named_cubes_distance_to_the_pad_on_the_table():
    # (0.50, 0.10) to (0.53, 0.14): a 3-4-5 triangle, 5 cm; the cube's height does not count
    assert cube_to_pad(_push_state((0.50, 0.10), (0.53, 0.14))) == pytest.approx(0.05)
    assert cube_to_pad(_push_state((0.50, 0.10), (0.53, 0.14), task="reach")) is None
    assert cube_to_pad({"task": "push", "seed": 3}) is None  # a state without positions


def test_a_push_keeps_the_first_distance_and_the_latest_one_within_the_time_limit():
    progress = (None, None)
    for cube_x, stamp in ((0.30, 1.0), (0.40, 2.0), (0.45, 3.0), (0.55, 9.5)):  # pad at x 0.50; limit at 9.0
        progress = push_progress(progress, {**_push_state((cube_x, 0.0), (0.50, 0.0)), "stamp": stamp}, until=9.0)
    assert progress == pytest.approx((0.20, 0.05))  # 0.50 - 0.30 at the start, 0.50 - 0.45 at 3 s; 9.5 s is late
    reach = {**_push_state((0.45, 0.0), (0.50, 0.0), task="reach"), "stamp": 1.0}
    assert push_progress((None, None), reach, until=9.0) == (None, None)


def test_push_summaries_count_the_cubes_pushed_at_least_5_cm_closer_to_the_pad():
    episodes = [
        dataclasses.replace(_episode(1, False, None), task="push", to_pad_start=0.20, to_pad_end=0.14),  # 6 cm
        dataclasses.replace(_episode(2, False, None), task="push", to_pad_start=0.22, to_pad_end=0.18),  # 4 cm
        dataclasses.replace(_episode(3, True, 4.0), task="push", to_pad_start=0.18, to_pad_end=0.03),  # 15 cm
        dataclasses.replace(_episode(4, False, None), task="push", to_pad_start=0.25, to_pad_end=0.30),  # away
    ]
    s = summarize_task("policy", "push", episodes)
    # start 0.18 0.20 0.22 0.25 -> p50 0.21; end 0.03 0.14 0.18 0.30 -> p50 0.16; closer by >= 5 cm: seeds 1 and 3
    assert s["to_pad_start_p50_m"] == pytest.approx(0.21) and s["to_pad_end_p50_m"] == pytest.approx(0.16)
    assert s["pushed_closer"] == 2
    row = [c.strip() for c in format_table([s]).splitlines()[2].split("|")[1:-1]]
    assert row[10:] == ["21.0/16.0", "2", "-", "-"]  # no episode says how far its cube moved; a push knocks none
    assert "cube to pad 20.0 -> 14.0 cm, holds" in episodes[0].line()


def test_the_named_cube_is_tracked_from_its_first_position_to_its_last_within_the_time_limit():
    track = (None, None)
    for cube_xy, stamp in (((0.50, 0.10), 1.0), ((0.53, 0.10), 2.0), ((0.56, 0.18), 3.0), ((0.70, 0.18), 9.5)):
        track = named_cube_track(track, {**_push_state(cube_xy, (0.0, 0.0), task="push_forward"), "stamp": stamp},
                                 until=9.0)  # fmt: skip
    assert track == ((0.50, 0.10), (0.56, 0.18))  # the 9.5 s state is after the limit
    assert track_length(track) == pytest.approx(0.10)  # 6 cm forward, 8 cm sideways: a 6-8-10 triangle
    assert track_length((None, None)) is None
    assert named_cube_track((None, None), {"task": "reach", "seed": 3, "stamp": 1.0}, until=9.0) == (None, None)
    moved = [dataclasses.replace(_episode(n, False, None), task="push_forward", cube_moved=m)
             for n, m in ((1, 0.02), (2, 0.05), (3, 0.09))]  # fmt: skip
    s = summarize_task("policy", "push_forward", moved)
    assert s["cube_moved_p50_m"] == pytest.approx(0.05)
    assert [c.strip() for c in format_table([s]).splitlines()[2].split("|")[1:-1]][-2:] == ["5.0", "-"]
    assert "cube moved 2.0 cm, holds" in moved[0].line()
    # A reach that slid the cube 2 cm or more and failed was knocked; a success that nudged it, or 1.9 cm, was not.
    reach = [dataclasses.replace(_episode(n, ok, 1.0 if ok else None), cube_moved=m)
             for n, ok, m in ((1, False, 0.02), (2, False, 0.019), (3, True, 0.05), (4, False, 0.06), (5, False, None))]
    s = summarize_task("policy", "reach", reach)
    assert s["knocked"] == 2  # seeds 1 and 4
    assert [c.strip() for c in format_table([s]).splitlines()[2].split("|")[1:-1]][-1] == "2"


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
    assert [c.strip() for c in expert] == ["expert", "reach", "2/2", "34-100%", "1.50/1.95", "-/-", "0", "0", "0",
                                           "200/290", "-/-", "-", "-", "0"]  # fmt: skip
    # 0/2: hi = z^2 / (2 + z^2) = 0.658
    assert [c.strip() for c in hold] == ["hold", "reach", "0/2", "0-66%", "-/-", "-/-", "0", "0", "0", "-/-", "-/-",
                                         "-", "-", "0"]  # fmt: skip


# --- predicted video vs the real future -------------------------------------------------------------------------


def test_psnr_against_hand_computed_values():
    base = np.full((4, 6, 3), 100, np.uint8)
    # off by a constant 10 everywhere: MSE = 100, PSNR = 10 log10(255^2 / 100) = 20 log10(25.5) = 28.1308 dB
    assert psnr(base + 10, base) == pytest.approx(28.1308, abs=1e-4)
    # below instead of above (uint8 subtraction must not wrap around): the same
    assert psnr(base - 10, base) == pytest.approx(28.1308, abs=1e-4)
    # half the pixels 0 vs 255, half equal: MSE = 255^2 / 2, PSNR = 10 log10(2) = 3.0103 dB
    black, half = np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8)
    half[0] = 255
    assert psnr(half, black) == pytest.approx(3.0103, abs=1e-4)
    assert psnr(base, base) == PSNR_MAX_DB == 100.0  # identical frames: the finite cap
    with pytest.raises(ValueError, match="different shapes"):
        psnr(base, base[:, :5])


MS = 1_000_000  # ns


def test_pair_predictions_pairs_by_stamp_on_hand_written_frames():
    # 5 fps: one frame period is 200 ms. Real frames given out of order; the one of 1.8 s is stamped 1.83 s.
    real = [2000 * MS, 1830 * MS, 1600 * MS, 1400 * MS, 1200 * MS, 1000 * MS]
    # chunk 0 (B) observed 1.4 s and arrived at 1.9 s; chunk 1 (A) observed 1.0 s, arrived 1.5 s; chunk 2 (C)
    # observed 0.8 s, a time without a real frame.
    chunks = [(1900 * MS, 1400 * MS), (1500 * MS, 1000 * MS), (1200 * MS, 800 * MS)]
    predicted = [
        (1501 * MS, 1200 * MS + 300),  # 0: A step 1 (float rounding of the stamp); real 1.2 s, baseline 1.0 s
        (1502 * MS, 1400 * MS),  # 1: A step 2
        (1503 * MS, 1600 * MS),  # 2: A step 3 (B step 1 too, but B arrived 400 ms away)
        (1901 * MS, 1600 * MS),  # 3: B step 1; baseline 1.4 s
        (1902 * MS, 1800 * MS),  # 4: B step 2; real: the 1.83 s frame (within half a period)
        (1903 * MS, 2000 * MS),  # 5: B step 3
        (1904 * MS, 2200 * MS),  # 6: B step 4: no real frame within 100 ms -> left out
        (1905 * MS, 2050 * MS),  # 7: no whole number of periods after any chunk -> left out
        (1906 * MS, 2400 * MS),  # 8: B step 5 > max_steps -> left out
        (1201 * MS, 1000 * MS),  # 9: C step 1, but no real frame at C's 0.8 s for the baseline -> left out
    ]
    pairs = pair_predictions(chunks, predicted, real, fps=5.0, max_steps=4)
    assert pairs == [
        PredictionPair(predicted=0, chunk=1, step=1, real=4, baseline=5),
        PredictionPair(predicted=1, chunk=1, step=2, real=3, baseline=5),
        PredictionPair(predicted=2, chunk=1, step=3, real=2, baseline=5),
        PredictionPair(predicted=3, chunk=0, step=1, real=2, baseline=3),
        PredictionPair(predicted=4, chunk=0, step=2, real=1, baseline=3),
        PredictionPair(predicted=5, chunk=0, step=3, real=0, baseline=3),
    ]
    assert pair_predictions([], predicted, real, fps=5.0, max_steps=4) == []
    with pytest.raises(ValueError, match="fps > 0"):
        pair_predictions(chunks, predicted, real, fps=0.0, max_steps=4)


def test_summary_and_table_carry_the_psnr_figures_only_with_predicted_video():
    episodes = [
        EpisodeResult(task="reach", seed=1, instruction="x", success=False, time_to_success=None, duration=5.0,
                      psnr_predicted=[10.0, 20.0], psnr_baseline=[5.0, 7.0]),
        EpisodeResult(task="reach", seed=2, instruction="x", success=False, time_to_success=None, duration=5.0,
                      psnr_predicted=[30.0], psnr_baseline=[9.0]),
    ]
    assert "psnr_pairs" not in summarize_task("random", "reach", episodes)
    s = summarize_task("random", "reach", episodes, predicted_video=True)
    # all 3 pairs of both episodes: predicted mean (10 + 20 + 30) / 3 = 20, median 20; baseline 7 and 7
    assert (s["psnr_pairs"], s["psnr_predicted_mean_db"], s["psnr_predicted_median_db"]) == (3, 20.0, 20.0)
    assert (s["psnr_baseline_mean_db"], s["psnr_baseline_median_db"]) == (7.0, 7.0)
    table = format_psnr_table([s])
    assert "| random | reach | 3     | 20.0/20.0" in table and "| 7.0/7.0" in table, table


def _task_state(stamp: float, tcp: list[float] | None) -> dict:
    state = {"stamp": stamp, "target": "red_cube",
             "objects": {"red_cube": [0.5, 0.0, 0.03], "green_cube": [0.5, 0.2, 0.03], "blue_cube": [0.3, -0.1, 0.03]}}
    return state if tcp is None else {**state, "tcp": tcp}


def test_the_closest_approach_counts_only_states_within_the_episodes_time_limit():
    best = (math.inf, math.inf)
    # 0.1 m above red: 0.1 to red; green is sqrt(0.2^2 + 0.1^2) = 0.2236, blue sqrt(0.2^2 + 0.1^2 + 0.1^2) = 0.2449
    best = closest_approach(best, _task_state(10.0, [0.5, 0.0, 0.13]), until=15.0)
    assert best == pytest.approx((0.1, math.sqrt(0.05)))
    # at the limit, 8 cm from red and 12 cm from green: both figures come down
    best = closest_approach(best, _task_state(15.0, [0.5, 0.08, 0.03]), until=15.0)
    assert best == pytest.approx((0.08, 0.12))
    # touching red after the limit (as the eval saw: under 5 cm, yet a failure) does not count; nor does a state
    # without the tool's position
    assert closest_approach(best, _task_state(15.01, [0.5, 0.0, 0.04]), until=15.0) == best
    assert closest_approach(best, _task_state(12.0, None), until=15.0) == best
