"""Run report from a recorder MCAP: summary numbers, a PNG of plots and a video of input vs predicted frames.

This module owns what a closed-loop run is judged by, computed from what the recorder wrote (receive
times, i.e. MCAP log_time) and the embodiment config:
- commanded vs measured joint trajectories per action joint, with chunk arrivals marked;
- inference latency (ActionChunk.inference_latency) and the achieved control period/rate;
- tracking error |commanded - measured| with /joint_states interpolated to each command's time;
- the executor's last PolicyStatus counters (holds, rejected and dropped chunks);
- a video of /dreamzero/stitched_image beside the nearest /dreamzero/predicted_video frame;
- PSNR of predicted frames vs the real frames of the times they stand for (`prediction_psnr`, for eval).

Only the topics a part needs are decoded (through the stored schemas, as Foxglove does); the camera
topics are never decoded. `write_report` writes report.png, frames.mp4 (frames.gif if ffmpeg is
unusable) and summary.json into a folder.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig, load_embodiment
from dreamzero_ros.ros.names import CHUNK_TOPIC as _CHUNK
from dreamzero_ros.ros.names import PREDICTED_VIDEO_TOPIC as _VIDEO
from dreamzero_ros.ros.names import STATUS_TOPIC as _STATUS
from dreamzero_ros.ros.names import STITCHED_TOPIC as _STITCHED
from dreamzero_ros.ros.names import resolve
from dreamzero_ros.runs.recording import RecordingError, topic_counts

EXECUTOR_NODE = "action_executor"
NO_PREDICTION_TEXT = "no predicted video"
# A recording holds fully qualified names; the report reads a run of the root namespace.
CHUNK_TOPIC, PREDICTED_VIDEO_TOPIC = resolve(_CHUNK), resolve(_VIDEO)
STATUS_TOPIC, STITCHED_TOPIC = resolve(_STATUS), resolve(_STITCHED)

GAP_PERIODS = 5  # control periods without a command that count as a pause in commanding, not a slow tick


class ReportError(ValueError):
    """A recording cannot be reported on; the message names the file, topic and what was wrong."""


@dataclass
class RunData:
    """The decoded, time-aligned series of one run; times in s from the first recorded message."""

    t0_ns: int
    duration_s: float
    joints: tuple[str, ...]  # action joints, the column order of `command` and `measured`
    command_t: np.ndarray  # [N] s
    command: np.ndarray  # [N, J] rad|m, NaN where a command did not name the joint
    commands_unparsed: int  # command messages whose layout did not match the action joints
    measured_t: np.ndarray  # [M] s
    measured: np.ndarray  # [M, J], NaN where /joint_states did not name the joint
    chunk_t: np.ndarray  # [C] s, receive times of /dreamzero/action_chunk
    latency: np.ndarray  # [C] s
    executor_status: dict[str, Any] | None  # fields of the last PolicyStatus from the executor
    counts: dict[str, int]


def _embodiment(embodiment: EmbodimentConfig | str | os.PathLike) -> EmbodimentConfig:
    return embodiment if isinstance(embodiment, EmbodimentConfig) else load_embodiment(embodiment)


def _command_row(msg: Any, interface: str, index: dict[str, int], n: int) -> np.ndarray | None:
    """One command message as a [J] row in action-joint order, or None if its layout does not fit."""
    row = np.full(n, np.nan)
    if interface == "forward_position":
        if len(msg.data) != n:
            return None
        row[:] = msg.data
        return row
    if interface == "joint_trajectory":
        if not msg.points:
            return None
        names, values = msg.joint_names, msg.points[0].positions
    else:  # joint_state
        names, values = msg.name, msg.position
    if len(names) != len(values):
        return None
    for name, value in zip(names, values, strict=True):
        k = index.get(name)
        if k is not None:
            row[k] = value
    return row


def _cdr_joint_state(data: bytes) -> tuple[tuple[str, ...], np.ndarray] | None:
    """(name, position) of a little-endian XCDR1 sensor_msgs/JointState, skipping velocity and effort.

    /joint_states is the densest topic (up to 1 kHz on a Franka): the generic schema decoder reads
    every float of every array one struct call at a time, ~0.3 ms a message. None for any other
    encapsulation, where the caller falls back to the schema decoder.
    """
    if len(data) < 4 or data[:2] != b"\x00\x01":
        return None
    body = memoryview(data)[4:]
    pos = 8  # header.stamp: int32 sec, uint32 nanosec

    def u32() -> int:
        nonlocal pos
        pos = (pos + 3) & ~3
        value = int.from_bytes(body[pos:pos + 4], "little")
        pos += 4
        return value

    frame_id_len = u32()  # includes the NUL
    pos += frame_id_len
    names = []
    for _ in range(u32()):
        n = u32()
        names.append(bytes(body[pos:pos + n - 1]).decode())
        pos += n
    count = u32()
    pos = (pos + 7) & ~7  # float64 alignment, relative to the CDR body
    if pos + 8 * count > len(body):
        return None
    return tuple(names), np.frombuffer(body, dtype="<f8", count=count, offset=pos)


def _iter_decoded(path: str | Path, topics: tuple[str, ...], joint_states_topic: str,
                  window: tuple[int, int] | None = None) -> Iterator[tuple[str, int, Any]]:
    """(topic, log_time_ns, message) in log-time order; /joint_states as (names, positions) when fast-parseable.

    window: (start, end) log time ns, end exclusive: only the messages in it (the index skips the rest).
    """
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    factory = DecoderFactory()
    with open(path, "rb") as stream:
        reader = make_reader(stream)
        if window is None:
            messages = reader.iter_messages(topics=list(topics))
        else:
            try:  # mcap >= 1.3 names the bounds; older releases only know start_time/end_time (same meaning)
                messages = reader.iter_messages(topics=list(topics), starting_at=window[0], ending_before=window[1])
            except TypeError:
                messages = reader.iter_messages(topics=list(topics), start_time=window[0], end_time=window[1])
        for schema, channel, message in messages:
            if channel.topic == joint_states_topic and schema is not None and schema.name.endswith("/JointState"):
                fast = _cdr_joint_state(message.data)
                if fast is not None:
                    yield channel.topic, message.log_time, fast
                    continue
            decoder = factory.decoder_for(channel.message_encoding, schema)
            if decoder is None:
                raise ReportError(f"{path}: topic {channel.topic} has no ros2msg/cdr schema to decode it with")
            yield channel.topic, message.log_time, decoder(message.data)


class _RunCollector:
    """Accumulates the command, joint-state, chunk and status series of one pass over a recording."""

    def __init__(self, emb: EmbodimentConfig, counts: dict[str, int]) -> None:
        self.emb = emb
        self.counts = counts
        self.joints = emb.action_joints
        self.index = {name: k for k, name in enumerate(self.joints)}
        self.topics = (emb.command.topic, emb.command.joint_states_topic, CHUNK_TOPIC, STATUS_TOPIC)
        self.cmd_t: list[int] = []
        self.cmd: list[np.ndarray] = []
        self.meas_t: list[int] = []
        self.meas: list[np.ndarray] = []
        self.chunk_t: list[int] = []
        self.latency: list[float] = []
        self.unparsed = 0
        self.status: dict[str, Any] | None = None
        self._column_cache: dict[tuple[tuple[str, ...], int], tuple[np.ndarray, np.ndarray]] = {}

    def add(self, topic: str, t_ns: int, msg: Any) -> None:
        if topic == self.emb.command.topic:
            row = _command_row(msg, self.emb.command.interface, self.index, len(self.joints))
            if row is None:
                self.unparsed += 1  # reported in the summary as commands_unparsed
                return
            self.cmd_t.append(t_ns)
            self.cmd.append(row)
        elif topic == self.emb.command.joint_states_topic:
            names, positions = msg if isinstance(msg, tuple) else (tuple(msg.name), np.asarray(msg.position))
            src, dst = self._columns(names, len(positions))
            row = np.full(len(self.joints), np.nan)
            row[dst] = positions[src]
            self.meas_t.append(t_ns)
            self.meas.append(row)
        elif topic == CHUNK_TOPIC:
            self.chunk_t.append(t_ns)
            self.latency.append(msg.inference_latency)
        elif topic == STATUS_TOPIC and msg.node == EXECUTOR_NODE:
            self.status = {"state": msg.state, "holds": int(msg.holds), "chunks_rejected": int(msg.chunks_rejected),
                           "chunks_dropped": int(msg.chunks_dropped), "control_rate": float(msg.control_rate)}

    def _columns(self, names: tuple[str, ...], n_positions: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, destination) column indices of the action joints in a JointState with these names."""
        key = (names, n_positions)
        cols = self._column_cache.get(key)
        if cols is None:
            pairs = [(i, self.index[n]) for i, n in enumerate(names[:n_positions]) if n in self.index]
            cols = (np.array([p[0] for p in pairs], dtype=np.intp), np.array([p[1] for p in pairs], dtype=np.intp))
            self._column_cache[key] = cols
        return cols

    def result(self, start_ns: int, end_ns: int) -> RunData:
        def seconds(values: list[int]) -> np.ndarray:
            return (np.asarray(values, dtype=np.int64) - start_ns) * 1e-9

        def matrix(rows: list[np.ndarray]) -> np.ndarray:
            return np.vstack(rows) if rows else np.zeros((0, len(self.joints)))

        return RunData(
            t0_ns=start_ns, duration_s=(end_ns - start_ns) * 1e-9, joints=self.joints,
            command_t=seconds(self.cmd_t), command=matrix(self.cmd), commands_unparsed=self.unparsed,
            measured_t=seconds(self.meas_t), measured=matrix(self.meas),
            chunk_t=seconds(self.chunk_t), latency=np.asarray(self.latency, dtype=np.float64),
            executor_status=self.status, counts=self.counts,
        )


