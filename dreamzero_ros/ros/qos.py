"""QoS profiles by role, in one place (see docs/architecture.md)."""

from __future__ import annotations

from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)

from dreamzero_ros.core.robot_profile import QosSpec

#: Camera images in: best effort, keep last few (a late frame is worth less than the next one).
SENSOR = qos_profile_sensor_data

#: The stitched frame and predicted video between our own nodes: reliable, shallow.
FRAMES = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=2, reliability=QoSReliabilityPolicy.RELIABLE)

#: Joint states: reliable, keep the newest few.
JOINT_STATES = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10, reliability=QoSReliabilityPolicy.RELIABLE)

#: Action chunks and robot commands: reliable, latest matters.
COMMANDS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10, reliability=QoSReliabilityPolicy.RELIABLE)

#: Instruction and e-stop: reliable + transient local, so a late joiner gets the last value.
LATCHED = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
)

#: Status and diagnostics.
STATUS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10, reliability=QoSReliabilityPolicy.RELIABLE)


def from_spec(spec: QosSpec) -> QoSProfile:
    """The rclpy QoSProfile of a robot profile's per-topic `qos` (keep-last `depth`)."""
    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST,
        depth=spec.depth,
        reliability=(QoSReliabilityPolicy.RELIABLE if spec.reliability == "reliable"
                     else QoSReliabilityPolicy.BEST_EFFORT),
        durability=(QoSDurabilityPolicy.TRANSIENT_LOCAL if spec.durability == "transient_local"
                    else QoSDurabilityPolicy.VOLATILE),
    )
