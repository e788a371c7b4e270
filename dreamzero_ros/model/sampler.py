"""Flow-matching sampler of one chunk: diffusers' UniPC (or Euler) flow scheduler on the release's sigmas,
classifier-free guidance on the video velocity only, DiT step caching (the released fixed 8-of-16 schedule and the
adaptive cosine-similarity variant), the release's `decouple_inference_noise` variant, and 1-step Flash.

This module owns the solver loop: the noise schedule and the integer timesteps the DiT sees, which steps run the
DiT, how the conditional and unconditional branches are combined, and the seeded noise. It calls the transformer
through `WamTransformer.forward_chunk` against a KV cache that it only reads (the chunk's keys are staged, never
committed).

Schedule (the release's FlowUniPCMultistepScheduler, reproduced with diffusers): s = linspace(sigma_max, 0,
steps + 1)[:-1] with sigma_max = float32(0.999) (the first of its 1000 training sigmas), shifted s' = shift s /
(1 + (shift - 1) s) in float64; the DiT gets int64(s' * 1000) (truncation) and the solver steps on float32 s'
followed by 0. diffusers' own `use_flow_sigmas` grid is linspace(1, 0.001) instead, so the release's unshifted
s is handed to `set_timesteps(sigmas=...)`, which applies the same shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from dreamzero_ros.model.config import FIXED_STEP_CACHE_SCHEDULE, SCHEDULERS, STEP_CACHE_MODES, ModelConfigError
from dreamzero_ros.model.kv_cache import KVCache
from dreamzero_ros.model.transformer import WamTransformer

#: adaptive step caching: (cosine similarity threshold, steps to skip), checked in order
ADAPTIVE_SKIPS = ((0.95, 4), (0.93, 2))
#: the release's largest sigma: the first of its 1000 training sigmas 1 - linspace(1, 1/1000)[::-1], in float32
RELEASE_SIGMA_MAX = float(np.float32(0.999))
NUM_TRAIN_TIMESTEPS = 1000


def release_sigmas(steps: int) -> np.ndarray:
    """The release's unshifted sigmas: linspace(float32(0.999), 0, steps + 1)[:-1] (float64)."""
    return np.linspace(RELEASE_SIGMA_MAX, 0.0, steps + 1)[:-1].copy()


def shifted_schedule(steps: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """(shifted sigmas float64 [steps], DiT timesteps int64 [steps]) exactly as the release computes them."""
    sigmas = release_sigmas(steps)
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return sigmas, (sigmas * NUM_TRAIN_TIMESTEPS).astype(np.int64)


@dataclass
class SamplerSettings:
    """Solver knobs.

    num_steps: solver steps (16); shift: flow shift (5.0); cfg_scale: guidance on the video velocity (5.0; 1.0
    disables the unconditional branch's influence); step_cache: "none" | "fixed" (DiT only at steps
    0,1,2,6,10,13,14,15 of 16: what the reference server always runs) | "adaptive"; cfg_batched: run both branches
    as one batch of 2 (else two batch-1 forwards); scheduler: "unipc" (released) | "euler".
    noise_seed: when set, every chunk's noise is drawn afresh from this seed (the release seeds video and action
        noise with 1140 on every call); None continues the caller's generator.
    decouple_inference_noise: the release's variant for checkpoints trained with decoupled video/action noise:
        the video sigmas are rescaled to end at `video_inference_final_noise` (0.8) instead of 0 while the actions keep the
        plain schedule down to 0; still num_steps steps.
    flash: ONE solver step (not in the release; only for checkpoints trained for 1-step DreamZero-Flash
        inference; a released checkpoint uses the 16-step schedule, or decouple_inference_noise if trained so).
    """

    num_steps: int = 16
    shift: float = 5.0
    cfg_scale: float = 5.0
    step_cache: str = "none"
    flash: bool = False
    cfg_batched: bool = True
    scheduler: str = "unipc"
    noise_seed: int | None = None
    decouple_inference_noise: bool = False
    video_inference_final_noise: float = 0.8

    def validate(self) -> None:
        if self.step_cache not in STEP_CACHE_MODES:
            raise ModelConfigError(f"step_cache: expected one of {STEP_CACHE_MODES}, got {self.step_cache!r}")
        if self.scheduler not in SCHEDULERS:
            raise ModelConfigError(f"scheduler: expected one of {SCHEDULERS}, got {self.scheduler!r}")
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ModelConfigError(f"num_steps: expected a positive int, got {self.num_steps!r}")
        if self.noise_seed is not None and (not isinstance(self.noise_seed, int) or self.noise_seed < 0):
            raise ModelConfigError(f"noise_seed: expected None or an int >= 0, got {self.noise_seed!r}")
        if not 0.0 <= self.video_inference_final_noise < 1.0:
            raise ModelConfigError(f"video_inference_final_noise: expected a value in [0, 1), got {self.video_inference_final_noise!r}")
        if self.decouple_inference_noise and self.flash:
            raise ModelConfigError("decouple_inference_noise and flash: expected at most one of them, got both")
        if self.step_cache == "fixed" and not self.flash and self.num_steps != 16:
            raise ModelConfigError(
                f"step_cache='fixed': the released schedule {FIXED_STEP_CACHE_SCHEDULE} is for 16 steps, "
                f"got num_steps={self.num_steps} (use 'adaptive' or 'none')"
            )

    @property
    def steps(self) -> int:
        return 1 if self.flash else self.num_steps


def make_scheduler(settings: SamplerSettings) -> UniPCMultistepScheduler | FlowMatchEulerDiscreteScheduler:
    """A flow-matching scheduler set to the release's schedule (UniPC: order 2, predict x0, bh2, final sigma 0)."""
    if settings.scheduler == "euler":
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=settings.shift)
    else:
        scheduler = UniPCMultistepScheduler(
            num_train_timesteps=NUM_TRAIN_TIMESTEPS, prediction_type="flow_prediction", use_flow_sigmas=True,
            flow_shift=settings.shift, solver_order=2, predict_x0=True, lower_order_final=True,
            final_sigmas_type="zero",
        )  # fmt: skip
    scheduler.set_timesteps(sigmas=release_sigmas(settings.steps))
    scheduler.set_begin_index(0)  # step i uses sigma i: no lookup of the timestep value
    return scheduler


