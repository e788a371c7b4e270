"""Conversion between robot units (SI joint positions) and the model's state/action vectors.

Pure numpy, no torch, no rclpy. One `ActionSpace` per embodiment (+ checkpoint statistics) owns
every unit change between the robot and a DreamZero model, so it happens exactly once:

state (robot -> model)::

    state SI [S] (state_joints order)
      -> model units [S]        effector joints through EffectorMapping.to_model (e.g. Panda finger
                                0.04 m open -> DROID gripper 0.0)
      -> normalised [S]         q99 per state group: x' = 2 (x - q01) / (q99 - q01) - 1, clipped to
                                [-1, 1]; identity on components where q01 == q99
                                (zero-padding to the model's 64 state slots is the model's job)

action (model -> robot)::

    normalised [H, A]           A = joint action dims (action groups, in order) + extra dims
                                (extra_actions groups, in order, after the joint groups)
      -> model units [H, A]     inverse q99 (the normalised value is first clipped to [-1, 1],
                                the range the model was trained on)
      -> absolute model [H, A]  relative groups get the observed state at the chunk start (in model
                                units) added once to every step
      -> SI [H, J] + extras     effector joints back through EffectorMapping.to_joint;
                                extras, e.g. AgiBot base_velocity [H, 2] (m/s, rad/s), are absolute

The "absolute model units" intermediate is what the remote wire protocol carries in its infer
reply (DROID: [24, 8] = 7 joint angles in rad + gripper in [0, 1]), so the server produces it
with `si_to_model_actions` and the client maps it to SI with `model_to_si_actions`.

Statistics follow the checkpoint's `experiment_cfg/metadata.json`::

    {"statistics": {"state": {<group>: {"min", "max", "mean", "std", "q01", "q99"}},
                    "action": {<group>: {...}}}}

A checkpoint trained on several embodiments keys that per embodiment first
(`{<tag>: {"statistics": ...}, ...}`); `select_statistics` documents which key is picked.
Without statistics (random weights) normalisation is the identity and a warning is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig

LOG = logging.getLogger(__name__)

#: Embodiment tags the reference release uses in multi-embodiment metadata, per config name.
#: Tried after an explicit key and the config's own name (see select_statistics).
REFERENCE_TAGS: dict[str, tuple[str, ...]] = {
    "franka_droid": ("oxe_droid", "droid", "franka"),
    "agibot_g1": ("agibot", "agibot_g1", "g1"),
    "yam": ("yam",),
}


class StatisticsError(ValueError):
    """Normalisation statistics are missing, ambiguous or malformed; the message names the key."""


@dataclass(frozen=True, slots=True)
class _Segment:
    """A named slice of a model vector: `start:stop`, with optional per-component effector maps."""

    name: str
    start: int
    stop: int
    relative: bool = False

    @property
    def size(self) -> int:
        return self.stop - self.start


class _Q99:
    """Per-component q99 normaliser for one vector (state or action). q01/q99: [D] float64."""

    def __init__(self, q01: np.ndarray, q99: np.ndarray) -> None:
        self.q01 = q01
        self.q99 = q99
        # Components with q01 == q99 (a constant in the data, e.g. an unused joint) pass through
        # unchanged: dividing by a zero range would blow up, and the model saw the raw value there.
        self.active = q99 != q01
        self.scale = np.where(self.active, q99 - q01, 1.0)

    def normalise(self, x: np.ndarray) -> np.ndarray:
        y = np.clip(2.0 * (x - self.q01) / self.scale - 1.0, -1.0, 1.0)
        return np.where(self.active, y, x)

    def unnormalise(self, y: np.ndarray) -> np.ndarray:
        x = (np.clip(y, -1.0, 1.0) + 1.0) * 0.5 * self.scale + self.q01
        return np.where(self.active, x, y)


def select_statistics(
    metadata: Mapping[str, Any] | None, embodiment: EmbodimentConfig, *, key: str | None = None
) -> Mapping[str, Any] | None:
    """The `statistics` mapping ({"state": ..., "action": ...}) for `embodiment`, or None.

    metadata: parsed metadata.json, either single-embodiment ({"statistics": ...}) or keyed per
        embodiment first ({tag: {"statistics": ...}}). None -> None (identity normalisation).
    key: explicit embodiment key for multi-embodiment metadata. Without it the first present of
        [embodiment.name, *REFERENCE_TAGS[embodiment.name]] is used; if none is present but the
        metadata holds exactly one embodiment, that one is used (logged). Anything else raises.
    """
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise StatisticsError(f"metadata: expected a mapping, got {type(metadata).__name__}")
    if "statistics" in metadata and key is None:
        stats = metadata["statistics"]
        if not isinstance(stats, Mapping):
            raise StatisticsError(f"metadata.statistics: expected a mapping, got {type(stats).__name__}")
        return stats
    per_embodiment = {k: v for k, v in metadata.items() if isinstance(v, Mapping) and "statistics" in v}
    if key is not None:
        if key not in per_embodiment:
            raise StatisticsError(
                f"metadata: no statistics for embodiment key {key!r}; keys with statistics: {sorted(per_embodiment)}"
            )
        return per_embodiment[key]["statistics"]
    for cand in (embodiment.name, *REFERENCE_TAGS.get(embodiment.name, ())):
        if cand in per_embodiment:
            LOG.info("normalisation statistics from metadata key=%s embodiment=%s", cand, embodiment.name)
            return per_embodiment[cand]["statistics"]
    if len(per_embodiment) == 1:
        (only,) = per_embodiment
        LOG.info("normalisation statistics from the only metadata key=%s embodiment=%s", only, embodiment.name)
        return per_embodiment[only]["statistics"]
    raise StatisticsError(
        f"metadata: cannot pick statistics for embodiment {embodiment.name!r}; expected a top-level "
        f"'statistics' or one of the keys {[embodiment.name, *REFERENCE_TAGS.get(embodiment.name, ())]}, "
        f"got keys {sorted(metadata)} (pass an explicit key)"
    )


class ActionSpace:
    """State/action conversion for one embodiment and one set of normalisation statistics.

    Vectors (all float64 unless stated):
      state SI  [S]     S = len(embodiment.state_joints), state_joints order, rad / m.
      state model [S]   same order, effector joints in model range.
      action [H, A]     A = action_dim = joint_action_dim + sum of extra_actions sizes.
      positions [H, J]  J = joint_action_dim, action_joints order, rad / m, absolute.
      extras            {extra group name: [H, C]} absolute.
    """

    def __init__(
        self,
        embodiment: EmbodimentConfig,
        statistics: Mapping[str, Any] | None = None,
        *,
        warn_if_identity: bool = True,
    ) -> None:
        """statistics: {"state": {group: {...q01, q99...}}, "action": {group: ...}} or None (identity).

        warn_if_identity: log a warning when statistics is None (off for users that only convert
        units, e.g. the remote client, whose server owns the statistics).
        """
        self.embodiment = embodiment
        e = embodiment
        self.state_joints = e.state_joints
        self.action_joints = e.action_joints
        self.state_dim = len(self.state_joints)
        self.joint_action_dim = len(self.action_joints)
        self.extra_dims = {g.name: len(g.components) for g in e.extra_actions}
        self.action_dim = e.action_dim
        self.horizon = e.control.horizon

        self.state_segments = _segments((g.name, len(g.joints), False) for g in e.state)
        self.action_segments = _segments(
            [(g.name, len(g.joints), g.relative) for g in e.action]
            + [(g.name, len(g.components), False) for g in e.extra_actions]
        )

        # Effector maps as vectorised affine transforms: model = a * joint + b on effector
        # components, identity elsewhere (a = 1, b = 0). Linear, so the SI <-> model round trip is exact.
        self._state_to_model = _affine(self.state_joints, e)
        self._action_to_model = _affine(self.action_joints, e)

        # Relative action components: index into the action vector and the matching state index.
        state_index = {j: i for i, j in enumerate(self.state_joints)}
        rel_action, rel_state = [], []
        for seg, group in zip(self.action_segments, e.action, strict=False):
            if group.relative:
                for k, joint in enumerate(group.joints):
                    rel_action.append(seg.start + k)
                    rel_state.append(state_index[joint])
        self._rel_action = np.array(rel_action, dtype=np.intp)
        self._rel_state = np.array(rel_state, dtype=np.intp)

        self.identity = statistics is None
        if statistics is None:
            if warn_if_identity:
                LOG.warning(
                    "no normalisation statistics for embodiment=%s: using identity normalisation "
                    "(fine for random weights, wrong for a trained checkpoint)", e.name,
                )
            self._state_norm = None
            self._action_norm = None
        else:
            self._state_norm = _q99_from(statistics, "state", self.state_segments)
            self._action_norm = _q99_from(statistics, "action", self.action_segments)

    @classmethod
    def from_metadata(
        cls, embodiment: EmbodimentConfig, metadata: Mapping[str, Any] | None, *, key: str | None = None
    ) -> ActionSpace:
        """From a parsed experiment_cfg/metadata.json (see select_statistics for the key choice)."""
        return cls(embodiment, select_statistics(metadata, embodiment, key=key))

    # -- state -------------------------------------------------------------------------------

    def state_to_model(self, state_si: np.ndarray) -> np.ndarray:
        """[S] SI -> [S] model units (effector joints mapped to the model's range)."""
        x = self._check(state_si, (self.state_dim,), "state")
        a, b = self._state_to_model
        return a * x + b

    def state_from_model(self, state_model: np.ndarray) -> np.ndarray:
        """[S] model units -> [S] SI (inverse of state_to_model)."""
        x = self._check(state_model, (self.state_dim,), "state (model units)")
        a, b = self._state_to_model
        return (x - b) / a

    def normalise_state(self, state_model: np.ndarray) -> np.ndarray:
        """[S] model units -> [S] normalised (q99, clipped to [-1, 1])."""
        x = self._check(state_model, (self.state_dim,), "state (model units)")
        return x.copy() if self._state_norm is None else self._state_norm.normalise(x)

    def encode_state(self, state_si: np.ndarray) -> np.ndarray:
        """[S] SI -> [S] float32 normalised: what the model observes."""
        return self.normalise_state(self.state_to_model(state_si)).astype(np.float32)

    # -- actions -----------------------------------------------------------------------------

    def unnormalise_actions(self, actions: np.ndarray) -> np.ndarray:
        """[H, A] normalised -> [H, A] model units, relative groups still relative."""
        y = self._check(actions, (None, self.action_dim), "actions")
        return y.copy() if self._action_norm is None else self._action_norm.unnormalise(y)

    def normalise_actions(self, actions_model: np.ndarray) -> np.ndarray:
        """[H, A] model units (relative groups relative) -> [H, A] normalised (q99, clipped to [-1, 1]): the
        training target, the exact inverse of `unnormalise_actions` inside the q01..q99 range."""
        x = self._check(actions_model, (None, self.action_dim), "actions (model units)")
        return x.copy() if self._action_norm is None else self._action_norm.normalise(x)

    def relative_actions(self, actions_abs: np.ndarray, state_model: np.ndarray) -> np.ndarray:
        """[H, A] absolute model units + [S] chunk-start state in model units -> [H, A] with the relative groups
        as deltas from that state (the inverse of the state addition in `absolute_actions`)."""
        x = self._check(actions_abs, (None, self.action_dim), "actions (absolute model units)").copy()
        state = self._check(state_model, (self.state_dim,), "state (model units)")
        if self._rel_action.size:
            x[:, self._rel_action] -= state[self._rel_state]
        return x

    def to_absolute(self, actions_model: np.ndarray, state_si: np.ndarray) -> np.ndarray:
        """[H, A] model units (relative groups relative) -> [H, A] absolute model units.

        state_si: [S] observed state at the chunk start, SI; added once (in model units) to every
        step of every relative group.
        """
        return self._add_state(actions_model, self.state_to_model(state_si))

    def absolute_actions(self, actions: np.ndarray, state_model: np.ndarray) -> np.ndarray:
        """[H, A] normalised model output + [S] chunk-start state in MODEL units -> [H, A] absolute model units.

        What a policy server sends back: it works in model units on both sides, so nothing goes through SI.
        """
        return self._add_state(self.unnormalise_actions(actions),
                               self._check(state_model, (self.state_dim,), "state (model units)"))

    def _add_state(self, actions_model: np.ndarray, state_model: np.ndarray) -> np.ndarray:
        x = self._check(actions_model, (None, self.action_dim), "actions (model units)").copy()
        if self._rel_action.size:
            x[:, self._rel_action] += state_model[self._rel_state]
        return x

    def model_to_si_actions(self, actions_abs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """[H, A] absolute model units -> (positions [H, J] SI, extras {name: [H, C]})."""
        x = self._check(actions_abs, (None, self.action_dim), "actions (absolute model units)")
        a, b = self._action_to_model
        positions = (x[:, : self.joint_action_dim] - b) / a
        extra_segments = self.action_segments[len(self.embodiment.action) :]
        extras = {seg.name: x[:, seg.start : seg.stop].copy() for seg in extra_segments}
        return positions, extras

    def si_to_model_actions(self, positions: np.ndarray, extras: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """(positions [H, J] SI, extras {name: [H, C]}) -> [H, A] absolute model units.

        The inverse of model_to_si_actions; every extra group of the embodiment must be given.
        """
        p = self._check(positions, (None, self.joint_action_dim), "positions")
        a, b = self._action_to_model
        parts = [a * p + b]
        extras = extras or {}
        for name, size in self.extra_dims.items():
            if name not in extras:
                raise ValueError(
                    f"{self.embodiment.name}: extras: missing group {name!r}; expected {list(self.extra_dims)}"
                )
            parts.append(self._check(extras[name], (p.shape[0], size), f"extras[{name!r}]"))
        unknown = set(extras) - set(self.extra_dims)
        if unknown:
            raise ValueError(
                f"{self.embodiment.name}: extras: unknown groups {sorted(unknown)}; expected {list(self.extra_dims)}"
            )
        return np.concatenate(parts, axis=1)

    def decode_actions(self, actions: np.ndarray, state_si: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """[H, A] normalised model output + [S] SI chunk-start state -> (positions [H, J] SI, extras)."""
        return self.model_to_si_actions(self.to_absolute(self.unnormalise_actions(actions), state_si))

    # -- helpers -----------------------------------------------------------------------------

    def _check(self, value: np.ndarray, shape: tuple[int | None, ...], what: str) -> np.ndarray:
        x = np.asarray(value, dtype=np.float64)
        if x.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, x.shape, strict=True)):
            want = "[" + ", ".join("H" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{self.embodiment.name}: {what}: expected shape {want}, got {list(x.shape)}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self.embodiment.name}: {what}: expected finite values, got NaN or inf")
        return x


def _segments(groups) -> tuple[_Segment, ...]:
    out, start = [], 0
    for name, size, relative in groups:
        out.append(_Segment(name, start, start + size, relative))
        start += size
    return tuple(out)


def _affine(joints: tuple[str, ...], embodiment: EmbodimentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) [len(joints)] so that model = a * joint + b (identity for non-effector joints)."""
    a = np.ones(len(joints))
    b = np.zeros(len(joints))
    for i, joint in enumerate(joints):
        eff = embodiment.effector(joint)
        if eff is not None:
            b[i] = eff.to_model(0.0)
            a[i] = eff.to_model(1.0) - b[i]
    return a, b


def _q99_from(statistics: Mapping[str, Any], kind: str, segments: tuple[_Segment, ...]) -> _Q99:
    """Concatenate q01/q99 of each group of `kind` ("state"/"action") in segment order."""
    table = statistics.get(kind) if isinstance(statistics, Mapping) else None
    if not isinstance(table, Mapping):
        raise StatisticsError(f"statistics.{kind}: expected a mapping of group -> stats, got {type(table).__name__}")
    q01, q99 = [], []
    for seg in segments:
        # The release keys groups by their plain name; GR00T-style dumps prefix the modality.
        entry = table.get(seg.name, table.get(f"{kind}.{seg.name}"))
        if not isinstance(entry, Mapping):
            raise StatisticsError(
                f"statistics.{kind}.{seg.name}: missing; groups present: {sorted(table)}"
            )
        for q, out in (("q01", q01), ("q99", q99)):
            values = np.asarray(entry.get(q, []), dtype=np.float64).reshape(-1)
            if values.shape != (seg.size,) or not np.all(np.isfinite(values)):
                raise StatisticsError(
                    f"statistics.{kind}.{seg.name}.{q}: expected {seg.size} finite numbers, got {entry.get(q)!r}"
                )
            out.append(values)
    lo, hi = np.concatenate(q01), np.concatenate(q99)
    return _Q99(lo, hi)
