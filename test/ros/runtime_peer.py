"""A peer process for test_runtime_process.py: a node under `run_node` whose third timer callback either
finds its context shut down mid-callback (`shutdown`: as rclpy's signal thread does on SIGINT, then it
publishes), fails just before the context goes down (`late_shutdown`), or fails with a bug of its own
(`bug`); or (`hang`) whose close() never returns, or (`stuck_teardown`) whose node destruction never does; or
(`stuck_spin`) whose third callback never returns, so that a stop signal cannot bring spin back."""

from __future__ import annotations

import sys
import threading
import time

from rclpy.node import Node
from std_msgs.msg import String

from dreamzero_ros.ros.runtime import run_node

MODE = sys.argv[1]


class Peer(Node):
    def __init__(self) -> None:
        super().__init__("runtime_peer")
        self.pub = self.create_publisher(String, "runtime_peer", 10)
        self.ticks = 0
        self.create_timer(0.05, self.tick)

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks == 3:
            print("runtime_peer ticking", flush=True)
        if self.ticks < 3 or MODE in ("hang", "stuck_teardown"):
            return
        if MODE == "stuck_spin":
            while True:
                time.sleep(0.1)
        if MODE == "bug":
            raise RuntimeError("runtime_peer: a bug in a callback")
        if MODE == "late_shutdown":  # the error surfaces before the signal thread has finished shutting down
            threading.Timer(0.3, self.context.shutdown).start()
            raise RuntimeError("runtime_peer: a take failing while the context goes down")
        # Shut down from another thread, as the SIGINT handler's thread does, while this callback runs.
        stopper = threading.Thread(target=self.context.shutdown)
        stopper.start()
        stopper.join()
        self.pub.publish(String(data="after shutdown"))  # Kilted's rclpy raises InvalidHandle here
        raise RuntimeError("runtime_peer: failing after the shutdown")  # where a distro's publish does not

    def close(self) -> None:
        print("runtime_peer closed", flush=True)
        if MODE == "hang":
            while True:
                time.sleep(0.1)

    def destroy_node(self) -> None:
        if MODE == "stuck_teardown":  # as rcl's node destruction once never returned under Fast DDS
            while True:
                time.sleep(0.1)
        super().destroy_node()


if __name__ == "__main__":
    run_node(Peer, sys.argv[2:])
