"""Synthetic robot inputs for the inference node, published from a RosProbe (process tests, benchmarks).

`InputStreamer` publishes, on its own thread and at their rates, what the camera stitcher and the
robot would: stitched frames (rgb8 at the embodiment's frame size) on /dreamzero/stitched_image,
joint states by name on the embodiment's joint_states topic and, optionally, each camera's view at
its training resolution on /dreamzero/views/<camera> (what the stitcher's publish_views gives the
remote backend to send to the server). Every frame and camera image of one tick
carries the same stamp from the probe's clock. Tests switch streams on and off, change the joint
names or values, or age the frame stamps while it runs, and read back what was published.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from sensor_msgs.msg import Image, JointState

from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import STITCHED_TOPIC, view_topic
from dreamzero_ros.testing.probes import RosProbe, wait_until


def stamp_key(stamp: Any) -> tuple[int, int]:
    """(sec, nanosec) of a builtin_interfaces/Time, hashable and exact."""
    return int(stamp.sec), int(stamp.nanosec)


class InputStreamer:
    """Stitched frames at `frame_rate`, joint states at `state_rate` (Hz), camera images with the frames."""

    def __init__(self, probe: RosProbe, embodiment: EmbodimentConfig, *, frame_rate: float = 5.0,
                 state_rate: float = 30.0, cameras: bool = False) -> None:
        self.probe = probe
        self.embodiment = embodiment
        self.frame_period = 1.0 / frame_rate
        self.state_period = 1.0 / state_rate
        self.frame_pub = probe.publisher(Image, STITCHED_TOPIC, qos.FRAMES)
        self.state_pub = probe.publisher(JointState, embodiment.command.joint_states_topic, qos.JOINT_STATES)
        # As the camera_stitcher's publish_views does: each view at its source_size with the frame's stamp.
        self.camera_pubs = [(cam, probe.publisher(Image, view_topic(cam.name), qos.FRAMES))
                            for cam in embodiment.cameras] if cameras else []
        # Knobs a test may change while streaming (plain attribute writes are atomic).
        self.frames_on = True
        self.states_on = True
        self.frame_age = 0.0  # s subtracted from each frame's stamp (stale frames)
        self.state_names: list[str] = list(embodiment.state_joints)
        self.state: np.ndarray = np.zeros(len(embodiment.state_joints))
        # What was published: (monotonic time, stamp key) per frame, monotonic time per joint state.
        self._lock = threading.Lock()
        self._frames: list[tuple[float, tuple[int, int]]] = []
        self._states: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        h, w = embodiment.stitch.frame_size
        self._frame_pixels = [np.full((h, w, 3), v, dtype=np.uint8).tobytes() for v in (40, 90, 140, 190)]
        self._camera_pixels = {cam.name: np.full((*cam.source_size, 3), 100, dtype=np.uint8).tobytes()
                               for cam, _ in self.camera_pubs}

    def wait_for_subscribers(self, timeout: float = 60.0) -> None:
        """Block until the node subscribes to every stream (its start includes imports and the model)."""
        pubs = [self.frame_pub, self.state_pub, *(p for _, p in self.camera_pubs)]
        if not wait_until(lambda: all(p.get_subscription_count() >= 1 for p in pubs), timeout, 0.05):
            missing = [p.topic_name for p in pubs if p.get_subscription_count() < 1]
            raise TimeoutError(f"no subscriber on {missing} after {timeout} s")

    def start(self) -> InputStreamer:
        self._thread = threading.Thread(target=self._run, name="input-streamer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> InputStreamer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def frames(self) -> list[tuple[float, tuple[int, int]]]:
        with self._lock:
            return list(self._frames)

    @property
    def state_times(self) -> list[float]:
        with self._lock:
            return list(self._states)

    def frame_stamps(self) -> set[tuple[int, int]]:
        return {key for _, key in self.frames}

    def _run(self) -> None:
        next_frame = next_state = time.monotonic()
        k = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_state:
                next_state = max(next_state + self.state_period, now - self.state_period)
                if self.states_on:
                    self._publish_state()
            if now >= next_frame:
                next_frame = max(next_frame + self.frame_period, now - self.frame_period)
                if self.frames_on:
                    self._publish_frame(k)
                    k += 1
            self._stop.wait(max(0.0, min(next_frame, next_state) - time.monotonic()))

    def _publish_state(self) -> None:
        msg = JointState(name=list(self.state_names), position=[float(v) for v in self.state])
        msg.header.stamp = self.probe.now_msg()
        self.state_pub.publish(msg)
        with self._lock:
            self._states.append(time.monotonic())

    def _publish_frame(self, k: int) -> None:
        stamp = self.probe.now_msg()
        if self.frame_age:
            nanos = stamp.sec * 1_000_000_000 + stamp.nanosec - int(self.frame_age * 1e9)
            stamp.sec, stamp.nanosec = divmod(nanos, 1_000_000_000)
        for cam, pub in self.camera_pubs:
            h, w = cam.source_size
            img = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=self._camera_pixels[cam.name])
            img.header.stamp = stamp
            img.header.frame_id = cam.frame or cam.name
            pub.publish(img)
        h, w = self.embodiment.stitch.frame_size
        frame = Image(height=h, width=w, encoding="rgb8", step=w * 3,
                      data=self._frame_pixels[k % len(self._frame_pixels)])
        frame.header.stamp = stamp
        frame.header.frame_id = "stitched"
        self.frame_pub.publish(frame)
        with self._lock:
            self._frames.append((time.monotonic(), stamp_key(stamp)))
