"""The run report computes its numbers from a recording: checked on a synthetic run with known answers."""

from __future__ import annotations

import json
import statistics

import imageio_ffmpeg
import numpy as np
import pytest
from dreamzero_msgs.msg import ActionChunk, PolicyStatus
from PIL import Image as PILImage
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.runs.recording import McapWriter, read_messages
from dreamzero_ros.runs.report import (
    ReportError,
    _cdr_joint_state,
    image_to_rgb,
    summary,
    write_report,
    write_video,
)

# A run of the root namespace records the fully qualified names.
CHUNK_TOPIC, STATUS_TOPIC = "/dreamzero/action_chunk", "/dreamzero/status"
STITCHED_TOPIC, PREDICTED_VIDEO_TOPIC = "/dreamzero/stitched_image", "/dreamzero/predicted_video"

EMB = load_embodiment("franka_droid")  # forward_position commands at 15 Hz, 8 action joints
T0 = 1_700_000_000 * 10**9
RATE = EMB.control.rate_hz
LAG = 0.1  # s: the robot follows the command ramp this late
LATENCIES = [0.31, 0.12, 0.2]
CHUNK_TIMES = [0.4, 1.6, 2.8]
STITCHED_FPS, PREDICTED_FPS = 5.0, 2.5
START = np.linspace(-0.5, 0.5, len(EMB.action_joints))  # rad|m at t = 0
VELOCITY = np.linspace(0.2, -0.1, len(EMB.action_joints))  # per s
STITCHED_TIMES = np.arange(round(4.0 * STITCHED_FPS)) / STITCHED_FPS
PREDICTED_TIMES = 1.05 + np.arange(round(3.0 * PREDICTED_FPS)) / PREDICTED_FPS  # offset: no ties in "nearest"


def _predicted_rgb(k: int) -> tuple[int, int, int]:
    return 30, 30, 60 + 20 * k  # the blue level tells which predicted frame a video frame shows


def _ns(t: float) -> int:
    return T0 + round(t * 1e9)


def _image(h: int, w: int, rgb: tuple[int, int, int]) -> Image:
    return Image(height=h, width=w, encoding="rgb8", step=w * 3, data=np.tile(np.uint8(rgb), (h, w, 1)).tobytes())


def _status(node: str, holds: int, rejected: int, dropped: int, rate: float) -> PolicyStatus:
    return PolicyStatus(node=node, state="running", holds=holds, chunks_rejected=rejected, chunks_dropped=dropped,
                        control_rate=rate)


def _write_run(path, *, predicted: bool = True) -> dict[str, int]:
    """A 4 s run: 15 Hz ramp commands over [0.5, 3.5) s, /joint_states at 50 Hz lagging them, 3 chunks, frames."""
    counts: dict[str, int] = {}
    with McapWriter(path) as w:
        def put(topic, msg, t):
            w.write_message(topic, msg, _ns(t))
            counts[topic] = counts.get(topic, 0) + 1

        for k in range(round(3.0 * RATE)):
            t = 0.5 + k / RATE
            put(EMB.command.topic, Float64MultiArray(data=list(START + VELOCITY * t)), t)
        # Names shuffled and one extra joint: the report must map by name.
        order = list(reversed(EMB.action_joints)) + ["panda_finger_joint2"]
        for k in range(200):
            t = k / 50
            pos = dict(zip(EMB.action_joints, START + VELOCITY * (t - LAG), strict=True))
            put("/joint_states", JointState(name=order, position=[pos.get(n, 0.02) for n in order]), t)
        for i, (t, latency) in enumerate(zip(CHUNK_TIMES, LATENCIES, strict=True)):
            put(CHUNK_TOPIC, ActionChunk(chunk_id=i, inference_latency=latency, horizon=24, dt=1 / RATE), t)
        put(STATUS_TOPIC, _status("action_executor", 1, 0, 0, 10.0), 1.0)
        put(STATUS_TOPIC, _status("action_executor", 5, 1, 2, 14.9), 3.0)
        put(STATUS_TOPIC, _status("inference", 99, 99, 99, 0.5), 3.5)  # not the executor: ignored
        for t in STITCHED_TIMES:
            put(STITCHED_TOPIC, _image(352, 640, (200, 30, 30)), t)
        if predicted:
            for k, t in enumerate(PREDICTED_TIMES):
                put(PREDICTED_VIDEO_TOPIC, _image(176, 320, _predicted_rgb(k)), t)
        put("/camera/wrist/image_raw", _image(180, 320, (0, 0, 0)), 0.0)  # recorded but never decoded
    return counts


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "recording.mcap"
    counts = _write_run(path)
    return path, counts


