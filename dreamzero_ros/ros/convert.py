"""Message <-> numpy conversion for the nodes (the only place that touches message fields).

Images go through core.image (decode/encode of the plain fields); this module adds the
sensor_msgs glue, DiagnosticStatus construction and `CameraViews`, the per-camera frame buffers
the inference node keeps for the remote wire protocol (the server stitches views itself). The views
come from the camera_stitcher (dreamzero/views/<camera>), already decoded, time-synced and at each
camera's training resolution, so no camera image is decoded or resized twice.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from dreamzero_ros.core.embodiment import CameraConfig, EmbodimentConfig
from dreamzero_ros.core.frame_window import FrameWindow
from dreamzero_ros.core.image import decode_compressed, decode_image, encode_image
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import view_topic
from dreamzero_ros.ros.runtime import seconds_to_stamp, stamp_to_seconds


def image_to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """RGB uint8 [H, W, 3] from an Image or CompressedImage; raises ImageDecodeError (ValueError)."""
    if isinstance(msg, CompressedImage):
        return decode_compressed(msg.format, msg.data)
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def rgb_to_image(frame: np.ndarray, stamp: float, frame_id: str = "") -> Image:
    """A sensor_msgs/Image rgb8 from an RGB uint8 [H, W, 3] array stamped at `stamp` (s)."""
    msg = Image()
    seconds_to_stamp(stamp, msg.header.stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding, msg.step, msg.data = encode_image(frame)
    return msg


def diagnostic_status(name: str, level: int, message: str, values: dict[str, Any]) -> DiagnosticStatus:
    """A DiagnosticStatus (level 0 OK, 1 WARN, 2 ERROR, 3 STALE) with key=value pairs."""
    status = DiagnosticStatus(name=name, message=message, hardware_id="dreamzero")
    status.level = bytes([level])
    status.values = [KeyValue(key=str(k), value=f"{v:.4g}" if isinstance(v, float) else str(v))
                     for k, v in values.items()]
    return status


class CameraViews:
    """Per-camera frame buffers at each camera's training resolution (remote backend input), filled from
    the camera_stitcher's view topics (its `publish_views`), stamped like the stitched frames."""

    def __init__(self, node: Node, embodiment: EmbodimentConfig, *, history: int = 8) -> None:
        self.embodiment = embodiment
        self._lock = threading.Lock()
        self._window = FrameWindow(embodiment.camera_names, history)
        self._taken_until = -float("inf")
        self.errors = 0
        self._node = node
        for cam in embodiment.cameras:
            node.create_subscription(Image, view_topic(cam.name), lambda m, c=cam: self._on_image(c, m), qos.FRAMES)

    def _on_image(self, cam: CameraConfig, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg)
            if rgb.shape[:2] != tuple(cam.source_size):
                raise ValueError(f"expected a view at the camera's source_size {list(cam.source_size)}, "
                                 f"got {list(rgb.shape[:2])}")
        except ValueError as exc:
            self.errors += 1
            self._node.get_logger().warning(f"view {cam.name} ({view_topic(cam.name)}): {exc}",
                                            throttle_duration_sec=5.0)
            return
        with self._lock:
            self._window.push(cam.name, rgb, stamp_to_seconds(msg.header.stamp))

    def blocker(self, now: float, max_age: float) -> str:
        with self._lock:
            for name in self._window.names:
                newest = self._window.newest_stamp(name)
                if newest is None:
                    return f"no image from camera {name}"
                age = now - newest
                if age > max_age:
                    return f"camera {name} is stale ({age:.2f} s old)"
        return ""

    def take(self, stamp: float) -> dict[str, np.ndarray]:
        """Frames [T, h, w, 3] per camera observed since the last take up to `stamp` (at least the newest)."""
        with self._lock:
            out = self._window.since(self._taken_until, stamp + 1e-6)
            self._taken_until = stamp
        return out
