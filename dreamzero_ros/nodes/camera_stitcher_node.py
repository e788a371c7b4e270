"""camera_stitcher node: camera topics -> one time-synced, cropped, tiled frame at the video rate.

A thin shell: image callbacks decode (core.image) and push into core.staleness.CameraGate (time
sync + stale-camera policy); a timer at the model's video rate asks the gate what to publish and
stitches it (core.stitch) into the layout the model was trained on. A bad image is counted and
logged with its topic, never fatal. A frame that carries a view filled by the stale policy (black
or held) names it in header.frame_id (`dreamzero_stitched;stale=wrist`), so the inference node
never mistakes it for a real observation.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import replace

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from dreamzero_ros.bringup import STITCHED_TOPIC
from dreamzero_ros.core.robot_profile import load_robot
from dreamzero_ros.core.staleness import CameraGate
from dreamzero_ros.core.stitch import stitch_views, stitched_frame_id
from dreamzero_ros.nodes import qos
from dreamzero_ros.nodes.common import Param, declare_parameters, run_node, stamp_to_seconds
from dreamzero_ros.nodes.convert import diagnostic_status, image_to_rgb, rgb_to_image

PARAMS = (
    Param("embodiment", "franka_droid", "embodiment name (config/<name>.yaml) or YAML path"),
    Param("robot", "", "robot profile (config/robots/<name>.yaml) or YAML path; empty = the embodiment's own wiring"),
    Param("publish_rate", 0.0, "Hz of stitched frames; 0 = the embodiment's video fps", minimum=0.0, maximum=120.0),
    Param("sync_slop", 0.0, "s, time-sync tolerance between views; 0 = the embodiment's", minimum=0.0),
    Param("sync_queue_size", 0, "images queued per view for time sync; 0 = the embodiment's", minimum=0),
    Param("stale_timeout", 0.0, "s without an image before a view is stale; 0 = the embodiment's", minimum=0.0),
    Param("stale_policy", "", "black | hold | stop; empty = the embodiment's", choices=("", "black", "hold", "stop")),
    Param("torch_threads", 1, "torch CPU threads for the resize", minimum=1, maximum=64),
)


class CameraStitcherNode(Node):
    def __init__(self) -> None:
        super().__init__("camera_stitcher")
        p = declare_parameters(self, PARAMS)
        import torch

        torch.set_num_threads(p["torch_threads"])
        self.profile = load_robot(p["robot"], p["embodiment"])
        embodiment = self.profile.embodiment
        # A parameter left at 0 / "" keeps the embodiment's value; anything else overrides it.
        overrides = {k: p[k] for k in ("sync_slop", "sync_queue_size", "stale_timeout", "stale_policy") if p[k]}
        self.embodiment = replace(embodiment, stitch=replace(embodiment.stitch, **overrides))
        self.gate = CameraGate.from_embodiment(self.embodiment)
        self._lock = threading.Lock()
        self.bad_images: dict[str, int] = {c.name: 0 for c in self.embodiment.cameras}
        self.received: dict[str, int] = {c.name: 0 for c in self.embodiment.cameras}
        self.published = 0
        self.last_reason = ""
        # One logger per camera: rclpy throttles per logger and call site, so with a shared logger one
        # bad camera's warnings would hide another's.
        self._camera_log = {c.name: self.get_logger().get_child(c.name) for c in self.embodiment.cameras}
        # Float seconds -> the camera's own header stamp: a float round trip of a ~1.8e9 s stamp moves
        # it by up to ~120 ns, and consumers match the stitched frame to camera frames by exact stamp.
        self._stamps: collections.OrderedDict[float, Time] = collections.OrderedDict()
        self._stamps_kept = 2 * len(self.embodiment.cameras) * max(1, self.embodiment.stitch.sync_queue_size)

        self.pub = self.create_publisher(Image, STITCHED_TOPIC, qos.FRAMES)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.STATUS)
        # Per the robot profile: each camera's topic, type (CompressedImage is decoded with cv2.imdecode) and QoS.
        for cam in self.profile.cameras:
            msg_type = CompressedImage if cam.compressed else Image
            self.create_subscription(msg_type, cam.topic, lambda m, c=cam: self._on_image(c, m), qos.from_spec(cam.qos))
        rate = p["publish_rate"] or self.embodiment.video.fps
        self.create_timer(1.0 / rate, self._publish)
        self.create_timer(1.0, self._diagnostics)
        self.get_logger().info(
            f"stitching cameras={[f'{c.name}@{c.topic}' for c in self.profile.cameras]} robot={self.profile.name} layout={self.embodiment.stitch.layout} "
            f"rate={rate:g}Hz stale_policy={self.embodiment.stitch.stale_policy}"
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, cam, msg) -> None:
        try:
            rgb = image_to_rgb(msg)
        except ValueError as exc:
            self.bad_images[cam.name] += 1
            self._camera_log[cam.name].warning(f"topic={cam.topic} image rejected: {exc}", throttle_duration_sec=5.0)
            return
        stamp = stamp_to_seconds(msg.header.stamp)
        with self._lock:
            self.received[cam.name] += 1
            self._stamps[stamp] = Time(sec=msg.header.stamp.sec, nanosec=msg.header.stamp.nanosec)
            self._stamps.move_to_end(stamp)
            while len(self._stamps) > self._stamps_kept:
                self._stamps.popitem(last=False)
            self.gate.push(cam.name, stamp, rgb, self._now())

    def _publish(self) -> None:
        with self._lock:
            decision = self.gate.tick(self._now())
            exact = self._stamps.get(decision.stamp) if decision.publish else None
        if decision.reason != self.last_reason:
            if decision.stale:
                self.get_logger().warning(f"cameras stale={list(decision.stale)}: {decision.reason}")
            elif self.last_reason and self.last_reason.startswith(("stale", "all cameras")):
                self.get_logger().info("all cameras fresh again")
            self.last_reason = decision.reason
        if not decision.publish:
            return
        try:
            frame = stitch_views(decision.views, self.embodiment)
        except ValueError as exc:
            self.get_logger().error(f"stitch failed: {exc}", throttle_duration_sec=5.0)
            return
        msg = rgb_to_image(frame, decision.stamp, stitched_frame_id(decision.stale))
        if exact is not None:
            msg.header.stamp = exact
        self.pub.publish(msg)
        self.published += 1

    def _diagnostics(self) -> None:
        with self._lock:
            stale = self.gate.stale(self._now())
            dropped = dict(self.gate.sync.dropped)
        level = 0 if not stale else (2 if len(stale) == len(self.embodiment.cameras) else 1)
        values = {"published": self.published, "stale_cameras": ",".join(stale), "policy":
                  self.embodiment.stitch.stale_policy}
        for name in self.embodiment.camera_names:
            values[f"{name}.received"] = self.received[name]
            values[f"{name}.rejected"] = self.bad_images[name]
            values[f"{name}.sync_dropped"] = dropped.get(name, 0)
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        text = f"stale cameras: {', '.join(stale)}" if stale else "ok"
        msg.status.append(diagnostic_status("dreamzero: camera_stitcher", level, text, values))
        self.diag_pub.publish(msg)


def main(args=None) -> None:
    run_node(CameraStitcherNode, args)


if __name__ == "__main__":
    main()
