"""franka_ros2's arm JointTrajectoryController, interpolating at 1 kHz (ros2_controllers' rules).

Subscribes where `fr3_arm_controller` does (/fr3_arm_controller/joint_trajectory, JointTrajectory,
joints fr3_joint1..7) and runs dreamzero_ros.sim.jtc.JtcModel, a model of the controller written from
joint_trajectory_controller.cpp / trajectory.cpp: each accepted message replaces the trajectory at the
next 1 ms update, starting from the last commanded position and velocity (open loop); cubic Hermite
between points with positions and velocities; messages that end in the past are rejected. The robot
tracks the command exactly: /franka/joint_states (reliable, 100 Hz) carry the commanded positions,
/fr3_gripper/joint_states (best effort, 50 Hz) a fixed width. Every 1 ms sample is kept for the test.
"""

from __future__ import annotations

import math

import numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from dreamzero_ros.ros.runtime import stamp_to_seconds
from dreamzero_ros.sim.jtc import JtcModel
from stacks.base import StandIn

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
FINGERS = ["fr3_finger_joint1", "fr3_finger_joint2"]
TOPIC = "/fr3_arm_controller/joint_trajectory"
PERIOD = 1e-3  # s, controller_manager's update period


class JtcStandIn(StandIn):
    def __init__(self, arm: list[float], width: float) -> None:
        super().__init__("fr3_arm_controller_standin")
        self.model = JtcModel(np.array(arm, dtype=np.float64))
        self.width = width
        self._inbox: list[tuple[float, JointTrajectory]] = []
        self._t = math.floor(self.stack_time() / PERIOD) * PERIOD
        self.samples: list[tuple[float, np.ndarray, np.ndarray]] = []  # (t, position, velocity) per 1 ms
        self.deliveries: list[tuple[float, float, int]] = []  # (receive time, header stamp, points)
        self.node.create_subscription(JointTrajectory, TOPIC, self._on_trajectory, 10)
        self._arm_pub = self.node.create_publisher(JointState, "/franka/joint_states", 10)
        self._gripper_pub = self.node.create_publisher(JointState, "/fr3_gripper/joint_states", qos_profile_sensor_data)
        self.node.create_timer(0.01, self._update)
        self.node.create_timer(0.02, self._publish_gripper)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        with self.lock:
            self._inbox.append((self.stack_time(), msg))

    def _update(self) -> None:
        """Run every 1 ms controller update up to now (the timer fires at 100 Hz; updates keep 1 kHz time)."""
        now = self.stack_time()
        with self.lock:
            while self._t + PERIOD <= now:
                self._t += PERIOD
                while self._inbox and self._inbox[0][0] <= self._t:
                    self._deliver(*self._inbox.pop(0))
                p, v, _ = self.model.sample(self._t)
                self.samples.append((self._t, p, v))
            position = self.model.position.tolist()
        self._arm_pub.publish(self.stamp(JointState(name=ARM, position=position)))

    def _deliver(self, received: float, msg: JointTrajectory) -> None:
        if list(msg.joint_names) != ARM:
            self.model.rejected.append(f"joints {list(msg.joint_names)}")
            return
        stamp = stamp_to_seconds(msg.header.stamp)
        tfs = np.array([stamp_to_seconds(p.time_from_start) for p in msg.points])
        positions = np.array([list(p.positions) for p in msg.points])
        velocities = np.array([list(p.velocities) for p in msg.points]) if all(p.velocities for p in msg.points) else None
        if self.model.receive(stamp, tfs, positions, velocities, received):
            self.deliveries.append((received, stamp, len(msg.points)))

    def _publish_gripper(self) -> None:
        self._gripper_pub.publish(self.stamp(JointState(name=FINGERS, position=[self.width / 2] * 2)))
