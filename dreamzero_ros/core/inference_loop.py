"""The inference node's bookkeeping, pure and clock-injected (no rclpy, no threads).

Owns what decides whether and when to ask the policy for the next chunk: the real frames
observed since the last request (the model writes them into its KV cache in place of its own
predictions), the latest joint state assembled by name, the instruction, input staleness, the
request schedule (early enough that the next chunk lands before the current one runs out,
from measured latency plus a margin; with `execute_steps`, also once a frame that many control steps
after the last chunk's observation is in: the cadence the checkpoint was trained at), latency
statistics, the achieved chunk rate and the count of observations skipped because an input was
stale or missing.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.core.frame_window import FIRST_CALL_FRAMES, LATER_CALL_FRAMES, FrameWindow

#: longest instruction accepted anywhere (the node and the policy server): the prompt template repeats the
#: instruction twice inside umT5's 512-token text context, so longer text would be cut off anyway
MAX_INSTRUCTION_CHARS = 1000


class InstructionError(ValueError):
    """An instruction was refused (empty, too long, not text)."""


def validate_instruction(text: object) -> str:
    """A clean instruction or InstructionError saying why it was refused."""
    if not isinstance(text, str):
        raise InstructionError(f"instruction must be text, got {type(text).__name__}")
    clean = " ".join(text.split())
    if not clean:
        raise InstructionError("instruction is empty")
    if len(clean) > MAX_INSTRUCTION_CHARS:
        raise InstructionError(f"instruction is {len(clean)} characters; the limit is {MAX_INSTRUCTION_CHARS}")
    if any(ord(c) < 32 for c in clean):
        raise InstructionError("instruction contains control characters")
    return clean


def valid_execute_steps(value: object, horizon: float = math.inf) -> bool:
    """Whether `value` is a cadence a chunk of `horizon` steps can keep: whole control steps in 1..horizon (a bool
    is not a count). One rule for the checkpoint, the server's metadata and the node's schedule."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= horizon


@dataclass(frozen=True, slots=True)
class InferenceSettings:
    max_frame_age: float = 1.0  # s: newest stitched frame older than this -> stale, no request
    max_state_age: float = 0.5  # s: newest joint state older than this -> stale, no request
    latency_margin: float = 0.25  # s: request this much before (chunk end - expected latency)
    latency_window: int = 50  # chunks kept for latency statistics
    rate_window: float = 10.0  # s of recent chunks the achieved chunk rate is measured over
    #: control steps between the observations of consecutive chunks where latency allows (the checkpoint's
    #: training cadence); None: as late as the latency and margin allow
    execute_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_frame_age", "max_state_age"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {getattr(self, name)!r}")
        if self.latency_margin < 0:
            raise ValueError(f"latency_margin: expected >= 0 s, got {self.latency_margin!r}")
        if self.latency_window < 1:
            raise ValueError(f"latency_window: expected >= 1, got {self.latency_window!r}")
        if not self.rate_window > 0:
            raise ValueError(f"rate_window: expected a positive number of seconds, got {self.rate_window!r}")
        if self.execute_steps is not None and not valid_execute_steps(self.execute_steps):
            raise ValueError(f"execute_steps: expected None or whole control steps >= 1, got {self.execute_steps!r}")


@dataclass(slots=True)
class Request:
    stamp: float  # observation time (newest frame), s
    frames: np.ndarray  # [T, H, W, 3] uint8, oldest first
    state: np.ndarray  # [S] float64, state_joints order
    stamp_ns: int | None = None  # the same time in exact integer ns when the caller gave it (stamps round-trip)


