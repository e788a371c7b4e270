"""Where a policy's first chunk aims the hand, against the scripted expert: the open-loop endpoint statistics.

`dreamzero aim` (apps/aim.py) starts seeded episodes, asks the policy for its first chunk from the episode's start
(the robot at rest, one frame) and puts the chunk's joint targets through forward kinematics; the expert's targets
for the same steps from the same start are the reference. This module owns what is computed from those tool
centre points (world x, y, z in m), so it is pure numpy:

* the offset, policy minus expert, per world axis (a consistent sign is a bias, not noise);
* along / across: the horizontal offset resolved on the expert's direction of travel from the start (negative
  along = the policy lags or stops short; across is positive to the left of the travel);
* progress: the share of the expert's horizontal travel the policy covers in that direction (1 = as far);
* gain and bias per horizontal axis, a least-squares fit of policy travel = gain * expert travel + bias over the
  episodes: a gain under 1 is a pull toward the start (toward the mean of where episodes go: underfitting), a
  bias a shift that does not depend on where the target is;
* nearer other: episodes where the policy's point is nearer (horizontally) another object than the named one
  while the expert's is not (on its way to the named one the expert may pass nearer another).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dreamzero_ros.core.evaluation import aligned_table

#: m of expert horizontal travel under which an episode has no direction of travel (along/across/progress skip it)
MIN_TRAVEL = 0.005


@dataclass(frozen=True)
class AimEpisode:
    """One episode's tool centre points (world, m): at the start, and after each compared step for the expert
    and the policy (step k: the target due (k + 1) control periods after the observation)."""

    seed: int
    instruction: str
    start: tuple[float, float, float]
    target: tuple[float, float, float]  # the named object
    others: tuple[tuple[float, float, float], ...]  # the other objects
    expert: dict[int, tuple[float, float, float]]  # step -> point
    policy: dict[int, tuple[float, float, float]]

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "instruction": self.instruction, "start": list(self.start),
                "target": list(self.target), "others": [list(o) for o in self.others],
                "expert": {str(k): list(v) for k, v in self.expert.items()},
                "policy": {str(k): list(v) for k, v in self.policy.items()}}  # fmt: skip


@dataclass
class AimSummary:
    """The statistics of one step over a task's episodes (medians in m; see the module docstring)."""

    task: str
    step: int
    episodes: int
    offset: tuple[float, float, float]  # median policy - expert per world axis
    distance: float  # median horizontal |policy - expert|
    along: float | None
    across: float | None
    progress: float | None
    gain: tuple[float, float] | None  # (x, y)
    bias: tuple[float, float] | None  # (x, y) m
    nearer_other: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fit(expert_travel: np.ndarray, policy_travel: np.ndarray) -> tuple[float, float] | None:
    """(gain, bias) of policy = gain * expert + bias by least squares; None without spread to fit on."""
    if len(expert_travel) < 3 or float(np.ptp(expert_travel)) < MIN_TRAVEL:
        return None
    design = np.stack([expert_travel, np.ones_like(expert_travel)], axis=1)
    (gain, bias), *_ = np.linalg.lstsq(design, policy_travel, rcond=None)
    return float(gain), float(bias)


def _nearer_other(episode: AimEpisode, point: np.ndarray) -> bool:
    to_target = np.linalg.norm(point[:2] - np.asarray(episode.target, dtype=float)[:2])
    return any(np.linalg.norm(point[:2] - np.asarray(o, dtype=float)[:2]) < to_target for o in episode.others)


def summarize_aim(task: str, step: int, episodes: Sequence[AimEpisode]) -> AimSummary:
    """The statistics of `step` over `episodes` (each must have compared that step). ValueError on none."""
    if not episodes:
        raise ValueError("summarize_aim: no episodes")
    missing = [e.seed for e in episodes if step not in e.expert or step not in e.policy]
    if missing:
        raise ValueError(f"summarize_aim: step {step} was not compared in episodes {missing}")
    start = np.array([e.start for e in episodes], dtype=float)
    expert = np.array([e.expert[step] for e in episodes], dtype=float)
    policy = np.array([e.policy[step] for e in episodes], dtype=float)
    offset = policy - expert
    travel = (expert - start)[:, :2]
    length = np.linalg.norm(travel, axis=1)
    moving = length >= MIN_TRAVEL
    along = across = progress = None
    if moving.any():
        u = travel[moving] / length[moving, None]
        left = np.stack([-u[:, 1], u[:, 0]], axis=1)
        along = float(np.median((offset[moving, :2] * u).sum(axis=1)))
        across = float(np.median((offset[moving, :2] * left).sum(axis=1)))
        covered = ((policy - start)[moving, :2] * u).sum(axis=1)
        progress = float(np.median(covered / length[moving]))
    fits = [_fit(travel[:, i], (policy - start)[:, i]) for i in range(2)]
    gain = bias = None
    if all(f is not None for f in fits):
        gain = (fits[0][0], fits[1][0])
        bias = (fits[0][1], fits[1][1])
    nearer_other = sum(_nearer_other(e, p) and not _nearer_other(e, x)
                       for e, p, x in zip(episodes, policy, expert, strict=True))
    return AimSummary(
        task=task, step=step, episodes=len(episodes), offset=tuple(float(v) for v in np.median(offset, axis=0)),
        distance=float(np.median(np.linalg.norm(offset[:, :2], axis=1))), along=along, across=across,
        progress=progress, gain=gain, bias=bias, nearer_other=nearer_other,
    )


def _cm(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


AIM_HEADER = ("task", "step", "n", "offset x/y/z cm", "|offset| cm", "along cm", "across cm", "progress", "gain x/y",
              "bias x/y cm", "nearer other")


def format_aim_table(summaries: Sequence[AimSummary]) -> str:
    """One row per (task, step), distances in cm, aligned as `dreamzero eval`'s table."""
    rows = [(s.task, str(s.step), str(s.episodes), "/".join(_cm(v) for v in s.offset), f"{100 * s.distance:.1f}",
             _cm(s.along), _cm(s.across), "-" if s.progress is None else f"{s.progress:.2f}",
             "-" if s.gain is None else f"{s.gain[0]:.2f}/{s.gain[1]:.2f}",
             "-" if s.bias is None else f"{_cm(s.bias[0])}/{_cm(s.bias[1])}", str(s.nearer_other))
            for s in summaries]  # fmt: skip
    return aligned_table(AIM_HEADER, rows)