def load_run(path: str | Path, embodiment: EmbodimentConfig | str) -> RunData:
    """Decode the command, joint-state, chunk and status topics of a recording (never the images)."""
    emb = _embodiment(embodiment)
    start_ns, end_ns = _time_range(path)
    collector = _RunCollector(emb, topic_counts(path))
    for topic, t_ns, msg in _iter_decoded(path, collector.topics, emb.command.joint_states_topic):
        collector.add(topic, t_ns, msg)
    return collector.result(start_ns, end_ns)


def _time_range(path: str | Path) -> tuple[int, int]:
    from mcap.reader import make_reader

    with open(path, "rb") as stream:
        summary = make_reader(stream).get_summary()
    if summary is None or summary.statistics is None or summary.statistics.message_count == 0:
        raise ReportError(f"{path}: no finished recording with messages (no summary statistics)")
    return summary.statistics.message_start_time, summary.statistics.message_end_time


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _num(value: float | None) -> float | None:
    """JSON-safe float: None for missing or non-finite values."""
    return None if value is None or not math.isfinite(value) else float(value)


def tracking_error(run: RunData) -> dict[str, dict[str, float | None]]:
    """Per action joint: RMS and max |commanded - measured| (rad|m), measured interpolated at command times.

    Only commands inside the span of /joint_states count (no extrapolation).
    """
    out: dict[str, dict[str, float | None]] = {}
    for k, joint in enumerate(run.joints):
        c_ok = np.isfinite(run.command[:, k]) if len(run.command) else np.zeros(0, bool)
        m_ok = np.isfinite(run.measured[:, k]) if len(run.measured) else np.zeros(0, bool)
        mt, mv = run.measured_t[m_ok], run.measured[m_ok, k]
        ct, cv = run.command_t[c_ok], run.command[c_ok, k]
        if len(mt) < 2 or len(ct) == 0:
            out[joint] = {"rms": None, "max": None, "samples": 0}
            continue
        inside = (ct >= mt[0]) & (ct <= mt[-1])
        err = cv[inside] - np.interp(ct[inside], mt, mv)
        if len(err) == 0:
            out[joint] = {"rms": None, "max": None, "samples": 0}
            continue
        out[joint] = {"rms": float(np.sqrt(np.mean(err**2))), "max": float(np.max(np.abs(err))), "samples": len(err)}
    return out


