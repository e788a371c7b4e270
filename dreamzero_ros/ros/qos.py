"""QoS profiles by role, in one place (see docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.subscription import MessageInfo, Subscription

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


def subscribe_latched_and_volatile(node: Node, msg_type: Any, topic: str,
                                   callback: Callable[[Any], None]) -> tuple[Subscription, Subscription]:
    """Hear `topic` from latched and plain publishers alike, each sample once.

    A transient-local subscription gets a latched value published before it started but never matches a
    default (volatile) publisher, e.g. `ros2 topic pub`; a volatile one matches every publisher. So two
    subscriptions, and a latched publisher reaches both: a sample already delivered, or older than the
    newest delivered from the same publisher (the two queues may interleave), is dropped, so the newest
    value wins. Publishers are told apart by their gid and samples ordered by publication sequence number
    (source timestamp where the middleware gives none). A middleware that reports no publisher gid gets
    every sample through (twice from a latched publisher): `callback` must tolerate a repeat.
    """
    newest: dict[bytes, int] = {}

    def once(msg: Any, info: MessageInfo) -> None:
        gid = info.get("publisher_gid")
        if not isinstance(gid, dict) or "data" not in gid:
            callback(msg)  # cannot tell publishers apart: never drop (an e-stop must not be lost)
            return
        key = bytes(gid["data"])
        order = info.get("publication_sequence_number") or info["source_timestamp"]
        if key in newest and order <= newest[key]:
            return
        newest[key] = order
        callback(msg)

    return (node.create_subscription(msg_type, topic, once, LATCHED),
            node.create_subscription(msg_type, topic, once, COMMANDS))
