"""Chunks are validated with a reason, aligned to `now` row-exactly, smoothed, and cross-faded."""

from __future__ import annotations

import numpy as np
import pytest

from dreamzero_ros.core.chunk import (
    ChunkError,
    RawChunk,
    align_chunk,
    crossfade,
    rows_passed,
    smooth_positions,
    upsample2x,
    validate_chunk,
)

JOINTS = ("j1", "j2", "j3")
BASE = {"base_velocity": ("linear_x", "angular_z")}


def raw(positions, names=JOINTS, horizon=None, dt=0.1, stamp=10.0, extras=None) -> RawChunk:
    positions = np.asarray(positions, dtype=np.float64)
    h = positions.shape[0] if horizon is None else horizon
    return RawChunk(stamp, names, dt, h, positions.reshape(-1), extras or {}, chunk_id=7)


def grid(h: int, j: int = 3) -> np.ndarray:
    return np.arange(h * j, dtype=np.float64).reshape(h, j)


# ------------------------------------------------------------------------------- validation


def test_a_valid_chunk_becomes_a_read_only_matrix_with_row_times():
    chunk = validate_chunk(raw(grid(4)), JOINTS)
    np.testing.assert_array_equal(chunk.positions, grid(4))
    assert not chunk.positions.flags.writeable
    np.testing.assert_allclose(chunk.times, [10.1, 10.2, 10.3, 10.4])
    assert (chunk.horizon, chunk.chunk_id, chunk.joint_names) == (4, 7, JOINTS)


def test_joints_in_another_order_are_reordered_to_the_embodiment_order():
    chunk = validate_chunk(raw(grid(2)[:, [2, 0, 1]], names=("j3", "j1", "j2")), JOINTS)
    np.testing.assert_array_equal(chunk.positions, grid(2))


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (("j1", "j2"), r"missing \['j3'\]"),
        (("j1", "j2", "j3", "j4"), r"unexpected \['j4'\]"),
        (("j1", "j2", "jx"), r"missing \['j3'\] and unexpected \['jx'\]"),
        (("j1", "j1", "j2"), r"duplicate names \['j1'\]"),
    ],
)
def test_wrong_joint_names_are_rejected_with_the_difference(names, match):
    positions = np.zeros((2, len(names)))
    with pytest.raises(ChunkError, match=match):
        validate_chunk(raw(positions, names=names), JOINTS)


def test_a_positions_length_other_than_horizon_times_joints_is_rejected():
    with pytest.raises(ChunkError, match=r"expected horizon x 3 = 12 values \(4 steps x 3 names\), got 11"):
        validate_chunk(RawChunk(0.0, JOINTS, 0.1, 4, np.zeros(11)), JOINTS)


def test_a_zero_horizon_is_rejected():
    with pytest.raises(ChunkError, match="horizon must be an integer >= 1, got 0"):
        validate_chunk(RawChunk(0.0, JOINTS, 0.1, 0, []), JOINTS)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_positions_are_rejected_naming_step_and_joint(bad):
    positions = grid(3)
    positions[2, 1] = bad
    with pytest.raises(ChunkError, match=r"non-finite value .* at step 2, 'j2'") as info:
        validate_chunk(raw(positions), JOINTS)
    assert info.value.reason == str(info.value)


@pytest.mark.parametrize(("dt", "stamp"), [(0.0, 1.0), (-0.1, 1.0), (np.nan, 1.0), (0.1, np.inf)])
def test_non_positive_dt_and_non_finite_stamps_are_rejected(dt, stamp):
    with pytest.raises(ChunkError, match="dt must be|stamp must be"):
        validate_chunk(raw(grid(2), dt=dt, stamp=stamp), JOINTS)


def test_extra_groups_are_required_reordered_and_checked():
    values = np.array([[0.1, 0.2], [0.3, 0.4]])
    ok = validate_chunk(
        raw(grid(2), extras={"base_velocity": (("angular_z", "linear_x"), values.ravel())}), JOINTS, BASE
    )
    np.testing.assert_array_equal(ok.extras["base_velocity"], values[:, ::-1])
    with pytest.raises(ChunkError, match=r"extra groups: missing \['base_velocity'\]"):
        validate_chunk(raw(grid(2)), JOINTS, BASE)
    with pytest.raises(ChunkError, match=r"unexpected \['arm_lift'\]"):
        validate_chunk(raw(grid(2), extras={"arm_lift": (("z",), [0, 0])}), JOINTS)
    with pytest.raises(ChunkError, match="extra group 'base_velocity': non-finite"):
        validate_chunk(raw(grid(2), extras={"base_velocity": (BASE["base_velocity"], [0, np.nan, 0, 0])}), JOINTS, BASE)


# ------------------------------------------------------------------------------- time alignment