def test_summary_numbers_match_the_synthetic_run(run):
    path, counts = run
    s = summary(path, EMB)
    assert s["duration_s"] == pytest.approx(199 / 50)  # first message at 0 s, last /joint_states at 3.98 s
    assert s["chunks"] == len(CHUNK_TIMES)
    assert s["latency_p50_s"] == pytest.approx(statistics.median(LATENCIES))
    ordered = sorted(LATENCIES)
    rank = 0.95 * (len(ordered) - 1)
    assert s["latency_p95_s"] == pytest.approx(ordered[1] + (rank - 1) * (ordered[2] - ordered[1]))
    assert s["commands"] == round(3.0 * RATE) and s["commands_unparsed"] == 0
    assert s["control_rate_hz"] == pytest.approx(RATE, rel=0.01) and s["command_gaps"] == 0
    assert s["period_p50_s"] == pytest.approx(1 / RATE, rel=1e-6)
    assert s["period_p99_s"] == pytest.approx(1 / RATE, rel=1e-6)
    assert (s["holds"], s["chunks_rejected"], s["chunks_dropped"]) == (5, 1, 2)
    assert s["executor_control_rate_hz"] == pytest.approx(14.9)
    assert s["message_counts"] == counts


def test_tracking_error_equals_the_offset_a_lagging_ramp_leaves(run):
    errors = summary(run[0], EMB)["tracking_error"]
    assert list(errors) == list(EMB.action_joints)
    for joint, v in zip(EMB.action_joints, VELOCITY, strict=True):
        assert errors[joint]["rms"] == pytest.approx(abs(v) * LAG, abs=1e-9), joint
        assert errors[joint]["max"] == pytest.approx(abs(v) * LAG, abs=1e-9), joint
        assert errors[joint]["samples"] == round(3.0 * RATE)


def test_write_report_produces_a_png_a_side_by_side_video_and_summary_json(run, tmp_path):
    path, _ = run
    result = write_report(path, EMB, tmp_path / "report")
    png = PILImage.open(tmp_path / "report" / "report.png")
    assert png.format == "PNG" and png.width >= 600 and png.height >= 400
    assert json.loads((tmp_path / "report" / "summary.json").read_text()) == result
    assert result["video"].endswith("frames.mp4")
    frames, _ = imageio_ffmpeg.count_frames_and_secs(result["video"])
    assert frames == result["video_frames"] == round(4.0 * STITCHED_FPS)
    reader = imageio_ffmpeg.read_frames(result["video"])
    meta = next(reader)
    assert meta["size"] == (1280, 352)  # stitched 640 + predicted (resized from 320) 640
    frames = [np.frombuffer(f, np.uint8).reshape(352, 1280, 3) for f in reader]
    nearest = [int(np.argmin(np.abs(PREDICTED_TIMES - t))) for t in STITCHED_TIMES]
    for i, (frame, k) in enumerate(zip(frames, nearest, strict=True)):
        assert np.abs(frame[200, 320].astype(int) - (200, 30, 30)).max() < 12, f"frame {i}: left is the input"
        assert np.abs(frame[200, 960].astype(int) - _predicted_rgb(k)).max() < 8, f"frame {i}: predicted #{k}"


def test_a_window_cuts_the_video_to_the_frames_logged_inside_it(run, tmp_path):
    path, _ = run
    # [1.0, 2.0) s holds stitched frames at 1.0, 1.2, ..., 1.8 (5 fps): five; each beside its nearest prediction
    # among those inside the window too (1.05, 1.45, 1.85).
    video, frames = write_video(path, EMB, tmp_path / "cut", window=(_ns(1.0), _ns(2.0)))
    assert frames == 5 and imageio_ffmpeg.count_frames_and_secs(str(video))[0] == 5
    reader = imageio_ffmpeg.read_frames(str(video))
    next(reader)
    inside = PREDICTED_TIMES[(PREDICTED_TIMES >= 1.0) & (PREDICTED_TIMES < 2.0)]
    for t, raw in zip((1.0, 1.2, 1.4, 1.6, 1.8), reader, strict=True):
        k = int(np.argmin(np.abs(PREDICTED_TIMES - inside[np.argmin(np.abs(inside - t))])))
        frame = np.frombuffer(raw, np.uint8).reshape(352, 1280, 3)
        assert np.abs(frame[200, 960].astype(int) - _predicted_rgb(k)).max() < 8, f"t={t}: predicted #{k}"
    assert write_video(path, EMB, tmp_path / "empty", window=(_ns(10.0), _ns(11.0))) == (None, 0)


def test_without_predicted_video_the_right_panel_is_a_placeholder(tmp_path):
    path = tmp_path / "no_pred.mcap"
    _write_run(path, predicted=False)
    result = write_report(path, EMB, tmp_path / "out")
    reader = imageio_ffmpeg.read_frames(result["video"])
    next(reader)
    frame = np.frombuffer(next(iter(reader)), np.uint8).reshape(352, 1280, 3)
    right = frame[:, 640:].astype(int)
    assert abs(np.median(right) - 40) < 10, "dark grey placeholder panel"
    assert right.max() > 150, "with the light 'no predicted video' text on it"
    assert result["video_frames"] == round(4.0 * STITCHED_FPS)


