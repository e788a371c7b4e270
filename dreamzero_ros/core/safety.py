"""Joint command limits: position clamp and per-step velocity limit, NaN-proof.

Owns the last transformation before a command leaves the executor. Each tick's target is limited
relative to the previously COMMANDED position (not the measured one, and across chunk boundaries),
so a jump between chunks, a late chunk or a bad model output can move a joint by at most
velocity_limit * dt per tick and never outside [lower, upper].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig


class SafetyError(RuntimeError):
    """No safe command exists (the reference position itself is not finite)."""


@dataclass(frozen=True, slots=True)
class JointLimiter:
    """Position and per-step velocity limits for J joints.

    lower, upper: [J] position limits (rad, m). max_step: [J] largest change per tick,
    velocity_limit * dt (rad, m). Arrays are float64 and read-only.
    """

    lower: np.ndarray
    upper: np.ndarray
    max_step: np.ndarray

    def __post_init__(self) -> None:
        for name in ("lower", "upper", "max_step"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        shapes = {self.lower.shape, self.upper.shape, self.max_step.shape}
        if len(shapes) != 1 or self.lower.ndim != 1:
            raise ValueError(
                f"JointLimiter: lower, upper, max_step must be [J] arrays of one length, got shapes "
                f"{self.lower.shape}, {self.upper.shape}, {self.max_step.shape}"
            )
        if not (
            np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper)) and np.all(self.lower < self.upper)
        ):
            raise ValueError("JointLimiter: position limits must be finite with lower < upper for every joint")
        if not (np.all(np.isfinite(self.max_step)) and np.all(self.max_step > 0)):
            raise ValueError(f"JointLimiter: max_step must be finite and > 0, got {self.max_step.tolist()}")

    @classmethod
    def from_embodiment(cls, embodiment: EmbodimentConfig, dt: float | None = None) -> JointLimiter:
        """Limits of the action joints, max_step = velocity * dt (default dt: 1 / control.rate_hz)."""
        lower, upper, velocity = embodiment.limits_arrays()
        return cls(lower, upper, velocity * (embodiment.control.dt if dt is None else dt))

    def clamp(self, positions: np.ndarray) -> np.ndarray:
        """Positions [..., J] clamped to [lower, upper]; NaN stays NaN (use `limit` for commands)."""
        return np.clip(positions, self.lower, self.upper)

    def limit(self, target: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """The command [J] for one tick: `target` [J] limited relative to `reference` [J].

        reference: the previously commanded position (or the measured one before the first command).
        1. a non-finite target joint keeps the reference value (holds that joint);
        2. clamp to [lower, upper];
        3. limit the change from the reference to +-max_step;
        4. clamp to [lower, upper] again. Position limits win over the step limit: the step can only
           be exceeded when the reference itself lies outside the position limits.
        Raises SafetyError when the reference is not finite (no safe command can be derived).
        """
        reference = np.asarray(reference, dtype=np.float64)
        if reference.shape != self.lower.shape or not np.all(np.isfinite(reference)):
            raise SafetyError(f"reference position must be {self.lower.shape[0]} finite values, got {reference!r}")
        target = np.asarray(target, dtype=np.float64)
        if target.shape != self.lower.shape:
            raise ValueError(f"target must have shape {self.lower.shape}, got {target.shape}")
        target = np.where(np.isfinite(target), target, reference)
        target = np.clip(target, self.lower, self.upper)
        step = np.clip(target - reference, -self.max_step, self.max_step)
        return np.clip(reference + step, self.lower, self.upper)


def clamp_extras(values: np.ndarray, limits: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Extra action values [C] (e.g. base velocity) clamped per component to (min, max); NaN -> 0.

    Zero is the safe value for these velocity-like outputs (a stopped base), unlike joint positions.
    """
    values = np.where(np.isfinite(values), values, 0.0)
    lo = np.array([a for a, _ in limits], dtype=np.float64)
    hi = np.array([b for _, b in limits], dtype=np.float64)
    return np.clip(values, lo, hi)
