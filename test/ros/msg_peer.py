"""A peer process for test_msgs_process.py: `talker` serves SetInstruction and publishes an
ActionChunk; `listener` calls the service, receives the chunk and prints both as one JSON line."""

from __future__ import annotations

import json
import sys
import time

import rclpy
from dreamzero_msgs.msg import ActionChunk, ActionGroup
from dreamzero_msgs.srv import SetInstruction
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


def talker() -> None:
    rclpy.init()
    node = Node("msg_talker")
    state = {"instruction": ""}

    def on_set(req: SetInstruction.Request, resp: SetInstruction.Response) -> SetInstruction.Response:
        state["instruction"] = req.instruction
        resp.success = bool(req.instruction)
        resp.message = f"instruction set to {req.instruction!r}"
        pub.publish(make_chunk(req.instruction))
        return resp

    pub = node.create_publisher(ActionChunk, "/test/action_chunk", QOS)
    node.create_service(SetInstruction, "/test/set_instruction", on_set)
    print("talker ready", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def make_chunk(instruction: str) -> ActionChunk:
    msg = ActionChunk()
    msg.header.stamp.sec = 1234
    msg.header.stamp.nanosec = 500_000_000
    msg.header.frame_id = "base_link"
    msg.chunk_id = 7
    msg.instruction = instruction
    msg.joint_names = ["j1", "j2"]
    msg.dt = 1.0 / 15.0
    msg.horizon = 3
    msg.positions = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    msg.extra_groups = [ActionGroup(name="base_velocity", names=["linear_x", "angular_z"], values=[0.0] * 6)]
    msg.inference_latency = 0.25
    return msg


def listener() -> None:
    rclpy.init()
    node = Node("msg_listener")
    got: list[ActionChunk] = []
    node.create_subscription(ActionChunk, "/test/action_chunk", got.append, QOS)
    client = node.create_client(SetInstruction, "/test/set_instruction")
    if not client.wait_for_service(timeout_sec=20.0):
        print(json.dumps({"error": "service not available"}), flush=True)
        sys.exit(1)
    future = client.call_async(SetInstruction.Request(instruction="pick up the cup"))
    rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
    deadline = time.monotonic() + 10.0
    while not got and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    resp = future.result()
    out = {"success": resp.success if resp else None, "message": resp.message if resp else None}
    if got:
        c = got[0]
        out.update(
            stamp=[c.header.stamp.sec, c.header.stamp.nanosec], chunk_id=c.chunk_id, instruction=c.instruction,
            joint_names=list(c.joint_names), dt=c.dt, horizon=c.horizon, positions=list(c.positions),
            extra=[(g.name, list(g.names), len(g.values)) for g in c.extra_groups], latency=c.inference_latency,
        )
    print(json.dumps(out), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    {"talker": talker, "listener": listener}[sys.argv[1]]()
