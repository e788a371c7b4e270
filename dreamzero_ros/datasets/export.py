"""A run's MCAP recording -> LeRobot dataset (`dreamzero export`), so data recorded on a real robot trains too.

Reads the embodiment's topics from a recording made by the suite's recorder (or `ros2 bag record -s mcap`):
joint states, every camera (sensor_msgs/Image or CompressedImage), the joint command topic and the
instruction (/dreamzero/instruction, std_msgs/String). Each instruction message starts an episode that lasts
until the next one (or pass one instruction for the whole recording). An episode is resampled on a regular
grid at the control rate over the time every stream covers, using receive (log) times:

* state[k]  = the latest joint state at or before t_k;
* frame[k]  = the latest image of each camera at or before t_k, resized to the camera's source size;
* action[k] = the latest command at or before t_k + 1/fps (the command given during step k); where no
  command has been given yet, or the recording has no command topic at all (e.g. kinesthetic teaching),
  the next state state[k+1] (the last row repeats its state). Joints a command does not name keep the state.
* extra actions (AgiBot's base velocity, geometry_msgs/Twist on the group's topic): the latest message at or
  before t_k + 1/fps if it is younger than `EXTRA_COMMAND_TIMEOUT` (a base stops without commands), else 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.core.image import decode_compressed, decode_image
from dreamzero_ros.core.stitch import resize_to_source
from dreamzero_ros.datasets.lerobot import DatasetError, LeRobotWriter
from dreamzero_ros.ros.names import INSTRUCTION_TOPIC as _INSTRUCTION
from dreamzero_ros.ros.names import resolve

INSTRUCTION_TOPIC = resolve(_INSTRUCTION)  # as recorded from a root-namespace run
MIN_EPISODE_STEPS = 2
EXTRA_COMMAND_TIMEOUT = 0.5  # s, as sim_robot's base_command_timeout


@dataclass
class ExportReport:
    episodes: list[dict] = field(default_factory=list)  # per written episode: instruction, steps, start_s
    skipped: list[str] = field(default_factory=list)  # why segments were left out
    notes: list[str] = field(default_factory=list)  # assumptions made (e.g. an extra action never recorded)


@dataclass
class _Streams:
    state_t: list[int] = field(default_factory=list)
    state: list[np.ndarray] = field(default_factory=list)
    frames_t: dict[str, list[int]] = field(default_factory=dict)
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    instructions: list[tuple[int, str]] = field(default_factory=list)
    extras_t: dict[str, list[int]] = field(default_factory=dict)
    extras: dict[str, list[list[float]]] = field(default_factory=dict)


def _twist_components(msg: object, components: tuple[str, ...]) -> list[float]:
    """Twist fields named like "linear_x", "angular_z"."""
    out = []
    for name in components:
        part, _, axis = name.partition("_")
        out.append(float(getattr(getattr(msg, part), axis)))
    return out


def _decode_frame(msg: object, size: tuple[int, int]) -> np.ndarray:
    if hasattr(msg, "format"):  # sensor_msgs/CompressedImage
        rgb = decode_compressed(msg.format, bytes(msg.data))
    else:
        rgb = decode_image(msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data))
    return resize_to_source(rgb, size)


def _read(path: Path, emb: EmbodimentConfig) -> _Streams:
    from dreamzero_ros.runs.recording import read_messages, topic_types

    types = topic_types(path)
    cameras = {cam.topic: cam for cam in emb.cameras}
    js_topic = emb.command.joint_states_topic
    missing = [t for t in (js_topic, *cameras) if t not in types]
    if missing:
        raise DatasetError(f"{path}: no topics {missing} in the recording (it has {sorted(types)}); is it a "
                           f"recording of embodiment {emb.name!r}?")
    index = {name: i for i, name in enumerate(emb.state_joints)}
    s = _Streams(frames_t={c.name: [] for c in emb.cameras}, frames={c.name: [] for c in emb.cameras})
    extra_topics = {g.topic: g for g in emb.extra_actions if g.topic in types}
    for g in emb.extra_actions:
        s.extras_t[g.name], s.extras[g.name] = [], []
    wanted = [js_topic, *cameras, *extra_topics] + ([INSTRUCTION_TOPIC] if INSTRUCTION_TOPIC in types else [])
    for topic, t_ns, msg in read_messages(path, wanted):
        if topic in extra_topics:
            group = extra_topics[topic]
            s.extras_t[group.name].append(t_ns)
            s.extras[group.name].append(_twist_components(msg, group.components))
        elif topic == js_topic:
            row = np.full(len(index), np.nan)
            for name, value in zip(msg.name, msg.position, strict=False):
                k = index.get(name)
                if k is not None:
                    row[k] = value
            if np.isnan(row).any():
                if s.state:  # a partial message (e.g. only the gripper) updates the joints it names
                    row = np.where(np.isnan(row), s.state[-1], row)
                else:
                    continue
            s.state_t.append(t_ns)
            s.state.append(row)
        elif topic == INSTRUCTION_TOPIC:
            s.instructions.append((t_ns, str(msg.data)))
        else:
            cam = cameras[topic]
            s.frames_t[cam.name].append(t_ns)
            s.frames[cam.name].append(_decode_frame(msg, tuple(cam.source_size)))
    if not s.state:
        raise DatasetError(f"{path}: {js_topic} never named all state joints {list(emb.state_joints)}")
    empty = [name for name, v in s.frames.items() if not v]
    if empty:
        raise DatasetError(f"{path}: no images from cameras {empty}")
    return s


def _latest(times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index of the latest time <= each of `at` (-1 where none)."""
    return np.searchsorted(times, at, side="right") - 1


