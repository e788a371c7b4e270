"""The executor state machine: arming, latching e-stop, latest chunk wins, watchdog holds, clock jumps."""

from __future__ import annotations

import numpy as np
import pytest

from dreamzero_ros.core.chunk import RawChunk
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.executor import ExecutorCore, ExecutorSettings

FRANKA = load_embodiment("franka_droid")  # 15 Hz, 8 action joints
NAMES = FRANKA.action_joints
DT = FRANKA.control.dt
LO, HI, _ = FRANKA.limits_arrays()
HOME = (LO + HI) / 2
PLAIN = ExecutorSettings(crossfade_steps=0, smoothing=False)


def ramp(horizon: int = 24, offset: float = 0.0, rate: float = 0.0005) -> np.ndarray:
    """[H, J] targets moving every joint by `rate` per step from HOME + offset (within all limits)."""
    return HOME + offset + rate * np.arange(1, horizon + 1)[:, None] * np.ones(len(NAMES))


def chunk(stamp: float, positions: np.ndarray, chunk_id: int = 1, names=NAMES, dt: float = DT) -> RawChunk:
    return RawChunk(stamp, names, dt, positions.shape[0], positions.ravel(), chunk_id=chunk_id)


def armed_core(settings: ExecutorSettings = PLAIN, now: float = 10.0) -> ExecutorCore:
    core = ExecutorCore(FRANKA, settings)
    assert core.on_joint_state(NAMES, HOME, now).ok
    assert core.arm(now).ok
    return core


# ------------------------------------------------------------------------------- arming


def test_nothing_is_commanded_until_armed():
    core = ExecutorCore(FRANKA, PLAIN)
    core.on_joint_state(NAMES, HOME, 10.0)
    assert core.on_chunk(chunk(10.0, ramp()), 10.0).ok  # chunks are accepted while disarmed
    assert core.tick(10.1) is None
    assert core.status().state == "idle"
    assert core.arm(10.1).ok
    cmd = core.tick(10.2)
    assert cmd is not None and not cmd.holding and core.status().state == "running"


def test_arming_is_refused_before_the_first_joint_state():
    core = ExecutorCore(FRANKA, PLAIN)
    verdict = core.arm(0.0)
    assert not verdict.ok and "no joint state" in verdict.message
    assert core.tick(0.1) is None


def test_disarm_stops_commanding_and_rearming_starts_from_the_measured_position():
    # A tolerance wide enough to admit the push below (the default refuses it: see the next test).
    core = armed_core(ExecutorSettings(crossfade_steps=0, smoothing=False, arm_tolerance=1.0))
    core.on_chunk(chunk(10.0, ramp()), 10.0)
    core.tick(10.2)
    assert core.disarm(10.25).ok
    assert core.tick(10.3) is None and core.status().state == "idle"
    moved = HOME.copy()
    moved[:7] -= 0.5  # the arm was pushed by hand while disarmed
    core.on_joint_state(NAMES, moved, 10.3)
    assert core.arm(10.3).ok
    cmd = core.tick(10.4)
    # the velocity limit is relative to where the robot is now, not to the old command
    max_step = FRANKA.limits_arrays()[2] * DT
    np.testing.assert_allclose(cmd.positions[:7], moved[:7] + max_step[:7])


# ------------------------------------------------------------------------------- running


def test_each_tick_sends_the_row_due_at_that_time():
    core = armed_core()
    targets = ramp()
    assert core.on_chunk(chunk(10.0, targets), 10.05).ok
    sent = []
    for k in range(2, 10):  # ticks at the row times stamp + (k + 1) * dt, starting at row 2
        cmd = core.tick(10.0 + (k + 1) * DT)
        sent.append(cmd.row)
        np.testing.assert_allclose(cmd.positions, targets[k], atol=1e-12)
    assert sent == list(range(2, 10))


def test_a_newer_chunk_replaces_the_active_one():
    core = armed_core()
    core.on_chunk(chunk(10.0, ramp(), chunk_id=1), 10.0)
    core.tick(10.2)
    newer = ramp(offset=0.001)
    assert core.on_chunk(chunk(10.2, newer, chunk_id=2), 10.3).ok
    cmd = core.tick(10.2 + 2 * DT)
    assert (cmd.chunk_id, cmd.row) == (2, 1)
    np.testing.assert_allclose(cmd.positions, newer[1], atol=1e-12)


