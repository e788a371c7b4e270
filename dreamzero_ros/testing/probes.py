"""Test support shipped with the package (used by test/ and benchmarks/): start real nodes as subprocesses and observe them over real DDS.

`NodeLauncher` starts nodes in their own process groups and stops them all at teardown;
`RosProbe` is an rclpy node in the test process (its own Context, spun on a thread) that
publishes, collects and calls services. Tests wait for the graph, not the clock.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from dreamzero_ros.bringup.processes import ManagedProcess, ProcessGroup
from dreamzero_ros.ros.names import normalize_namespace
from dreamzero_ros.ros.runtime import call_service


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def ros_param_args(params: dict[str, Any]) -> list[str]:
    """`--ros-args -p name:=value ...` for a parameter dict (YAML-style values)."""
    args: list[str] = []
    for name, value in params.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = "[" + ",".join(repr(v) if isinstance(v, str) else str(v) for v in value) + "]"
        else:
            text = str(value)
        args += ["-p", f"{name}:={text}"]
    return ["--ros-args", *args] if args else []


class NodeLauncher:
    """Starts dreamzero_ros node modules as subprocesses; stops every one at teardown."""

    def __init__(self) -> None:
        self.group = ProcessGroup()

    def start(
        self,
        name: str,
        module: str,
        params: dict[str, Any] | None = None,
        *,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        argv = [sys.executable, "-m", module, *extra_args, *ros_param_args(params or {})]
        proc = ManagedProcess(name, argv, env=env or dict(os.environ), echo=False)
        return self.group.start(proc)

    def stop_all(self) -> None:
        self.group.stop_all()


class RosProbe:
    """An rclpy node in the test process, spinning on its own thread and Context. In `namespace`
    (e.g. /robot1) the relative names of ros/names.py address that bringup's topics and services."""

    def __init__(self, name: str = "test_probe", namespace: str = "") -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(name, namespace=normalize_namespace(namespace), context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._clients: dict[tuple[Any, str], Any] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down while spinning
                break

    def collect(self, msg_type: Any, topic: str, qos: Any = 10) -> list[tuple[float, Any]]:
        """Subscribe and append (receive monotonic time, msg) to the returned list."""
        received: list[tuple[float, Any]] = []

        def callback(msg: Any) -> None:
            with self._lock:
                received.append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, callback, qos)
        return received

    def publisher(self, msg_type: Any, topic: str, qos: Any = 10, *, wait_for_subscribers: int = 0,
                  timeout: float = 15.0) -> Any:
        pub = self.node.create_publisher(msg_type, topic, qos)
        if wait_for_subscribers and not wait_until(lambda: pub.get_subscription_count() >= wait_for_subscribers, timeout):
            raise TimeoutError(f"no subscriber on {topic} after {timeout} s")
        return pub

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 15.0) -> None:
        if not wait_until(lambda: self.node.count_publishers(topic) >= count, timeout):
            raise TimeoutError(f"no publisher on {topic} after {timeout} s")

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call a service, reusing one client per service; an unanswered request is sent again (see
        ros/runtime.call_service), so use this only for services that are safe to call twice (all of ours are,
        except that each /sim/reset moves on to the next seed)."""
        key = (srv_type, name)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available after {timeout} s")
        reply = call_service(client, request, wait_until, timeout)
        if reply is None:
            raise TimeoutError(f"service {name} did not answer within {timeout:g} s")
        return reply

    def now_msg(self) -> Any:
        return self.node.get_clock().now().to_msg()

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                rclpy.shutdown(context=self.context)
        self._thread.join(timeout=2.0)
