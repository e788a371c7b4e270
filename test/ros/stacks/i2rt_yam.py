"""The vendor's YAM ROS 2 wrapper (i2rt-robotics/i2rt, i2rt/ros2/yam_arm_node.py), one node per arm.

Per arm <name>: publishes <name>/joint_states (JointState, depth 10, [joint_1..joint_6, gripper], 100 Hz),
subscribes <name>/command (JointState, depth 10) and reads its positions POSITIONALLY (7 = all, 6 = arm only,
gripper kept). The gripper is normalised 0 = closed .. 1 = open.
"""

from __future__ import annotations

from sensor_msgs.msg import JointState

from stacks.base import StandIn

NAMES = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]


class YamWrapperStandIn(StandIn):
    def __init__(self, start: dict[str, list[float]], cameras: list[str]) -> None:
        super().__init__("yam_wrapper_standin")
        self.q = {arm: list(values) for arm, values in start.items()}
        self._pubs = {arm: self.node.create_publisher(JointState, f"/{arm}/joint_states", 10) for arm in self.q}
        for arm in self.q:
            self.node.create_subscription(JointState, f"/{arm}/command", lambda m, a=arm: self._on_command(a, m), 10)
        self.node.create_timer(0.01, self._publish_state)
        self.cameras([(t, False) for t in cameras], 10.0, 10)

    def _on_command(self, arm: str, msg: JointState) -> None:
        self.log(f"/{arm}/command", msg)
        target = list(msg.position)
        with self.lock:
            if len(target) == 7:
                self.q[arm] = target
            elif len(target) == 6:
                self.q[arm][:6] = target

    def _publish_state(self) -> None:
        with self.lock:
            snapshot = {arm: list(v) for arm, v in self.q.items()}
        for arm, values in snapshot.items():
            self._pubs[arm].publish(self.stamp(JointState(name=NAMES, position=values)))
