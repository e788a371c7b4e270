"""The training objective: joint flow matching of a chunk's video latents and actions, teacher-forced.

This module owns how a batch of `Sample`s becomes the DiT's training input and the loss:

* flow matching as the release (and diffusers' flow scheduler the sampler runs): x_t = (1 - t) x0 + t eps, the
  DiT predicts the velocity eps - x0 and sees the timestep 1000 t; t ~ U(0, 1) per sample and chunk, shared by the
  chunk's video and actions; with `decoupled_video_noise` (DreamZero-Flash) the video gets t_v = 1 - eta,
  eta ~ Beta(7, 1), while the actions keep t ~ U(0, 1);
* teacher forcing with clean context: a batch uses chunks 1..k of its samples (k drawn per step in
  1..chunks); chunks 1..k-1 are the clean ground truth at t = 0 and chunk k is noised, all in one
  `WamTransformer.forward_full` pass under the training block-causal mask; the loss is on chunk k, the way
  inference denoises chunk k against the real frames of chunks < k;
* loss = MSE of the video velocity + action_weight x MSE of the action velocity on the embodiment's action
  dimensions (the zero padding up to 32 is neither supervised nor used);
* classifier-free guidance needs an unconditional branch: with probability `text_dropout` a sample's text is the
  negative prompt's embedding (what the sampler's unconditional branch feeds).

Every random draw of a sample comes from a generator seeded by (seed, step, position in the global batch), so a
step's batch is the same whether one process or N DDP ranks compute it, and a resumed run continues identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dreamzero_ros.model.config import WamConfig
from dreamzero_ros.training.data import Sample, TrainingSet

#: Beta(7, 1) of DreamZero-Flash's video noise: its CDF is x^7, so eta = u^(1/7) for u ~ U(0, 1)
FLASH_BETA_A = 7.0
NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class ObjectiveConfig:
    action_weight: float = 5.0
    decoupled_video_noise: bool = False
    text_dropout: float = 0.1

    def validate(self) -> None:
        if self.action_weight < 0:
            raise ValueError(f"action_weight: expected >= 0, got {self.action_weight}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"text_dropout: expected a probability in [0, 1), got {self.text_dropout}")


def _generator(seed: int, step: int, position: int) -> torch.Generator:
    # one independent stream per (seed, step, position); a large odd multiplier keeps nearby triples apart
    mixed = ((seed * 1_000_003 + step) * 1_000_033 + position + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def target_chunk(seed: int, step: int, chunks: int) -> int:
    """k of this step (1..chunks): the noised chunk; chunks 1..k-1 are its clean context."""
    return int(torch.randint(1, chunks + 1, (1,), generator=_generator(seed, step, -1)).item())


@dataclass
class Batch:
    text: torch.Tensor  # [B, Lt, text_dim]
    image: torch.Tensor | None  # [B, Li, image_dim]
    first: torch.Tensor  # [B, in_channels, 1, h, w]
    chunks: list[dict[str, torch.Tensor]]  # forward_full's per-chunk inputs
    video_target: torch.Tensor  # [B, z, F, h, w] velocity of the noised chunk
    action_target: torch.Tensor  # [B, H, A] velocity on the real action dims
    action_dim: int

    def to(self, device: torch.device) -> Batch:
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return Batch(move(self.text), move(self.image), move(self.first),
                     [{k: v.to(device) for k, v in c.items()} for c in self.chunks],
                     move(self.video_target), move(self.action_target), self.action_dim)  # fmt: skip


def make_batch(
    data: TrainingSet, samples: list[Sample], positions: list[int], *, k: int, seed: int, step: int,
    config: ObjectiveConfig, max_action_dim: int, max_state_dim: int,
) -> Batch:  # fmt: skip
    """The inputs of chunks 1..k of `samples` with chunk k noised (see the module docstring). positions: each
    sample's place in the global batch (seeds its draws)."""
    texts, images, firsts, video_targets, action_targets = [], [], [], [], []
    per_chunk: list[dict[str, list[torch.Tensor]]] = [
        {"video": [], "video_timestep": [], "actions": [], "action_timestep": [], "state": []} for _ in range(k)
    ]
    for sample, position in zip(samples, positions, strict=True):
        g = _generator(seed, step, position)
        # fixed draw order whatever the options, so switching one option does not reshuffle the others
        t_action = torch.rand((), generator=g)
        u_video = torch.rand((), generator=g)
        drop = torch.rand((), generator=g) < config.text_dropout
        x0_video = sample.video[k - 1]
        noise_video = torch.randn(x0_video.shape, generator=g)
        horizon, action_dim = sample.actions.shape[1:]
        noise_action = torch.randn((horizon, max_action_dim), generator=g)
        t_video = 1.0 - u_video ** (1.0 / FLASH_BETA_A) if config.decoupled_video_noise else t_action

        texts.append(data.negative_text if drop else data.texts[sample.task])
        images.append(sample.image)
        ones = torch.ones(4, 1, *sample.first.shape[2:])
        firsts.append(torch.cat([sample.first, ones, sample.y[:, :1]]))
        for j in range(1, k + 1):
            y = sample.y[:, 2 * j - 1 : 2 * j + 1]
            mask = torch.zeros(4, *y.shape[1:])
            actions = torch.zeros(horizon, max_action_dim)
            actions[:, :action_dim] = sample.actions[j - 1]
            state = torch.zeros(max_state_dim)
            state[: sample.state.shape[1]] = sample.state[j - 1]
            video = sample.video[j - 1]
            tv = ta = torch.zeros(())
            if j == k:
                video = (1 - t_video) * video + t_video * noise_video
                actions = (1 - t_action) * actions + t_action * noise_action
                tv, ta = t_video, t_action
                video_targets.append(noise_video - x0_video)
                action_targets.append(noise_action[:, :action_dim] - sample.actions[j - 1])
            chunk = per_chunk[j - 1]
            chunk["video"].append(torch.cat([video, mask, y]))
            chunk["video_timestep"].append(tv * NUM_TRAIN_TIMESTEPS)
            chunk["actions"].append(actions)
            chunk["action_timestep"].append(ta * NUM_TRAIN_TIMESTEPS)
            chunk["state"].append(state)
    stack = torch.stack
    return Batch(
        text=stack(texts), image=None if images[0] is None else stack(images), first=stack(firsts),
        chunks=[{key: stack(values) for key, values in chunk.items()} for chunk in per_chunk],
        video_target=stack(video_targets), action_target=stack(action_targets), action_dim=action_dim,
    )  # fmt: skip


class FlowMatchingLoss(nn.Module):
    """The transformer and its loss as one module, so DistributedDataParallel sees `forward` (the DiT's training
    path is `forward_full`, which DDP's hooks would not see if called on the transformer directly)."""

    def __init__(self, transformer: nn.Module, config: ObjectiveConfig, model_config: WamConfig) -> None:
        super().__init__()
        config.validate()
        self.transformer = transformer
        self.config = config
        self.model_config = model_config
        self.embodiment_id = model_config.embodiment_id

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (loss, video MSE, action MSE), each the mean over this batch."""
        context = self.transformer.embed_context(batch.text, batch.image)
        outputs = self.transformer.forward_full(batch.first, batch.chunks, context, embodiment_id=self.embodiment_id)
        noised = outputs[-1]
        video = F.mse_loss(noised.video.float(), batch.video_target)
        action = F.mse_loss(noised.actions[..., : batch.action_dim].float(), batch.action_target)
        return video + self.config.action_weight * action, video.detach(), action.detach()
