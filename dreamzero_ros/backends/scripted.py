"""Scripted backend: a deterministic, smooth, limit-respecting trajectory generator.

A TEST TOOL. It never stands in for the model: it ignores the images and the instruction and
only exists so the pipeline (nodes, executor, server, simulator) can be exercised end to end
without weights, with chunks a test can predict exactly.

Trajectory, per action joint j (rad or m)::

    q_j(t) = c_j + a_j * sin(2 pi t / period + phi_j),   phi_j = 2 pi j / J

t is absolute time in seconds: step k of a chunk requested at observation stamp s is evaluated
at t = s + (k + 1) * dt, so chunk k is a pure function of the stamp (and of the centre c, fixed
for the episode). The centre is `home` when given, else the first observed state of the episode,
clipped so the whole sinusoid stays `margin` (a fraction of each joint's range) inside the
position limits. The amplitude is `amplitude` x the usable half range, further capped so the peak
speed a_j * 2 pi / period stays under `velocity_fraction` x the joint's velocity limit.
Extra action groups (e.g. base velocity) are zero unless `extras_amplitude` > 0, in which case
they follow the same sinusoid around the middle of their limits.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from dreamzero_ros.backends.base import ChunkResult, Observation, PolicyBackend
from dreamzero_ros.core.embodiment import EmbodimentConfig


class ScriptedBackend(PolicyBackend):
    """Deterministic sinusoids inside the joint limits (see the module docstring)."""

    name = "scripted"

    def __init__(
        self,
        embodiment: EmbodimentConfig,
        *,
        amplitude: float = 0.1,
        period: float = 4.0,
        margin: float = 0.05,
        velocity_fraction: float = 0.5,
        home: np.ndarray | None = None,
        extras_amplitude: float = 0.0,
        delay: float = 0.0,
    ) -> None:
        """
        Args:
            amplitude: fraction in [0, 1] of each joint's usable half range.
            period: s, period of every sinusoid (> 0).
            margin: fraction in [0, 0.5) of each joint's range kept free at both limits.
            velocity_fraction: fraction in (0, 1] of the velocity limit the peak speed may reach.
            home: [J] SI centre in action_joints order; None = the first observed state per episode.
            extras_amplitude: fraction in [0, 1] of each extra component's half range.
            delay: s to sleep inside infer() (simulates inference time in tests and benchmarks).
        """
        checks = (
            ("amplitude", amplitude, 0.0 <= amplitude <= 1.0, "a fraction in [0, 1]"),
            ("period", period, period > 0 and math.isfinite(period), "a positive number of seconds"),
            ("margin", margin, 0.0 <= margin < 0.5, "a fraction in [0, 0.5)"),
            ("velocity_fraction", velocity_fraction, 0.0 < velocity_fraction <= 1.0, "a fraction in (0, 1]"),
            ("extras_amplitude", extras_amplitude, 0.0 <= extras_amplitude <= 1.0, "a fraction in [0, 1]"),
            ("delay", delay, delay >= 0.0, "a non-negative number of seconds"),
        )
        for name, value, ok, want in checks:
            if not ok:
                raise ValueError(f"ScriptedBackend: {name}: expected {want}, got {value!r}")
        self.embodiment = embodiment
        self.joint_names = embodiment.action_joints
        self.dt = embodiment.control.dt
        self.horizon = embodiment.control.horizon
        self.period = float(period)
        self.delay = float(delay)
        lower, upper, velocity = embodiment.limits_arrays(self.joint_names)
        span = upper - lower
        self.lower = lower + margin * span
        self.upper = upper - margin * span
        half = 0.5 * (self.upper - self.lower)
        omega = 2.0 * math.pi / self.period
        self.amplitude = np.minimum(amplitude * half, velocity_fraction * velocity / omega)
        n = len(self.joint_names)
        self.phase = 2.0 * math.pi * np.arange(n) / max(n, 1)
        self._state_index = [embodiment.state_joints.index(j) if j in embodiment.state_joints else -1
                             for j in self.joint_names]
        self._extras = []
        for g in embodiment.extra_actions:
            lo = np.array([p[0] for p in g.limits])
            hi = np.array([p[1] for p in g.limits])
            self._extras.append((g.name, 0.5 * (lo + hi), extras_amplitude * 0.5 * (hi - lo)))
        self._home = None if home is None else self._check_home(home)
        self._centre: np.ndarray | None = self._home
        self._lock = threading.Lock()
        self.instruction = ""

    def _check_home(self, home: np.ndarray) -> np.ndarray:
        h = np.asarray(home, dtype=np.float64)
        if h.shape != (len(self.joint_names),) or not np.all(np.isfinite(h)):
            raise ValueError(f"ScriptedBackend: home: expected {len(self.joint_names)} finite values "
                             f"(action_joints order), got {h.tolist()}")
        return self._clip_centre(h)

    def _clip_centre(self, centre: np.ndarray) -> np.ndarray:
        return np.clip(centre, self.lower + self.amplitude, self.upper - self.amplitude)

    def centre_from_state(self, state: np.ndarray) -> np.ndarray:
        """[J] centre used for an episode whose first observed state is `state` [S] (SI)."""
        s = np.asarray(state, dtype=np.float64)
        mid = 0.5 * (self.lower + self.upper)
        raw = np.array([s[i] if i >= 0 else mid[k] for k, i in enumerate(self._state_index)])
        return self._clip_centre(raw)

    def trajectory(self, times: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """[N] absolute times (s) -> [N, J] positions (SI) around `centre` [J]."""
        t = np.asarray(times, dtype=np.float64)[:, None]
        return centre + self.amplitude * np.sin(2.0 * math.pi * t / self.period + self.phase)

    def reset(self) -> None:
        with self._lock:
            self._centre = self._home

    def set_instruction(self, instruction: str) -> None:
        if instruction != self.instruction:
            self.instruction = instruction
            self.reset()

    def infer(self, observation: Observation) -> ChunkResult:
        start = time.perf_counter()
        state = self.checked_state(observation)
        with self._lock:
            if self._centre is None:
                self._centre = self.centre_from_state(state)
            centre = self._centre
        times = observation.stamp + self.dt * np.arange(1, self.horizon + 1)
        positions = self.trajectory(times, centre)
        arg = 2.0 * math.pi * times[:, None] / self.period
        extras = {name: mid + amp * np.sin(arg + self.phase[: len(mid)]) for name, mid, amp in self._extras}
        if self.delay:
            time.sleep(self.delay)
        return ChunkResult(self.joint_names, positions, self.dt, time.perf_counter() - start, extras)
