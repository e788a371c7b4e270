"""Action chunks: validation, time alignment, smoothing and cross-fade (pure numpy/scipy).

Owns what happens to a chunk between the message and the executor's per-tick limits:

- `RawChunk` carries the plain fields of a dreamzero_msgs/ActionChunk (the node copies them out);
  `validate_chunk` turns it into a `Chunk` in the embodiment's action-joint order or raises
  `ChunkError` whose `reason` says why (NaN/inf, wrong/missing/extra joints, wrong sizes).
- Time: a chunk holds positions [H, J] (absolute, rad / m) observed at `stamp` (s); row k is the
  target for time stamp + (k + 1) * dt. A row has passed at `now` when its time is earlier than
  now (by more than TIME_EPS); `align_chunk` drops exactly those rows.
- `smooth_positions`: the paper's chunk smoothing, 2x upsample -> Savitzky-Golay -> downsample.
- `crossfade`: blend the first steps of a new chunk from where the robot is being commanded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import savgol_filter

TIME_EPS = 1e-6  # s: rows within this of `now` count as due now, not passed (float stamps jitter)


class ChunkError(ValueError):
    """A chunk is invalid; `reason` is the human-readable cause (also the exception message)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class RawChunk:
    """Unvalidated fields of a dreamzero_msgs/ActionChunk.

    stamp: s, the observation time the chunk was conditioned on (header.stamp).
    joint_names: column order of `positions`.
    dt: s between steps. horizon: number of steps H.
    positions: flat row-major [H * len(joint_names)] absolute targets (rad, m); any sequence/array.
    extras: {group name: (component names, flat row-major [H * C] values)}, e.g. base velocity.
    """

    stamp: float
    joint_names: Sequence[str]
    dt: float
    horizon: int
    positions: Any
    extras: Mapping[str, tuple[Sequence[str], Any]] = field(default_factory=dict)
    chunk_id: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    """A validated chunk in the embodiment's action-joint order.

    positions: [H, J] float64 (rad, m), read-only. extras: {name: [H, C] float64}, read-only.
    Row k targets time stamp + (k + 1) * dt (s).
    """

    stamp: float
    dt: float
    joint_names: tuple[str, ...]
    positions: np.ndarray
    extras: dict[str, np.ndarray]
    chunk_id: int = 0

    @property
    def horizon(self) -> int:
        return int(self.positions.shape[0])

    @property
    def times(self) -> np.ndarray:
        """[H] target time (s) of each row."""
        return self.stamp + self.dt * np.arange(1, self.horizon + 1, dtype=np.float64)

    @property
    def end_time(self) -> float:
        """s, the target time of the last row."""
        return self.stamp + self.horizon * self.dt


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _matrix(values: Any, horizon: int, names: Sequence[str], what: str) -> np.ndarray:
    try:
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ChunkError(f"{what}: values are not numbers ({exc})") from exc
    width = len(names)
    if flat.size != horizon * width:
        raise ChunkError(
            f"{what}: expected horizon x {width} = {horizon * width} values ({horizon} steps x {width} names), "
            f"got {flat.size}"
        )
    matrix = flat.reshape(horizon, width)
    bad = ~np.isfinite(matrix)
    if bad.any():
        k, j = np.argwhere(bad)[0]
        raise ChunkError(f"{what}: non-finite value {matrix[k, j]} at step {k}, {names[j]!r} ({int(bad.sum())} in all)")
    return matrix


def _column_order(given: Sequence[str], expected: Sequence[str], what: str) -> list[int]:
    """Indices into `given` that produce `expected` order; same set required, order may differ."""
    given = list(given)
    dupes = sorted({n for n in given if given.count(n) > 1})
    if dupes:
        raise ChunkError(f"{what}: duplicate names {dupes}")
    missing = [n for n in expected if n not in given]
    extra = [n for n in given if n not in expected]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise ChunkError(f"{what}: {' and '.join(parts)}; expected {list(expected)}")
    return [given.index(n) for n in expected]


def validate_chunk(
    raw: RawChunk,
    joint_names: Sequence[str],
    extra_groups: Mapping[str, Sequence[str]] | None = None,
) -> Chunk:
    """Check `raw` and return it as a Chunk in `joint_names` order; raises ChunkError(reason).

    joint_names: the embodiment's action joints (EmbodimentConfig.action_joints). The chunk must
        name exactly these joints; another order is reordered, a missing or extra joint rejects.
    extra_groups: {group name: component names} the chunk must carry, e.g.
        {g.name: g.components for g in embodiment.extra_actions}; exactly these groups are required
        (components may come in another order).
    Rejects: non-finite stamp or dt <= 0, horizon < 1, len(positions) != horizon * J, NaN/inf.
    """
    if not (isinstance(raw.stamp, (int, float)) and math.isfinite(raw.stamp)):
        raise ChunkError(f"stamp must be a finite time in s, got {raw.stamp!r}")
    if not (isinstance(raw.dt, (int, float)) and math.isfinite(raw.dt) and raw.dt > 0):
        raise ChunkError(f"dt must be a positive finite number of seconds, got {raw.dt!r}")
    if isinstance(raw.horizon, bool) or not isinstance(raw.horizon, (int, np.integer)) or raw.horizon < 1:
        raise ChunkError(f"horizon must be an integer >= 1, got {raw.horizon!r}")
    horizon = int(raw.horizon)
    order = _column_order(raw.joint_names, joint_names, "joint_names")
    positions = _matrix(raw.positions, horizon, list(raw.joint_names), "positions")[:, order]
    expected_extras = dict(extra_groups or {})
    missing = [g for g in expected_extras if g not in raw.extras]
    unknown = [g for g in raw.extras if g not in expected_extras]
    if missing or unknown:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {unknown}"] if unknown else [])
        raise ChunkError(f"extra groups: {' and '.join(parts)}; expected {list(expected_extras)}")
    extras: dict[str, np.ndarray] = {}
    for name, components in expected_extras.items():
        given_names, values = raw.extras[name]
        corder = _column_order(given_names, components, f"extra group {name!r} names")
        extras[name] = _readonly(
            np.ascontiguousarray(_matrix(values, horizon, list(given_names), f"extra group {name!r}")[:, corder])
        )
    return Chunk(
        stamp=float(raw.stamp),
        dt=float(raw.dt),
        joint_names=tuple(joint_names),
        positions=_readonly(np.ascontiguousarray(positions)),
        extras=extras,
        chunk_id=int(raw.chunk_id),
    )


