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
                                         torch.zeros(1, 4, 32), torch.ones(1), torch.ones(1))  # fmt: skip
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


class RecordingTransformer(ScriptedTransformer):
    """A scripted DiT that also records the timesteps and the first noisy inputs it is given."""

    def __init__(self, velocity) -> None:
        super().__init__(velocity)
        self.video_timesteps: list[int] = []
        self.action_timesteps: list[int] = []
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward_chunk(self, video, video_timestep, context, *, actions, action_timestep, **kwargs):
        self.video_timesteps.append(video_timestep[0].item())
        self.action_timesteps.append(action_timestep[0].item())
        self.inputs.append((video[:1].clone(), actions[:1].clone()))
        return super().forward_chunk(video, video_timestep, context, actions=actions, **kwargs)


def recorded(settings: SamplerSettings, velocity=constant) -> RecordingTransformer:
    transformer = RecordingTransformer(velocity)
    cache = KVCache(num_layers=1, max_tokens=4, heads=1, head_dim=2)
    FlowSampler(settings).sample(transformer, request(), cache, torch.Generator().manual_seed(0))
    return transformer


def release_sigmas_by_hand() -> np.ndarray:
    """s = linspace(float32(0.999), 0, 17)[:-1], shifted 5 s / (1 + 4 s): the release's 16 sigmas (float64)."""
    s = np.linspace(float(np.float32(0.999)), 0.0, 17)[:-1]
    return 5.0 * s / (1.0 + 4.0 * s)


def test_the_16_sigmas_and_the_integer_dit_timesteps_equal_the_releases():
    # int64(sigma * 1000) truncates; these are the release's values (diffusers' own grid gave 7 others)
    expected = [999, 986, 972, 955, 937, 916, 892, 865, 833, 795, 749, 694, 624, 535, 416, 249]
    assert [int(s * 1000) for s in release_sigmas_by_hand()] == expected
    transformer = recorded(SamplerSettings(step_cache="none"))
    assert transformer.video_timesteps == expected and transformer.action_timesteps == expected
    assert all(isinstance(t, int) for t in transformer.video_timesteps)
    from dreamzero_ros.model.sampler import make_scheduler

    scheduler = make_scheduler(SamplerSettings())
    assert torch.equal(scheduler.sigmas, torch.tensor([*release_sigmas_by_hand(), 0.0], dtype=torch.float32))


def test_the_fixed_step_cache_feeds_the_dit_the_releases_timesteps_at_its_8_steps():
    transformer = recorded(SamplerSettings(step_cache="fixed"))
    assert transformer.video_timesteps == [999, 986, 972, 892, 749, 535, 416, 249]


def test_decouple_inference_noise_ends_the_video_schedule_at_0_8_while_actions_go_to_0():
    transformer = recorded(SamplerSettings(step_cache="none", decouple_inference_noise=True))
    # the release: float32 sigmas (final 0 included) rescaled s * (s_max - 0.8) / s_max + 0.8, timesteps
    # int64(sigmas[:-1] * 1000) in float32
    sigmas = torch.tensor([*release_sigmas_by_hand(), 0.0], dtype=torch.float32)
    sigma_max = sigmas[0].item()
    video = sigmas * (sigma_max - 0.8) / sigma_max + 0.8
    assert abs(video[-1].item() - 0.8) < 1e-7 and abs(video[0].item() - sigma_max) < 1e-6
    expected_video = (video[:-1] * 1000).to(torch.int64).tolist()
    assert expected_video[0] == 999 and expected_video[-1] == 849
    assert transformer.video_timesteps == expected_video
    assert transformer.action_timesteps == [int(s * 1000) for s in release_sigmas_by_hand()]


def test_decouple_inference_noise_stops_the_video_at_noise_level_0_8_of_its_starting_noise():
    # the sampler starts at sigma_0 = 0.9998 from x = sigma_0 * n (x0 = 0); the DiT predicts the exact velocity
    # v = n - x0 = x / sigma_0, so x_sigma = sigma * n: the video must end at 0.8 n and the actions at 0
    noises = {}
    sigma_0 = float(release_sigmas_by_hand()[0])

    class ExactVelocity:
        def forward_chunk(self, video, video_timestep, context, *, actions, **_):
            noises.setdefault("video", video[:1, :2].clone() / sigma_0)
            noises.setdefault("actions", actions[:1].clone() / sigma_0)
            return ChunkOutput(noises["video"].expand(video.shape[0], -1, -1, -1, -1),
                               noises["actions"].expand(actions.shape[0], -1, -1))  # fmt: skip

    cache = KVCache(num_layers=1, max_tokens=4, heads=1, head_dim=2)
    settings = SamplerSettings(step_cache="none", decouple_inference_noise=True, noise_seed=1140)
    result = FlowSampler(settings).sample(ExactVelocity(), request(), cache)
    assert torch.allclose(result.video_latents, 0.8 * noises["video"], atol=1e-4)
    assert result.actions.abs().max() < 1e-4


def test_per_call_seeding_draws_the_releases_noise_from_seed_1140_on_every_call():
    # the release: a fresh generator seeded 1140 for the video noise and another for the action noise, bfloat16
    video = torch.randn((1, 2, 2, 3, 3), generator=torch.Generator().manual_seed(1140), dtype=torch.bfloat16)
    actions = torch.randn((1, 4, 32), generator=torch.Generator().manual_seed(1140), dtype=torch.bfloat16)
    for _ in range(2):
        transformer = recorded(SamplerSettings(noise_seed=1140))
        first_video, first_actions = transformer.inputs[0]
        assert torch.equal(first_video, video.float()) and torch.equal(first_actions, actions.float())
