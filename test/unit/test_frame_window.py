"""FrameWindow, the per-camera frame buffer of both ends of the remote path, on hand-made frames."""

from __future__ import annotations

import numpy as np
import pytest

from dreamzero_ros.core.frame_window import FrameWindow


def frame(value: int) -> np.ndarray:
    return np.full((2, 3, 3), value, dtype=np.uint8)


def values(frames) -> list[int]:
    return [int(f[0, 0, 0]) for f in frames]


def test_last_gives_the_newest_n_front_padded_with_the_oldest_as_the_reference_server_does():
    window = FrameWindow(["a", "b"], history=4)
    window.push("a", frame(1))
    window.push("b", np.stack([frame(10), frame(11)]))
    assert {k: values(v) for k, v in window.last(1).items()} == {"a": [1], "b": [11]}
    assert {k: values(v) for k, v in window.last(4).items()} == {"a": [1, 1, 1, 1], "b": [10, 10, 10, 11]}
    window.push("a", np.stack([frame(2), frame(3), frame(4), frame(5)]))  # history 4: frame 1 falls out
    assert values(window.last(4)["a"]) == [2, 3, 4, 5]


def test_since_gives_the_frames_stamped_after_the_last_take_or_the_newest_when_none_is_new():
    window = FrameWindow(["wrist"], history=8)
    for k, stamp in enumerate((1.0, 1.1, 1.2, 1.3)):
        window.push("wrist", frame(k), stamp)
    assert values(window.since(1.05, 1.25)["wrist"]) == [1, 2]
    assert values(window.since(1.3, 2.0)["wrist"]) == [3]  # nothing new: the newest
    assert window.newest_stamp("wrist") == 1.3


def test_an_empty_or_unknown_stream_is_named():
    window = FrameWindow(["a", "b"], history=2)
    window.push("a", frame(1))
    with pytest.raises(ValueError, match="stream 'b' has no frame yet"):
        window.last(1)
    with pytest.raises(KeyError, match="unknown stream 'c'"):
        window.push("c", frame(1))
    with pytest.raises(ValueError, match="history: expected >= 1"):
        FrameWindow(["a"], history=0)
    window.clear()
    assert window.newest_stamp("a") is None
