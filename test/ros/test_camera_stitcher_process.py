"""The camera_stitcher node as a real process: synthetic cameras in from the probe, the stitched frame out.

Every expected frame is computed in the test process with model.stitching.stitch_views on the very views
that were published, so "pixel-exact" means the node adds nothing of its own between the wire and
the model's layout; the expected stamp is the header stamp the probe gave that set of views.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image

from dreamzero_ros.core.embodiment import EmbodimentConfig, config_dir, load_embodiment
from dreamzero_ros.core.stitch import black_view
from dreamzero_ros.model.stitching import stitch_views
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import STITCHED_TOPIC, view_topic
from dreamzero_ros.testing.probes import wait_until

MODULE = "dreamzero_ros.nodes.camera_stitcher_node"
DIAG_NAME = "dreamzero: camera_stitcher"
SET_PERIOD = 0.1  # s between published sets of views (10 Hz cameras)


def _views(emb: EmbodimentConfig, index: int) -> dict[str, np.ndarray]:
    """Distinct noise per camera and per set (values 1..255, so a black tile can only come from the node)."""
    rng = np.random.default_rng(1000 + index)
    return {cam.name: rng.integers(1, 256, size=(*cam.source_size, 3), dtype=np.uint8) for cam in emb.cameras}


def _raw(rgb: np.ndarray, stamp, encoding: str = "rgb8") -> Image:
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3,
                data=np.ascontiguousarray(pixels).tobytes())
    msg.header.stamp = stamp
    return msg


def _png(rgb: np.ndarray, stamp) -> CompressedImage:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format="png", data=data.tobytes())
    msg.header.stamp = stamp
    return msg


def _decode(msg: Image) -> np.ndarray:
    assert msg.encoding == "rgb8" and msg.step == msg.width * 3
    return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width, 3)


def _key(stamp) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


class Cameras:
    """The embodiment's camera topics published from the probe; remembers every set it sent by stamp."""

    def __init__(self, probe, emb: EmbodimentConfig, *, encodings: dict[str, str] | None = None) -> None:
        self.probe, self.emb = probe, emb
        self.encodings = encodings or {}
        self.pubs = {
            cam.name: probe.publisher(CompressedImage if cam.compressed else Image, cam.topic, qos.SENSOR,
                                      wait_for_subscribers=1, timeout=30)
            for cam in emb.cameras
        }
        self.sent: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self.index = 0

    def publish_set(self, only: tuple[str, ...] | None = None) -> tuple[int, int]:
        """One set of views with one header stamp on every camera (or only the named ones)."""
        views = _views(self.emb, self.index)
        self.index += 1
        stamp = self.probe.now_msg()
        # Encode first, then publish back to back: a camera whose first image lags the others by a
        # publish tick would (rightly) be stitched black as never-seen at start-up.
        msgs = {
            cam.name: _png(views[cam.name], stamp) if cam.compressed
            else _raw(views[cam.name], stamp, self.encodings.get(cam.name, "rgb8"))
            for cam in self.emb.cameras if only is None or cam.name in only
        }
        for name, msg in msgs.items():
            self.pubs[name].publish(msg)
        self.sent[_key(stamp)] = views
        return _key(stamp)

    def stream_until(self, done, timeout: float, only: tuple[str, ...] | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publish_set(only)
            if done():
                return True
            time.sleep(SET_PERIOD)
        return done()


def _stitcher_status(diagnostics: list, since: float = 0.0) -> list:
    return [s for t, msg in list(diagnostics) if t >= since for s in msg.status if s.name == DIAG_NAME]


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _start(launcher, probe, embodiment: str):
    node = launcher.start("camera_stitcher", MODULE, {"embodiment": embodiment, "publish_rate": 10.0})
    frames = probe.collect(Image, STITCHED_TOPIC, qos.FRAMES)
    diagnostics = probe.collect(DiagnosticArray, "/diagnostics", qos.STATUS)
    probe.wait_for_publishers(STITCHED_TOPIC, timeout=30)
    return node, frames, diagnostics


def _warm_up(cams: Cameras, diagnostics: list, node) -> float:
    """Stream sets until /diagnostics reports every camera fresh; returns that moment (monotonic s).

    Before every camera has delivered once, the black policy rightly stitches the missing ones black
    (a camera whose first image is still being decoded counts as never seen), so exactness is
    checked on the frames after this point.
    """
    start = time.monotonic()
    fresh = lambda: any(_values(s)["stale_cameras"] == "" for s in _stitcher_status(diagnostics, start))  # noqa: E731
    assert cams.stream_until(fresh, timeout=20), node.output()
    return time.monotonic()


def _tiles(frame: np.ndarray, layout: str) -> list[np.ndarray]:
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    if layout == "droid":
        return [frame[h:, :w], frame[h:, w:], frame[:h]]
    return [frame[:h, :w], frame[h:, :w], frame[:h, w:]]


def _assert_frames_match_sent(frames: list, cams: Cameras, emb: EmbodimentConfig, minimum: int,
                              since: float = 0.0) -> None:
    """At least `minimum` frames received after `since` equal stitch_views of the set with their stamp.

    A frame that differs must be a stale-policy frame (a camera tile all black): on these 2 shared
    cores a loaded machine can delay a camera past its 0.5 s stale timeout, and the black policy is
    then the correct output (the stale test checks that frame exactly).
    """
    got = [(t, m) for t, m in list(frames) if t > since]
    stamps = [_key(msg.header.stamp) for _, msg in got]
    assert stamps == sorted(set(stamps)), "stitched stamps must strictly increase"
    exact = 0
    for _, msg in got:
        key = _key(msg.header.stamp)
        assert key in cams.sent, f"stitched stamp {key} is not the stamp of any published set"
        assert msg.header.frame_id == "dreamzero_stitched"
        frame = _decode(msg)
        if np.array_equal(frame, stitch_views(cams.sent[key], emb)):
            exact += 1
        else:
            assert any(not t.any() for t in _tiles(frame, emb.stitch.layout)), f"set {key}: wrong pixels"
    assert exact >= minimum, f"{exact} of {len(got)} stitched frames equal stitch_views of their set"


def test_droid_views_are_stitched_pixel_exact_with_the_synced_sets_stamp_and_bad_images_are_counted(
    launcher, probe
):
    emb = load_embodiment("franka_droid")
    node, frames, diagnostics = _start(launcher, probe, "franka_droid")
    # One camera sends bgr8: the node converts it, the stitched frame is the same.
    cams = Cameras(probe, emb, encodings={"exterior_2": "bgr8"})

    since = _warm_up(cams, diagnostics, node)
    assert cams.stream_until(lambda: len([t for t, _ in list(frames) if t > since]) >= 4, timeout=20), node.output()
    assert (frames[-1][1].height, frames[-1][1].width) == (352, 640)
    _assert_frames_match_sent(frames, cams, emb, minimum=3, since=since)

    # Bad images: a step shorter than a row on one camera, an unsupported encoding on another.
    bad_step = _raw(_views(emb, 0)["exterior_1"], probe.now_msg())
    bad_step.step = 100
    depth = Image(height=180, width=320, encoding="32FC1", step=320 * 4, data=bytes(180 * 320 * 4))
    bad_sent = time.monotonic()

    def counted() -> bool:
        last = _stitcher_status(diagnostics, bad_sent)[-1:]
        return bool(last) and all(int(_values(last[0])[f"{n}.rejected"]) >= 1 for n in ("exterior_1", "exterior_2"))

    # Bad images between good sets (best effort may lose one, so until both are counted); the node
    # keeps stitching the good sets and reports the bad ones per camera in /diagnostics.
    deadline = time.monotonic() + 20
    while not counted() and time.monotonic() < deadline:
        cams.pubs["exterior_1"].publish(bad_step)
        cams.pubs["exterior_2"].publish(depth)
        cams.publish_set()
        time.sleep(SET_PERIOD)
    assert counted(), node.output()
    after_bad = _warm_up(cams, diagnostics, node)
    assert cams.stream_until(lambda: len([t for t, _ in list(frames) if t > after_bad]) >= 3, timeout=20), (
        node.output()
    )
    assert node.running
    _assert_frames_match_sent(frames, cams, emb, minimum=2, since=bad_sent)
    values = _values(_stitcher_status(diagnostics)[-1])
    assert values["wrist.rejected"] == "0" and values["stale_cameras"] == ""
    log = node.output()
    assert "topic=/camera/exterior_1/image_raw image rejected" in log and "step must be >=" in log, log
    assert "topic=/camera/exterior_2/image_raw image rejected" in log and "unsupported encoding '32FC1'" in log, log


def _compressed_copy(name: str, directory: Path) -> Path:
    data = yaml.safe_load((config_dir() / f"{name}.yaml").read_text())
    for cam in data["cameras"]:
        cam["compressed"] = True
    path = directory / f"{name}_compressed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name,compressed", [("agibot_g1", False), ("yam", True)])
