"""Training samples from a LeRobot v2.1 dataset written by `dreamzero generate` / `dreamzero export`.

This module owns what one training sample is and how it is read: the dataset's embodiment and statistics, the
checkpoint metadata built from them, the stitched frames, and the frozen encoders' outputs (VAE latents, CLIP
tokens, text embeddings), which are computed once and cached (the encoders never train).

A sample starts at control step i of an episode (i every `start_stride` steps, default the video stride of 3; a
coarser grid trades samples for preparation time, which the frozen VAE dominates on a CPU; i <= T - H so at least
one chunk is real; i <= `max_start` when given, which keeps only samples that begin where the episode does, with
the robot at rest and the instruction the only clue to where it goes) and holds `chunks` chunks; chunk k
(1-based) starts at s_k = i + (k - 1) E and predicts steps s_k .. s_k + H - 1, where E (`execute_steps`, default
H) is how many of a chunk's steps run before the next chunk's observation. The release trains with E = H; its
inference writes the last 4 received frames of a chunk into the KV cache (each twice), i.e. 0.8 s of a 1.6 s
DROID chunk, and this suite's inference node asks for the next chunk when latency and a margin are left of the
current one, which with a CPU's ~0.45 s latency is after 0.6-0.8 s, so there E = 12 trains on the cadence
deployment runs at:

* first frame: the stitched frame at step i: its VAE latent (latent frame 0 of y), its CLIP tokens, and y = the
  latents of [first frame + zero frames] (1 + 2 x context_chunks latent frames), as `WorldActionModel` builds them
  at an episode start;
* video of chunk k: the frames at s_k + stride (j + 1), j = 0..E / stride - 1, stride = H / 8 (3 at 24 steps:
  the release's 8 frames per 24 actions), i.e. what the robot sees while the chunk runs (8 frames at E = 24, 4
  at E = 12, each then repeated twice as inference repeats them); the newest is the observation at the start of
  chunk k + 1. Its latents are made exactly as inference writes real frames into the KV cache:
  `WorldActionModel.real_clip` (the first frame prepended) encoded from scratch, last 2 latents kept;
* state of chunk k: the state at s_k, q99-normalised; actions of chunk k: a[s_k .. s_k + H - 1], relative groups
  minus the state at s_k, q99-normalised with the statistics the checkpoint will carry. Both through
  `core.action_space.ActionSpace`, the code the local backend de-normalises with, so the two cannot disagree.

Steps past the episode's end repeat its last row and frame (the robot holds after a finished demonstration).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamzero_ros.core.action_space import ActionSpace, StatisticsError
from dreamzero_ros.core.embodiment import EmbodimentConfig, load_embodiment
from dreamzero_ros.datasets.lerobot import (
    DATA_PATH,
    VIDEO_PATH,
    DatasetError,
    read_jsonl,
    read_parquet,
    read_video,
    video_key,
    view_names,
)

log = logging.getLogger(__name__)

CACHE_VERSION = 1


class TrainingDataError(ValueError):
    """The dataset cannot be trained on; the message names the file or field and what was expected."""


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise TrainingDataError(f"{path}: missing ({what}); is this a dataset written by `dreamzero generate` or "
                                "`dreamzero export`?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainingDataError(f"{path}: not valid JSON ({exc})") from exc


def _slice_stats(entry: dict[str, Any], start: int, stop: int) -> dict[str, list[float]]:
    return {k: list(np.asarray(v, dtype=np.float64).reshape(-1)[start:stop]) for k, v in entry.items()}


@dataclass
class DatasetMeta:
    """What the trainer needs from a dataset folder's meta/: the embodiment, its tag, episodes, instructions and
    the checkpoint metadata (statistics per state/action group)."""

    root: Path
    embodiment: EmbodimentConfig
    tag: str
    episodes: list[dict[str, Any]]
    tasks: dict[int, str]
    metadata: dict[str, Any]
    fps: float

    @classmethod
    def read(cls, root: str | Path) -> DatasetMeta:
        root = Path(root)
        if not root.is_dir():
            raise TrainingDataError(f"{root}: dataset folder not found")
        meta = root / "meta"
        info = _read_json(meta / "info.json", "LeRobot info")
        emb_json = _read_json(meta / "embodiment.json", "the release's embodiment tag")
        name = info.get("robot_type") or emb_json.get("robot_type")
        try:
            embodiment = load_embodiment(name)
        except (KeyError, ValueError, FileNotFoundError) as exc:
            raise TrainingDataError(f"{meta / 'info.json'}: robot_type {name!r} names no embodiment config ({exc})") \
                from exc
        features = info.get("features", {})
        for key, want in (("observation.state", len(embodiment.state_joints)), ("action", embodiment.action_dim)):
            got = features.get(key, {}).get("shape")
            if got != [want]:
                raise TrainingDataError(f"{meta / 'info.json'}: features.{key}.shape: expected [{want}] for "
                                        f"{embodiment.name}, got {got}")
        fps = float(info.get("fps", 0))
        if abs(fps - embodiment.control.rate_hz) > 1e-6:
            raise TrainingDataError(f"{meta / 'info.json'}: fps {fps} differs from {embodiment.name}'s control rate "
                                    f"{embodiment.control.rate_hz} Hz (a chunk is {embodiment.control.horizon} rows)")
        stats = _read_json(meta / "stats.json", "per-column statistics with q01/q99")
        space = ActionSpace(embodiment, None, warn_if_identity=False)
        relative_groups = {g.name for g in embodiment.action if g.relative}
        relative = _read_json(meta / "relative_stats_dreamzero.json", "relative-action statistics") \
            if relative_groups else {}
        statistics: dict[str, dict[str, Any]] = {"state": {}, "action": {}}
        for kind, column, segments in (("state", "observation.state", space.state_segments),
                                       ("action", "action", space.action_segments)):
            if column not in stats or not all(q in stats[column] for q in ("q01", "q99")):
                raise TrainingDataError(f"{meta / 'stats.json'}: {column}: expected q01 and q99 statistics")
            for seg in segments:
                if kind == "action" and seg.name in relative_groups:
                    if seg.name not in relative:
                        raise TrainingDataError(f"{meta / 'relative_stats_dreamzero.json'}: no statistics for the "
                                                f"relative action group {seg.name!r}")
                    statistics[kind][seg.name] = {k: list(np.asarray(v, dtype=np.float64).reshape(-1))
                                                  for k, v in relative[seg.name].items()}
                else:
                    statistics[kind][seg.name] = _slice_stats(stats[column], seg.start, seg.stop)
        tag = emb_json.get("embodiment_tag") or embodiment.name
        metadata = {tag: {"statistics": statistics, "embodiment_tag": tag, "robot_type": embodiment.name,
                          "control_rate_hz": fps}}  # fmt: skip
        try:  # the statistics must be what the local backend accepts
            ActionSpace.from_metadata(embodiment, metadata)
        except StatisticsError as exc:
            raise TrainingDataError(f"{meta}: statistics unusable: {exc}") from exc
        episodes = read_jsonl(meta / "episodes.jsonl")
        tasks = {int(row["task_index"]): str(row["task"]) for row in read_jsonl(meta / "tasks.jsonl")}
        if not episodes:
            raise TrainingDataError(f"{meta / 'episodes.jsonl'}: no episodes")
        return cls(root, embodiment, tag, episodes, tasks, metadata, fps)

    def space(self) -> ActionSpace:
        return ActionSpace.from_metadata(self.embodiment, self.metadata)

    def scenes(self) -> set[tuple[str, int]]:
        """(sim_task, seed) of every episode `dreamzero generate` wrote; one pair is one scene (the placements are
        drawn from both, and the colours named in one seed share it). Episodes without that origin (exported
        recordings) are left out."""
        return {(str(e["sim_task"]), int(e["seed"])) for e in self.episodes if "sim_task" in e and "seed" in e}


def check_held_out(train: DatasetMeta, held_out: DatasetMeta) -> None:
    """Refuse a held-out dataset that cannot judge a model trained on `train`: another embodiment, or a scene
    (`DatasetMeta.scenes`) the training set also shows."""
    if held_out.embodiment.name != train.embodiment.name:
        raise TrainingDataError(f"{held_out.root}: held-out episodes of {held_out.embodiment.name}, the training set "
                                f"{train.root} is {train.embodiment.name}")
    shared = sorted(train.scenes() & held_out.scenes())
    if shared:
        listed = ", ".join(f"{task} seed {seed}" for task, seed in shared[:5]) + (", ..." if len(shared) > 5 else "")
        raise TrainingDataError(f"{held_out.root}: {len(shared)} of its scenes are also in the training set "
                                f"{train.root} ({listed}); generate the held-out set from other seeds (--seed)")


@dataclass
class Sample:
    """One training sample's cached tensors (CPU, float32)."""

    episode: int
    start: int
    task: int
    first: torch.Tensor  # [z, 1, h, w] latent of the first frame
    image: torch.Tensor | None  # [Li, image_dim] CLIP tokens of the first frame
    y: torch.Tensor  # [z, 1 + 2 context_chunks, h, w] latents of [first frame + zero frames]
    video: list[torch.Tensor] = field(default_factory=list)  # per chunk [z, 2, h, w]
    state: torch.Tensor | None = None  # [chunks, S] normalised
    actions: torch.Tensor | None = None  # [chunks, H, A] normalised


