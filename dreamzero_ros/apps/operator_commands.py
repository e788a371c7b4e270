"""Operator commands over DDS (there is no `ros2` CLI on pip installs).

`dreamzero instruct|status|home|arm|disarm|estop|reset` use these functions; they talk to whatever
bringup runs in the same ROS domain: the simulator demo or a robot. `dreamzero eval` drives its episodes
through the same commands (plus `sim_reset` and `reset_episode`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import rclpy
from dreamzero_msgs.msg import PolicyStatus
from dreamzero_msgs.srv import SetInstruction
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import (
    ARM_SERVICE,
    ESTOP_TOPIC,
    HOME_SERVICE,
    INSTRUCTION_TOPIC,
    RESET_EPISODE_SERVICE,
    RESET_ESTOP_SERVICE,
    SET_INSTRUCTION_SERVICE,
    SIM_RESET_SERVICE,
    STATUS_TOPIC,
    normalize_namespace,
    resolve,
)
from dreamzero_ros.ros.runtime import RESEND_AFTER_S, call_service


class OperatorError(RuntimeError):
    """An operator command could not be completed (service missing, refused, timed out)."""


class Operator:
    """A short-lived rclpy node that sends one operator command to the bringup in `namespace`
    (the names in ros/names.py are relative, so the node's namespace picks the robot)."""

    def __init__(self, timeout: float = 10.0, namespace: str = "") -> None:
        self.timeout = timeout
        self.namespace = normalize_namespace(namespace, "--namespace")
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("dreamzero_operator", namespace=self.namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._instruction_pub = None  # created on the first instruct(): one latched publisher per operator

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def __enter__(self) -> Operator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def _call(self, srv_type: Any, name: str, request: Any, *, resend: bool = True,
              reply_timeout: float | None = None) -> Any:
        """The reply; an unanswered request is sent again unless `resend` is False (a service that must not run
        twice). Waits `timeout` s for the service and `reply_timeout` (default the same) for the reply."""
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=self.timeout):
            raise OperatorError(f"service {resolve(name, self.namespace)} is not available (is the bringup running "
                                f"in this ROS domain and namespace?)")
        timeout = self.timeout if reply_timeout is None else reply_timeout
        reply = call_service(client, request, self.spin_until, timeout, RESEND_AFTER_S if resend else None)
        if reply is None:
            raise OperatorError(f"service {resolve(name, self.namespace)} did not answer within {timeout:g} s")
        return reply

    def instruct(self, text: str) -> str:
        resp = self._call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction=text))
        if not resp.success:
            raise OperatorError(f"instruction refused: {resp.message}")
        # Also latch it on the topic so a restarted inference node picks it up.
        if self._instruction_pub is None:
            self._instruction_pub = self.node.create_publisher(String, INSTRUCTION_TOPIC, qos.LATCHED)
        self._instruction_pub.publish(String(data=text))
        self.spin_until(lambda: False, 0.2)
        return resp.message

    def arm(self, armed: bool) -> str:
        resp = self._call(SetBool, ARM_SERVICE, SetBool.Request(data=armed))
        if not resp.success:
            raise OperatorError(resp.message)
        return resp.message

    def home(self, timeout: float = 120.0, on_status: Callable[[PolicyStatus], None] | None = None) -> str:
        """Move to the start pose (the executor must be disarmed) and wait until it is reached.

        Raises OperatorError when the executor refuses (the reason), when homing ends any other way
        (e-stop, disarm) or when it does not finish within `timeout` s.
        """
        statuses: list[PolicyStatus] = []
        self.node.create_subscription(PolicyStatus, STATUS_TOPIC,
                                      lambda m: statuses.append(m) if m.node == "action_executor" else None,
                                      qos.STATUS)
        resp = self._call(Trigger, HOME_SERVICE, Trigger.Request())
        if not resp.success:
            raise OperatorError(f"home refused: {resp.message}")
        started = False  # a status published before the call may still be in flight: skip until homing shows
        ended: list[PolicyStatus] = []

        def finished() -> bool:
            nonlocal started
            while statuses and not ended:
                msg = statuses.pop(0)
                if on_status is not None:
                    on_status(msg)
                reached = msg.state == "idle" and "start pose" in msg.reason
                started = started or msg.state == "homing" or reached
                if started and msg.state != "homing":
                    ended.append(msg)
            return bool(ended)

        if not self.spin_until(finished, timeout):
            raise OperatorError(f"homing did not finish within {timeout:g} s ({resp.message})")
        end = ended[0]
        if end.state != "idle" or "start pose" not in end.reason:
            raise OperatorError(f"homing ended without reaching the start pose: state={end.state} reason='{end.reason}'")
        return f"{resp.message}; reached"

    def estop(self) -> str:
        """Latch the executor's e-stop; returns once every subscription has acknowledged it, else raises."""
        pub = self.node.create_publisher(Bool, ESTOP_TOPIC, qos.LATCHED)
        topic = resolve(ESTOP_TOPIC, self.namespace)
        subscribed = self.spin_until(lambda: pub.get_subscription_count() > 0, self.timeout)
        pub.publish(Bool(data=True))
        if not subscribed:
            self.spin_until(lambda: False, 0.5)  # latched: an executor that appears now still hears it
            raise OperatorError(f"e-stop published on {topic}, but no executor subscribes to it (is the bringup "
                                f"running in this ROS domain and namespace?)")
        # Matched here is not yet matched on the executor's side (discovery runs both ways, slowly under load);
        # the reliable writer knows when each matched subscription has the sample, so wait for that, not a while.
        if not pub.wait_for_all_acked(Duration(seconds=self.timeout)):
            raise OperatorError(f"e-stop published on {topic}, but not acknowledged by its "
                                f"{pub.get_subscription_count()} subscription(s) within {self.timeout:g} s")
        return f"e-stop acknowledged on {topic} by {pub.get_subscription_count()} subscription(s)"

    def reset(self) -> list[str]:
        """Clear the executor's e-stop latch (it stays disarmed) and reset the model's episode."""
        out = []
        for srv in (RESET_ESTOP_SERVICE, RESET_EPISODE_SERVICE):
            resp = self._call(Trigger, srv, Trigger.Request())
            out.append(f"{resolve(srv, self.namespace)}: {resp.message}")
        return out

    def reset_episode(self) -> str:
        """Start a new episode of the model (its context cleared; the instruction stays)."""
        return self._call(Trigger, RESET_EPISODE_SERVICE, Trigger.Request()).message

    def sim_reset(self, reply_timeout: float | None = None) -> str:
        """Reset the simulator (a task scene: its next seeded episode); the reply names task, seed and instruction.

        Sent once: a second request would skip a seed. A lost reply raises OperatorError although the reset may
        have happened; /sim/task's `resets` count tells (see apps/evaluate.py).
        """
        resp = self._call(Trigger, SIM_RESET_SERVICE, Trigger.Request(), resend=False, reply_timeout=reply_timeout)
        if not resp.success:
            raise OperatorError(f"sim reset refused: {resp.message}")
        return resp.message

    def statuses(self, duration: float, on_status: Callable[[PolicyStatus], None] | None = None) -> dict[str, PolicyStatus]:
        """Latest PolicyStatus per node seen within `duration` seconds."""
        latest: dict[str, PolicyStatus] = {}

        def callback(msg: PolicyStatus) -> None:
            latest[msg.node] = msg
            if on_status:
                on_status(msg)

        self.node.create_subscription(PolicyStatus, STATUS_TOPIC, callback, qos.STATUS)
        self.spin_until(lambda: False, duration)
        return latest


def format_status(msg: PolicyStatus) -> str:
    parts = [
        f"{msg.node:<16}",
        f"state={msg.state}",
        f"backend={msg.backend}" if msg.backend else "",
        f"armed={str(msg.armed).lower()}",
        f"estop={str(msg.estopped).lower()}",
        f"rate={msg.control_rate:.1f}Hz",
        f"chunks={msg.chunks_produced}",
        f"lat={msg.latency_last * 1000:.0f}/{msg.latency_p95 * 1000:.0f}ms(last/p95)" if msg.latency_last else "",
        f"holds={msg.holds}",
        f"rejected={msg.chunks_rejected}",
        f"dropped={msg.chunks_dropped}",
        f"reason='{msg.reason}'" if msg.reason else "",
        f"error='{msg.last_error}'" if msg.last_error else "",
    ]
    return " ".join(p for p in parts if p)
