"""`WorldActionModel`: the facade the inference backend drives, chunk by chunk.

This module owns the episode: the instruction and its cached text embeddings, the first (conditioning) frame, the
KV caches of both guidance branches, the chunk counter and its reset rules, and the hand-off between encoders,
transformer and sampler. Per chunk the caller runs `observe(real frames of the executed chunk, state)` then
`generate()`.

Episode rules (the release's inference path):
- an episode starts on the first `observe()`, on a 1-frame observation, on `reset()`, on a changed instruction,
  and on the `observe()` after `context_chunks` (4) generated chunks (the 9-latent-frame attention window); the
  observation's NEWEST frame becomes the first frame: CLIP tokens, and y = the VAE latent of [first frame + 32
  zero frames] (9 latent frames) plus 4 mask channels, whose latent frame 0 is the first frame's latent, written
  into both caches at t = 0;
- chunk k (k = 1, 2, ...) denoises latent frames 2k-1 and 2k with y's latent frames 2k-1 and 2k;
- the `observe()` after chunk k was generated writes chunk k's REAL frames into both caches with a VIDEO-ONLY
  forward at t = 0 (no action or state tokens), with the same y slice. Their latents come from a clip encoded
  from scratch: 4 received frames are each repeated twice and the first is prepended (8 received frames: the
  first is prepended; 9 are used as they are; any other count is first resampled evenly to 8), and the clip's
  last 2 latents are written. Predicted latents are never cached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamzero_ros.model.config import ModelConfigError, WamConfig, preset_config
from dreamzero_ros.model.encoders import ConditionStream, ImageEncoder, LatentVideoCodec, TextEncoder, build_video_vae
from dreamzero_ros.model.kv_cache import KVCache
from dreamzero_ros.model.sampler import ChunkRequest, FlowSampler, SamplerSettings
from dreamzero_ros.model.transformer import Segment, SegmentKind, WamTransformer

log = logging.getLogger(__name__)

SAMPLER_KNOBS = ("num_steps", "shift", "cfg_scale", "step_cache", "flash", "cfg_batched", "scheduler", "noise_seed",
                 "decouple_inference_noise", "video_inference_final_noise")
BRANCHES = ("cond", "uncond")


@dataclass
class Generation:
    """One generated chunk.

    actions: [horizon, action_dim] float32 normalised actions in model space (~[-1, 1]; not clipped here).
    video_latents: [1, C, F, h, w] predicted latents of the chunk (for decode_video; never cached).
    dit_forwards: DiT evaluations the solver ran (a batched CFG evaluation counts once).
    seconds: wall time of generate().
    """

    actions: np.ndarray
    video_latents: torch.Tensor
    dit_forwards: int
    seconds: float


class WorldActionModel:
    """DreamZero WAM: text/image/VAE encoders + causal DiT + flow sampler, with episode state.

    Sampler knobs (SAMPLER_KNOBS: num_steps, shift, cfg_scale, step_cache, flash, cfg_batched, scheduler,
    noise_seed, decouple_inference_noise, video_inference_final_noise) are attributes and can also be given to the
    constructors as keyword overrides.
    """

    def __init__(
        self,
        config: WamConfig,
        transformer: WamTransformer,
        text_encoder: TextEncoder,
        vae: LatentVideoCodec,
        image_encoder: ImageEncoder | None,
        *,
        action_dim: int,
        state_dim: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        metadata: dict | None = None,
        cfg_batched: bool = True,
    ) -> None:
        if not 1 <= action_dim <= config.max_action_dim:
            raise ModelConfigError(f"action_dim: expected 1..{config.max_action_dim}, got {action_dim}")
        if not 1 <= state_dim <= config.max_state_dim:
            raise ModelConfigError(f"state_dim: expected 1..{config.max_state_dim}, got {state_dim}")
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype
        self.transformer = _place(transformer, self.device, dtype)
        self.text_encoder = _place(text_encoder, self.device, dtype)
        self.vae = _place(vae, self.device, dtype)
        self.image_encoder = _place(image_encoder, self.device, dtype) if image_encoder is not None else None
        self.metadata = metadata
        self.action_dim = action_dim
        self.state_dim = state_dim
        self.horizon = config.horizon
        self.frames_per_chunk = config.frames_per_chunk
        self.sampler = FlowSampler(SamplerSettings(
            num_steps=config.num_steps, shift=config.shift, cfg_scale=config.cfg_scale,
            step_cache=config.step_cache, flash=config.flash, cfg_batched=cfg_batched, scheduler=config.scheduler,
            noise_seed=config.noise_seed, decouple_inference_noise=config.decouple_inference_noise,
            video_inference_final_noise=config.video_inference_final_noise,
        ))  # fmt: skip
        self.sampler.settings.validate()
        self.cache = KVCache.for_config(config, device=self.device, dtype=dtype)
        self._generator = torch.Generator().manual_seed(seed)
        self._prompt: str | None = None
        self._text: torch.Tensor | None = None  # [1, text_len, text_dim] of the current instruction
        self._negative_text: torch.Tensor | None = None
        self.text_encodings = 0  # prompts encoded so far (the cache hit test reads it)
        self.resets = 0
        self.reset()

    # ---- sampler knobs as attributes -----------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name in SAMPLER_KNOBS:
            return getattr(self.__dict__["sampler"].settings, name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SAMPLER_KNOBS:
            setattr(self.sampler.settings, name, value)
            self.sampler.settings.validate()
        else:
            super().__setattr__(name, value)

    # ---- constructors ---------------------------------------------------------------------------------------

    @classmethod
    def from_preset(
        cls,
        preset: str = "tiny",
        *,
        action_dim: int,
        state_dim: int,
        horizon: int,
        frame_size: tuple[int, int] = (352, 640),
        seed: int = 0,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> WorldActionModel:
        """Random weights (seeded) with a preset's sizes; `overrides` set WamConfig fields or sampler knobs."""
        cfg_batched = overrides.pop("cfg_batched", True)
        config = preset_config(preset, horizon=horizon, frame_size=tuple(frame_size), **overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transformer, text_encoder, vae, image_encoder = build_components(config)
        return cls(config, transformer, text_encoder, vae, image_encoder, action_dim=action_dim,
                   state_dim=state_dim, seed=seed, device=device, dtype=dtype, cfg_batched=cfg_batched)  # fmt: skip

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None
    ) -> WorldActionModel:
        """Load the released layout (config.json, model.safetensors[.index.json], experiment_cfg/metadata.json).

        dtype None: the checkpoint's dtype on CUDA, float32 on CPU. Never touches the network."""
        from dreamzero_ros.model.checkpoint import load_world_action_model

        return load_world_action_model(cls, Path(path), device=device, dtype=dtype)

    # ---- episode --------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Start a new episode: empty both KV caches; the next observe() provides the first frame."""
        self.cache.reset()
        self._episode_started = False
        self._written = 0  # chunks whose real frames are in the cache
        self._generated = 0  # chunks generated in this episode
        self._contexts: dict[str, torch.Tensor] | None = None
        self._y: ConditionStream | None = None  # latents of [first frame + 32 zero frames], computed as needed
        self._chunk_state: torch.Tensor | None = None
        self._last_latent: torch.Tensor | None = None
        self.resets += 1

    def set_instruction(self, prompt: str) -> None:
        """Set the (already templated) instruction. A change resets the episode; the same text is a no-op and
        reuses the cached embedding."""
        if prompt == self._prompt:
            return
        self._text = self._encode_text(prompt)
        self._prompt = prompt
        self.reset()

    @property
    def instruction(self) -> str | None:
        return self._prompt

    @property
    def chunks_in_context(self) -> int:
        """Chunks whose real frames are written to the KV cache in this episode (0..context_chunks-1)."""
        return self._written

    def observe(self, frames: np.ndarray, state: np.ndarray) -> None:
        """Write REAL observations: frames uint8 [T, H, W, 3] (oldest first, T >= 1), state [state_dim] normalised.

        Starts a new episode (frames[-1] is the first frame) when none is running, when T == 1, or after
        context_chunks generated chunks; otherwise writes the real frames of the chunk generated last into both
        caches (see the module docstring). `state` conditions the next generate().
        """
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[0] < 1:
            raise ValueError(f"frames: expected uint8 [T >= 1, H, W, 3], got shape {list(frames.shape)}")
        state_tensor = self._pad_state(state)
        if not self._episode_started or frames.shape[0] == 1 or self._generated >= self.config.context_chunks:
            if self._episode_started:
                self.reset()
            self._start_episode(frames[-1], state_tensor)
            return
        self._chunk_state = state_tensor
        if self._generated == self._written:
            # nothing generated since the last write: these frames follow no chunk of ours (the release ignores them)
            log.debug("observe: no chunk generated since the last observation; %d frames not written", len(frames))
            return
        self._write_chunk(self.real_clip(frames))

    @torch.no_grad()
    def generate(self, *, seed: int | None = None) -> Generation:
        """Denoise the next chunk's video latents and actions.

        Noise: `seed` given -> drawn afresh from it for this call; else the sampler's `noise_seed` when set (the
        release: 1140 on every call); else the model's own generator continues."""
        if self._prompt is None:
            raise RuntimeError("generate() before set_instruction(): the model needs an instruction")
        if not self._episode_started:
            raise RuntimeError("generate() before observe(): the episode has no first frame yet")
        start = time.perf_counter()
        chunk = self._written + 1
        h, w = self.config.latent_size
        request = ChunkRequest(
            contexts=self._contexts, y=self._chunk_y(chunk), state=self._chunk_state, chunk=chunk,
            frame_offset=self._frame_offset(chunk),
            latent_shape=(self.config.latent_channels, self.config.latent_frames_per_chunk, h, w),
            horizon=self.horizon, action_dim=self.config.max_action_dim, embodiment_id=self.config.embodiment_id,
        )  # fmt: skip
        if seed is not None:
            saved = self.sampler.settings.noise_seed
            self.sampler.settings.noise_seed = seed
            try:
                sample = self.sampler.sample(self.transformer, request, self.cache)
            finally:
                self.sampler.settings.noise_seed = saved
        else:
            sample = self.sampler.sample(self.transformer, request, self.cache, self._generator)
        self._generated = chunk
        actions = sample.actions[0, :, : self.action_dim].float().cpu().numpy().astype(np.float32)
        return Generation(actions, sample.video_latents, sample.dit_forwards, time.perf_counter() - start)

    def decode_video(self, latents: torch.Tensor) -> np.ndarray:
        """Predicted latents [1, C, F, h, w] -> uint8 frames [4F, H, W, 3] (the operators' visual plan).

        The causal VAE decodes a leading latent frame to 1 frame and each later one to 4; the newest observed
        latent is prepended as context (and its frame dropped) so a chunk decodes to its 8 frames."""
        latents = latents.to(self.device)
        context = self._last_latent
        if context is not None and context.shape[-2:] == latents.shape[-2:]:
            return self.vae.decode(torch.cat([context.to(latents.dtype), latents], dim=2))[1:]
        return self.vae.decode(latents)

    def real_clip(self, frames: np.ndarray) -> np.ndarray:
        """The clip of a chunk's received real frames [T, H, W, 3] that the VAE encodes (1 + frames_per_chunk):
        T == frames_per_chunk + 1 as it is; T dividing frames_per_chunk into groups of 4 (4 or 8): each frame
        repeated frames_per_chunk / T times and the first prepended, as the release; any other T is first resampled
        evenly to frames_per_chunk (newest kept)."""
        count = self.frames_per_chunk
        total = frames.shape[0]
        if total == count + 1:
            return frames
        if total % 4 or count % total:
            log.debug("observe: resampling %d frames to %d", total, count)
            frames = frames[np.round(np.linspace(0, total - 1, count)).astype(int)]
        frames = np.repeat(frames, count // frames.shape[0], axis=0)
        return np.concatenate([frames[:1], frames])

    # ---- internals -------------------------------------------------------------------------------------------

    def _encode_text(self, prompt: str) -> torch.Tensor:
        self.text_encodings += 1
        return self.text_encoder.encode(prompt).to(self.dtype)

    def _pad_state(self, state: np.ndarray) -> torch.Tensor:
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        if state.shape[0] != self.state_dim:
            raise ValueError(f"state: expected [{self.state_dim}] normalised values, got shape {list(state.shape)}")
        padded = torch.zeros(1, self.config.max_state_dim, device=self.device, dtype=self.dtype)
        padded[0, : self.state_dim] = torch.from_numpy(state).to(self.device, self.dtype)
        return padded

    def _frame_offset(self, chunk: int) -> int:
        """Latent frame index of chunk `chunk`'s first latent frame: 2k - 1."""
        return 1 + (chunk - 1) * self.config.latent_frames_per_chunk

    def _chunk_y(self, chunk: int) -> torch.Tensor | None:
        """y's latent frames 2k-1 .. 2k of chunk k (the last ones once past the end, as the release clamps), with
        the 4 mask channels in front (all 0: the mask is 1 on latent frame 0 only)."""
        if self._y is None:
            return None
        per_chunk = self.config.latent_frames_per_chunk
        start = min(self._frame_offset(chunk), self._y.total - per_chunk)
        latents = self._y.latents(start + per_chunk)[:, :, start:].to(self.dtype)
        mask = torch.zeros(1, 4, *latents.shape[2:], device=self.device, dtype=self.dtype)
        return torch.cat([mask, latents], dim=1)  # [mask][latent], the release's channel order

    def _project_contexts(self, image_tokens: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if self._negative_text is None:
            self._negative_text = self._encode_text(self.config.negative_prompt)
        texts = {"cond": self._text, "uncond": self._negative_text}
        return {b: self.transformer.embed_context(texts[b], image_tokens) for b in BRANCHES}

    def _batched_contexts(self) -> torch.Tensor:
        return torch.cat([self._contexts[b] for b in BRANCHES])

    @torch.no_grad()
    def _start_episode(self, frame: np.ndarray, state: torch.Tensor) -> None:
        if self._prompt is None:
            raise RuntimeError("observe() before set_instruction(): the first frame needs the instruction's context")
        self.cache.reset()
        image_tokens = self.image_encoder.encode(frame).to(self.dtype) if self.image_encoder is not None else None
        self._contexts = self._project_contexts(image_tokens)
        if self.config.conditioning == "i2v":
            self._y = ConditionStream(self.vae, frame, self.config.condition_frames)
            first = self._y.latents(1).to(self.dtype)
            ones = torch.ones(1, 4, *first.shape[2:], device=self.device, dtype=self.dtype)
            first_input = torch.cat([first, ones, first], dim=1)  # latent ++ y frame 0 ([mask = 1][latent])
        else:
            first = self.vae.encode_clip(frame[None]).to(self.dtype)
            first_input = first
        zero_t = torch.zeros(len(BRANCHES), device=self.device)
        self.transformer.forward_chunk(first_input.expand(len(BRANCHES), -1, -1, -1, -1), zero_t,
                                       self._batched_contexts(), chunk=0, frame_offset=0, cache=self.cache,
                                       embodiment_id=self.config.embodiment_id)  # fmt: skip
        self.cache.commit((Segment(SegmentKind.FIRST, 0, self.config.tokens_per_latent_frame),))
        self._episode_started = True
        self._written = self._generated = 0
        self._chunk_state = state
        self._last_latent = first

    @torch.no_grad()
    def _write_chunk(self, clip: np.ndarray) -> None:
        """Encode the real clip from scratch and write its last latent frames (chunk `generated`) into both caches
        with a video-only forward at t = 0."""
        chunk = self._generated
        per_chunk = self.config.latent_frames_per_chunk
        latents = self.vae.encode_clip(clip).to(self.dtype)[:, :, -per_chunk:]  # [1, z, F, h, w]
        y = self._chunk_y(chunk)
        video = latents if y is None else torch.cat([latents, y], dim=1)
        branches = len(BRANCHES)
        zero_t = torch.zeros(branches, device=self.device)
        self.transformer.forward_chunk(
            video.expand(branches, -1, -1, -1, -1), zero_t, self._batched_contexts(), chunk=chunk,
            frame_offset=self._frame_offset(chunk), cache=self.cache, embodiment_id=self.config.embodiment_id,
        )  # fmt: skip
        self.cache.commit((Segment(SegmentKind.VIDEO, chunk, self.config.tokens_per_latent_frame * per_chunk),))
        self._written = chunk
        self._last_latent = latents[:, :, -1:]


def _place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    module = module.to(device)
    if any(p.dtype != dtype for p in module.parameters()):
        module = module.to(dtype)
    return module.eval()


def build_components(config: WamConfig) -> tuple[WamTransformer, TextEncoder, LatentVideoCodec, ImageEncoder | None]:
    """Randomly initialised modules for `config` (the caller seeds torch)."""
    transformer = WamTransformer.from_wam_config(config)
    text_encoder = TextEncoder(config)
    vae = build_video_vae(config)
    image_encoder = ImageEncoder(config) if config.image_encoder is not None else None
    return transformer, text_encoder, vae, image_encoder
