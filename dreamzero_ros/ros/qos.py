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
from rclpy.subscription import Subscription

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
    """Hear a value topic (the newest sample is the value, e.g. the instruction) from latched and plain
    publishers alike: each sample once, and never a stale one after a newer one.

    A transient-local subscription gets a latched value published before it started but never matches a
    default (volatile) publisher, e.g. `ros2 topic pub`; a volatile one matches every publisher. So two
    subscriptions; a latched publisher reaches both, and their queues interleave (a depth-1 latched queue
    can hand over the newest sample before the volatile queue hands over older ones). A sample not newer
    than the newest already delivered from its publisher is dropped: publishers told apart by gid and
    samples ordered by publication sequence number (rclpy from Kilted on). Where rclpy reports no gid
    (Jazzy), samples are ordered by source timestamp across publishers, so a publisher whose clock lags
    the last one's by more than the time between their samples is not heard: fine for an instruction,
    not for events. Events that must never be dropped (the e-stop) subscribe twice with an idempotent
    callback instead.
    """
    newest: dict[bytes, int] = {}

    def once(msg: Any, info: dict[str, Any]) -> None:  # rclpy's MessageInfo (a TypedDict from Kilted on)
        gid = info.get("publisher_gid")
        if isinstance(gid, dict) and "data" in gid:
            key, order = bytes(gid["data"]), info.get("publication_sequence_number") or info["source_timestamp"]
        else:
            key, order = b"", info["source_timestamp"]
        if key in newest and order <= newest[key]:
            return
        newest[key] = order
        callback(msg)

    return (node.create_subscription(msg_type, topic, once, LATCHED),
            node.create_subscription(msg_type, topic, once, COMMANDS))
