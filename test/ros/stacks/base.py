"""What every stand-in shares: a clock to stamp with, camera publishers, a command log."""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2
import numpy as np
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

from dreamzero_ros.testing import RosProbe


class StandIn(RosProbe):
    """A RosProbe with a stack clock: wall time, or a /clock it publishes itself (sim time)."""

    def __init__(self, name: str, *, sim_time_start: float | None = None) -> None:
        super().__init__(name)
        self.lock = threading.Lock()
        self._t0 = time.monotonic()
        self._sim_start = sim_time_start
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self._stop = threading.Event()
        if sim_time_start is not None:
            # Its own thread at 200 Hz, not an executor timer: a /clock that jumps by more than a control
            # period (the probe's executor is shared by every subscription here) makes ROS timers on sim
            # time skip that period, as they would on a simulator that stalls.
            self._clock_pub = self.node.create_publisher(Clock, "/clock", 10)
            threading.Thread(target=self._run_clock, daemon=True).start()

    def stack_time(self) -> float:
        """s: the stack's clock (sim time when it publishes /clock, else ROS wall time)."""
        if self._sim_start is None:
            return self.node.get_clock().now().nanoseconds * 1e-9
        return self._sim_start + time.monotonic() - self._t0

    def stamp(self, msg: Any) -> Any:
        t = self.stack_time()
        msg.header.stamp.sec = int(t)
        msg.header.stamp.nanosec = int((t - int(t)) * 1e9)
        return msg

    def _run_clock(self) -> None:
        while not self._stop.wait(0.005):
            msg = Clock()
            t = self.stack_time()
            msg.clock.sec, msg.clock.nanosec = int(t), int((t - int(t)) * 1e9)
            try:
                self._clock_pub.publish(msg)
            except Exception:  # noqa: BLE001 - the context was shut down under us at close()
                return

    def close(self) -> None:
        self._stop.set()
        super().close()

    def log(self, topic: str, msg: Any) -> None:
        with self.lock:
            self.received.setdefault(topic, []).append((time.monotonic(), msg))

    def messages(self, topic: str) -> list[tuple[float, Any]]:
        with self.lock:
            return list(self.received.get(topic, []))

    def cameras(self, topics: list[tuple[str, bool]], rate: float, qos: Any, size: tuple[int, int] = (120, 160)) -> None:
        """Publish a test pattern on each (topic, compressed) at `rate` Hz, all stamped alike."""
        h, w = size
        pattern = np.zeros((h, w, 3), np.uint8)
        pattern[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        pattern[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
        jpeg = cv2.imencode(".jpg", pattern[..., ::-1])[1].tobytes()
        pubs = [(self.node.create_publisher(CompressedImage if c else Image, t, qos), c) for t, c in topics]

        def publish() -> None:
            stamp = self.stamp(Image()).header.stamp
            for pub, compressed in pubs:
                if compressed:
                    msg = CompressedImage(format="jpeg", data=jpeg)
                else:
                    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w, data=pattern.tobytes())
                msg.header.stamp = stamp
                pub.publish(msg)

        self.node.create_timer(1.0 / rate, publish)