def summarize(run: RunData, embodiment: EmbodimentConfig) -> dict[str, Any]:
    """The summary dict of an already loaded run (see `summary`)."""
    periods = np.diff(run.command_t)
    # The rate while commanding: a pause of more than GAP_PERIODS control periods is the executor disarmed
    # (between episodes, before arming), not a slow loop. Such gaps are counted apart; the period percentiles
    # still see every period, so a real stall shows there.
    gap = periods > GAP_PERIODS * embodiment.control.dt
    active = periods[~gap]
    status = run.executor_status or {}
    return {
        "embodiment": embodiment.name,
        "duration_s": _num(run.duration_s),
        "chunks": len(run.chunk_t),
        "latency_p50_s": _num(float(np.percentile(run.latency, 50))) if len(run.latency) else None,
        "latency_p95_s": _num(float(np.percentile(run.latency, 95))) if len(run.latency) else None,
        "latency_max_s": _num(float(run.latency.max())) if len(run.latency) else None,
        "commands": len(run.command_t),
        "commands_unparsed": run.commands_unparsed,
        "control_rate_target_hz": embodiment.control.rate_hz,
        "control_rate_hz": _num(len(active) / float(active.sum())) if active.sum() > 0 else None,
        "command_gaps": int(gap.sum()),
        "period_p50_s": _num(float(np.percentile(periods, 50))) if len(periods) else None,
        "period_p99_s": _num(float(np.percentile(periods, 99))) if len(periods) else None,
        "executor_state": status.get("state"),
        "holds": status.get("holds"),
        "chunks_rejected": status.get("chunks_rejected"),
        "chunks_dropped": status.get("chunks_dropped"),
        "executor_control_rate_hz": _num(status.get("control_rate")),
        "tracking_error": tracking_error(run),
        "message_counts": dict(sorted(run.counts.items())),
    }


