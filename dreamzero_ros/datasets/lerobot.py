"""LeRobot v2.1 datasets with the metadata DreamZero's release trains from.

Owns the on-disk layout a dreamzero dataset has, so that both LeRobot (v2.1 reader) and the release's
loader (its `convert_lerobot_to_gear.py` output: modality.json, stats.json, relative_stats_dreamzero.json,
embodiment.json) read it without conversion::

    data/chunk-000/episode_000000.parquet          one row per control step (fps = control rate)
    videos/chunk-000/observation.images.<view>/episode_000000.mp4   H.264, yuv420p, one per camera
    meta/info.json                                 codebase_version v2.1, features, path templates
    meta/tasks.jsonl, meta/episodes.jsonl          instructions; per episode its tasks, length, success, origin
    meta/episodes_stats.jsonl                      LeRobot v2.1 per-episode min/max/mean/std/count
    meta/stats.json                                per column min/max/mean/std/q01/q99 (the release's)
    meta/relative_stats_dreamzero.json             per relative action group: action[i+h] - state[i]
    meta/modality.json, meta/embodiment.json       named state/action groups, views, language keys

Columns: `observation.state` [S] and `action` [A] float32 in MODEL units (the embodiment's state/action
groups concatenated, effector joints through their model range, e.g. the Panda finger 0.04 m open -> DROID
gripper 0.0), actions absolute (the release makes them relative at training time from the statistics
above); `annotation.language.language_instruction` (and _2, _3, as DROID has) = the task index; the LeRobot
bookkeeping columns timestamp, frame_index, episode_index, index, task_index.

Relative statistics follow the release loader exactly: for every start i with a whole horizon ahead
(i < T - (H - 1)), the H actions a[i .. i+H-1] minus the state s[i] of the same-named state group, pooled.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_ros.core.action_space import REFERENCE_TAGS, ActionSpace
from dreamzero_ros.core.embodiment import EmbodimentConfig

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
VIDEO_CODEC = "h264"  # what the release's own DROID conversion writes; decord, PyAV and torchvision decode it
LANGUAGE_KEYS = ("language_instruction", "language_instruction_2", "language_instruction_3")
QUANTILES = (0.01, 0.99)
IMAGE_STATS_FRAMES = 64  # frames per episode sampled for the v2.1 image statistics

#: The release's view names per embodiment (its data configs' `video.<name>` keys), in our camera order;
#: other embodiments use their camera names.
RELEASE_VIEWS: dict[str, tuple[str, ...]] = {
    "franka_droid": ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"),
}


class DatasetError(ValueError):
    """A dataset cannot be written or read; the message names the file, field or episode."""


def view_names(embodiment: EmbodimentConfig) -> dict[str, str]:
    """camera name -> the dataset's view name (the release's name where it has one)."""
    names = RELEASE_VIEWS.get(embodiment.name, embodiment.camera_names)
    return dict(zip(embodiment.camera_names, names, strict=True))


def video_key(view: str) -> str:
    return f"observation.images.{view}"


def statistics(x: np.ndarray) -> dict[str, list[float]]:
    """min/max/mean/std/q01/q99 per component of [N, D] (numpy's default linear quantiles, as the release)."""
    x = np.asarray(x, dtype=np.float64)
    return {
        "min": x.min(axis=0).tolist(), "max": x.max(axis=0).tolist(),
        "mean": x.mean(axis=0).tolist(), "std": x.std(axis=0).tolist(),
        "q01": np.quantile(x, QUANTILES[0], axis=0).tolist(), "q99": np.quantile(x, QUANTILES[1], axis=0).tolist(),
    }


def relative_chunks(states: np.ndarray, actions: np.ndarray, horizon: int) -> np.ndarray:
    """[N*H, D] of actions[i + h] - states[i] for every i with a whole horizon ahead (the release's loader)."""
    usable = len(actions) - (horizon - 1)
    if usable <= 0:
        return np.zeros((0, actions.shape[1]))
    idx = np.arange(usable)[:, None] + np.arange(horizon)[None, :]
    return (actions[idx] - states[:usable, None, :]).reshape(-1, actions.shape[1])


@dataclass
class _Totals:
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    timestamps: list[np.ndarray] = field(default_factory=list)
    relative: dict[str, list[np.ndarray]] = field(default_factory=dict)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    episode_stats: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0


class LeRobotWriter:
    """Writes episodes of one embodiment as a LeRobot v2.1 dataset; `close()` writes the metadata.

    Args:
        root: the dataset folder (created; must be empty or absent unless overwrite).
        embodiment: names the state/action groups, cameras, source sizes, horizon and control rate.
        fps: rows (and video frames) per second; default the control rate.
        crf: H.264 constant rate factor (lower = better quality, bigger files).
    """

    def __init__(
        self, root: str | Path, embodiment: EmbodimentConfig, *, fps: float | None = None, crf: int = 18,
        overwrite: bool = False,
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()):
            if not overwrite:
                raise DatasetError(f"{self.root}: output folder is not empty (pass overwrite to replace it)")
            shutil.rmtree(self.root)
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        self.embodiment = embodiment
        self.fps = float(fps or embodiment.control.rate_hz)
        self.crf = int(crf)
        self.space = ActionSpace(embodiment, None, warn_if_identity=False)
        self.views = view_names(embodiment)
        for cam in embodiment.cameras:
            h, w = cam.source_size
            if h % 2 or w % 2:
                raise DatasetError(f"{embodiment.source}: cameras[{cam.name}].source_size {h}x{w}: H.264 yuv420p "
                                   "needs even sizes")
        self.tasks: dict[str, int] = {}
        self._t = _Totals()
        self.closed = False

    # -- episodes ------------------------------------------------------------------------------------

    def add_episode(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        frames: Mapping[str, np.ndarray],
        instruction: str,
        *,
        success: bool | None = None,
        extras: Mapping[str, np.ndarray] | None = None,
        origin: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one episode; returns its index.

        states: [T, S] SI (state_joints order); actions: [T, J] SI absolute joint targets (action_joints
        order); extras: {extra action group: [T, C]} for embodiments that have them; frames: camera -> [T, H, W, 3]
        uint8 RGB at the camera's source_size; instruction: the language instruction of the whole episode;
        origin: JSON fields that say where it came from (generate: sim_task, seed, colour), kept in episodes.jsonl
        beside LeRobot's own (readers ignore keys they do not know).
        """
        if self.closed:
            raise DatasetError(f"{self.root}: add_episode after close")
        emb = self.embodiment
        states = np.asarray(states, dtype=np.float64)
        actions = np.asarray(actions, dtype=np.float64)
        n = len(states)
        if n < 1 or states.shape != (n, len(emb.state_joints)):
            raise DatasetError(f"episode {len(self._t.episodes)}: states: expected [T, {len(emb.state_joints)}] "
                               f"with T >= 1, got {list(states.shape)}")
        if actions.shape != (n, len(emb.action_joints)):
            raise DatasetError(f"episode {len(self._t.episodes)}: actions: expected [{n}, {len(emb.action_joints)}], "
                               f"got {list(actions.shape)}")
        if not instruction.strip():
            raise DatasetError(f"episode {len(self._t.episodes)}: empty instruction")
        missing = [c for c in emb.camera_names if c not in frames]
        if missing:
            raise DatasetError(f"episode {len(self._t.episodes)}: frames: no frames for cameras {missing}")
        for cam in emb.cameras:
            shape = np.shape(frames[cam.name])
            want = (n, *cam.source_size, 3)
            if tuple(shape) != want:
                raise DatasetError(f"episode {len(self._t.episodes)}: frames[{cam.name}]: expected {list(want)}, "
                                   f"got {list(shape)}")
        state_model = np.stack([self.space.state_to_model(s) for s in states])
        action_model = self.space.si_to_model_actions(actions, extras)

        index = len(self._t.episodes)
        task_index = self.tasks.setdefault(instruction, len(self.tasks))
        chunk = index // CHUNKS_SIZE
        timestamps = (np.arange(n) / self.fps).astype(np.float32)
        columns: dict[str, Any] = {
            "observation.state": state_model.astype(np.float32),
            "action": action_model.astype(np.float32),
            "timestamp": timestamps,
            "frame_index": np.arange(n, dtype=np.int64),
            "episode_index": np.full(n, index, dtype=np.int64),
            "index": np.arange(self._t.frames, self._t.frames + n, dtype=np.int64),
            "task_index": np.full(n, task_index, dtype=np.int64),
        }
        for key in LANGUAGE_KEYS:
            columns[f"annotation.language.{key}"] = np.full(n, task_index, dtype=np.int64)
        path = self.root / DATA_PATH.format(episode_chunk=chunk, episode_index=index)
        _write_parquet(path, columns)

        for cam in emb.cameras:
            vpath = self.root / VIDEO_PATH.format(episode_chunk=chunk, video_key=video_key(self.views[cam.name]),
                                                  episode_index=index)
            write_video(vpath, np.asarray(frames[cam.name], dtype=np.uint8), self.fps, crf=self.crf)

        self._t.states.append(state_model)
        self._t.actions.append(action_model)
        self._t.timestamps.append(timestamps[:, None])
        for name, rel in self._relative(state_model, action_model).items():
            self._t.relative.setdefault(name, []).append(rel)
        entry: dict[str, Any] = {"episode_index": index, "tasks": [instruction], "length": n}
        if success is not None:
            entry["success"] = bool(success)
        entry.update({k: v for k, v in (origin or {}).items() if k not in entry})
        self._t.episodes.append(entry)
        self._t.episode_stats.append({"episode_index": index, "stats": self._episode_stats(columns, frames)})
        self._t.frames += n
        return index

    def _relative(self, state_model: np.ndarray, action_model: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        state_slices = {s.name: (s.start, s.stop) for s in self.space.state_segments}
        for seg, group in zip(self.space.action_segments, self.embodiment.action, strict=False):
            if not group.relative:
                continue
            if group.name not in state_slices:
                raise DatasetError(f"{self.embodiment.source}: relative action group {group.name!r} has no state "
                                   "group of the same name (the release pairs them by name)")
            s0, s1 = state_slices[group.name]
            out[group.name] = relative_chunks(state_model[:, s0:s1], action_model[:, seg.start:seg.stop],
                                              self.embodiment.control.horizon)
        return out

    def _episode_stats(self, columns: Mapping[str, np.ndarray], frames: Mapping[str, np.ndarray]) -> dict:
        stats: dict[str, Any] = {}
        for key, value in columns.items():
            x = np.asarray(value, dtype=np.float64)
            x = x[:, None] if x.ndim == 1 else x
            s = statistics(x)
            stats[key] = {k: s[k] for k in ("min", "max", "mean", "std")} | {"count": [len(x)]}
        for cam in self.embodiment.cameras:
            video = np.asarray(frames[cam.name])
            pick = np.linspace(0, len(video) - 1, min(len(video), IMAGE_STATS_FRAMES)).round().astype(int)
            px = video[pick].reshape(-1, 3).astype(np.float64) / 255.0  # LeRobot: [0, 1], per channel, [3, 1, 1]
            stats[video_key(self.views[cam.name])] = {
                "min": px.min(0)[:, None, None].tolist(), "max": px.max(0)[:, None, None].tolist(),
                "mean": px.mean(0)[:, None, None].tolist(), "std": px.std(0)[:, None, None].tolist(),
                "count": [len(pick)],
            }
        return stats

    # -- metadata ------------------------------------------------------------------------------------

    def close(self) -> dict[str, Any]:
        """Write meta/*; returns info.json's content. Raises DatasetError for a dataset without episodes."""
        if self.closed:
            return json.loads((self.root / "meta" / "info.json").read_text())
        if not self._t.episodes:
            raise DatasetError(f"{self.root}: no episodes were added")
        self.closed = True
        emb = self.embodiment
        meta = self.root / "meta"
        info = self.info()
        _write_json(meta / "info.json", info)
        _write_jsonl(meta / "tasks.jsonl", [{"task_index": i, "task": t} for t, i in self.tasks.items()])
        _write_jsonl(meta / "episodes.jsonl", self._t.episodes)
        _write_jsonl(meta / "episodes_stats.jsonl", self._t.episode_stats)
        stats = {
            "observation.state": statistics(np.concatenate(self._t.states)),
            "action": statistics(np.concatenate(self._t.actions)),
            "timestamp": statistics(np.concatenate(self._t.timestamps)),
        }
        _write_json(meta / "stats.json", stats)
        relative = {}
        for name, parts in self._t.relative.items():
            pooled = np.concatenate(parts)
            if len(pooled) == 0:
                raise DatasetError(f"{self.root}: relative statistics of {name!r}: every episode is shorter than "
                                   f"the horizon ({emb.control.horizon} steps)")
            relative[name] = statistics(pooled)
        if relative:
            _write_json(meta / "relative_stats_dreamzero.json", relative)
        _write_json(meta / "modality.json", self.modality())
        tag = REFERENCE_TAGS.get(emb.name, (emb.name,))[0]
        _write_json(meta / "embodiment.json", {"robot_type": emb.name, "embodiment_tag": tag})
        return info

    def info(self) -> dict[str, Any]:
        emb = self.embodiment
        n_eps = len(self._t.episodes)
        state_names = list(emb.state_joints)
        action_names = list(emb.action_joints) + [
            f"{g.name}.{c}" for g in emb.extra_actions for c in g.components
        ]
        features: dict[str, Any] = {}
        for cam in emb.cameras:
            h, w = cam.source_size
            features[video_key(self.views[cam.name])] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {
                    "video.height": h, "video.width": w, "video.codec": VIDEO_CODEC, "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False, "video.fps": self.fps, "video.channels": 3, "has_audio": False,
                },
            }
        features["observation.state"] = {"dtype": "float32", "shape": [len(state_names)], "names": state_names}
        features["action"] = {"dtype": "float32", "shape": [len(action_names)], "names": action_names}
        for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                           ("index", "int64"), ("task_index", "int64")):
            features[key] = {"dtype": dtype, "shape": [1], "names": None}
        for key in LANGUAGE_KEYS:
            features[f"annotation.language.{key}"] = {"dtype": "int64", "shape": [1], "names": None}
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": emb.name,
            "total_episodes": n_eps,
            "total_frames": self._t.frames,
            "total_tasks": len(self.tasks),
            "total_videos": n_eps * len(emb.cameras),
            "total_chunks": (n_eps + CHUNKS_SIZE - 1) // CHUNKS_SIZE,
            "chunks_size": CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{n_eps}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }

    def modality(self) -> dict[str, Any]:
        """The release's meta/modality.json: named slices of the state/action columns, views, language keys."""
        def groups(segments, original_key: str) -> dict[str, Any]:
            return {
                s.name: {"original_key": original_key, "start": s.start, "end": s.stop, "rotation_type": None,
                         "absolute": True, "dtype": "float32", "range": None}
                for s in segments
            }

        return {
            "state": groups(self.space.state_segments, "observation.state"),
            "action": groups(self.space.action_segments, "action"),
            "video": {view: {"original_key": video_key(view)} for view in self.views.values()},
            "annotation": {f"language.{k}": {"original_key": f"annotation.language.{k}"} for k in LANGUAGE_KEYS},
        }

    def __enter__(self) -> LeRobotWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _write_parquet(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for key, value in columns.items():
        if value.ndim == 2:  # vectors as list<float32>, as LeRobot's datasets.Sequence features store them
            arrays[key] = pa.array(list(value), type=pa.list_(pa.from_numpy_dtype(value.dtype)))
        else:
            arrays[key] = pa.array(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path)


def read_parquet(path: str | Path) -> dict[str, np.ndarray]:
    """column -> numpy array ([T] scalars, [T, D] vectors) of one episode file."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such episode file")
    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        column = table.column(name).to_pylist()
        out[name] = np.asarray(column)
    return out


def write_video(path: Path, frames: np.ndarray, fps: float, *, crf: int = 18) -> None:
    """[T, H, W, 3] uint8 RGB -> H.264 (libx264, yuv420p) MP4 through imageio-ffmpeg's bundled ffmpeg."""
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=None,
        macro_block_size=1, ffmpeg_log_level="error",
        # A keyframe every 2 s keeps random access (training samples clips anywhere) cheap.
        output_params=["-preset", "veryfast", "-crf", str(crf), "-g", str(max(int(round(2 * fps)), 1))],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def read_video(path: str | Path) -> np.ndarray:
    """[T, H, W, 3] uint8 RGB of an MP4 (decoded by the bundled ffmpeg)."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such video")
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