def test_a_2x2_embodiment_is_stitched_pixel_exact_from_480x640_images_or_png_compressed_ones(
    launcher, probe, tmp_path, name, compressed
):
    embodiment = str(_compressed_copy(name, tmp_path)) if compressed else name
    emb = load_embodiment(embodiment)
    assert emb.stitch.layout == "grid_2x2" and all(c.compressed == compressed for c in emb.cameras)
    node, frames, diagnostics = _start(launcher, probe, embodiment)
    cams = Cameras(probe, emb)
    since = _warm_up(cams, diagnostics, node)
    assert cams.stream_until(lambda: len([t for t, _ in list(frames) if t > since]) >= 3, timeout=20), node.output()
    _assert_frames_match_sent(frames, cams, emb, minimum=2, since=since)
    frame = _decode(frames[-1][1])
    assert not frame[176:, 320:].any(), "the bottom-right tile of the 2x2 layout is black"


def test_a_camera_that_stops_shows_black_in_its_tile_and_is_reported_stale_until_it_returns(launcher, probe):
    emb = load_embodiment("franka_droid")
    assert emb.stitch.stale_policy == "black"
    node, frames, diagnostics = _start(launcher, probe, "franka_droid")
    cams = Cameras(probe, emb)
    _warm_up(cams, diagnostics, node)

    stopped = time.monotonic()
    exteriors = ("exterior_1", "exterior_2")
    stale_frames = lambda: [m for t, m in list(frames) if t > stopped and not _decode(m)[:176].any()]  # noqa: E731
    stale_status = lambda: [s for s in _stitcher_status(diagnostics, stopped) if _values(s)["stale_cameras"] == "wrist"]  # noqa: E731
    assert cams.stream_until(lambda: len(stale_frames()) >= 2 and stale_status(), timeout=10, only=exteriors), (
        node.output()
    )
    # Every frame after the timeout has a black wrist tile (the top row); the exterior tiles are the
    # real views of a published set, so the frame equals stitch_views with a black wrist view.
    black = black_view(emb.camera("wrist"))
    matched = 0
    for msg in stale_frames():
        views = cams.sent[_key(msg.header.stamp)]
        expected = stitch_views({**{n: views[n] for n in exteriors}, "wrist": black}, emb)
        matched += np.array_equal(_decode(msg), expected)
    assert matched >= 1, "no stale frame equals the exterior views with a black wrist"
    status = stale_status()[-1]
    assert status.level == bytes([1]) and status.message == "stale cameras: wrist"
    assert _values(status)["policy"] == "black"
    assert "cameras stale=['wrist']" in node.output()

    # The camera comes back: synced sets with the real wrist view again, and diagnostics say ok.
    back = time.monotonic()
    fresh = lambda: [s for s in _stitcher_status(diagnostics, back + 1.0) if _values(s)["stale_cameras"] == ""]  # noqa: E731
    assert cams.stream_until(lambda: bool(fresh()) and any(t > back + 1.0 for t, _ in list(frames)), timeout=10), (
        node.output()
    )
    assert fresh()[-1].level == bytes([0])
    _assert_frames_match_sent(frames, cams, emb, minimum=1, since=back + 1.0)
    assert wait_until(lambda: "all cameras fresh again" in node.output(), 5), node.output()