def export_mcap(
    mcap: str | Path,
    out: str | Path,
    embodiment: EmbodimentConfig,
    *,
    instruction: str | None = None,
    fps: float | None = None,
    overwrite: bool = False,
) -> ExportReport:
    """Write the episodes of the recording `mcap` as the LeRobot dataset `out`; see the module docstring."""
    from dreamzero_ros.runs.report import load_run

    path = Path(mcap)
    if not path.is_file():
        raise DatasetError(f"{path}: no such recording")
    emb = embodiment
    rate = float(fps or emb.control.rate_hz)
    streams = _read(path, emb)
    run = load_run(path, emb)  # commands in action-joint order, NaN where a command did not name a joint
    cmd_t = (run.t0_ns + np.round(run.command_t * 1e9)).astype(np.int64)
    state_t = np.asarray(streams.state_t, dtype=np.int64)
    states = np.vstack(streams.state)
    frame_t = {c: np.asarray(v, dtype=np.int64) for c, v in streams.frames_t.items()}

    start = max(int(state_t[0]), *(int(t[0]) for t in frame_t.values()))
    end = min(int(state_t[-1]), *(int(t[-1]) for t in frame_t.values()))
    if instruction is not None:
        if not instruction.strip():
            raise DatasetError("instruction: empty")
        segments = [(start, end, instruction)]
    elif streams.instructions:
        marks = streams.instructions
        segments = []
        for i, (t, text) in enumerate(marks):
            # The first instruction also covers what came before it (a latched instruction arrives late).
            seg_start = start if i == 0 else max(t, start)
            seg_end = min(marks[i + 1][0] - 1, end) if i + 1 < len(marks) else end
            segments.append((seg_start, seg_end, text))
    else:
        raise DatasetError(f"{path}: no {INSTRUCTION_TOPIC} messages; pass the episode's instruction")

    state_in_action = [emb.state_joints.index(j) if j in emb.state_joints else -1 for j in emb.action_joints]
    if any(i < 0 for i in state_in_action) and not len(run.command):
        raise DatasetError(f"{path}: action joints outside the state need a recorded command topic "
                           f"({emb.command.topic})")
    report = ExportReport()
    for group in emb.extra_actions:
        if not streams.extras[group.name]:
            report.notes.append(f"{group.name}: no messages on {group.topic}; exported as 0 (standing still)")
    step_ns = 1e9 / rate
    with LeRobotWriter(out, emb, fps=rate, overwrite=overwrite) as writer:
        for seg_start, seg_end, text in segments:
            if not text.strip():
                report.skipped.append(f"segment at {(seg_start - start) / 1e9:.2f} s: empty instruction")
                continue
            n = int((seg_end - seg_start) // step_ns) + 1
            if n < MIN_EPISODE_STEPS:
                report.skipped.append(f"'{text}': {max(n, 0)} steps (< {MIN_EPISODE_STEPS})")
                continue
            ticks = seg_start + (np.arange(n) * step_ns).astype(np.int64)
            s = states[_latest(state_t, ticks)]
            nxt = np.vstack([s[1:], s[-1:]])
            actions = np.where(np.array(state_in_action) >= 0, nxt[:, np.maximum(state_in_action, 0)], np.nan)
            if len(run.command):
                ci = _latest(cmd_t, ticks + int(step_ns))
                has = ci >= 0
                cmd = run.command[np.maximum(ci, 0)]
                fill = np.where(np.isnan(cmd), s[:, np.maximum(state_in_action, 0)], cmd)
                actions[has] = fill[has]
            if np.isnan(actions).any():
                raise DatasetError(f"{path}: '{text}': steps without a command for joints outside the state")
            frames = {c: np.stack([streams.frames[c][i] for i in _latest(t, ticks)]) for c, t in frame_t.items()}
            extras = {}
            for group in emb.extra_actions:
                times = np.asarray(streams.extras_t[group.name], dtype=np.int64)
                values = np.asarray(streams.extras[group.name], dtype=np.float64).reshape(-1, len(group.components))
                at = ticks + int(step_ns)
                if len(times):
                    i = _latest(times, at)
                    fresh = (i >= 0) & (at - times[np.maximum(i, 0)] <= EXTRA_COMMAND_TIMEOUT * 1e9)
                    latest = values[np.maximum(i, 0)]
                else:
                    fresh, latest = np.zeros(n, bool), np.zeros((n, len(group.components)))
                extras[group.name] = np.where(fresh[:, None], latest, 0.0)
            writer.add_episode(s, actions, frames, text, extras=extras or None)
            report.episodes.append({"instruction": text, "steps": n, "start_s": (seg_start - start) / 1e9})
        if not report.episodes:
            raise DatasetError(f"{path}: no episode long enough to export ({'; '.join(report.skipped)})")
    return report