def summary(path: str | Path, embodiment: EmbodimentConfig | str) -> dict[str, Any]:
    """Duration, chunks, latency p50/p95 (s), control rate (Hz) and period p50/p99 (s), executor holds and
    rejected/dropped chunks, tracking error per joint and message counts per topic; JSON-serializable."""
    emb = _embodiment(embodiment)
    return summarize(load_run(path, emb), emb)


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def plot_report(run: RunData, embodiment: EmbodimentConfig, out_png: str | Path) -> Path:
    """Joint trajectories (commanded vs measured, chunk arrivals dashed) + latency and period histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(run.joints)
    ncols = min(4, max(1, n))
    nrows = math.ceil(n / ncols)
    width, height = 4.2 * ncols, 2.3 * nrows + 3.2  # inches
    fig = plt.figure(figsize=(width, height), dpi=80)
    # Fixed margins (in inches) instead of constrained layout, which measured 1.5 s of 3.5 s for 20 joints.
    grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[1.0] * nrows + [1.4], hspace=0.45, wspace=0.22,
                            left=0.5 / width, right=1 - 0.15 / width, top=1 - 0.8 / height, bottom=0.5 / height)
    for k, joint in enumerate(run.joints):
        ax = fig.add_subplot(grid[k // ncols, k % ncols])
        if len(run.chunk_t):
            # One collection per axis instead of one line per chunk: a 60 s run has ~40-100 chunks.
            ax.vlines(run.chunk_t, 0, 1, transform=ax.get_xaxis_transform(), colors="0.6", linestyles="--",
                      linewidth=0.7, label="chunk")
        if len(run.measured_t):
            ax.plot(run.measured_t, run.measured[:, k], color="tab:blue", linewidth=1.0, label="measured")
        if len(run.command_t):
            ax.step(run.command_t, run.command[:, k], where="post", color="tab:orange", linewidth=1.0,
                    label="commanded")
        ax.set_title(joint, fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7, loc="best")
    bottom = grid[nrows, :].subgridspec(1, 2, wspace=0.12)
    ax = fig.add_subplot(bottom[0, 0])
    if len(run.latency):
        ax.hist(run.latency * 1e3, bins=min(40, max(5, len(run.latency))), color="tab:green")
    ax.set_title(f"inference latency (ms), {len(run.latency)} chunks", fontsize=9)
    ax.set_xlabel("ms", fontsize=8)
    ax = fig.add_subplot(bottom[0, 1])
    periods = np.diff(run.command_t) * 1e3
    target = 1e3 / embodiment.control.rate_hz
    if len(periods):
        # The range always spans the target, so a perfectly steady run still shows a readable axis.
        lo, hi = min(periods.min(), target), max(periods.max(), target)
        pad = 0.1 * target
        ax.hist(periods, bins=60, range=(max(0.0, lo - pad), hi + pad), color="tab:purple")
    ax.axvline(target, color="k", linestyle="--", label="target")
    ax.set_title(f"control period (ms), target {embodiment.control.rate_hz:g} Hz", fontsize=9)
    ax.set_xlabel("ms", fontsize=8)
    ax.legend(fontsize=7)
    fig.suptitle(f"{embodiment.name}: {run.duration_s:.1f} s, {len(run.chunk_t)} chunks", fontsize=11)
    out = Path(out_png)
    fig.savefig(out)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------------------------
# Video: stitched input beside the model's predicted frame
# --------------------------------------------------------------------------------------------


def image_to_rgb(msg: Any) -> np.ndarray:
    """A decoded sensor_msgs/Image as [H, W, 3] uint8 RGB (rgb8, bgr8, rgba8, bgra8, mono8)."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise ReportError(f"image encoding {msg.encoding!r} not supported; expected one of rgb8, bgr8, rgba8, "
                          "bgra8, mono8")
    h, w, step = msg.height, msg.width, msg.step
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if len(buf) < h * step or step < w * channels:
        raise ReportError(f"image {w}x{h} {msg.encoding}: {len(buf)} bytes with step {step} is too short")
    img = buf[: h * step].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if msg.encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    if msg.encoding.startswith("bgr"):
        return img[:, :, 2::-1]
    return img[:, :, :3]