def test_crossfade_from_the_previous_trajectory_smooths_the_switch():
    targets_old = ramp(rate=0.003)
    targets_new = ramp(offset=0.03, rate=0.003)  # predicted from a slightly different state
    jumps = {}
    for fade in (0, 4):
        core = armed_core(ExecutorSettings(crossfade_steps=fade, smoothing=False))
        core.on_chunk(chunk(10.0, targets_old, 1), 10.0)
        cmds = [core.tick(10.0 + k * DT).positions for k in range(1, 8)]
        core.on_chunk(chunk(10.0 + 6 * DT, targets_new, 2), 10.0 + 7 * DT)
        cmds.append(core.tick(10.0 + 8 * DT).positions)
        jumps[fade] = np.abs(cmds[-1] - cmds[-2]).max()
    assert jumps[4] < 0.5 * jumps[0]


# ------------------------------------------------------------------------------- watchdog


def test_when_the_chunk_runs_out_the_last_command_is_held_not_zeros():
    core = armed_core()
    targets = ramp(horizon=4)
    core.on_chunk(chunk(10.0, targets), 10.0)
    for k in range(4):
        last = core.tick(10.0 + (k + 1) * DT)
    np.testing.assert_allclose(last.positions, targets[-1])
    for k in range(5):
        held = core.tick(10.0 + (5 + k) * DT)
        assert held.holding and "used up" in held.reason
        np.testing.assert_array_equal(held.positions, last.positions)
    status = core.status()
    assert (status.state, status.holds) == ("holding", 5)
    assert np.abs(held.positions).min() > 0  # genuinely not zeros (HOME has no zero joint)


def test_with_no_chunk_ever_the_measured_joint_state_is_held():
    core = armed_core()
    cmd = core.tick(10.1)
    assert cmd.holding and cmd.reason == "no chunk received"
    np.testing.assert_allclose(cmd.positions, HOME)


def test_a_chunk_older_than_the_timeout_is_not_executed():
    core = armed_core(ExecutorSettings(crossfade_steps=0, smoothing=False, chunk_timeout=0.5))
    core.on_chunk(chunk(10.0, ramp()), 10.0)
    assert not core.tick(10.4).holding
    cmd = core.tick(10.6)
    assert cmd.holding and "timed out" in cmd.reason


def test_a_backward_clock_jump_holds_then_resumes_without_replaying_rows():
    core = armed_core()
    targets = ramp()
    core.on_chunk(chunk(10.0, targets), 10.0)
    for k in range(1, 7):
        last = core.tick(10.0 + k * DT)
    assert last.row == 5
    back = core.tick(10.0 + 2 * DT)  # the clock steps back 4 periods
    assert back.holding and "clock jumped backwards" in back.reason
    np.testing.assert_array_equal(back.positions, last.positions)
    assert core.status().clock_jumps == 1
    assert core.tick(10.0 + 4 * DT).holding  # still behind where it was
    resumed = core.tick(10.0 + 7 * DT)
    assert not resumed.holding and resumed.row == 6  # continues, no replay of rows 0..5, no skip
    np.testing.assert_allclose(resumed.positions, targets[6], atol=1e-12)


def test_after_a_large_backward_jump_a_chunk_on_the_new_timeline_runs():
    core = armed_core()
    core.on_chunk(chunk(100.0, ramp(), 1), 100.0)
    core.tick(100.1)
    assert core.tick(5.0).holding  # e.g. the simulation clock restarted
    assert core.on_chunk(chunk(5.0, ramp(), 2), 5.05).ok
    cmd = core.tick(5.0 + 2 * DT)
    assert not cmd.holding and cmd.chunk_id == 2


# ------------------------------------------------------------------------------- e-stop


def test_estop_latches_holds_and_needs_reset_then_rearm():
    core = armed_core()
    core.on_chunk(chunk(10.0, ramp()), 10.0)
    before = core.tick(10.2)
    assert core.estop(10.25).ok
    held = core.tick(10.3)
    assert held.holding and core.status().state == "stopped" and core.status().estopped
    np.testing.assert_array_equal(held.positions, before.positions)
    refused = core.arm(10.3)
    assert not refused.ok and "reset" in refused.message
    core.on_chunk(chunk(10.3, ramp(offset=0.001), 2), 10.35)
    assert core.tick(10.4).holding  # a new chunk does not release the e-stop
    assert core.reset(10.5).ok
    assert core.tick(10.55) is None and core.status().state == "idle" and not core.status().armed
    assert core.arm(10.6).ok
    assert not core.tick(10.6).holding


def test_estop_with_nothing_to_hold_commands_nothing():
    core = ExecutorCore(FRANKA, PLAIN)
    core.estop(0.0)
    assert core.tick(0.1) is None and core.status().state == "stopped"