@pytest.mark.parametrize(
    ("now", "dropped"),
    [
        (9.0, 0),
        (10.0, 0),
        (10.1, 0),
        (10.1000001, 0),
        (10.15, 1),
        (10.2, 1),
        (10.35, 3),
        (10.99, 9),
        (11.0, 9),
        (11.01, 10),
    ],
)
def test_alignment_drops_exactly_the_rows_whose_time_has_passed(now, dropped):
    chunk = validate_chunk(raw(grid(10)), JOINTS)  # rows at 10.1, 10.2, ..., 11.0
    assert rows_passed(chunk.stamp, chunk.dt, chunk.horizon, now) == dropped
    aligned = align_chunk(chunk, now)
    if dropped == 10:
        assert aligned is None
        return
    np.testing.assert_array_equal(aligned.positions, grid(10)[dropped:])
    # every kept row keeps its target time
    np.testing.assert_allclose(aligned.times, chunk.times[dropped:])


def test_alignment_also_drops_the_extra_rows():
    extras = {"base_velocity": (BASE["base_velocity"], np.arange(8.0))}
    chunk = validate_chunk(raw(grid(4), extras=extras), JOINTS, BASE)
    aligned = align_chunk(chunk, 10.25)
    np.testing.assert_array_equal(aligned.extras["base_velocity"], np.arange(8.0).reshape(4, 2)[2:])


# ------------------------------------------------------------------------------- smoothing


def rms_jerk(x: np.ndarray, dt: float) -> float:
    return float(np.sqrt(np.mean((np.diff(x, n=3, axis=0) / dt**3) ** 2)))


def test_upsampling_keeps_the_rows_and_inserts_midpoints():
    x = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0]])
    np.testing.assert_array_equal(upsample2x(x), [[0, 1], [1, 3], [2, 5], [3, 4], [4, 3]])


def test_smoothing_lowers_the_jerk_of_a_noisy_chunk_while_staying_close_to_it():
    dt, sigma = 1 / 15, 0.01
    t = np.arange(1, 25)[:, None] * dt
    clean = 0.5 * np.sin(2 * np.pi * 0.4 * t + np.array([0.0, 1.0, 2.0])) + 0.3 * t
    noisy = clean + np.random.default_rng(3).normal(0, sigma, clean.shape)
    smooth = smooth_positions(noisy, window=11, order=3)
    assert smooth.shape == noisy.shape
    assert rms_jerk(smooth, dt) < 0.5 * rms_jerk(noisy, dt)
    assert np.abs(smooth - noisy).max() < 4 * sigma  # bounded deviation from what the model predicted
    assert np.sqrt(np.mean((smooth - clean) ** 2)) < np.sqrt(np.mean((noisy - clean) ** 2))


def test_smoothing_leaves_a_constant_velocity_chunk_unchanged():
    ramp = np.linspace(0, 1, 24)[:, None] * np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(smooth_positions(ramp, 11, 3), ramp, atol=1e-12)


@pytest.mark.parametrize("h", [1, 2, 3, 5])
def test_chunks_shorter_than_the_window_are_still_handled(h):
    x = np.random.default_rng(h).normal(size=(h, 3))
    out = smooth_positions(x, window=21, order=3)
    assert out.shape == x.shape and np.all(np.isfinite(out))
    if 2 * h - 1 <= 3:  # too short for any window above the order: unchanged
        np.testing.assert_array_equal(out, x)


def test_smoothing_rejects_an_even_window_or_an_order_at_or_above_it():
    with pytest.raises(ValueError, match="odd window >= 3 and 0 <= order < window, got 10, 3"):
        smooth_positions(np.zeros((5, 2)), window=10, order=3)
    with pytest.raises(ValueError, match="got 5, 5"):
        smooth_positions(np.zeros((5, 2)), window=5, order=5)


# ------------------------------------------------------------------------------- cross-fade


def test_crossfade_ramps_linearly_from_a_position_to_the_chunk():
    chunk = np.full((6, 2), 4.0)
    out = crossfade(chunk, np.array([0.0, 8.0]), steps=3)
    np.testing.assert_allclose(out[:, 0], [1.0, 2.0, 3.0, 4.0, 4.0, 4.0])
    np.testing.assert_allclose(out[:, 1], [7.0, 6.0, 5.0, 4.0, 4.0, 4.0])


def test_crossfade_from_a_trajectory_uses_it_row_by_row_and_its_last_row_past_its_end():
    chunk = np.zeros((5, 1))
    source = np.array([[4.0], [8.0]])
    out = crossfade(chunk, source, steps=3)
    np.testing.assert_allclose(out[:, 0], [3.0, 4.0, 2.0, 0.0, 0.0])


def test_crossfade_with_zero_steps_or_longer_than_the_chunk():
    chunk = np.ones((2, 1))
    np.testing.assert_array_equal(crossfade(chunk, np.zeros(1), 0), chunk)
    np.testing.assert_allclose(crossfade(chunk, np.zeros(1), 5)[:, 0], [1 / 6, 2 / 6])
