"""Approximate time sync pairs the frames taken together, drops the rest, and counts every drop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamzero_ros.core.timesync import ApproximateTimeSync

CAMS = ("exterior_1", "exterior_2", "wrist")


def test_three_cameras_with_small_offsets_are_paired_frame_by_frame():
    sync = ApproximateTimeSync(CAMS, slop=0.05, queue_size=10)
    offsets = {"exterior_1": 0.0, "exterior_2": 0.011, "wrist": 0.023}
    sets = []
    for k in range(20):
        # Arrival order varies per frame, as it does over DDS.
        order = CAMS if k % 2 else CAMS[::-1]
        for cam in order:
            out = sync.push(cam, 100.0 + k / 15 + offsets[cam], (cam, k))
            if out is not None:
                sets.append(out)
    assert len(sets) == 20
    for k, s in enumerate(sets):
        assert {cam: item for cam, (_, item) in s.items()} == {cam: (cam, k) for cam in CAMS}
    assert sync.total_dropped == 0


def test_a_faster_camera_pairs_with_the_nearest_frame_and_its_extra_frames_are_dropped():
    sync = ApproximateTimeSync(("slow", "fast"), slop=0.01, queue_size=10)
    sets = []
    for k in range(10):  # slow at 10 Hz stamped k/10; fast at 30 Hz
        for m in range(3):
            out = sync.push("fast", k / 10 + m / 30 + 0.002, ("fast", k, m))
            if out:
                sets.append(out)
        out = sync.push("slow", k / 10, ("slow", k))
        if out:
            sets.append(out)
    assert [s["fast"][1] for s in sets] == [("fast", k, 0) for k in range(10)]
    assert [s["slow"][1] for s in sets] == [("slow", k) for k in range(10)]
    # fast frames m = 1, 2 of frames 0..8 are dropped once the next set goes out; the last two still wait
    assert sync.dropped == {"slow": 0, "fast": 18}
    assert sync.pending("fast") == 2


def test_a_frame_outside_the_slop_is_never_paired():
    sync = ApproximateTimeSync(("a", "b"), slop=0.02, queue_size=10)
    assert sync.push("a", 1.000, "a0") is None
    assert sync.push("b", 1.050, "b0") is None  # 50 ms apart: no set
    out = sync.push("a", 1.045, "a1")
    assert out == {"a": (1.045, "a1"), "b": (1.050, "b0")}
    assert sync.dropped == {"a": 1, "b": 0}  # a0 can never match any more


def test_the_set_with_the_smallest_spread_wins():
    sync = ApproximateTimeSync(("a", "b", "c"), slop=0.05, queue_size=10)
    sync.push("a", 1.00, "a_early")
    sync.push("a", 1.03, "a_late")
    sync.push("b", 1.04, "b")
    out = sync.push("c", 1.035, "c")
    assert {k: v[1] for k, v in out.items()} == {"a": "a_late", "b": "b", "c": "c"}


def test_a_full_queue_drops_its_oldest_item_and_counts_it():
    sync = ApproximateTimeSync(("a", "b"), slop=0.01, queue_size=3)
    for k in range(5):
        sync.push("a", float(k), k)
    assert sync.pending("a") == 3 and sync.dropped["a"] == 2
    assert sync.push("b", 0.0, "late partner") is None  # its partner was dropped


def test_an_item_older_than_the_last_emitted_set_is_dropped_on_arrival():
    sync = ApproximateTimeSync(("a", "b"), slop=0.05, queue_size=10)
    sync.push("a", 2.0, "a")
    assert sync.push("b", 2.01, "b") is not None
    assert sync.push("a", 1.99, "old") is None
    assert sync.dropped["a"] == 1 and sync.pending("a") == 0


def test_out_of_order_arrivals_within_the_queue_still_pair():
    sync = ApproximateTimeSync(("a", "b"), slop=0.01, queue_size=10)
    sync.push("a", 2.0, "a2")
    sync.push("a", 1.0, "a1")  # arrives late but is older
    assert sync.push("b", 1.005, "b1") == {"a": (1.0, "a1"), "b": (1.005, "b1")}
    assert sync.push("b", 2.0, "b2") == {"a": (2.0, "a2"), "b": (2.0, "b2")}


def test_a_single_stream_passes_every_item_through():
    sync = ApproximateTimeSync(("only",), slop=0.01, queue_size=1)
    assert sync.push("only", 1.0, "x") == {"only": (1.0, "x")}


def test_reset_forgets_queues_but_keeps_counters():
    sync = ApproximateTimeSync(("a", "b"), slop=0.01, queue_size=10)
    sync.push("a", 5.0, 1)
    sync.push("b", 5.0, 2)
    sync.push("a", 6.0, 3)
    sync.reset()
    assert sync.pending("a") == 0 and sync.emitted == 1
    sync.push("a", 1.0, "after a clock reset")
    assert sync.push("b", 1.0, "b") is not None


def test_unknown_streams_and_bad_settings_are_rejected_by_name():
    with pytest.raises(KeyError, match="unknown stream 'c'"):
        ApproximateTimeSync(("a", "b"), 0.01, 2).push("c", 0.0, None)
    with pytest.raises(ValueError, match="slop must be > 0 s, got 0"):
        ApproximateTimeSync(("a",), 0, 2)
    with pytest.raises(ValueError, match="queue_size must be an integer >= 1, got 0"):
        ApproximateTimeSync(("a",), 0.1, 0)
    with pytest.raises(ValueError, match="streams must be unique"):
        ApproximateTimeSync(("a", "a"), 0.1, 2)


@settings(max_examples=150, deadline=None)
@given(
    pushes=st.lists(
        st.tuples(st.sampled_from(CAMS), st.floats(min_value=0.0, max_value=2.0, allow_nan=False)), max_size=60
    ),
    slop=st.floats(min_value=0.001, max_value=0.2),
    queue_size=st.integers(min_value=1, max_value=6),
)
def test_every_set_is_within_slop_stamps_only_move_forward_and_no_item_is_lost_uncounted(pushes, slop, queue_size):
    sync = ApproximateTimeSync(CAMS, slop=slop, queue_size=queue_size)
    emitted_items = dict.fromkeys(CAMS, 0)
    last = dict.fromkeys(CAMS, float("-inf"))
    for i, (cam, stamp) in enumerate(pushes):
        out = sync.push(cam, stamp, i)
        if out is None:
            continue
        stamps = [s for s, _ in out.values()]
        assert max(stamps) - min(stamps) <= slop
        assert any(item == i for _, item in out.values())  # a set always includes the pushed item
        for c, (s, _) in out.items():
            assert s > last[c]
            last[c] = s
            emitted_items[c] += 1
    for c in CAMS:
        pushed = sum(1 for cam, _ in pushes if cam == c)
        assert pushed == emitted_items[c] + sync.dropped[c] + sync.pending(c)
