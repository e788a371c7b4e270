"""Genie Sim as AgiBot's DreamZero client sees it (AgibotTech/genie_sim).

/joint_states (reliable) with the G1's idx* names; the three cameras as CompressedImage on /sim/*_img,
published with the sim's QOS_PROFILE_LATEST (reliable, transient local, depth 30); commands taken from
/sim/target_joint_state (JointState, same QoS): the two arms and the two grippers, read BY INDEX as the sim's
callback_joint_command does ([0:7] left arm, [7:14] right arm, [14], [15] left/right gripper clipped to [0, 1]).
The sim's gripper joint is 0 closed .. 0.8 open and its command 0 closed .. 1 open: command c -> joint 0.8 c.
Everything on sim time: the stand-in publishes /clock.
"""

from __future__ import annotations

from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import JointState

from stacks.base import StandIn

LATEST = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=30, reliability=QoSReliabilityPolicy.RELIABLE,
                    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
ARM_L = [f"idx2{i}_arm_l_joint{i}" for i in range(1, 8)]
ARM_R = [f"idx6{i}_arm_r_joint{i}" for i in range(1, 8)]
GRIPPERS = ["idx41_gripper_l_outer_joint1", "idx81_gripper_r_outer_joint1"]
#: The command layout the sim reads by index.
COMMAND_JOINTS = [*ARM_L, *ARM_R, *GRIPPERS]
OTHER = ["idx01_body_joint1", "idx02_body_joint2", "idx11_head_joint1", "idx12_head_joint2"]
COMMAND_TOPIC = "/sim/target_joint_state"
CAMERAS = ["/sim/head_img", "/sim/left_wrist_img", "/sim/right_wrist_img"]


class GenieSimStandIn(StandIn):
    def __init__(self, start: dict[str, float], *, sim_time_start: float = 1000.0) -> None:
        super().__init__("genie_sim_standin", sim_time_start=sim_time_start)
        self.q = dict(start)
        self._js = self.node.create_publisher(JointState, "/joint_states", 10)
        self.node.create_subscription(JointState, COMMAND_TOPIC, self._on_command, LATEST)
        self.node.create_timer(1.0 / 60.0, self._publish_state)
        self.cameras([(t, True) for t in CAMERAS], 10.0, LATEST)

    def _on_command(self, msg: JointState) -> None:
        self.log(COMMAND_TOPIC, msg)
        if len(msg.position) < 16:
            return
        with self.lock:
            for name, value in zip(COMMAND_JOINTS, msg.position, strict=False):
                self.q[name] = 0.8 * min(1.0, max(0.0, value)) if name in GRIPPERS else value

    def _publish_state(self) -> None:
        with self.lock:
            names = list(self.q)
            positions = [self.q[n] for n in names]
        self._js.publish(self.stamp(JointState(name=names, position=positions)))
