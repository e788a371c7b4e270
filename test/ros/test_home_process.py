"""`dreamzero home` in the simulated loop: sim_robot + action_executor processes, the real CLI.

The simulated Panda is first pushed away from the start pose by another commander (the probe
publishing on the forward position controller's topic, as a teleop would). `dreamzero home` then
drives it back: the CLI returns once the executor reports the start pose, the arm is there within
tolerance, and neither the executor's commands nor the measured joint velocities ever exceed the
configured homing speed (home.velocity_scale x each joint's velocity limit, config/franka_droid.yaml;
the measured joint speed with a 10 % allowance for the simulated servos' lag, see below).
Arming is refused while the arm is far from the executor's last command, saying to home first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import ARM_SERVICE
from dreamzero_ros.testing.probes import wait_until

# The start pose written in config/franka_droid.yaml (home.pose) and its speed: 0.1 x the joint limits.
START_POSE = np.array([0.0, -0.6283, 0.0, -2.5133, 0.0, 1.885, 0.7854, 0.04])
VELOCITY_LIMITS = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61, 0.2])
SPEED = 0.1 * VELOCITY_LIMITS
REACHED = 0.02  # rad: the simulated position servos at rest under gravity
AWAY = START_POSE + np.array([0.4, 0.3, 0.0, 0.3, 0.0, -0.3, 0.0, -0.02])


def _dreamzero(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dreamzero_ros.apps.cli", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


def _push_away(probe, pub, joints, target: np.ndarray) -> None:
    """Command the sim straight to `target` (another commander, not the executor) until it is there."""
    def there() -> bool:
        pub.publish(Float64MultiArray(data=target.tolist()))
        if not joints:
            return False
        measured = dict(zip(joints[-1][1].name, joints[-1][1].position, strict=False))
        return max(abs(measured[j] - v) for j, v in zip(NAMES, target, strict=True)) < 0.01

    assert wait_until(there, 20, interval=0.1)


NAMES = load_embodiment("franka_droid").action_joints


def test_dreamzero_home_reaches_the_start_pose_never_faster_than_the_configured_speed(launcher, probe):
    emb = load_embodiment("franka_droid")
    np.testing.assert_array_equal(emb.home_array(), START_POSE)
    sim = launcher.start("sim_robot", "dreamzero_ros.nodes.sim_robot_node",
                         {"embodiment": "franka_droid", "camera_rate": 0.0, "joint_state_rate": 50.0})
    executor = launcher.start("action_executor", "dreamzero_ros.nodes.action_executor_node",
                              {"embodiment": "franka_droid", "status_rate": 10.0})
    joints = probe.collect(JointState, emb.command.joint_states_topic, qos.JOINT_STATES)
    commands = probe.collect(Float64MultiArray, emb.command.topic, qos.COMMANDS)
    pub = probe.publisher(Float64MultiArray, emb.command.topic, qos.COMMANDS, wait_for_subscribers=1, timeout=60)
    assert wait_until(lambda: len(joints) > 0, 60), sim.output()
    _push_away(probe, pub, joints, AWAY)
    time.sleep(0.5)  # the probe's last command has landed; from here on only the executor commands

    started = time.monotonic()
    for _ in range(20):  # like an operator: the executor refuses until its own first joint state
        result = _dreamzero("home", "--timeout", "60")
        if "no joint state" not in result.stderr:
            break
        time.sleep(0.5)
    done = time.monotonic()
    assert result.returncode == 0, result.stdout + result.stderr + executor.output()
    assert "s to the start pose; reached" in result.stdout
    time.sleep(1.0)  # let the servos settle on the last command

    # Reached: the last command is the start pose exactly, the arm is there within tolerance.
    homing = [(t, np.array(m.data)) for t, m in list(commands) if started <= t <= done]
    assert len(homing) >= 30, len(homing)
    np.testing.assert_allclose(homing[-1][1], START_POSE, atol=1e-9)
    measured = dict(zip(joints[-1][1].name, joints[-1][1].position, strict=False))
    error = np.abs(np.array([measured[j] for j in NAMES]) - START_POSE)
    assert np.all(error < REACHED), error

    # Never faster than configured, from the commands: the mean speed over every 5 consecutive
    # commands (1/3 s, so receive-time jitter of a few ms shifts it by ~2 %) is within the speed + 3 %.
    t = np.array([x for x, _ in homing])
    q = np.array([v for _, v in homing])
    mean_speed = np.abs(q[5:] - q[:-5]) / (t[5:] - t[:-5])[:, None]
    assert np.all(mean_speed <= SPEED * 1.03), (mean_speed.max(axis=0), SPEED)
    assert np.all(mean_speed[:, [0, 1, 3, 5]].max(axis=0) > 0.5 * SPEED[[0, 1, 3, 5]])  # and it did move
    # ... and from the joint states: the measured positions over the same 1/3 s windows (received at
    # 50 Hz, on the clock the commands were received with). The per-tick position interface steps the
    # servo targets at 15 Hz, so the physics' instantaneous joint velocity ripples around the commanded
    # speed (it chases each step), and a position servo that lags the path catches up after the
    # path's peak: the measured 1/3 s mean speed may exceed the commanded one by a few percent (6 %
    # seen here); 10 % is allowed. A trajectory controller output gets the homing path as one smooth
    # trajectory instead.
    during = [(x, m) for x, m in list(joints) if started <= x <= done + 1.0]
    ts = np.array([x for x, _ in during])
    qs = np.array([[dict(zip(m.name, m.position, strict=False))[j] for j in NAMES] for _, m in during])
    k = 16  # 50 Hz joint states: 1/3 s
    measured_speed = np.abs(qs[k:] - qs[:-k]) / (ts[k:] - ts[:-k])[:, None]
    assert np.all(measured_speed[:, :7] <= SPEED[:7] * 1.10), (measured_speed.max(axis=0), SPEED)

    # Arming: fine at the start pose; refused after the arm is pushed away from the last command.
    assert probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=True), timeout=10).success
    assert probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=False), timeout=10).success
    _push_away(probe, pub, joints, AWAY)
    refused = probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=True), timeout=10)
    assert not refused.success and "home first" in refused.message, refused.message
    again = _dreamzero("arm")
    assert again.returncode == 1 and "home first" in again.stderr