def rows_passed(stamp: float, dt: float, horizon: int, now: float) -> int:
    """How many leading rows have passed at `now`: rows k with stamp + (k + 1) * dt < now - TIME_EPS.

    Clamped to [0, horizon]. Exact for row times that fall on `now` (they are due, not passed).
    """
    # Count directly against the row times rather than dividing, so a row due exactly now is kept.
    times = stamp + dt * np.arange(1, horizon + 1, dtype=np.float64)
    return int(np.count_nonzero(times < now - TIME_EPS))


def align_chunk(chunk: Chunk, now: float) -> Chunk | None:
    """`chunk` without the rows whose time has passed at `now` (s); None when all have passed.

    The stamp advances by dt per dropped row, so every kept row keeps its target time.
    """
    n = rows_passed(chunk.stamp, chunk.dt, chunk.horizon, now)
    if n == 0:
        return chunk
    if n >= chunk.horizon:
        return None
    return Chunk(
        stamp=chunk.stamp + n * chunk.dt,
        dt=chunk.dt,
        joint_names=chunk.joint_names,
        positions=chunk.positions[n:],
        extras={k: v[n:] for k, v in chunk.extras.items()},
        chunk_id=chunk.chunk_id,
    )


def upsample2x(positions: np.ndarray) -> np.ndarray:
    """[H, J] -> [2H - 1, J]: the original rows with their linear midpoints in between.

    Linear, not a cubic spline: a spline through noisy samples overshoots between them, which would
    hand the filter (and the limits) excursions the model never predicted; the Savitzky-Golay pass
    that follows provides the smoothness. Even rows of the result are the input rows exactly.
    """
    h, j = positions.shape
    out = np.empty((2 * h - 1, j), dtype=np.float64)
    out[0::2] = positions
    out[1::2] = 0.5 * (positions[:-1] + positions[1:])
    return out


def smooth_positions(positions: np.ndarray, window: int = 11, order: int = 3) -> np.ndarray:
    """The paper's chunk smoothing: 2x upsample -> Savitzky-Golay along time -> take every other row.

    positions: [H, J] float64. window: filter length in UPSAMPLED samples (odd, > order), i.e.
    about window / 2 control steps. order: polynomial order. Returns [H, J] float64.
    Chunks whose upsampled length is shorter than `window` use the longest odd window that fits
    (still > order); chunks too short for any such window (2H - 1 <= order) come back unchanged.
    mode="interp" fits the edge windows with the same polynomial instead of padding, so the first
    and last rows are not pulled towards invented samples.
    """
    if window < 3 or window % 2 == 0 or not 0 <= order < window:
        raise ValueError(f"smooth_positions: need an odd window >= 3 and 0 <= order < window, got {window}, {order}")
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2:
        raise ValueError(f"smooth_positions: expected [H, J] positions, got shape {positions.shape}")
    n = 2 * positions.shape[0] - 1
    w = min(window, n if n % 2 == 1 else n - 1)
    if w <= order or w < 3:
        return positions.copy()
    up = upsample2x(positions)
    filtered = savgol_filter(up, window_length=w, polyorder=order, axis=0, mode="interp")
    return np.ascontiguousarray(filtered[0::2])


def crossfade(positions: np.ndarray, source: np.ndarray, steps: int) -> np.ndarray:
    """Blend the first `steps` rows of positions [H, J] from `source` into the chunk.

    source: [J] (a position to fade from, e.g. the last commanded one) or [S, J] (a trajectory at
        the same row times, e.g. the previous chunk's continuation; rows past S use its last row).
    Row i < steps becomes (1 - w_i) * source_i + w_i * positions_i with w_i = (i + 1) / (steps + 1),
    a linear ramp that reaches the new chunk at row `steps`. Returns a new [H, J] array.
    """
    out = np.array(positions, dtype=np.float64, copy=True)
    n = min(int(steps), out.shape[0])
    if n <= 0:
        return out
    src = np.asarray(source, dtype=np.float64)
    if src.ndim == 1:
        src = np.broadcast_to(src, (n, out.shape[1]))
    else:
        if src.shape[0] == 0:
            raise ValueError("crossfade: source trajectory has no rows")
        idx = np.minimum(np.arange(n), src.shape[0] - 1)
        src = src[idx]
    w = (np.arange(1, n + 1, dtype=np.float64) / (steps + 1))[:, None]
    out[:n] = (1.0 - w) * src + w * out[:n]
    return out
