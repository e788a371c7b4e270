"""The flow-matching sampler: step counts of DiT step caching and Flash, CFG on video only, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import frames, one_torch_thread, state, tiny_model  # noqa: F401

torch = pytest.importorskip("torch")

from dreamzero_ros.model.config import FIXED_STEP_CACHE_SCHEDULE, ModelConfigError  # noqa: E402
from dreamzero_ros.model.kv_cache import KVCache  # noqa: E402
from dreamzero_ros.model.sampler import ChunkRequest, FlowSampler, SamplerSettings  # noqa: E402
from dreamzero_ros.model.transformer import ChunkOutput  # noqa: E402


class ScriptedTransformer:
    """Stands in for the DiT: returns velocities from `velocity(call_index)` and counts calls."""

    def __init__(self, velocity) -> None:
        self.velocity = velocity
        self.calls = 0

    def forward_chunk(self, video, video_timestep, context, *, actions, **_):
        v = self.velocity(self.calls).expand_as(video[:, :2]).clone()
        self.calls += 1
        return ChunkOutput(v, torch.zeros(video.shape[0], *actions.shape[1:]))


def request() -> ChunkRequest:
    return ChunkRequest(contexts={"cond": torch.zeros(1, 3, 4), "uncond": torch.zeros(1, 3, 4)}, y=None,
                        state=torch.zeros(1, 64), chunk=1, frame_offset=1, latent_shape=(2, 2, 3, 3),
                        horizon=4, action_dim=32)  # fmt: skip


def sample(settings: SamplerSettings, velocity):
    transformer = ScriptedTransformer(velocity)
    cache = KVCache(num_layers=1, max_tokens=4, heads=1, head_dim=2)
    result = FlowSampler(settings).sample(transformer, request(), cache, torch.Generator().manual_seed(0))
    return result, transformer.calls


def constant(_: int) -> torch.Tensor:
    return torch.ones(1)


def alternating(call: int) -> torch.Tensor:
    # successive velocities point in opposite directions: cosine similarity -1, nothing is skipped
    return torch.tensor([1.0, -1.0]).view(1, 2, 1, 1, 1) * (-1) ** call


def test_the_fixed_8_of_16_schedule_runs_exactly_8_dit_forwards_at_the_released_steps():
    result, calls = sample(SamplerSettings(num_steps=16, step_cache="fixed"), constant)
    assert calls == result.dit_forwards == 8
    assert tuple(result.ran_steps) == FIXED_STEP_CACHE_SCHEDULE


def test_flash_runs_exactly_one_dit_forward():
    result, calls = sample(SamplerSettings(num_steps=16, flash=True, step_cache="fixed"), constant)
    assert calls == result.dit_forwards == 1


def test_without_step_caching_every_one_of_16_steps_runs_the_dit():
    result, calls = sample(SamplerSettings(num_steps=16, step_cache="none"), constant)
    assert calls == result.dit_forwards == 16


def test_adaptive_step_caching_skips_4_steps_when_successive_velocities_agree():
    result, _ = sample(SamplerSettings(num_steps=16, step_cache="adaptive"), constant)
    assert result.ran_steps == [0, 1, 6, 11]


def test_adaptive_step_caching_skips_nothing_when_successive_velocities_disagree():
    result, _ = sample(SamplerSettings(num_steps=16, step_cache="adaptive"), alternating)
    assert result.dit_forwards == 16


def test_sequential_cfg_runs_both_branches_per_dit_step_and_counts_one_forward():
    result, calls = sample(SamplerSettings(num_steps=16, step_cache="fixed", cfg_batched=False), constant)
    assert result.dit_forwards == 8 and calls == 16


def test_the_fixed_schedule_refuses_a_step_count_other_than_16():
    with pytest.raises(ModelConfigError, match="num_steps=8"):
        SamplerSettings(num_steps=8, step_cache="fixed").validate()


def test_with_a_zero_velocity_one_flash_step_returns_the_noise_as_the_clean_sample():
    # x0 = x_1 - sigma * v with sigma = 1: a zero velocity leaves the seeded noise, proving the 1-step solve
    result, _ = sample(SamplerSettings(flash=True), lambda _: torch.zeros(1))
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn((1, 2, 2, 3, 3), generator=gen)
    assert torch.allclose(result.video_latents, noise, atol=1e-6)


@pytest.fixture(scope="module")
def observed_model():
    model = tiny_model()
    model.set_instruction("put the cup in the sink")
    model.observe(frames(1, seed=1), state(0.1))
    return model


def test_cfg_scale_changes_the_video_but_not_the_actions(observed_model):
    # Flash = one DiT evaluation from the same seeded noise, so this isolates the guidance rule itself. Over
    # many steps actions still feel the scale indirectly: action tokens attend to their chunk's video tokens,
    # whose noisy state follows the guided trajectory.
    observed_model.flash = True
    try:
        observed_model.cfg_scale = 1.0
        low = observed_model.generate(seed=7)
        observed_model.cfg_scale = 5.0
        high = observed_model.generate(seed=7)
    finally:
        observed_model.flash = False
    np.testing.assert_array_equal(low.actions, high.actions)
    assert (low.video_latents - high.video_latents).abs().max() > 1e-3


def test_guided_video_velocity_follows_the_cfg_formula_and_actions_take_the_conditional_branch():
    cond, uncond = torch.full((1, 2, 2, 3, 3), 2.0), torch.full((1, 2, 2, 3, 3), -1.0)

    class TwoBranches:
        def forward_chunk(self, video, video_timestep, context, *, actions, **_):
            video_out = torch.cat([cond, uncond])[: video.shape[0]]
            action_out = torch.stack([torch.full(actions.shape[1:], 0.5), torch.full(actions.shape[1:], -9.0)])
            return ChunkOutput(video_out, action_out[: video.shape[0]])

    sampler = FlowSampler(SamplerSettings(cfg_scale=5.0))
    video, actions = sampler._velocities(TwoBranches(), request(), None, torch.zeros(1, 2, 2, 3, 3),
                                         torch.zeros(1, 4, 32), torch.ones(1))  # fmt: skip
    assert torch.allclose(video, uncond + 5.0 * (cond - uncond))
    assert torch.all(actions == 0.5)


def test_batched_and_sequential_cfg_give_the_same_chunk(observed_model):
    observed_model.cfg_batched = True
    batched = observed_model.generate(seed=3)
    observed_model.cfg_batched = False
    try:
        sequential = observed_model.generate(seed=3)
    finally:
        observed_model.cfg_batched = True
    np.testing.assert_allclose(batched.actions, sequential.actions, atol=1e-5)
    assert (batched.video_latents - sequential.video_latents).abs().max() < 1e-4


def test_generation_is_seeded_and_deterministic_on_cpu(observed_model):
    first, second = observed_model.generate(seed=11), observed_model.generate(seed=11)
    other = observed_model.generate(seed=12)
    np.testing.assert_array_equal(first.actions, second.actions)
    assert torch.equal(first.video_latents, second.video_latents)
    assert not np.array_equal(first.actions, other.actions)


def test_the_euler_flow_scheduler_is_an_alternative_solver(observed_model):
    observed_model.scheduler = "euler"
    try:
        euler = observed_model.generate(seed=5)
    finally:
        observed_model.scheduler = "unipc"
    unipc = observed_model.generate(seed=5)
    assert euler.dit_forwards == unipc.dit_forwards == 8
    assert np.isfinite(euler.actions).all() and not np.array_equal(euler.actions, unipc.actions)
