"""A peer process for test_runtime_process.py: a node under `run_node` whose third timer callback either
finds its context shut down mid-callback (`shutdown`: as rclpy's signal thread does on SIGINT, then it
publishes) or fails with a bug of its own (`bug`)."""

from __future__ import annotations

import sys
import threading

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
        if self.ticks < 3:
            return
        if MODE == "bug":
            raise RuntimeError("runtime_peer: a bug in a callback")
        # Shut down from another thread, as the SIGINT handler's thread does, while this callback runs.
        stopper = threading.Thread(target=self.context.shutdown)
        stopper.start()
        stopper.join()
        self.pub.publish(String(data="after shutdown"))  # Kilted's rclpy raises InvalidHandle here
        raise RuntimeError("runtime_peer: failing after the shutdown")  # where a distro's publish does not


if __name__ == "__main__":
    run_node(Peer, sys.argv[2:])
