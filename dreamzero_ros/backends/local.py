"""Local backend: the DreamZero World Action Model in this process (torch).

Wraps `dreamzero_ros.model.wam.WorldActionModel` and owns everything between robot units and
the model: the prompt template (embodiment.format_prompt), state normalisation, action
un-normalisation, relative -> absolute (once, with the state observed at the chunk start) and
effector mapping, all through core.action_space.ActionSpace. Per infer():
``model.observe(frames, normalised state)`` writes the REAL frames into the model's context, then
``model.generate()`` samples the next chunk.

Episode semantics are the release's and live in the model (wam.py): a 1-frame observation, a changed
instruction or the 5th chunk start a new episode. Noise: a model with its own per-call seed (``model.noise_seed``,
1140 for released checkpoints) draws every chunk from it, as the reference server; otherwise chunk k of an
episode samples with ``seed + k``, so an episode replays exactly.

The model contract used (duck-typed, so tests can pass a small fake)::

    model.metadata: dict | None                      # experiment_cfg/metadata.json
    model.reset(); model.set_instruction(prompt)     # templated prompt; a change resets
    model.observe(frames uint8 [T, 352, 640, 3], state float32 [S] normalised)
    model.generate(seed=None) -> .actions float32 [H, A] normalised, .video_latents, .dit_forwards, .seconds
    model.decode_video(latents) -> uint8 [T, 352, 640, 3]
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_ros.backends.base import BackendError, ChunkResult, ModelChunk, Observation, PolicyBackend
from dreamzero_ros.core.action_space import ActionSpace
from dreamzero_ros.core.embodiment import ConfigError, EmbodimentConfig, check_checkpoint_timing

LOG = logging.getLogger(__name__)


def load_model(
    embodiment: EmbodimentConfig,
    *,
    checkpoint: str | Path | None = None,
    preset: str = "tiny",
    seed: int = 0,
    device: str = "cpu",
    dtype: Any = None,
    **overrides: Any,
):
    """A WorldActionModel from `checkpoint`, or the `preset` with random weights sized for `embodiment`."""
    from dreamzero_ros.model.wam import WorldActionModel  # torch import deferred: scripted/remote never pay it

    if checkpoint:
        from dreamzero_ros.model.checkpoint import load_world_action_model

        return load_world_action_model(WorldActionModel, Path(checkpoint), device=device, dtype=dtype,
                                       embodiment=embodiment.name)  # fmt: skip
    action_dim = embodiment.action_dim
    kwargs: dict[str, Any] = {
        "action_dim": action_dim,
        "state_dim": len(embodiment.state_joints),
        "horizon": embodiment.control.horizon,
        "frame_size": embodiment.stitch.frame_size,
        "seed": seed,
        "device": device,
    }
    if dtype is not None:
        kwargs["dtype"] = dtype
    return WorldActionModel.from_preset(preset, **kwargs, **overrides)


def check_checkpoint(embodiment: EmbodimentConfig, info: Any, source: str) -> None:
    """Refuse an embodiment config whose chunk timing or vector sizes differ from a loaded checkpoint's
    (`model.checkpoint_info`, see model.release.CheckpointInfo), naming both values."""
    check_checkpoint_timing(embodiment, horizon=info.horizon, control_rate_hz=info.control_rate_hz,
                            video_fps=info.video_fps, frames_per_chunk=info.frames_per_chunk, source=source)  # fmt: skip
    action_dim = embodiment.action_dim
    for what, mine, theirs in (("action", action_dim, info.action_dim),
                               ("state", len(embodiment.state_joints), info.state_dim)):  # fmt: skip
        if mine != theirs:
            raise ConfigError(embodiment.source, what, f"{mine} values in the config but {theirs} in the "
                              f"checkpoint's model ({source})")  # fmt: skip


class LocalBackend(PolicyBackend):
    """The WAM in-process; returns absolute SI chunks (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        embodiment: EmbodimentConfig,
        model: Any = None,
        *,
        checkpoint: str | Path | None = None,
        preset: str = "tiny",
        seed: int | None = 0,
        device: str = "cpu",
        dtype: Any = None,
        decode_video: bool = False,
        metadata_key: str | None = None,
    ) -> None:
        """
        Args:
            model: a ready WorldActionModel (or anything with its contract); None = load one.
            checkpoint: checkpoint directory; None = `preset` with random weights (identity
                normalisation, logged).
            seed: base sampling seed for a model without a per-call seed of its own
                (``model.noise_seed`` None): chunk k of an episode (counted from its first frame)
                samples with seed + k, so an episode replays exactly. None = the model's own
                generator. Ignored when the model seeds every call itself (released checkpoints).
            decode_video: also decode the predicted video into ChunkResult.predicted_frames.
            metadata_key: embodiment key in multi-embodiment metadata (see action_space.select_statistics).
        """
        self.embodiment = embodiment
        if model is None:
            model = load_model(embodiment, checkpoint=checkpoint, preset=preset, seed=seed or 0,
                               device=device, dtype=dtype)
        self.model = model
        info = getattr(model, "checkpoint_info", None)
        if info is not None:
            check_checkpoint(embodiment, info, str(checkpoint or "the loaded checkpoint"))
            self.execute_steps = info.execute_steps
        self.space = ActionSpace.from_metadata(embodiment, getattr(model, "metadata", None), key=metadata_key)
        self.seed = seed
        self.decode_video = decode_video
        self.frame_shape = (*embodiment.stitch.frame_size, 3)
        self.instruction = ""
        self._chunk_index = 0
        # The server may call from its inference thread while the node calls from its worker: one at a time.
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.model.reset()
            self._chunk_index = 0

    def set_instruction(self, instruction: str) -> None:
        text = instruction.strip()
        if not text:
            raise BackendError("local: instruction: expected a non-empty instruction, got ''")
        with self._lock:
            if instruction == self.instruction:
                return
            self.model.set_instruction(self.embodiment.format_prompt(instruction))  # a change resets the model
            self.instruction = instruction
            self._chunk_index = 0

    def infer(self, observation: Observation) -> ChunkResult:
        try:
            state_model = self.space.state_to_model(observation.state)
        except ValueError as exc:
            raise BackendError(f"local: {exc}") from exc
        chunk = self.infer_model_units(observation.frames, state_model)
        positions, extras = self.space.model_to_si_actions(chunk.actions)
        return ChunkResult(
            joint_names=self.embodiment.action_joints,
            positions=positions,
            dt=self.embodiment.control.dt,
            latency=chunk.latency,
            extras=extras,
            predicted_frames=chunk.predicted_frames,
        )

    def infer_model_units(self, frames: np.ndarray, state_model: np.ndarray,
                          views: dict[str, np.ndarray] | None = None) -> ModelChunk:
        """The model's own path, in model units end to end (what `dreamzero serve` runs): normalise the
        state, observe + generate, un-normalise and add the chunk-start state to the relative groups."""
        start = time.perf_counter()
        if not self.instruction:
            raise BackendError("local: no instruction set; call set_instruction() before infer()")
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != self.frame_shape or not len(frames):
            raise BackendError(
                f"local: frames: expected uint8 [T>=1, {', '.join(map(str, self.frame_shape))}], "
                f"got {frames.dtype} {list(frames.shape)}"
            )
        try:
            state = self.space.normalise_state(state_model).astype(np.float32)
        except ValueError as exc:
            raise BackendError(f"local: {exc}") from exc
        with self._lock:
            if len(frames) == 1:
                self._chunk_index = 0  # a 1-frame observation starts a new episode in the model
            self.model.observe(frames, state)
            seed = None
            if self.seed is not None and getattr(self.model, "noise_seed", None) is None:
                seed = self.seed + self._chunk_index
            gen = self.model.generate(seed=seed)
            self._chunk_index += 1
            predicted = self.model.decode_video(gen.video_latents) if self.decode_video else None
        actions = np.asarray(gen.actions, dtype=np.float64)
        want = (self.embodiment.control.horizon, self.space.action_dim)
        if actions.shape != want:
            raise BackendError(f"local: model returned actions of shape {list(actions.shape)}, expected {list(want)}")
        latency = time.perf_counter() - start
        LOG.debug("local infer chunk=%d dit_forwards=%s model_s=%.3f latency_s=%.3f",
                  self._chunk_index, getattr(gen, "dit_forwards", "?"), getattr(gen, "seconds", float("nan")), latency)
        return ModelChunk(self.space.absolute_actions(actions, state_model), latency, predicted)
