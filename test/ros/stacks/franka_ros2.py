"""franka_ros2 for an FR3 (frankaemika/franka_ros2).

The arm's joint_state_broadcaster, remapped by ros2_control_node to /franka/joint_states (reliable,
fr3_joint1..7); the gripper node `fr3_gripper` publishing /fr3_gripper/joint_states with SensorDataQoS
(best effort), fr3_finger_joint1/2 each at width / 2, at 50 Hz (its state_publish_rate). Commands: the
arm controller's topic, given at construction: /fr3_arm_controller/joint_trajectory (JointTrajectory,
JointTrajectoryController) or /<name>/commands (Float64MultiArray, a forward position controller, the
controller's `joints` order fr3_joint1..7). The controller holds the last command (no interpolation here).
The gripper node's GripperCommand action server `/fr3_gripper/gripper_action` (control_msgs; the goal's
position is the finger joint, width / 2) records each goal and moves the fingers there at once.
"""

from __future__ import annotations

from control_msgs.action import GripperCommand
from rclpy.action import ActionServer
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from stacks.base import StandIn

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
FINGERS = ["fr3_finger_joint1", "fr3_finger_joint2"]
JTC_TOPIC = "/fr3_arm_controller/joint_trajectory"
GRIPPER_ACTION = "/fr3_gripper/gripper_action"


class FrankaRos2StandIn(StandIn):
    def __init__(self, arm: list[float], width: float, *, arm_topic: str, cameras: list[str]) -> None:
        super().__init__("franka_ros2_standin")
        self.arm = list(arm)
        self.width = width
        self.arm_topic = arm_topic
        self._arm_pub = self.node.create_publisher(JointState, "/franka/joint_states", 10)
        self._gripper_pub = self.node.create_publisher(JointState, "/fr3_gripper/joint_states", qos_profile_sensor_data)
        if arm_topic == JTC_TOPIC:
            self.node.create_subscription(JointTrajectory, arm_topic, self._on_trajectory, 10)
        else:
            self.node.create_subscription(Float64MultiArray, arm_topic, self._on_forward, 10)
        self._gripper_server = ActionServer(self.node, GripperCommand, GRIPPER_ACTION, self._on_gripper_goal)
        self.node.create_timer(0.01, self._publish_arm)
        self.node.create_timer(0.02, self._publish_gripper)
        self.cameras([(t, False) for t in cameras], 10.0, 10)

    def _on_forward(self, msg: Float64MultiArray) -> None:
        self.log(self.arm_topic, msg)
        if len(msg.data) == len(ARM):  # forward_command_controller drops a wrong-sized command
            with self.lock:
                self.arm = list(msg.data)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        self.log(self.arm_topic, msg)
        if list(msg.joint_names) == ARM and msg.points:
            with self.lock:
                self.arm = list(msg.points[-1].positions)

    def _on_gripper_goal(self, goal_handle):
        command = goal_handle.request.command
        self.log(GRIPPER_ACTION, command)
        with self.lock:
            self.width = 2.0 * command.position
        goal_handle.succeed()
        return GripperCommand.Result(position=command.position, reached_goal=True)

    def _publish_arm(self) -> None:
        with self.lock:
            arm = list(self.arm)
        self._arm_pub.publish(self.stamp(JointState(name=ARM, position=arm)))

    def _publish_gripper(self) -> None:
        self._gripper_pub.publish(self.stamp(JointState(name=FINGERS, position=[self.width / 2] * 2)))