def test_image_to_rgb_honours_step_padding_and_bgr_order():
    data = np.zeros((2, 8), np.uint8)  # 2x2 bgr8 with 2 bytes of padding per row
    data[:, :6] = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]
    img = image_to_rgb(Image(height=2, width=2, encoding="bgr8", step=8, data=data.tobytes()))
    assert img.tolist() == [[[3, 2, 1], [6, 5, 4]], [[9, 8, 7], [12, 11, 10]]]
    with pytest.raises(ReportError, match="encoding '16UC1' not supported"):
        image_to_rgb(Image(height=1, width=1, encoding="16UC1", step=2, data=b"\0\0"))


def _command(emb, values: np.ndarray):
    """The embodiment's command message for action-joint values (names reversed where the type carries them)."""
    names = list(reversed(emb.action_joints))
    by_name = dict(zip(emb.action_joints, values, strict=True))
    if emb.command.interface == "forward_position":
        return Float64MultiArray(data=list(values))
    if emb.command.interface == "joint_trajectory":
        return JointTrajectory(joint_names=names, points=[JointTrajectoryPoint(positions=[by_name[n] for n in names])])
    return JointState(name=names, position=[by_name[n] for n in names])


def _malformed_command(emb):
    """A command whose layout does not fit the action joints: counted as unparsed, never plotted."""
    n = len(emb.action_joints)
    if emb.command.interface == "forward_position":
        return Float64MultiArray(data=[1.0] * (n + 1))
    if emb.command.interface == "joint_trajectory":
        return JointTrajectory(joint_names=list(emb.action_joints), points=[])
    return JointState(name=list(emb.action_joints), position=[1.0])


@pytest.mark.parametrize("name", ["franka_droid", "agibot_g1", "yam"])
def test_every_command_interface_is_read_in_action_joint_order(name, tmp_path):
    emb = load_embodiment(name)
    n = len(emb.action_joints)
    offset = np.linspace(0.01, 0.08, n)
    path = tmp_path / "cmd.mcap"
    with McapWriter(path) as w:
        for k in range(20):
            t = k / emb.control.rate_hz
            target = np.full(n, 0.1 * k)
            w.write_message(emb.command.topic, _command(emb, target), _ns(t))
            w.write_message(emb.command.joint_states_topic,
                            JointState(name=list(emb.action_joints), position=list(target - offset)), _ns(t))
        w.write_message(emb.command.topic, _malformed_command(emb), _ns(2.0))
    s = summary(path, emb)
    assert s["commands"] == 20
    assert s["commands_unparsed"] == 1
    assert s["control_rate_hz"] == pytest.approx(emb.control.rate_hz, rel=1e-6)
    got = [s["tracking_error"][j]["max"] for j in emb.action_joints]
    assert got == pytest.approx(list(offset), abs=1e-9)


def test_the_control_rate_leaves_out_pauses_between_episodes_but_the_period_percentiles_keep_them(tmp_path):
    # Two episodes of 30 commands at 15 Hz with a 3 s reset between them (the executor disarmed): the loop ran
    # at 15 Hz, not at 59 / (2 x 29 / 15 + 3) = 8.6 Hz; the one pause is counted as a gap and is the longest period.
    path = tmp_path / "episodes.mcap"
    times = [k / RATE for k in range(30)] + [29 / RATE + 3.0 + k / RATE for k in range(30)]
    with McapWriter(path) as w:
        for t in times:
            w.write_message(EMB.command.topic, Float64MultiArray(data=list(START)), _ns(t))
    s = summary(path, EMB)
    assert s["commands"] == 60 and s["command_gaps"] == 1
    assert s["control_rate_hz"] == pytest.approx(RATE, rel=1e-6)
    assert s["period_p50_s"] == pytest.approx(1 / RATE, rel=1e-6)
    assert s["period_p99_s"] > 1 / RATE


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "wrist_camera_link"])
def test_fast_joint_state_parse_equals_the_schema_decoder(frame_id, tmp_path):
    msg = JointState(name=["j1", "joint_two", "x"], position=[0.5, -1.25, 3.0], velocity=[1.0, 2.0, 3.0])
    msg.header.frame_id = frame_id
    msg.header.stamp.sec = 7
    path = tmp_path / "js.mcap"
    with McapWriter(path) as w:
        w.write_message("/joint_states", msg, T0)
    (_, _, decoded), = read_messages(path)
    from rclpy.serialization import serialize_message

    names, positions = _cdr_joint_state(serialize_message(msg))
    assert names == tuple(decoded.name) and positions.tolist() == decoded.position


def test_without_a_usable_ffmpeg_the_video_falls_back_to_a_gif(run, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no ffmpeg binary")

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", broken)
    result = write_report(run[0], EMB, tmp_path / "gif")
    assert result["video"].endswith("frames.gif") and not (tmp_path / "gif" / "frames.mp4").exists()
    gif = PILImage.open(result["video"])
    assert gif.size == (1280, 352) and result["video_frames"] == len(STITCHED_TIMES)
    # Pillow merges identical consecutive frames into one longer frame, so check the play time instead.
    durations = []
    for k in range(gif.n_frames):
        gif.seek(k)
        durations.append(gif.info["duration"])
    assert sum(durations) == len(STITCHED_TIMES) * int(1000 / EMB.video.fps)
