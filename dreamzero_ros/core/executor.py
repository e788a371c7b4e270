"""The action executor's state machine: chunks in, one safe joint command per control tick out.

Owns, for the action_executor node, everything between a received ActionChunk and the command
it publishes: validation (core.chunk), latest-chunk-wins with time alignment, smoothing,
cross-fade, limits (core.safety), the watchdog, arming and a latching e-stop. Pure and
clock-injected: every method takes `now` in seconds (ROS time) and nothing reads a clock, so the
node decides which clock drives it and tests can script time.

Node wiring (the node owns only conversion and publishing):
    core = ExecutorCore(embodiment, ExecutorSettings(...))
    joint_states callback  -> core.on_joint_state(msg.name, msg.position, now)
    ActionChunk callback   -> core.on_chunk(RawChunk(stamp, joint_names, dt, horizon, positions, extras, id), now)
    timer at control.rate_hz -> cmd = core.tick(now); if cmd is not None: publish cmd.positions (+ cmd.extras)
    arm / disarm / e-stop / reset services -> core.arm(now) ... (each returns Verdict(ok, message))
    status timer           -> core.status()

Tick semantics: at `now` the executor sends the first row of the active chunk whose target time
(stamp + (k + 1) * dt) has not passed, limited relative to the previously commanded position. It
HOLDS (re-sends the last commanded position, or the measured joint state when nothing has been
commanded since arming) when: no chunk has arrived, the chunk is used up, the chunk is older than
chunk_timeout, the chunk starts in the future, or the clock jumped backwards. Holding never
commands zeros, except for extra outputs such as base velocity, where zero (a stopped base) is
the hold.

States: "idle" (disarmed), "running" (last tick sent a chunk row), "holding" (last tick held),
"homing" (moving to the start pose), "stopped" (e-stop latched; ticks hold, arming is refused until
reset()), "error" (armed but there is nothing to command: no joint state yet).

Homing (home()): its own state, entered only while disarmed and not e-stopped; each tick sends the
point of a slow minimum-jerk path (core.homing) from the measured position to the embodiment's
start pose, then the executor is idle again at that pose. A late tick pauses the path (its time
advances at most one control period per tick), so a stall never turns into a catch-up rush.
Chunks are accepted meanwhile but never executed; arming is refused until homing ends; disarm()
cancels it (nothing more is sent) and the e-stop interrupts it and holds the last homing command. Arming is refused while the measured
position of any non-effector joint is further than arm_tolerance from the last command the
executor sent (policy, hold or homing), so a robot that was moved, or never reached its command,
is homed before the policy runs from it. Effector joints are not checked: a grasped object keeps
a gripper from its command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np

from dreamzero_ros.core.chunk import (
    TIME_EPS,
    Chunk,
    ChunkError,
    RawChunk,
    crossfade,
    rows_passed,
    smooth_positions,
    validate_chunk,
)
from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.core.homing import HomingPath
from dreamzero_ros.core.safety import JointLimiter, clamp_extras

STATES = ("idle", "running", "holding", "homing", "stopped", "error")
COMMAND_SOURCES = ("chunk", "hold", "home")
CROSSFADE_SOURCES = ("trajectory", "commanded")


class Verdict(NamedTuple):
    """Outcome of an event: ok, and a message (the reason when not ok). Maps onto std_srvs responses."""

    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """Executor tuning that is not robot data (the embodiment supplies rate and limits).

    Args:
        crossfade_steps: control steps over which a new chunk fades in from the source (0 = off).
        crossfade_source: "trajectory" fades from the previous chunk's own targets at the same
            times (keeps the motion's velocity through the switch); "commanded" fades from the last
            commanded position held still.
        smoothing: apply 2x upsample -> Savitzky-Golay -> downsample to each accepted chunk.
        savgol_window: Savitzky-Golay window in upsampled samples (odd, >= 3, > savgol_order).
        savgol_order: Savitzky-Golay polynomial order (>= 0).
        chunk_timeout: s; hold once the newest chunk's observation stamp is older than this.
        max_chunk_age: s; a chunk whose stamp is older than this when it arrives is dropped. The
            default (1.5 s, just under the longest shipped chunk, DROID's 1.6 s; AgiBot G1 and YAM
            run 0.8 s chunks, whose rows have all passed long before) uses any chunk that still has
            rows ahead: asynchronous execution only needs inference to beat the chunk.
        max_future: s; a chunk stamped further than this ahead of `now` is rejected (clock mismatch).
        arm_tolerance: rad | m; arming is refused while a non-effector joint's measured position is
            further than this from the last command sent (home first).
    """

    crossfade_steps: int = 3
    crossfade_source: str = "trajectory"
    smoothing: bool = True
    savgol_window: int = 11
    savgol_order: int = 3
    chunk_timeout: float = 2.0
    max_chunk_age: float = 1.5
    max_future: float = 0.5
    arm_tolerance: float = 0.1

    def __post_init__(self) -> None:
        def fail(name: str, expected: str) -> ValueError:
            return ValueError(f"ExecutorSettings.{name}: expected {expected}, got {getattr(self, name)!r}")

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.crossfade_steps) or self.crossfade_steps < 0:
            raise fail("crossfade_steps", "an integer >= 0")
        if self.crossfade_source not in CROSSFADE_SOURCES:
            raise fail("crossfade_source", f"one of {list(CROSSFADE_SOURCES)}")
        if not isinstance(self.smoothing, bool):
            raise fail("smoothing", "true or false")
        if not is_int(self.savgol_window) or self.savgol_window < 3 or self.savgol_window % 2 == 0:
            raise fail("savgol_window", "an odd integer >= 3")
        if not is_int(self.savgol_order) or not 0 <= self.savgol_order < self.savgol_window:
            raise fail("savgol_order", f"an integer in [0, savgol_window={self.savgol_window})")
        for name in ("chunk_timeout", "max_chunk_age", "max_future", "arm_tolerance"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise fail(name, "a positive finite number of seconds")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, slots=True)
class Command:
    """One tick's output.

    positions: [J] float64 targets in `joint_names` order (the embodiment's action joints), rad / m.
    extras: {group name: [C] float64}, e.g. base velocity (m/s, rad/s); zeros while holding.
    holding: True when this is a hold; reason says why ("" while running).
    chunk_id, row: the chunk and row index sent (None while holding or homing).
    source: "chunk" (a chunk row), "hold" or "home" (a point of the homing path).
    """

    positions: np.ndarray
    joint_names: tuple[str, ...]
    extras: dict[str, np.ndarray]
    holding: bool
    reason: str
    chunk_id: int | None = None
    row: int | None = None
    source: str = "chunk"


@dataclass(frozen=True, slots=True)
class ExecutorStatus:
    """Counters and state for /dreamzero/status (PolicyStatus) and diagnostics."""

    state: str  # one of STATES
    reason: str  # why not running ("" when running)
    armed: bool
    estopped: bool
    ticks: int
    holds: int  # ticks that returned a hold command (including while e-stopped)
    chunks_accepted: int
    chunks_rejected: int  # invalid: NaN/inf, wrong joints, wrong sizes, stamp in the future
    chunks_dropped: int  # valid but not used: late, too old, or older than the active chunk
    chunks_late: int  # of chunks_dropped: every row already in the past on arrival
    clock_jumps: int  # ticks at which the clock had gone backwards
    last_rejection: str
    last_drop: str
    chunk_id: int | None  # the active chunk


@dataclass(slots=True)
class _Plan:
    """An accepted chunk being executed (internal, mutable)."""

    chunk: Chunk  # validated, positions smoothed
    epoch: int  # clock epoch at acceptance (bumped by every backward clock jump)
    positions: np.ndarray = field(init=False)  # [H, J] what is sent: smoothed + cross-faded
    times: np.ndarray = field(init=False)  # [H] s
    started: bool = False
    last_row: int = 0

    def __post_init__(self) -> None:
        self.positions = np.array(self.chunk.positions, dtype=np.float64, copy=True)
        self.times = self.chunk.times

    def rows_at(self, times: np.ndarray) -> np.ndarray:
        """[n, J] this plan's targets for the given times (the row due at each; last row after the end)."""
        idx = np.searchsorted(self.times, times - TIME_EPS, side="left")
        return self.positions[np.minimum(idx, len(self.times) - 1)]


class ExecutorCore:
    """The executor state machine for one embodiment; see the module docstring."""

    def __init__(self, embodiment: EmbodimentConfig, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings()
        self.joint_names = embodiment.action_joints
        self.dt = embodiment.control.dt
        self.limiter = JointLimiter.from_embodiment(embodiment)
        self.extra_groups = {g.name: g.components for g in embodiment.extra_actions}
        self._extra_limits = {g.name: g.limits for g in embodiment.extra_actions}
        effectors = {e.joint for e in embodiment.effectors}
        self._checked = np.array([j not in effectors for j in self.joint_names], dtype=bool)
        self.home_pose = embodiment.home_array()  # [J] or None
        self._home_speed = (
            None if embodiment.home is None else embodiment.limits_arrays()[2] * embodiment.home.velocity_scale
        )
        self._homing: HomingPath | None = None
        self._last_sent: np.ndarray | None = None  # [J] the last command ever sent (survives disarm)
        self._armed = False
        self._estopped = False
        self._measured: np.ndarray | None = None  # [J] latest joint state, action-joint order
        self._measured_time: float | None = None
        self._commanded: np.ndarray | None = None  # [J] last command since arming (the hold target)
        self._plan: _Plan | None = None  # latest accepted chunk
        self._executing: _Plan | None = None  # the plan the last running tick came from
        self._epoch = 0
        self._last_tick: float | None = None
        self._resume_at = -math.inf  # after a backward jump, old-epoch chunks resume at this time
        self._state = "idle"
        self._reason = "disarmed"
        self.ticks = 0
        self.holds = 0
        self.chunks_accepted = 0
        self.chunks_rejected = 0
        self.chunks_dropped = 0
        self.chunks_late = 0
        self.clock_jumps = 0
        self.last_rejection = ""
        self.last_drop = ""

    # ---------------------------------------------------------------- inputs

    def on_joint_state(self, names: Sequence[str], positions: Sequence[float], now: float) -> Verdict:
        """A joint state (names [N], positions [N], rad / m); must cover every action joint, finite."""
        if len(names) != len(positions):
            return Verdict(False, f"joint state has {len(names)} names but {len(positions)} positions")
        index = {n: i for i, n in enumerate(names)}
        missing = [j for j in self.joint_names if j not in index]
        if missing:
            return Verdict(False, f"joint state lacks action joints {missing}")
        values = np.array([positions[index[j]] for j in self.joint_names], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            bad = [j for j, v in zip(self.joint_names, values, strict=True) if not math.isfinite(v)]
            return Verdict(False, f"joint state has non-finite positions for {bad}")
        self._measured = values
        self._measured_time = now
        return Verdict(True, "")

    def on_chunk(self, raw: RawChunk, now: float) -> Verdict:
        """Validate and (if usable) adopt a chunk; the latest observation stamp wins.

        Rejected (chunks_rejected, last_rejection): invalid fields, or stamp > now + max_future.
        Dropped (chunks_dropped, last_drop): every row already past (also chunks_late), stamp older
        than max_chunk_age, or stamp not newer than the active chunk's.
        """
        try:
            chunk = validate_chunk(raw, self.joint_names, self.extra_groups)
        except ChunkError as exc:
            return self._reject(exc.reason)
        s = self.settings
        if chunk.stamp > now + s.max_future:
            return self._reject(
                f"stamp {chunk.stamp:.3f} s is {chunk.stamp - now:.3f} s ahead of now (> max_future {s.max_future} s)"
            )
        if rows_passed(chunk.stamp, chunk.dt, chunk.horizon, now) >= chunk.horizon:
            self.chunks_late += 1
            return self._drop(f"late: chunk {chunk.chunk_id} ended at {chunk.end_time:.3f} s, now {now:.3f} s")
        if now - chunk.stamp > s.max_chunk_age:
            return self._drop(
                f"too old: chunk {chunk.chunk_id} stamp is {now - chunk.stamp:.3f} s old (> max_chunk_age {s.max_chunk_age} s)"
            )
        current = self._plan
        if current is not None and current.epoch == self._epoch and chunk.stamp <= current.chunk.stamp:
            return self._drop(
                f"out of order: chunk {chunk.chunk_id} stamp {chunk.stamp:.3f} s is not newer than the active chunk's"
            )
        if s.smoothing:
            smoothed = smooth_positions(chunk.positions, s.savgol_window, s.savgol_order)
            smoothed.flags.writeable = False
            chunk = Chunk(chunk.stamp, chunk.dt, chunk.joint_names, smoothed, chunk.extras, chunk.chunk_id)
        self._plan = _Plan(chunk, self._epoch)
        self.chunks_accepted += 1
        return Verdict(True, "accepted")

    # ---------------------------------------------------------------- operator events

    def arm(self, now: float) -> Verdict:
        """Start commanding. Refused while e-stopped or before the first joint state."""
        if self._estopped:
            return Verdict(False, "e-stop is latched; call reset() before arming")
        if self._measured is None:
            return Verdict(False, "no joint state received yet; cannot arm")
        if self._armed:
            return Verdict(True, "already armed")
        if self._homing is not None:
            return Verdict(False, "homing in progress; arm once the start pose is reached (or disarm to cancel)")
        if self._last_sent is not None and self._checked.any():
            error = np.abs(self._measured - self._last_sent)
            error[~self._checked] = 0.0
            j = int(np.argmax(error))
            if error[j] > self.settings.arm_tolerance:
                return Verdict(
                    False,
                    f"measured {self.joint_names[j]} is {error[j]:.3f} from the last command "
                    f"(> arm_tolerance {self.settings.arm_tolerance:g}); home first (dreamzero home)",
                )
        self._armed = True
        # The robot may have moved while disarmed: limit and fade from where it is now.
        self._commanded = None
        self._executing = None
        if self._plan is not None:
            self._plan.started = False
        self._state, self._reason = "holding", "armed, no command yet"
        return Verdict(True, "armed")

    def disarm(self, now: float) -> Verdict:
        """Stop commanding (tick returns None). Chunks keep being accepted."""
        was_homing = self._homing is not None
        self._armed = False
        self._homing = None
        self._commanded = None
        self._executing = None
        if not self._estopped:
            self._state, self._reason = "idle", "homing cancelled" if was_homing else "disarmed"
        return Verdict(True, "homing cancelled; disarmed" if was_homing else "disarmed")

    def estop(self, now: float, reason: str = "e-stop") -> Verdict:
        """Latch the e-stop: disarm and hold the current command (or measured state) until reset()."""
        if self._commanded is None and self._measured is not None:
            self._commanded = self._measured.copy()  # freeze where the robot was, not where it sags to
        self._estopped = True
        self._armed = False
        self._homing = None
        self._executing = None
        self._state, self._reason = "stopped", reason or "e-stop"
        return Verdict(True, "e-stop latched")

    def reset(self, now: float) -> Verdict:
        """Clear a latched e-stop; the executor stays disarmed until arm()."""
        if not self._estopped:
            return Verdict(True, "no e-stop to reset")
        self._estopped = False
        self._commanded = None
        self._state, self._reason = "idle", "e-stop cleared; arm to resume"
        return Verdict(True, "e-stop cleared; arm to resume")

    def home(self, now: float) -> Verdict:
        """Start moving to the start pose (see the module docstring); refused when armed, e-stopped,
        without a joint state or without a configured home pose."""
        if self.home_pose is None or self._home_speed is None:
            return Verdict(False, "no start pose configured (the embodiment YAML has no home: section)")
        if self._estopped:
            return Verdict(False, "e-stop is latched; call reset() before homing")
        if self._armed:
            return Verdict(False, "armed: disarm before homing (homing is not mixed with policy chunks)")
        if self._measured is None:
            return Verdict(False, "no joint state received yet; cannot home")
        if self._homing is not None:
            return Verdict(True, f"already homing; {max(0.0, self._homing.end - now):.1f} s to go")
        start = self.limiter.clamp(self._measured)
        self._homing = HomingPath.plan(start, self.home_pose, self._home_speed, now)
        self._commanded = start
        self._state, self._reason = "homing", "moving to the start pose"
        return Verdict(True, f"homing: {self._homing.duration:.1f} s to the start pose")

    @property
    def homing_path(self) -> HomingPath | None:
        """The path being followed while homing, else None."""
        return self._homing

    def remaining(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(times [n] s, targets [n, J]) still ahead in what the last tick executed: the running chunk
        from the row just sent on (smoothed, cross-faded, not yet limited), or the homing path
        sampled at the control period through its end. None while holding, idle or stopped."""
        if self._homing is not None and self._last_tick is not None:
            return self._homing.samples(self._last_tick, self.dt)
        plan = self._executing
        if plan is None or self._state != "running":
            return None
        return plan.times[plan.last_row :].copy(), plan.positions[plan.last_row :].copy()

    # ---------------------------------------------------------------- the control tick

    def tick(self, now: float) -> Command | None:
        """The command for this control tick, or None while disarmed (or stopped/armed with nothing to hold)."""
        self.ticks += 1
        if self._last_tick is not None and now < self._last_tick - TIME_EPS:
            # Backward jump (sim reset, NTP step): chunks stamped on the old timeline must neither
            # replay nor skip; they are held until the clock passes where it was.
            self.clock_jumps += 1
            self._epoch += 1
            self._resume_at = max(self._resume_at, self._last_tick)
        previous_tick, self._last_tick = self._last_tick, now
        if self._estopped:
            if self._commanded is None:
                self._state, self._reason = "stopped", self._reason
                return None
            return self._hold(self._reason, state="stopped")
        if self._homing is not None:
            return self._home_tick(now, previous_tick)
        if not self._armed:
            if self._state != "idle":
                self._state, self._reason = "idle", "disarmed"
            return None
        reference = self._commanded if self._commanded is not None else self._measured
        if reference is None:
            self._state, self._reason = "error", "no joint state to hold"
            return None
        plan, row, why = self._select(now)
        if plan is None:
            return self._hold(why)
        if not plan.started:
            self._start(plan, row, reference)
        plan.last_row = row
        self._executing = plan
        positions = self.limiter.limit(plan.positions[row], reference)
        extras = {
            name: clamp_extras(values[row], self._extra_limits[name]) for name, values in plan.chunk.extras.items()
        }
        self._commanded = positions
        self._last_sent = positions
        self._state, self._reason = "running", ""
        return Command(positions, self.joint_names, extras, False, "", plan.chunk.chunk_id, row)

    def _home_tick(self, now: float, previous_tick: float | None) -> Command:
        path = self._homing
        assert path is not None and self._commanded is not None
        # A late tick (a stalled process, a frozen VM) pauses the path rather than skipping ahead:
        # path time advances by at most one control period per tick, so no command is further than
        # the homing speed x dt from the one before, however long the stall. Otherwise the limiter
        # would let the robot catch up at its full velocity limit (10x the homing speed).
        if previous_tick is not None:
            lag = now - max(previous_tick, path.t0) - self.dt
            if lag > TIME_EPS:
                path = self._homing = path.delayed(lag)
        positions = self.limiter.limit(path.positions(now), self._commanded)
        self._commanded = positions
        self._last_sent = positions
        extras = {name: np.zeros(len(comps)) for name, comps in self.extra_groups.items()}
        if now >= path.end:
            self._homing = None
            self._commanded = None  # disarmed again: the next arm() starts from the measured state
            self._state, self._reason = "idle", "at the start pose; arm to run the policy"
        else:
            self._state, self._reason = "homing", "moving to the start pose"
        return Command(positions, self.joint_names, extras, False, self._reason, source="home")

    def _select(self, now: float) -> tuple[_Plan | None, int, str]:
        """(plan, row) to send at `now`, or (None, 0, why) to hold."""
        plan = self._plan
        if plan is None:
            return None, 0, "no chunk received"
        if plan.epoch != self._epoch and now < self._resume_at:
            return None, 0, f"clock jumped backwards; holding until t={self._resume_at:.3f} s or a new chunk"
        age = now - plan.chunk.stamp
        if age > self.settings.chunk_timeout:
            return (
                None,
                0,
                f"chunk {plan.chunk.chunk_id} timed out ({age:.3f} s > chunk_timeout {self.settings.chunk_timeout} s)",
            )
        if now < plan.chunk.stamp - TIME_EPS:
            return None, 0, f"chunk {plan.chunk.chunk_id} starts in the future"
        row = max(rows_passed(plan.chunk.stamp, plan.chunk.dt, plan.chunk.horizon, now), plan.last_row)
        if row >= plan.chunk.horizon:
            return None, 0, f"chunk {plan.chunk.chunk_id} used up, no newer chunk"
        return plan, row, ""

    def _start(self, plan: _Plan, row: int, reference: np.ndarray) -> None:
        """First use of a plan: cross-fade rows [row, row + crossfade_steps) from the source."""
        plan.started = True
        plan.positions = np.array(plan.chunk.positions, dtype=np.float64, copy=True)
        steps = self.settings.crossfade_steps
        if steps == 0:
            return
        previous = self._executing
        if (
            self.settings.crossfade_source == "trajectory"
            and previous is not None
            and previous is not plan
            and previous.epoch == plan.epoch
        ):
            source = previous.rows_at(plan.times[row : row + steps])
        else:
            source = reference
        plan.positions[row:] = crossfade(plan.positions[row:], source, steps)

    def _hold(self, reason: str, state: str = "holding") -> Command:
        reference = self._commanded if self._commanded is not None else self._measured
        assert reference is not None  # callers check
        positions = self.limiter.limit(reference, reference)  # == reference, clamped into the limits
        self._commanded = positions
        self._last_sent = positions
        self.holds += 1
        self._state, self._reason = state, reason
        # Extras are velocities: zero is the hold (a stopped base), unlike joint positions.
        extras = {name: np.zeros(len(comps)) for name, comps in self.extra_groups.items()}
        return Command(positions, self.joint_names, extras, True, reason, source="hold")

    def _reject(self, reason: str) -> Verdict:
        self.chunks_rejected += 1
        self.last_rejection = reason
        return Verdict(False, f"rejected: {reason}")

    def _drop(self, reason: str) -> Verdict:
        self.chunks_dropped += 1
        self.last_drop = reason
        return Verdict(False, f"dropped: {reason}")

    # ---------------------------------------------------------------- status

    @property
    def state(self) -> str:
        return self._state

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def estopped(self) -> bool:
        return self._estopped

    @property
    def measured(self) -> np.ndarray | None:
        """[J] latest joint state in action-joint order, or None."""
        return None if self._measured is None else self._measured.copy()

    @property
    def last_sent(self) -> np.ndarray | None:
        """[J] the last command ever sent (kept across disarm; what arming is checked against), or None."""
        return None if self._last_sent is None else self._last_sent.copy()

    @property
    def commanded(self) -> np.ndarray | None:
        """[J] last command since arming, or None."""
        return None if self._commanded is None else self._commanded.copy()

    def status(self) -> ExecutorStatus:
        return ExecutorStatus(
            state=self._state,
            reason=self._reason,
            armed=self._armed,
            estopped=self._estopped,
            ticks=self.ticks,
            holds=self.holds,
            chunks_accepted=self.chunks_accepted,
            chunks_rejected=self.chunks_rejected,
            chunks_dropped=self.chunks_dropped,
            chunks_late=self.chunks_late,
            clock_jumps=self.clock_jumps,
            last_rejection=self.last_rejection,
            last_drop=self.last_drop,
            chunk_id=None if self._plan is None else self._plan.chunk.chunk_id,
        )