def decouple_video_schedule(scheduler, final_noise: float) -> torch.Tensor:
    """The release's `decouple_inference_noise` video schedule, in place: sigmas (float32, final 0 included)
    rescaled s * (s_max - f) / s_max + f so they run from s_max to f; returns the DiT timesteps
    int64(sigmas[:-1] * 1000) computed in float32 as the release does."""
    sigma_max = scheduler.sigmas[0].item()
    scheduler.sigmas = scheduler.sigmas * (sigma_max - final_noise) / sigma_max + final_noise
    return (scheduler.sigmas[:-1] * NUM_TRAIN_TIMESTEPS).to(torch.int64)


def draw_noise(shape: tuple[int, ...], source: int | torch.Generator, device: torch.device) -> torch.Tensor:
    """Gaussian noise in float32. An int seed draws as the release does on every call: a fresh generator on
    `device` seeded with it, bfloat16 values (so a CUDA run reproduces the release's noise bit for bit). A
    generator draws float32 on the CPU, so results do not depend on the device."""
    if isinstance(source, int):
        generator = torch.Generator(device).manual_seed(source)
        return torch.randn(shape, generator=generator, device=device, dtype=torch.bfloat16).float()
    return torch.randn(shape, generator=source).to(device)


@dataclass
class ChunkRequest:
    """What the sampler needs to denoise one chunk.

    contexts: {"cond": [1, Lc, dim], "uncond": [1, Lc, dim]} projected contexts (embed_context).
    y: [1, in_channels - latent_channels, F, h, w] conditioning channels of the chunk's frames (or None).
    state: [1, max_state_dim] normalised, padded state at the chunk's start.
    """

    contexts: dict[str, torch.Tensor]
    y: torch.Tensor | None
    state: torch.Tensor
    chunk: int
    frame_offset: int
    latent_shape: tuple[int, int, int, int]  # (C, F, h, w)
    horizon: int
    action_dim: int
    embodiment_id: int = 0


@dataclass
class ChunkSample:
    video_latents: torch.Tensor  # [1, C, F, h, w] predicted (never cached)
    actions: torch.Tensor  # [1, horizon, max_action_dim] normalised, model space
    dit_forwards: int
    ran_steps: list[int]


