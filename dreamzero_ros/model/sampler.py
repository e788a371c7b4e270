"""Flow-matching sampler of one chunk: diffusers' UniPC (or Euler) flow scheduler, classifier-free guidance on the
video velocity only, DiT step caching (the released fixed 8-of-16 schedule and the adaptive cosine-similarity
variant) and Flash (1 step).

This module owns the solver loop: which steps run the DiT, how the conditional and unconditional branches are
combined, and the seeded noise. It calls the transformer through `WamTransformer.forward_chunk` against a KV cache
that it only reads (the chunk's keys are staged, never committed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from dreamzero_ros.model.config import FIXED_STEP_CACHE_SCHEDULE, SCHEDULERS, STEP_CACHE_MODES, ModelConfigError
from dreamzero_ros.model.kv_cache import KVCache
from dreamzero_ros.model.transformer import WamTransformer

#: adaptive step caching: (cosine similarity threshold, steps to skip), checked in order
ADAPTIVE_SKIPS = ((0.95, 4), (0.93, 2))


@dataclass
class SamplerSettings:
    """Solver knobs. num_steps: solver steps (16); shift: flow shift (5.0); cfg_scale: guidance on the video
    velocity (5.0; 1.0 disables the unconditional branch's influence); step_cache: "none" | "fixed" (DiT only at
    steps 0,1,2,6,10,13,14,15 of 16) | "adaptive"; flash: 1 solver step (for checkpoints trained for it);
    cfg_batched: run both branches as one batch of 2 (else two batch-1 forwards); scheduler: "unipc" | "euler"."""

    num_steps: int = 16
    shift: float = 5.0
    cfg_scale: float = 5.0
    step_cache: str = "none"
    flash: bool = False
    cfg_batched: bool = True
    scheduler: str = "unipc"

    def validate(self) -> None:
        if self.step_cache not in STEP_CACHE_MODES:
            raise ModelConfigError(f"step_cache: expected one of {STEP_CACHE_MODES}, got {self.step_cache!r}")
        if self.scheduler not in SCHEDULERS:
            raise ModelConfigError(f"scheduler: expected one of {SCHEDULERS}, got {self.scheduler!r}")
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ModelConfigError(f"num_steps: expected a positive int, got {self.num_steps!r}")
        if self.step_cache == "fixed" and not self.flash and self.num_steps != 16:
            raise ModelConfigError(
                f"step_cache='fixed': the released schedule {FIXED_STEP_CACHE_SCHEDULE} is for 16 steps, "
                f"got num_steps={self.num_steps} (use 'adaptive' or 'none')"
            )

    @property
    def steps(self) -> int:
        return 1 if self.flash else self.num_steps


def make_scheduler(settings: SamplerSettings) -> UniPCMultistepScheduler | FlowMatchEulerDiscreteScheduler:
    """A fresh flow-matching scheduler with the settings' shift (UniPC: order 2, predict x0, as released)."""
    if settings.scheduler == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=settings.shift)
    return UniPCMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
        flow_shift=settings.shift, solver_order=2, predict_x0=True, lower_order_final=True,
    )  # fmt: skip


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
        actions: torch.Tensor, timestep: torch.Tensor,
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
                actions=actions.expand(2, -1, -1), action_timestep=timestep.expand(2),
                cache_rows=slice(0, 2), **{**common, "state": request.state.expand(2, -1)},
            )  # fmt: skip
            cond_video, uncond_video, cond_actions = out.video[:1], out.video[1:], out.actions[:1]
        else:
            cond = transformer.forward_chunk(model_input, timestep, cond_ctx, actions=actions,
                                             action_timestep=timestep, cache_rows=cache.rows("cond"), **common)
            uncond = transformer.forward_chunk(model_input, timestep, uncond_ctx, actions=actions,
                                               action_timestep=timestep, cache_rows=cache.rows("uncond"), **common)
            cond_video, uncond_video, cond_actions = cond.video, uncond.video, cond.actions
        # guidance on the video velocity only; actions follow the conditional branch
        video_velocity = uncond_video + self.settings.cfg_scale * (cond_video - uncond_video)
        return video_velocity.float(), cond_actions.float()

    @torch.no_grad()
    def sample(
        self, transformer: WamTransformer, request: ChunkRequest, cache: KVCache, generator: torch.Generator
    ) -> ChunkSample:
        """Run the solver from seeded noise; the noise is drawn on the CPU so results do not depend on device."""
        self.settings.validate()
        device = request.state.device
        dtype = request.state.dtype
        video = torch.randn((1, *request.latent_shape), generator=generator).to(device)
        actions = torch.randn((1, request.horizon, request.action_dim), generator=generator).to(device)

        video_scheduler, action_scheduler = make_scheduler(self.settings), make_scheduler(self.settings)
        steps = self.settings.steps
        video_scheduler.set_timesteps(steps, device=device)
        action_scheduler.set_timesteps(steps, device=device)

        cached_video = cached_actions = previous_video_velocity = None
        skip_remaining, forwards, ran = 0, 0, []
        for index, t in enumerate(video_scheduler.timesteps):
            if self._runs_dit(index, skip_remaining, cached_video is None):
                timestep = t.reshape(1).float().to(device)
                cached_video, cached_actions = self._velocities(
                    transformer, request, cache, video.to(dtype), actions.to(dtype), timestep
                )
                forwards += 1
                ran.append(index)
                if self.settings.step_cache == "adaptive" and previous_video_velocity is not None:
                    similarity = F.cosine_similarity(cached_video.flatten(), previous_video_velocity.flatten(), dim=0)
                    skip_remaining = next((n for limit, n in ADAPTIVE_SKIPS if similarity > limit), 0)
                previous_video_velocity = cached_video
            elif self.settings.step_cache == "adaptive":
                skip_remaining -= 1
            video = video_scheduler.step(cached_video, t, video).prev_sample
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