def test_with_publish_views_each_cameras_view_goes_out_once_with_the_stitched_frames_stamp(launcher, probe):
    """The remote backend's per-camera input comes from the stitcher: each view at its source_size (these
    cameras already send that size, so the view must equal what was sent), stamped exactly like the
    stitched frame of the same set."""
    emb = load_embodiment("franka_droid")
    node = launcher.start("camera_stitcher", MODULE, {"embodiment": "franka_droid", "publish_rate": 10.0,
                                                      "publish_views": True})
    frames = probe.collect(Image, STITCHED_TOPIC, qos.FRAMES)
    views = {cam.name: probe.collect(Image, view_topic(cam.name), qos.FRAMES) for cam in emb.cameras}
    diagnostics = probe.collect(DiagnosticArray, "/diagnostics", qos.STATUS)
    for cam in emb.cameras:
        probe.wait_for_publishers(view_topic(cam.name), timeout=30)
    cams = Cameras(probe, emb)
    since = _warm_up(cams, diagnostics, node)
    assert cams.stream_until(lambda: len([t for t, _ in list(frames) if t > since]) >= 4, timeout=20), node.output()
    time.sleep(0.5)  # the views of the last frame are published right after it

    stitched = {_key(m.header.stamp): m for t, m in list(frames) if t > since}
    matched = 0
    for name, got in views.items():
        by_stamp = {_key(m.header.stamp): m for _, m in list(got)}
        for key, frame_msg in stitched.items():
            if frame_msg.header.frame_id != "dreamzero_stitched" or key not in by_stamp:
                continue  # a stale-policy frame (loaded machine) or a view lost on the way (best effort)
            view = by_stamp[key]
            assert view.header.frame_id == frame_msg.header.frame_id
            np.testing.assert_array_equal(_decode(view), cams.sent[key][name])
            matched += 1
    assert matched >= 3 * len(emb.cameras) - 2, f"only {matched} views matched a stitched frame"
