"""Per-camera frame windows: the recent frames of each named stream that one policy request sees.

One type for both ends of the remote path: the inference node buffers the stitcher's per-camera views
by stamp and takes what arrived since its last request (`since`); the policy server keeps what each
request brought and feeds the model the newest N of every camera, front-padded with the oldest when
fewer arrived, as the reference server's per-camera buffers do (`last`). Not thread-safe: the caller
holds its own lock.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

import numpy as np

#: the release's framing of a request: the first call of an episode sees the newest frame, every later
#: call the newest 4 (front-padded with the oldest when fewer arrived), which the model repeats twice
#: and prefixes with the first into the 9-frame clip it encodes (DREAMZERO_FACTS.md, Inference semantics)
FIRST_CALL_FRAMES = 1
LATER_CALL_FRAMES = 4


class FrameWindow:
    """Up to `history` (stamp, frame) pairs per named stream, oldest first."""

    def __init__(self, names: Iterable[str], history: int) -> None:
        if history < 1:
            raise ValueError(f"history: expected >= 1 frames, got {history}")
        self.history = history
        self._frames: dict[str, collections.deque[tuple[float, np.ndarray]]] = {
            name: collections.deque(maxlen=history) for name in names
        }

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._frames)

    def push(self, name: str, frames: np.ndarray | Sequence[np.ndarray], stamp: float = float("nan")) -> None:
        """Append one frame [H, W, 3] or several [T, H, W, 3] (oldest first) to stream `name`."""
        if name not in self._frames:
            raise KeyError(f"unknown stream {name!r}; expected one of {list(self._frames)}")
        batch = frames if not isinstance(frames, np.ndarray) or frames.ndim == 4 else [frames]
        self._frames[name].extend((stamp, f) for f in batch)

    def clear(self) -> None:
        for frames in self._frames.values():
            frames.clear()

    def newest_stamp(self, name: str) -> float | None:
        """Stamp of the newest frame of `name`, or None before its first."""
        frames = self._frames[name]
        return frames[-1][0] if frames else None

    def last(self, n: int) -> dict[str, list[np.ndarray]]:
        """The newest `n` frames of every stream, front-padded with its oldest when fewer arrived.

        Every stream must hold at least one frame (ValueError naming the empty one otherwise).
        """
        out = {}
        for name, frames in self._frames.items():
            if not frames:
                raise ValueError(f"stream {name!r} has no frame yet")
            newest = [f for _, f in frames][-n:]
            out[name] = [newest[0]] * (n - len(newest)) + newest
        return out

    def since(self, after: float, until: float) -> dict[str, np.ndarray]:
        """Frames [T, H, W, 3] of every stream stamped in (after, until], or its newest one when none is."""
        out = {}
        for name, frames in self._frames.items():
            if not frames:
                raise ValueError(f"stream {name!r} has no frame yet")
            fresh = [f for t, f in frames if after < t <= until] or [frames[-1][1]]
            out[name] = np.stack(fresh)
        return out
