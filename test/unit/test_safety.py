"""Commands never leave the position limits, never exceed the per-step velocity limit, never carry NaN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamzero_ros.core.chunk import RawChunk
from dreamzero_ros.core.embodiment import JointLimits, load_embodiment
from dreamzero_ros.core.executor import ExecutorCore, ExecutorSettings
from dreamzero_ros.core.safety import JointLimiter, SafetyError, clamp_extras

LIMITER = JointLimiter(lower=[-1.0, 0.0], upper=[1.0, 0.5], max_step=[0.1, 0.02])


def test_a_target_within_reach_passes_unchanged():
    np.testing.assert_allclose(LIMITER.limit([0.05, 0.31], [0.0, 0.3]), [0.05, 0.31])


def test_a_far_target_moves_by_at_most_one_step_toward_it():
    np.testing.assert_allclose(LIMITER.limit([5.0, -3.0], [0.0, 0.3]), [0.1, 0.28])


def test_targets_outside_the_position_limits_are_clamped_first():
    np.testing.assert_allclose(LIMITER.limit([1.5, 0.6], [0.95, 0.49]), [1.0, 0.5])


def test_a_nan_or_inf_target_joint_holds_that_joint_at_the_reference():
    np.testing.assert_allclose(LIMITER.limit([np.nan, np.inf], [0.2, 0.1]), [0.2, 0.1])


def test_position_limits_win_over_the_step_limit_when_the_reference_is_outside():
    # A measured position slightly beyond the limit: the command is pulled inside at once.
    np.testing.assert_allclose(LIMITER.limit([1.2, 0.25], [1.3, 0.25]), [1.0, 0.25])


def test_a_non_finite_reference_has_no_safe_command():
    with pytest.raises(SafetyError, match="reference position must be 2 finite values"):
        LIMITER.limit([0.0, 0.0], [np.nan, 0.0])


def test_limiter_rejects_inconsistent_limits():
    with pytest.raises(ValueError, match="lower < upper"):
        JointLimiter([0.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="max_step must be finite and > 0"):
        JointLimiter([0.0], [1.0], [0.0])
    with pytest.raises(ValueError, match="one length"):
        JointLimiter([0.0, 0.0], [1.0], [1.0])


def test_limiter_from_embodiment_uses_velocity_times_the_control_period():
    emb = load_embodiment("franka_droid")
    lim = JointLimiter.from_embodiment(emb)
    assert lim.max_step[0] == pytest.approx(2.175 / 15)
    assert lim.upper[-1] == pytest.approx(0.04)


def test_extras_are_clamped_per_component_and_nan_becomes_zero():
    np.testing.assert_allclose(clamp_extras(np.array([2.0, np.nan]), ((-0.5, 0.5), (-1.0, 1.0))), [0.5, 0.0])


# ------------------------------------------------------------------------------- property test

FRANKA = load_embodiment("franka_droid")
NAMES = FRANKA.action_joints
J = len(NAMES)


def embodiment_with(lower: np.ndarray, width: np.ndarray, velocity: np.ndarray):
    limits = dict(FRANKA.joint_limits)
    for k, name in enumerate(NAMES):
        limits[name] = JointLimits(float(lower[k]), float(lower[k] + width[k]), float(velocity[k]))
    return dataclasses.replace(FRANKA, joint_limits=limits)


vec = st.lists(st.floats(-3.0, 3.0), min_size=J, max_size=J).map(np.array)
positive = st.lists(st.floats(0.05, 3.0), min_size=J, max_size=J).map(np.array)
event = st.one_of(
    # time to the next tick: mostly about one period, sometimes a stall or a backward jump
    st.tuples(st.just("tick"), st.one_of(st.floats(0.0, 0.1), st.floats(0.0, 0.1), st.floats(-0.3, 0.5))),
    st.tuples(
        st.just("chunk"),
        st.one_of(st.floats(-0.4, 0.0), st.floats(-1.5, 0.6)),  # stamp relative to now
        st.integers(1, 30),  # horizon
        st.floats(-10.0, 10.0),  # scale of the targets (far outside the limits too)
        st.booleans(),  # poison one value with NaN
        st.integers(0, 2**31 - 1),  # seed
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lower=vec,
    width=positive,
    velocity=positive,
    start=st.floats(0.0, 1.0),
    events=st.lists(event, min_size=1, max_size=80),
    fade=st.integers(0, 5),
    source=st.sampled_from(["trajectory", "commanded"]),
)
def test_no_command_ever_leaves_the_limits_or_exceeds_the_step_limit_or_carries_nan(
    lower, width, velocity, start, events, fade, source
):
    emb = embodiment_with(lower, width, velocity)
    lo, hi, vel = emb.limits_arrays()
    max_step = vel * emb.control.dt
    core = ExecutorCore(emb, ExecutorSettings(crossfade_steps=fade, crossfade_source=source))
    now = 100.0
    measured = lo + start * (hi - lo)  # the robot starts inside its limits
    assert core.on_joint_state(NAMES, measured, now).ok
    assert core.arm(now).ok
    previous = measured
    for ev in events:
        if ev[0] == "tick":
            now += ev[1]
            cmd = core.tick(now)
            assert cmd is not None
            p = cmd.positions
            assert np.all(np.isfinite(p))
            assert np.all(p >= lo) and np.all(p <= hi)
            assert np.all(np.abs(p - previous) <= max_step * (1 + 1e-9) + 1e-12)
            previous = p
        else:
            _, rel, horizon, scale, poison, seed = ev
            rng = np.random.default_rng(seed)
            positions = rng.normal(0.0, 1.0, (horizon, J)) * scale
            if poison:
                positions[rng.integers(horizon), rng.integers(J)] = np.nan
            verdict = core.on_chunk(RawChunk(now + rel, NAMES, emb.control.dt, horizon, positions.ravel()), now)
            if poison:
                assert not verdict.ok and "non-finite" in verdict.message