class InferenceLoop:
    """What the inference node's worker asks before each request, and what it records after."""

    def __init__(self, embodiment: EmbodimentConfig, settings: InferenceSettings | None = None) -> None:
        self.embodiment = embodiment
        self.settings = settings or InferenceSettings()
        self.set_execute_steps(self.settings.execute_steps)
        self.state_joints = embodiment.state_joints
        self._index = {name: i for i, name in enumerate(self.state_joints)}
        # The release's framing (frame_window): the episode's first request sends the newest frame,
        # every later one the newest LATER_CALL_FRAMES, whether or not they were sent before.
        self._frames = FrameWindow(["stitched"], LATER_CALL_FRAMES)
        self._first_request = True
        self._newest_frame: tuple[float, np.ndarray] | None = None
        self._newest_ns: int | None = None
        self._stale_views: tuple[str, ...] = ()  # cameras stale in the newest stitched frame
        self._state: np.ndarray | None = None
        self._state_time = -math.inf
        self.state_problem = "no joint state received"
        self.instruction = ""
        self._chunk_end = -math.inf  # time the last published chunk runs out
        self._chunk_stamp = -math.inf  # observation time of the last published chunk
        self.latencies: collections.deque[float] = collections.deque(maxlen=self.settings.latency_window)
        self._ready_times: collections.deque[float] = collections.deque(maxlen=self.settings.latency_window)
        self.chunks_produced = 0
        self.late_chunks = 0
        self.stale_inputs = 0  # observations (newest frames) skipped because an input was stale or missing
        self._skipped: tuple[float | None] | None = None  # the observation last counted in stale_inputs
        self.episode = 0

    def set_execute_steps(self, steps: int | None) -> None:
        """Keep a cadence of `steps` control steps between observations from now on (None: latency only);
        ValueError when it is not 1..horizon."""
        horizon = self.embodiment.control.horizon
        if steps is not None and not valid_execute_steps(steps, horizon):
            raise ValueError(f"execute_steps: expected None or whole control steps in 1..{self.embodiment.name}'s "
                             f"horizon of {horizon} (a chunk holds no more), got {steps!r}")
        self.settings = dataclasses.replace(self.settings, execute_steps=steps)

    # -- inputs ------------------------------------------------------------------------------

    def on_frame(self, stamp: float, frame: np.ndarray, stamp_ns: int | None = None,
                 stale_views: tuple[str, ...] = ()) -> None:
        """A stitched frame [H, W, 3] uint8 observed at `stamp` (s; optionally also exact, `stamp_ns` ns).

        A float holds today's epoch seconds only to ~0.2 us, so a chunk stamped from it would not
        equal its frame's stamp; the request carries `stamp_ns` back unchanged. `stale_views` are
        the cameras the stitcher filled by its stale policy: no request is made from such a frame.
        """
        if self._newest_frame is not None and stamp <= self._newest_frame[0]:
            return  # duplicate or out of order: the history must stay in time order
        self._frames.push("stitched", frame, stamp)
        self._newest_frame = (stamp, frame)
        self._newest_ns = stamp_ns
        self._stale_views = tuple(stale_views)

    def on_joint_state(self, names: list[str], positions: list[float] | np.ndarray, now: float) -> None:
        """Assemble the state vector by name; a missing joint or NaN marks the state invalid."""
        if len(names) != len(positions):
            self.state_problem = f"joint_states has {len(names)} names but {len(positions)} positions"
            self._state = None
            return
        by_name = dict(zip(names, positions, strict=True))
        missing = [j for j in self.state_joints if j not in by_name]
        if missing:
            self.state_problem = f"joint_states is missing {missing}"
            self._state = None
            return
        state = np.array([by_name[j] for j in self.state_joints], dtype=np.float64)
        bad = [j for j, v in zip(self.state_joints, state, strict=True) if not math.isfinite(v)]
        if bad:
            self.state_problem = f"joint_states has non-finite values for {bad}"
            self._state = None
            return
        self._state = state
        self._state_time = now
        self.state_problem = ""

    def state_invalid(self, problem: str) -> None:
        """A joint-state message could not be used (e.g. a profile topic lacks a joint): no state until a good one."""
        self._state = None
        self.state_problem = problem

    def set_instruction(self, text: str) -> bool:
        """Validate and set; returns True when it changed (the caller resets the episode)."""
        clean = validate_instruction(text)
        changed = clean != self.instruction
        self.instruction = clean
        if changed:
            self.reset()
        return changed

    def reset(self) -> None:
        """New episode: forget the frame history and the schedule."""
        self._frames.clear()
        if self._newest_frame is not None:
            self._frames.push("stitched", self._newest_frame[1], self._newest_frame[0])
        self._first_request = True
        self._chunk_end = -math.inf
        self._chunk_stamp = -math.inf
        self.episode += 1

    # -- decisions ---------------------------------------------------------------------------

    def blocker(self, now: float) -> str:
        """Why no request can be made now ('' when inputs are fresh and complete)."""
        if not self.instruction:
            return "no instruction"
        if self._newest_frame is None:
            return "no stitched frame received"
        age = now - self._newest_frame[0]
        if age > self.settings.max_frame_age:
            return f"stitched frame is stale ({age:.2f} s old)"
        if self._stale_views:
            return f"camera {', '.join(self._stale_views)} stale (the stitched frame shows its stale policy, not a view)"
        if self._state is None:
            return self.state_problem
        age = now - self._state_time
        if age > self.settings.max_state_age:
            return f"joint state is stale ({age:.2f} s old)"
        return ""

    @property
    def expected_latency(self) -> float:
        """A pessimistic latency estimate: the p95 of recent chunks (0 before the first).

        Rounded down to an observed latency, so with fewer than 20 chunks it is the second
        largest: one cold-start chunk (model warm-up, a reconnect) does not pull every request
        forward for the next 20 chunks, two slow chunks do.
        """
        if not self.latencies:
            return 0.0
        return float(np.percentile(np.fromiter(self.latencies, dtype=float), 95, method="lower"))

    def next_request_time(self) -> float:
        """When to request so the chunk lands `latency_margin` before the current one runs out."""
        return self._chunk_end - self.expected_latency - self.settings.latency_margin

    def due(self, now: float) -> bool:
        """Whether to request now: the latency deadline has come, or (with `execute_steps`) a frame observed that
        many control steps after the last chunk's observation has arrived, so the frames the model writes into
        its cache span the steps it was trained to see between chunks."""
        if now >= self.next_request_time():
            return True
        steps = self.settings.execute_steps
        if steps is None or self._newest_frame is None:
            return False
        dt = 1.0 / self.embodiment.control.rate_hz
        return self._newest_frame[0] >= self._chunk_stamp + (steps - 0.5) * dt  # half a step: stamp jitter

    def take_request(self, now: float, blocked_by: str = "") -> Request | None:
        """The observation to send now, or None if inputs are not ready (or `blocked_by` an outside reason).

        A skipped observation is counted in stale_inputs once, however often the caller asks while
        it stays the newest one: the count is of observations lost, not of polls.
        """
        if blocked_by or self.blocker(now):
            key = (self._newest_frame[0] if self._newest_frame is not None else None,)
            if key != self._skipped:
                self._skipped = key
                self.stale_inputs += 1
            return None
        assert self._newest_frame is not None and self._state is not None
        count = FIRST_CALL_FRAMES if self._first_request else LATER_CALL_FRAMES
        frames = np.stack(self._frames.last(count)["stitched"])
        request = Request(stamp=self._newest_frame[0], frames=frames, state=self._state.copy(),
                          stamp_ns=self._newest_ns)
        self._first_request = False
        return request

    def record_chunk(self, stamp: float, ready_time: float) -> float:
        """A chunk conditioned on `stamp` was ready at `ready_time`; returns its latency (s)."""
        latency = ready_time - stamp
        if ready_time > self._chunk_end and math.isfinite(self._chunk_end):
            self.late_chunks += 1  # the previous chunk ran out before this one arrived
        self.latencies.append(latency)
        self._ready_times.append(ready_time)
        self.chunks_produced += 1
        self._chunk_stamp = stamp
        self._chunk_end = stamp + self.embodiment.control.chunk_duration
        return latency

    def chunk_rate(self, now: float) -> float:
        """Achieved chunks per second over the last `rate_window` s (0 with fewer than two chunks in it).

        Measured between the first and last chunk in the window, and 0 once no chunk has arrived
        for two chunk durations: a stalled policy reads as 0, not as its last good rate.
        """
        times = [t for t in self._ready_times if now - self.settings.rate_window <= t <= now]
        if len(times) < 2 or now - times[-1] > 2.0 * self.embodiment.control.chunk_duration:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    def latency_stats(self) -> tuple[float, float, float]:
        """(last, mean, p95) latency in s, zeros before the first chunk."""
        if not self.latencies:
            return 0.0, 0.0, 0.0
        arr = np.fromiter(self.latencies, dtype=float)
        return float(arr[-1]), float(arr.mean()), float(np.percentile(arr, 95))
