"""Approximate time synchronisation of N named streams (message_filters is not available as a wheel).

Owns the pairing of camera frames that were taken at about the same time: items are pushed per
stream with their stamp (s); a synced set is one item per stream whose stamps span at most `slop`
seconds. Like message_filters.ApproximateTimeSynchronizer, each stream has a bounded queue, but the
matching rule is simpler and fully deterministic:

- Invariant: after every push the queues hold no complete set within slop. So a new set can only
  contain the item just pushed, and `push` returns at most one set.
- When the pushed item completes sets, the one with the smallest stamp spread is emitted (ties:
  the later stamps win). Its items leave the queues, and every queued item at or before the
  emitted stamp of its stream is dropped as unmatched: output stamps only move forward per stream.
- Items older than (or equal to) the last emitted stamp of their stream are dropped on arrival,
  and a queue over queue_size drops its oldest item. Every drop is counted per stream.

Pure and clock-free: the stamps are the only notion of time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ApproximateTimeSync(Generic[T]):
    """Pairs one item per stream with stamps within `slop` seconds of each other.

    streams: the stream names (e.g. the embodiment's camera names); every set holds all of them.
    slop: s, the largest allowed spread max(stamp) - min(stamp) of a set (> 0).
    queue_size: items kept per stream while waiting for partners (>= 1).
    """

    def __init__(self, streams: Sequence[str], slop: float, queue_size: int) -> None:
        names = tuple(streams)
        if not names:
            raise ValueError("ApproximateTimeSync: streams must name at least one stream, got none")
        if len(set(names)) != len(names):
            raise ValueError(f"ApproximateTimeSync: streams must be unique, got {list(names)}")
        if not slop > 0:
            raise ValueError(f"ApproximateTimeSync: slop must be > 0 s, got {slop!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"ApproximateTimeSync: queue_size must be an integer >= 1, got {queue_size!r}")
        self.streams = names
        self.slop = float(slop)
        self.queue_size = queue_size
        self._queues: dict[str, list[tuple[float, T]]] = {s: [] for s in names}  # sorted by stamp
        self._last_emitted: dict[str, float] = {s: float("-inf") for s in names}
        self.dropped: dict[str, int] = {s: 0 for s in names}  # unmatched items discarded, per stream
        self.emitted = 0  # synced sets returned

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def pending(self, stream: str) -> int:
        """Items of `stream` waiting for partners."""
        return len(self._queue(stream))

    def reset(self) -> None:
        """Forget all queued items and the emitted history (counters are kept)."""
        for s in self.streams:
            self._queues[s].clear()
            self._last_emitted[s] = float("-inf")

    def push(self, stream: str, stamp: float, item: T) -> dict[str, tuple[float, T]] | None:
        """Add one item; returns {stream: (stamp, item)} for every stream when a set completes, else None."""
        queue = self._queue(stream)
        stamp = float(stamp)
        if stamp <= self._last_emitted[stream]:
            self.dropped[stream] += 1  # a set at or after this stamp has already gone out
            return None
        # Insert in stamp order (out-of-order arrivals are allowed); equal stamps keep arrival order.
        pos = len(queue)
        while pos > 0 and queue[pos - 1][0] > stamp:
            pos -= 1
        queue.insert(pos, (stamp, item))
        new_entry = queue[pos]
        if len(queue) > self.queue_size:
            self.dropped[stream] += 1
            if queue.pop(0) is new_entry:
                return None  # the pushed item itself was the oldest and fell off
        return self._match(stream, new_entry)

    def _queue(self, stream: str) -> list[tuple[float, Any]]:
        try:
            return self._queues[stream]
        except KeyError:
            raise KeyError(
                f"ApproximateTimeSync: unknown stream {stream!r}; streams are {list(self.streams)}"
            ) from None

    def _match(self, stream: str, entry: tuple[float, T]) -> dict[str, tuple[float, T]] | None:
        stamp = entry[0]
        # Only items within slop of the new one can share a set with it.
        candidates: list[list[tuple[float, T]]] = []
        for s in self.streams:
            if s == stream:
                candidates.append([entry])
                continue
            near = [e for e in self._queues[s] if abs(e[0] - stamp) <= self.slop]
            if not near:
                return None
            candidates.append(near)
        best: tuple[tuple[float, float], tuple[tuple[float, T], ...]] | None = None
        for combo in itertools.product(*candidates):
            stamps = [e[0] for e in combo]
            spread = max(stamps) - min(stamps)
            if spread > self.slop:
                continue
            key = (spread, -sum(stamps))  # smallest spread, then the latest stamps
            if best is None or key < best[0]:
                best = (key, combo)
        if best is None:
            return None
        result: dict[str, tuple[float, T]] = {}
        for s, chosen in zip(self.streams, best[1], strict=True):
            queue = self._queues[s]
            idx = next(i for i, e in enumerate(queue) if e is chosen)
            # Everything queued at or before the chosen item can no longer match (stamps move forward).
            end = idx + 1
            while end < len(queue) and queue[end][0] <= chosen[0]:
                end += 1
            self.dropped[s] += end - 1
            del queue[:end]
            self._last_emitted[s] = chosen[0]
            result[s] = chosen
        self.emitted += 1
        return result
