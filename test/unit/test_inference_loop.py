"""The inference node's bookkeeping: staleness, the request schedule, frame hand-over, latency."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.inference_loop import (
    MAX_INSTRUCTION_CHARS,
    InferenceLoop,
    InferenceSettings,
    InstructionError,
    validate_instruction,
)

DROID = load_embodiment("franka_droid")


def frame(value: int) -> np.ndarray:
    return np.full((352, 640, 3), value, dtype=np.uint8)


def ready_loop(now: float = 10.0) -> InferenceLoop:
    loop = InferenceLoop(DROID, InferenceSettings(latency_margin=0.2))
    loop.set_instruction("pick up the cup")
    loop.on_frame(now, frame(1))
    loop.on_joint_state(list(DROID.state_joints), np.zeros(8), now)
    return loop


def test_no_request_without_instruction_frame_or_state():
    loop = InferenceLoop(DROID)
    assert loop.blocker(1.0) == "no instruction"
    loop.set_instruction("wave")
    assert loop.blocker(1.0) == "no stitched frame received"
    loop.on_frame(1.0, frame(0))
    assert loop.blocker(1.0) == "no joint state received"
    loop.on_joint_state(list(DROID.state_joints), np.zeros(8), 1.0)
    assert loop.blocker(1.0) == ""


def test_a_stale_frame_or_state_blocks_the_request_and_is_counted():
    loop = ready_loop(now=10.0)
    assert "stitched frame is stale" in loop.blocker(11.5)
    assert loop.take_request(11.5) is None and loop.stale_inputs == 1
    loop.on_frame(11.5, frame(2))
    assert "joint state is stale" in loop.blocker(11.5)


def test_joint_states_missing_a_joint_or_with_nan_invalidate_the_state():
    loop = ready_loop()
    names = list(DROID.state_joints)
    loop.on_joint_state(names[:-1], np.zeros(7), 10.0)
    assert "missing ['panda_finger_joint1']" in loop.blocker(10.0)
    values = np.zeros(8)
    values[2] = math.nan
    loop.on_joint_state(names, values, 10.0)
    assert "non-finite values for ['panda_joint3']" in loop.blocker(10.0)
    loop.on_joint_state(list(reversed(names)), np.arange(8.0), 10.0)
    request = loop.take_request(10.0)
    np.testing.assert_array_equal(request.state, np.arange(8.0)[::-1])  # assembled by name, not order


def test_requests_are_framed_as_the_release_frames_them_the_newest_frame_first_then_the_newest_four():
    """DREAMZERO_FACTS.md: the first call of an episode uses 1 frame, later calls the last 4 (the reference
    server's buffers, front-padded with the oldest when fewer arrived); a 1-frame call would start a new
    episode in the model, so a later request never carries a single frame."""
    loop = ready_loop(now=10.0)
    first = loop.take_request(10.0)
    assert first.frames.shape == (1, 352, 640, 3) and first.stamp == 10.0
    loop.on_frame(10.2, frame(11))
    loop.on_joint_state(list(DROID.state_joints), np.zeros(8), 10.2)
    second = loop.take_request(10.2)  # frames 1 (ready_loop's) and 11 seen: padded with the oldest
    assert [int(f[0, 0, 0]) for f in second.frames] == [1, 1, 1, 11]
    for k in range(2, 6):
        loop.on_frame(10.0 + 0.2 * k, frame(10 + k))
    loop.on_joint_state(list(DROID.state_joints), np.zeros(8), 11.0)
    third = loop.take_request(11.0)
    assert [int(f[0, 0, 0]) for f in third.frames] == [12, 13, 14, 15]
    assert third.stamp == pytest.approx(11.0)
    loop.reset()  # a new episode starts from the newest frame again
    assert [int(f[0, 0, 0]) for f in loop.take_request(11.0).frames] == [15]


def test_out_of_order_frames_are_ignored():
    loop = ready_loop(now=10.0)
    loop.on_frame(9.0, frame(99))
    assert int(loop.take_request(10.0).frames[-1, 0, 0, 0]) == 1


def test_the_next_request_lands_before_the_current_chunk_runs_out():
    loop = ready_loop(now=10.0)
    assert loop.due(10.0)
    request = loop.take_request(10.0)
    loop.record_chunk(request.stamp, ready_time=10.3)  # 0.3 s latency
    # chunk runs out at 10 + 1.6; request at 11.6 - p95 latency (0.3) - margin (0.2) = 11.1
    assert loop.next_request_time() == pytest.approx(11.1)
    assert not loop.due(11.0) and loop.due(11.1)


def test_with_execute_steps_the_request_comes_when_a_frame_that_many_steps_newer_arrives_or_at_the_deadline():
    loop = InferenceLoop(DROID, InferenceSettings(latency_margin=0.2, execute_steps=12))
    loop.set_instruction("pick up the cup")
    loop.on_frame(10.0, frame(1))
    loop.on_joint_state(list(DROID.state_joints), np.zeros(8), 10.0)
    loop.record_chunk(loop.take_request(10.0).stamp, ready_time=10.1)  # a GPU's 0.1 s
    # Deadline 11.6 - 0.1 - 0.2 = 11.3; 12 steps at 15 Hz after the observation at 10.0 is 10.8. Frames come at 5 Hz:
    # the one stamped 10.6 is 9 steps on (not due, even once the clock passes 10.8), the one stamped 10.8 is 12.
    loop.on_frame(10.6, frame(2))
    assert loop.next_request_time() == pytest.approx(11.3)
    assert not loop.due(10.65) and not loop.due(10.9)
    loop.on_frame(10.8, frame(3))
    loop.on_joint_state(list(DROID.state_joints), np.zeros(8), 10.8)
    assert loop.due(10.85)
    request = loop.take_request(10.85)
    assert request.stamp == 10.8
    # Slow chunks (0.7 s, twice, so the p95 estimate is 0.7): the deadline 10.8 + 1.6 - 0.7 - 0.2 = 11.5 comes
    # before the frame 12 steps on (11.6).
    slow = InferenceLoop(DROID, InferenceSettings(latency_margin=0.2, execute_steps=12))
    slow.record_chunk(10.0, ready_time=10.7)
    slow.record_chunk(10.8, ready_time=11.5)
    slow.on_frame(11.4, frame(4))
    assert slow.next_request_time() == pytest.approx(11.5)
    assert not slow.due(11.45) and slow.due(11.51)
    # A new episode forgets the last chunk's observation: the first request is due at once.
    loop.reset()
    assert loop.due(11.5)
    with pytest.raises(ValueError, match="execute_steps: expected None or whole control steps in 1..franka_droid's "
                                         "horizon of 24 .*, got 25"):
        InferenceLoop(DROID, InferenceSettings(execute_steps=25))
    loop.set_execute_steps(None)  # a backend that stops reporting one: latency only again
    assert loop.settings.execute_steps is None and loop.settings.latency_margin == 0.2
    with pytest.raises(ValueError, match="execute_steps: expected None or whole control steps >= 1, got 0"):
        InferenceSettings(execute_steps=0)


def test_a_chunk_ready_after_the_previous_ran_out_counts_as_late():
    loop = ready_loop(now=10.0)
    loop.record_chunk(10.0, 10.3)
    loop.record_chunk(11.0, 11.7)  # previous chunk ended at 11.6
    assert loop.late_chunks == 1
    last, mean, p95 = loop.latency_stats()
    assert last == pytest.approx(0.7) and mean == pytest.approx(0.5)


def test_an_instruction_change_resets_the_episode_but_the_same_text_does_not():
    loop = ready_loop()
    episode = loop.episode
    assert loop.set_instruction("  pick up   the cup ") is False and loop.episode == episode
    assert loop.set_instruction("open the drawer") is True and loop.episode == episode + 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("   ", "empty"), ("x" * (MAX_INSTRUCTION_CHARS + 1), "limit"), ("a\x00b", "control"), (b"hi", "text")],
)
def test_malformed_instructions_are_refused_with_the_reason(text, reason):
    with pytest.raises(InstructionError, match=reason):
        validate_instruction(text)


def test_settings_name_the_bad_field():
    with pytest.raises(ValueError, match="max_frame_age"):
        InferenceSettings(max_frame_age=0)


def test_a_blocked_observation_is_counted_once_however_often_the_worker_asks():
    loop = ready_loop(now=10.0)
    loop.on_joint_state(list(DROID.state_joints)[:-1], np.zeros(7), 10.0)  # invalid state blocks every request
    for k in range(20):  # the worker polls many times while the same frame is the newest
        assert loop.take_request(10.0 + 0.01 * k) is None
    assert loop.stale_inputs == 1
    loop.on_frame(10.2, frame(2))
    loop.take_request(10.2)
    loop.take_request(10.25)
    assert loop.stale_inputs == 2  # one more observation lost


def test_an_outside_blocker_skips_the_request_and_is_counted():
    loop = ready_loop(now=10.0)
    assert loop.take_request(10.0, "no image from camera wrist") is None
    assert loop.stale_inputs == 1
    assert loop.take_request(10.0) is not None


def test_the_chunk_rate_is_measured_from_recent_chunks_and_drops_to_zero_when_they_stop():
    loop = ready_loop(now=10.0)
    assert loop.chunk_rate(10.0) == 0.0
    for k in range(5):
        loop.record_chunk(10.0 + 0.8 * k, 10.3 + 0.8 * k)  # one chunk every 0.8 s
    assert loop.chunk_rate(13.6) == pytest.approx(1 / 0.8)
    duration = DROID.control.chunk_duration
    assert loop.chunk_rate(13.5 + 2 * duration + 0.01) == 0.0


def test_the_request_carries_the_frames_exact_stamp_which_a_float_cannot_hold():
    ns = 1_795_592_801_113_613_701  # an epoch time in ns: float seconds lose the last ~100 ns
    loop = InferenceLoop(DROID)
    loop.set_instruction("wave")
    loop.on_frame(ns * 1e-9, frame(1), ns)
    loop.on_joint_state(list(DROID.state_joints), np.zeros(8), ns * 1e-9)
    request = loop.take_request(ns * 1e-9)
    assert request.stamp_ns == ns
    assert round(request.stamp * 1e9) != ns  # why the exact value travels separately


def test_one_slow_cold_start_chunk_does_not_pull_the_following_requests_forward():
    loop = ready_loop(now=10.0)
    loop.record_chunk(10.0, 12.0)  # the first chunk: 2 s of warm-up
    for k in range(1, 6):
        loop.record_chunk(10.0 + k, 10.0 + k + 0.4)
    # runs out at 15 + 1.6; request 0.4 s (typical latency) + 0.2 s (margin) before, not 2.2 s before
    assert loop.next_request_time() == pytest.approx(16.6 - 0.4 - 0.2)
    loop.record_chunk(16.0, 18.0)  # a second slow one is taken seriously
    assert loop.expected_latency == pytest.approx(2.0)


def test_a_frame_with_a_view_filled_by_the_stale_policy_blocks_requests_and_names_the_camera():
    loop = ready_loop(now=10.0)
    loop.on_frame(10.2, frame(2), stale_views=("wrist",))
    assert "camera wrist stale" in loop.blocker(10.2)
    assert loop.take_request(10.2) is None and loop.stale_inputs == 1
    loop.on_frame(10.4, frame(3))  # the camera is back: the next frame is a real observation again
    assert loop.blocker(10.4) == ""
    assert loop.take_request(10.4) is not None


def test_an_unusable_joint_state_message_blocks_requests_until_a_good_state_arrives():
    loop = ready_loop()
    assert loop.blocker(10.0) == ""
    loop.state_invalid("joint_states is missing ['fr3_joint7'] on /franka/joint_states")
    assert loop.blocker(10.0) == "joint_states is missing ['fr3_joint7'] on /franka/joint_states"
    loop.on_joint_state(list(DROID.state_joints), np.zeros(8), 10.0)
    assert loop.blocker(10.0) == ""