def _stitched(meta: DatasetMeta, episode: int, frame_ids: list[int]) -> dict[int, np.ndarray]:
    """{frame index: stitched uint8 [352, 640, 3]} of one episode, from its per-camera MP4s."""
    from dreamzero_ros.model.stitching import stitch_views

    emb = meta.embodiment
    names = view_names(emb)
    chunk = episode // 1000
    videos = {}
    for cam in emb.camera_names:
        path = meta.root / VIDEO_PATH.format(episode_chunk=chunk, video_key=video_key(names[cam]), episode_index=episode)
        try:
            videos[cam] = read_video(path)
        except DatasetError as exc:
            raise TrainingDataError(str(exc)) from exc
    return {f: stitch_views({cam: v[f] for cam, v in videos.items()}, emb) for f in frame_ids}


class TrainingSet:
    """Every sample of a dataset with the frozen encoders' outputs precomputed.

    model: the `WorldActionModel` being trained (its VAE, CLIP, text encoder and `real_clip` are used; they are
    frozen). chunks: chunks per sample (<= context_chunks). space: the normalisation (default: this dataset's
    statistics; a held-out set is normalised with the training set's, as the checkpoint will be). The text
    embeddings of every instruction (templated as the local backend templates them) and of the negative prompt are
    kept in `texts` / `negative_text`.
    """

    def __init__(self, meta: DatasetMeta, model: Any, *, chunks: int, start_stride: int | None = None,
                 max_start: int | None = None, execute_steps: int | None = None, cache: Path | None = None,
                 cache_key: str = "", progress: Callable[[int, int], None] | None = None,
                 space: ActionSpace | None = None) -> None:  # fmt: skip
        config = model.config
        if not 1 <= chunks <= config.context_chunks:
            raise TrainingDataError(f"chunks per sample: expected 1..{config.context_chunks}, got {chunks}")
        emb = meta.embodiment
        if config.horizon != emb.control.horizon:
            raise TrainingDataError(f"model horizon {config.horizon} != {emb.name}'s horizon {emb.control.horizon}")
        if config.horizon % config.frames_per_chunk:
            raise TrainingDataError(f"horizon {config.horizon} is not a multiple of the {config.frames_per_chunk} "
                                    "video frames per chunk")
        if tuple(config.frame_size) != tuple(emb.stitch.frame_size):
            raise TrainingDataError(f"model frame size {config.frame_size} != {emb.name}'s stitched frame "
                                    f"{emb.stitch.frame_size}")
        self.meta = meta
        self.chunks = chunks
        self.horizon = config.horizon
        self.stride = config.horizon // config.frames_per_chunk
        self.start_stride = self.stride if start_stride is None else start_stride
        if self.start_stride < 1:
            raise TrainingDataError(f"start stride: expected >= 1 step, got {self.start_stride}")
        if max_start is not None and max_start < 0:
            raise TrainingDataError(f"max start: expected >= 0 steps, got {max_start}")
        self.max_start = max_start
        self.execute_steps = self.horizon if execute_steps is None else execute_steps
        written = self.execute_steps // self.stride
        if (not 1 <= self.execute_steps <= self.horizon or self.execute_steps % self.stride or written % 4
                or config.frames_per_chunk % written):  # fmt: skip
            raise TrainingDataError(
                f"execute steps: expected a multiple of {4 * self.stride} steps up to the horizon {self.horizon} "
                f"(4 or 8 frames at the video stride {self.stride}, as inference writes a chunk's frames), got "
                f"{execute_steps}")
        self.space = meta.space() if space is None else space
        if cache is not None and cache.is_file():
            blob = torch.load(cache, weights_only=False)
            if blob.get("key") == cache_key:
                self.samples, self.texts, self.negative_text = blob["samples"], blob["texts"], blob["negative_text"]
                log.info("training samples from the cache %s", cache)
                return
        self.texts = {i: model.text_encoder.encode(emb.format_prompt(t)).float().cpu()[0]
                      for i, t in meta.tasks.items()}  # fmt: skip
        self.negative_text = model.text_encoder.encode(config.negative_prompt).float().cpu()[0]
        self.samples: list[Sample] = []
        for n, entry in enumerate(meta.episodes):
            self.samples += self._episode(model, int(entry["episode_index"]))
            if progress is not None:
                progress(n + 1, len(meta.episodes))
        if not self.samples:
            raise TrainingDataError(f"{meta.root}: no training samples")
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save({"key": cache_key, "samples": self.samples, "texts": self.texts,
                        "negative_text": self.negative_text}, tmp)  # fmt: skip
            tmp.replace(cache)

    def __len__(self) -> int:
        return len(self.samples)

    @torch.no_grad()
    def _episode(self, model: Any, episode: int) -> list[Sample]:
        meta, H, E, stride = self.meta, self.horizon, self.execute_steps, self.stride
        table = read_parquet(meta.root / DATA_PATH.format(episode_chunk=episode // 1000, episode_index=episode))
        for column in ("observation.state", "action", "task_index"):
            if column not in table:
                raise TrainingDataError(f"episode {episode}: parquet has no column {column!r}")
        states = np.asarray(table["observation.state"], dtype=np.float64)
        actions = np.asarray(table["action"], dtype=np.float64)
        T = len(states)
        task = int(table["task_index"][0])
        if task not in self.texts:
            raise TrainingDataError(f"episode {episode}: task_index {task} not in meta/tasks.jsonl")
        last = max(T - H, 0) if self.max_start is None else min(max(T - H, 0), self.max_start)
        starts = list(range(0, last + 1, self.start_stride))

        def clamp(step: int) -> int:
            return min(step, T - 1)

        def written(i: int, k: int) -> tuple[int, ...]:
            """The frames chunk k (0-based) of the sample starting at i writes: those of its first E steps."""
            return tuple(clamp(i + k * E + stride * (j + 1)) for j in range(E // stride))

        wanted = set()
        for i in starts:
            wanted.add(clamp(i))
            for k in range(self.chunks):
                wanted.update(written(i, k))
        frames = _stitched(meta, episode, sorted(wanted))
        config = model.config
        per_chunk = config.latent_frames_per_chunk
        # The frozen VAE dominates the preparation on a CPU: encode every clip of the episode in batches.
        firsts = [frames[clamp(i)] for i in starts]
        ys = _encode_batched(model.vae, [_condition_input(model.vae, f, config.condition_frames) for f in firsts])
        clip_ids = sorted({written(i, k) for i in starts for k in range(self.chunks)})
        clips = [model.vae.frames_to_input(model.real_clip(np.stack([frames[f] for f in ids]))) for ids in clip_ids]
        chunk_latents = dict(zip(clip_ids, [z[:, -per_chunk:] for z in _encode_batched(model.vae, clips)],
                                 strict=True))  # fmt: skip
        samples = []
        for i, first_frame, y in zip(starts, firsts, ys, strict=True):
            image = model.image_encoder.encode(first_frame).float().cpu()[0] if model.image_encoder is not None \
                else None
            sample = Sample(episode, i, task, y[:, :1].clone(), image, y)
            st, ac = [], []
            for k in range(self.chunks):
                s = i + k * E
                sample.video.append(chunk_latents[written(i, k)])
                state_model = states[clamp(s)]
                rows = actions[[clamp(s + h) for h in range(H)]]
                st.append(self.space.normalise_state(state_model))
                ac.append(self.space.normalise_actions(self.space.relative_actions(rows, state_model)))
            sample.state = torch.tensor(np.stack(st), dtype=torch.float32)
            sample.actions = torch.tensor(np.stack(ac), dtype=torch.float32)
            samples.append(sample)
        return samples


def _condition_input(vae: Any, first_frame: np.ndarray, num_frames: int) -> torch.Tensor:
    """The y clip [first frame + num_frames - 1 zero frames] as VAE input [1, 3, num_frames, h, w] (zeros in [-1, 1]
    are mid grey), as `ConditionStream` feeds it."""
    first = vae.frames_to_input(first_frame[None])
    zeros = torch.zeros(*first.shape[:2], num_frames - 1, *first.shape[3:], device=first.device, dtype=first.dtype)
    return torch.cat([first, zeros], dim=2)


def _encode_batched(vae: Any, clips: list[torch.Tensor], batch: int = 16) -> list[torch.Tensor]:
    """VAE inputs [1, 3, T, h, w] of equal T encoded from scratch in batches -> latents [z, F, h, w] each (CPU).
    The same groups through the same causal feature cache as `VideoVae.encode_pixels` of each clip alone."""
    out: list[torch.Tensor] = []
    for n in range(0, len(clips), batch):
        latents = vae.encode_pixels(torch.cat(clips[n : n + batch]))
        out += list(latents.float().cpu())
    return out


def fingerprint(root: Path, preset: str, seed: int, chunks: int, config: dict[str, Any], start_stride: int | None = None,
                max_start: int | None = None, execute_steps: int | None = None) -> str:  # fmt: skip
    """Fingerprint of a prepared set: the dataset's metadata files and the encoders' configuration and seed."""
    h = hashlib.sha256()
    # max_start and execute_steps are appended only when set, so caches prepared before they existed keep their key.
    fields = [CACHE_VERSION, preset, seed, chunks, config, start_stride] + ([max_start] if max_start is not None else [])
    fields += [{"execute_steps": execute_steps}] if execute_steps is not None else []
    h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for name in ("info.json", "stats.json", "episodes.jsonl", "tasks.jsonl"):
        path = root / "meta" / name
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()