# ------------------------------------------------------------------------------- chunk admission


def test_invalid_chunks_are_rejected_with_a_counted_reason():
    core = armed_core()
    bad = ramp()
    bad[3, 2] = np.nan
    verdict = core.on_chunk(chunk(10.0, bad), 10.0)
    assert not verdict.ok and verdict.message.startswith("rejected: positions: non-finite")
    verdict = core.on_chunk(chunk(10.0, ramp()[:, :7], names=NAMES[:7]), 10.0)
    assert not verdict.ok and "missing ['panda_finger_joint1']" in verdict.message
    status = core.status()
    assert status.chunks_rejected == 2 and "missing" in status.last_rejection


def test_a_chunk_whose_rows_have_all_passed_is_dropped_as_late():
    core = armed_core()
    verdict = core.on_chunk(chunk(8.0, ramp()), 10.0)  # rows end at 9.6
    assert not verdict.ok and "late" in verdict.message
    assert (core.status().chunks_dropped, core.status().chunks_late) == (1, 1)


def test_a_chunk_older_than_max_chunk_age_is_dropped():
    core = armed_core(ExecutorSettings(max_chunk_age=0.3))
    verdict = core.on_chunk(chunk(9.6, ramp()), 10.0)
    assert not verdict.ok and "too old" in verdict.message
    assert core.status().chunks_late == 0 and core.status().chunks_dropped == 1


def test_a_chunk_not_newer_than_the_active_one_is_dropped():
    core = armed_core()
    core.on_chunk(chunk(10.0, ramp(), 1), 10.0)
    verdict = core.on_chunk(chunk(9.9, ramp(), 0), 10.05)
    assert not verdict.ok and "out of order" in verdict.message


def test_a_chunk_stamped_in_the_future_is_rejected():
    core = armed_core()
    verdict = core.on_chunk(chunk(12.0, ramp()), 10.0)
    assert not verdict.ok and "ahead of now" in verdict.message


def test_joint_states_must_cover_every_action_joint_with_finite_values():
    core = ExecutorCore(FRANKA, PLAIN)
    verdict = core.on_joint_state(NAMES[:-1], HOME[:-1], 0.0)
    assert not verdict.ok and "lacks action joints ['panda_finger_joint1']" in verdict.message
    nan = HOME.copy()
    nan[0] = np.nan
    assert "non-finite" in core.on_joint_state(NAMES, nan, 0.0).message
    extra = core.on_joint_state(("panda_finger_joint2", *NAMES[::-1]), (0.0, *HOME[::-1]), 0.0)
    assert extra.ok
    np.testing.assert_array_equal(core.measured, HOME)


# ------------------------------------------------------------------------------- extras


def test_base_velocity_follows_the_chunk_and_is_zero_while_holding():
    g1 = load_embodiment("agibot_g1")
    names = g1.action_joints
    lo, hi, _ = g1.limits_arrays()
    core = ExecutorCore(g1, PLAIN)
    core.on_joint_state(names, (lo + hi) / 2, 0.0)
    core.arm(0.0)
    h = 4
    vel = np.tile([0.2, -0.3], (h, 1))
    raw = RawChunk(
        0.0,
        names,
        g1.control.dt,
        h,
        np.tile((lo + hi) / 2, (h, 1)).ravel(),
        {"robot_velocity": (("linear_x", "angular_z"), vel.ravel())},
    )
    assert core.on_chunk(raw, 0.0).ok
    np.testing.assert_allclose(core.tick(g1.control.dt).extras["robot_velocity"], [0.2, -0.3])
    held = core.tick(1.0)
    assert held.holding
    np.testing.assert_array_equal(held.extras["robot_velocity"], [0.0, 0.0])


# ------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crossfade_steps": -1}, r"ExecutorSettings.crossfade_steps: expected an integer >= 0, got -1"),
        ({"crossfade_source": "zeros"}, r"ExecutorSettings.crossfade_source: expected one of"),
        ({"savgol_window": 8}, r"ExecutorSettings.savgol_window: expected an odd integer >= 3, got 8"),
        ({"savgol_order": 11}, r"ExecutorSettings.savgol_order: expected an integer in \[0, savgol_window=11\)"),
        ({"chunk_timeout": 0.0}, r"ExecutorSettings.chunk_timeout: expected a positive finite number"),
        ({"max_chunk_age": float("nan")}, r"ExecutorSettings.max_chunk_age"),
        ({"smoothing": "yes"}, r"ExecutorSettings.smoothing: expected true or false"),
    ],
)
def test_bad_settings_are_rejected_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExecutorSettings(**kwargs)