class FlowSampler:
    """Denoises a chunk's video latents and actions together on one schedule."""

    def __init__(self, settings: SamplerSettings) -> None:
        self.settings = settings

    def _velocities(
        self, transformer: WamTransformer, request: ChunkRequest, cache: KVCache, video: torch.Tensor,
        actions: torch.Tensor, timestep: torch.Tensor, action_timestep: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """One DiT evaluation: (guided video velocity, conditional action velocity)."""
        model_input = video if request.y is None else torch.cat([video, request.y.to(video.dtype)], dim=1)
        common = dict(chunk=request.chunk, frame_offset=request.frame_offset, state=request.state,
                      cache=cache, embodiment_id=request.embodiment_id)  # fmt: skip
        cond_ctx, uncond_ctx = request.contexts["cond"], request.contexts["uncond"]
        if self.settings.cfg_batched:
            # conditional and unconditional branches in one batch of 2; rows follow the cache's branch order
            out = transformer.forward_chunk(
                model_input.expand(2, -1, -1, -1, -1), timestep.expand(2), torch.cat([cond_ctx, uncond_ctx]),
                actions=actions.expand(2, -1, -1), action_timestep=action_timestep.expand(2),
                cache_rows=slice(0, 2), **{**common, "state": request.state.expand(2, -1)},
            )  # fmt: skip
            cond_video, uncond_video, cond_actions = out.video[:1], out.video[1:], out.actions[:1]
        else:
            cond = transformer.forward_chunk(model_input, timestep, cond_ctx, actions=actions,
                                             action_timestep=action_timestep, cache_rows=cache.rows("cond"),
                                             **common)  # fmt: skip
            uncond = transformer.forward_chunk(model_input, timestep, uncond_ctx, actions=actions,
                                               action_timestep=action_timestep, cache_rows=cache.rows("uncond"),
                                               **common)  # fmt: skip
            cond_video, uncond_video, cond_actions = cond.video, uncond.video, cond.actions
        # guidance on the video velocity only; actions follow the conditional branch
        video_velocity = uncond_video + self.settings.cfg_scale * (cond_video - uncond_video)
        return video_velocity.float(), cond_actions.float()

    @torch.no_grad()
    def sample(
        self, transformer: WamTransformer, request: ChunkRequest, cache: KVCache,
        generator: torch.Generator | None = None,
    ) -> ChunkSample:  # fmt: skip
        """Run the solver from noise: seeded per call with `settings.noise_seed` when set (video and actions each
        from a fresh generator with that seed, as the release), else drawn from `generator`."""
        self.settings.validate()
        device = request.state.device
        dtype = request.state.dtype
        if self.settings.noise_seed is not None:
            video = draw_noise((1, *request.latent_shape), self.settings.noise_seed, device)
            actions = draw_noise((1, request.horizon, request.action_dim), self.settings.noise_seed, device)
        else:
            if generator is None:
                raise ValueError("sample: expected a generator when settings.noise_seed is None")
            video = draw_noise((1, *request.latent_shape), generator, device)
            actions = draw_noise((1, request.horizon, request.action_dim), generator, device)

        video_scheduler, action_scheduler = make_scheduler(self.settings), make_scheduler(self.settings)
        action_timesteps = action_scheduler.timesteps.to(torch.int64)
        video_timesteps = action_timesteps.clone()
        if self.settings.decouple_inference_noise:
            video_timesteps = decouple_video_schedule(video_scheduler, self.settings.video_inference_final_noise)

        cached_video = cached_actions = previous_video_velocity = None
        skip_remaining, forwards, ran = 0, 0, []
        for index in range(len(action_timesteps)):
            if self._runs_dit(index, skip_remaining, cached_video is None):
                cached_video, cached_actions = self._velocities(
                    transformer, request, cache, video.to(dtype), actions.to(dtype),
                    video_timesteps[index].reshape(1).to(device), action_timesteps[index].reshape(1).to(device),
                )  # fmt: skip
                forwards += 1
                ran.append(index)
                if self.settings.step_cache == "adaptive" and previous_video_velocity is not None:
                    similarity = F.cosine_similarity(cached_video.flatten(), previous_video_velocity.flatten(), dim=0)
                    skip_remaining = next((n for limit, n in ADAPTIVE_SKIPS if similarity > limit), 0)
                previous_video_velocity = cached_video
            elif self.settings.step_cache == "adaptive":
                skip_remaining -= 1
            video = video_scheduler.step(cached_video, video_scheduler.timesteps[index], video).prev_sample
            actions = action_scheduler.step(cached_actions, action_scheduler.timesteps[index], actions).prev_sample
        return ChunkSample(video, actions, forwards, ran)

    def _runs_dit(self, index: int, skip_remaining: int, nothing_cached: bool) -> bool:
        if nothing_cached or self.settings.flash:
            return True
        if self.settings.step_cache == "fixed":
            return index in FIXED_STEP_CACHE_SCHEDULE
        if self.settings.step_cache == "adaptive":
            return skip_remaining <= 0
        return True