def _resize_nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    rows = (np.arange(h) * img.shape[0] // h).astype(np.intp)
    cols = (np.arange(w) * img.shape[1] // w).astype(np.intp)
    return img[rows][:, cols]


def _label(text: str) -> np.ndarray:
    """A small white-on-black text patch, drawn once and pasted into every frame."""
    from PIL import Image, ImageDraw

    pil = Image.new("RGB", (8 + 7 * len(text), 16), (0, 0, 0))
    ImageDraw.Draw(pil).text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(pil)


def _paste(img: np.ndarray, patch: np.ndarray) -> np.ndarray:
    h, w = min(patch.shape[0], img.shape[0]), min(patch.shape[1], img.shape[1])
    img[:h, :w] = patch[:h, :w]
    return img


def _placeholder(h: int, w: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.new("RGB", (w, h), (40, 40, 40))
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=max(12, h // 12))
    box = draw.textbbox((0, 0), NO_PREDICTION_TEXT, font=font)
    draw.text(((w - box[2]) // 2, (h - box[3]) // 2), NO_PREDICTION_TEXT, fill=(220, 220, 220), font=font)
    return np.asarray(pil)


class _VideoSink:
    """MP4 through imageio-ffmpeg's bundled ffmpeg (works offline); GIF through Pillow if that fails."""

    def __init__(self, out_dir: Path, size: tuple[int, int], fps: float) -> None:
        self.frames = 0
        self._fps = fps
        self._gif_frames: list[Any] = []
        self._writer = None
        self.path = out_dir / "frames.mp4"
        try:
            import imageio_ffmpeg

            self._writer = imageio_ffmpeg.write_frames(
                str(self.path), size, fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=16, quality=None,
                ffmpeg_log_level="error", output_params=["-preset", "ultrafast", "-crf", "23"])
            self._writer.send(None)
        except Exception:  # noqa: BLE001 - no usable ffmpeg: the GIF below is the documented fallback
            self._writer = None
            self.path.unlink(missing_ok=True)
            self.path = out_dir / "frames.gif"

    def add(self, frame: np.ndarray) -> None:
        if self._writer is not None:
            self._writer.send(np.ascontiguousarray(frame))
        else:
            from PIL import Image

            self._gif_frames.append(Image.fromarray(frame))
        self.frames += 1

    def close(self) -> Path:
        if self._writer is not None:
            self._writer.close()
        elif self._gif_frames:
            first, *rest = self._gif_frames
            first.save(self.path, save_all=True, append_images=rest, duration=int(1000 / self._fps), loop=0)
        return self.path


class _FramePairer:
    """Each stitched frame beside the predicted frame nearest in receive time, fed in time order.

    A stitched frame waits only until the next predicted frame arrives (the nearest may be the
    later one), so memory holds the frames between two predictions, not the run; once every
    predicted frame has been seen (`n_predicted`, from the summary) frames go straight out.
    """

    topics = (STITCHED_TOPIC, PREDICTED_VIDEO_TOPIC)

    def __init__(self, out_dir: Path, fps: float, n_predicted: int) -> None:
        self.out_dir, self.fps, self.n_predicted = out_dir, fps, n_predicted
        self.sink: _VideoSink | None = None
        self._prev: tuple[int, np.ndarray] | None = None  # (t_ns, predicted frame already at stitched size)
        self._pending: list[tuple[int, np.ndarray]] = []
        self._seen = 0
        self._size: tuple[int, int] | None = None  # (H, W) of the stitched frames
        self._placeholder: np.ndarray | None = None
        self._input_label, self._pred_label = _label("input"), _label("predicted")

    def add(self, topic: str, t_ns: int, msg: Any) -> None:
        img = image_to_rgb(msg)
        if topic == STITCHED_TOPIC and self._size is None:
            self._size = img.shape[:2]
            if self._prev is not None:  # a prediction came before the first input frame
                self._prev = (self._prev[0], self._fit(self._prev[1]))
        if topic == PREDICTED_VIDEO_TOPIC:
            self._seen += 1
            pred = self._fit(img) if self._size is not None else img  # fitted once the input size is known
            for ts, stitched in self._pending:
                self._emit(ts, stitched, (t_ns, pred))
            self._pending.clear()
            self._prev = (t_ns, pred)
        elif self._seen < self.n_predicted:
            self._pending.append((t_ns, img))
        else:
            self._emit(t_ns, img, None)

    def _fit(self, pred: np.ndarray) -> np.ndarray:
        assert self._size is not None
        return _paste(_resize_nearest(pred, *self._size).copy(), self._pred_label)

    def _emit(self, t_ns: int, stitched: np.ndarray, nxt: tuple[int, np.ndarray] | None) -> None:
        h, w = stitched.shape[:2]
        if (h, w) != self._size:
            raise ReportError(f"{STITCHED_TOPIC}: frame size changed from {self._size} to {(h, w)} mid-run")
        if self.sink is None:
            self.sink = _VideoSink(self.out_dir, (2 * w, h), self.fps)
        options = [p for p in (self._prev, nxt) if p is not None]
        if options:
            right = min(options, key=lambda p: abs(p[0] - t_ns))[1]
        else:
            if self._placeholder is None:
                self._placeholder = _placeholder(h, w)
            right = self._placeholder
        left = _paste(np.array(stitched), self._input_label)
        self.sink.add(np.concatenate([left, right], axis=1))

    def close(self) -> tuple[Path | None, int]:
        for ts, stitched in self._pending:
            self._emit(ts, stitched, None)
        self._pending.clear()
        if self.sink is None:
            return None, 0
        return self.sink.close(), self.sink.frames


def write_video(path: str | Path, embodiment: EmbodimentConfig | str, out_dir: str | Path,
                window: tuple[int, int] | None = None) -> tuple[Path | None, int]:
    """frames.mp4 (or .gif) of the stitched input | predicted frame at the model's video fps; (None, 0) if no frames.

    window: (start, end) log time ns (end exclusive) to cut one part of the run, e.g. one evaluation episode.
    """
    emb = _embodiment(embodiment)
    counts = topic_counts(path)
    if not counts.get(STITCHED_TOPIC):
        return None, 0
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    n_predicted = counts.get(PREDICTED_VIDEO_TOPIC, 0)
    if window is not None and n_predicted:
        n_predicted = 1 << 62  # those outside the window never come: each frame waits for the next prediction
    pairer = _FramePairer(Path(out_dir), emb.video.fps, n_predicted)
    for topic, t_ns, msg in _iter_decoded(path, pairer.topics, "", window):
        pairer.add(topic, t_ns, msg)
    return pairer.close()


def _stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def prediction_psnr(path: str | Path, embodiment: EmbodimentConfig | str, window: tuple[int, int],
                    loop: tuple[int, int] | None = None) -> tuple[list[float], list[float]]:
    """(predicted, baseline) PSNR in dB per predicted frame of a recording (see core.evaluation.pair_predictions).

    Where the video above pairs frames by receive time for display, this pairs them by header stamp: a predicted
    frame with the stitched frame of the time it stands for, and that real frame with the chunk's conditioning
    frame (the repeat-the-last-frame baseline). The predicted frame is resized to the stitched size as in the
    video. window: (start, end) log time ns to read; loop: (start, end) stamp ns that the chunks' observations
    and the real frames must lie in (an episode's closed loop: not the reset that follows it).
    """
    from dreamzero_ros.core.evaluation import pair_predictions, psnr

    emb = _embodiment(embodiment)
    chunks: list[tuple[int, int]] = []
    predicted: list[tuple[int, int]] = []
    predicted_frames: list[np.ndarray] = []
    real_stamps: list[int] = []
    real_frames: list[np.ndarray] = []
    inside = (lambda t: loop[0] <= t <= loop[1]) if loop is not None else (lambda t: True)
    for topic, t_ns, msg in _iter_decoded(path, (CHUNK_TOPIC, PREDICTED_VIDEO_TOPIC, STITCHED_TOPIC), "", window):
        stamp = _stamp_ns(msg)
        if topic == CHUNK_TOPIC:
            if inside(stamp):
                chunks.append((t_ns, stamp))
        elif topic == PREDICTED_VIDEO_TOPIC:
            predicted.append((t_ns, stamp))
            predicted_frames.append(image_to_rgb(msg))
        elif inside(stamp):
            real_stamps.append(stamp)
            real_frames.append(image_to_rgb(msg))
    pairs = pair_predictions(chunks, predicted, real_stamps, emb.video.fps, emb.video.frames_per_chunk)
    out_predicted, out_baseline = [], []
    for pair in pairs:
        real = real_frames[pair.real]
        out_predicted.append(psnr(_resize_nearest(predicted_frames[pair.predicted], *real.shape[:2]), real))
        out_baseline.append(psnr(real_frames[pair.baseline], real))
    return out_predicted, out_baseline


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------


def write_report(mcap_path: str | Path, embodiment: EmbodimentConfig | str, out_dir: str | Path) -> dict[str, Any]:
    """Write report.png, frames.mp4 (or frames.gif) and summary.json into out_dir; returns the summary.

    One pass over the file feeds both the series and the video: chunks interleave camera frames
    with joint states, so a second pass would decompress every chunk again.
    """
    emb = _embodiment(embodiment)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        start_ns, end_ns = _time_range(mcap_path)
        counts = topic_counts(mcap_path)
        collector = _RunCollector(emb, counts)
        pairer = _FramePairer(out, emb.video.fps, counts.get(PREDICTED_VIDEO_TOPIC, 0))
        topics = collector.topics + pairer.topics
        for topic, t_ns, msg in _iter_decoded(mcap_path, topics, emb.command.joint_states_topic):
            if topic in pairer.topics:
                pairer.add(topic, t_ns, msg)
            else:
                collector.add(topic, t_ns, msg)
    except RecordingError as exc:
        raise ReportError(str(exc)) from exc
    video, frames = pairer.close()
    run = collector.result(start_ns, end_ns)
    result = summarize(run, emb)
    result["recording"] = str(mcap_path)
    result["report_png"] = str(plot_report(run, emb, out / "report.png"))
    result["video"] = str(video) if video is not None else None
    result["video_frames"] = frames
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
