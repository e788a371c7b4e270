"""The WorldActionModel facade: shapes, episode and cache rules, instruction caching, knobs (tiny preset, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import ACTION_DIM, FRAME_SIZE, frames, one_torch_thread, state, tiny_model  # noqa: F401

torch = pytest.importorskip("torch")

from dreamzero_ros.model.config import ModelConfigError  # noqa: E402


def started(model=None, prompt: str = "pick up the cup"):
    model = model if model is not None else tiny_model()
    model.set_instruction(prompt)
    model.observe(frames(1, seed=1), state(0.0))
    return model


def cache_prefix(model) -> torch.Tensor:
    return model.cache._keys[0][:, : model.cache.length].clone()


def test_generate_returns_normalised_actions_of_horizon_by_action_dim_and_the_chunks_latents():
    model = started(tiny_model(horizon=48))
    generation = model.generate(seed=0)
    assert generation.actions.shape == (48, ACTION_DIM) and generation.actions.dtype == np.float32
    h, w = model.config.latent_size
    assert tuple(generation.video_latents.shape) == (1, model.config.latent_channels, 2, h, w)
    assert generation.dit_forwards == 8  # tiny default: 16 steps with the fixed 8-of-16 step cache
    assert generation.seconds > 0 and model.frames_per_chunk == 8


def test_observe_writes_real_frames_into_both_branch_caches_and_generate_leaves_the_cache_untouched():
    model = started()
    frame_tokens = model.config.tokens_per_latent_frame
    assert model.cache.length == frame_tokens
    before = cache_prefix(model)
    model.generate(seed=0)
    assert model.cache.length == frame_tokens and torch.equal(cache_prefix(model), before)
    model.observe(frames(8, seed=2), state(0.2))
    assert model.cache.length == 3 * frame_tokens and model.chunks_in_context == 1
    written = model.cache._keys[-1][:, frame_tokens : 3 * frame_tokens]
    # two branch rows, each written and different in the last layer: cond and uncond differ in their text,
    # which reaches the keys through the earlier layers' cross-attention
    assert written[0].abs().sum() > 0 and written[1].abs().sum() > 0 and not torch.equal(written[0], written[1])


def test_the_episode_resets_after_four_chunks_keeping_the_newest_frame_as_the_first_frame():
    model = started()
    newest = None
    for chunk in range(4):
        model.generate(seed=chunk)
        executed = frames(8, seed=10 + chunk)
        newest = executed[-1]
        model.observe(executed, state(0.1 * chunk))
    assert model.chunks_in_context == 0 and model.cache.length == model.config.tokens_per_latent_frame
    fresh = tiny_model()
    fresh.set_instruction("pick up the cup")
    fresh.observe(newest[None], state(0.3))
    np.testing.assert_array_equal(model.generate(seed=42).actions, fresh.generate(seed=42).actions)


def test_a_changed_instruction_resets_the_episode_and_the_same_instruction_reuses_its_embedding():
    model = started()
    encodings = model.text_encodings
    model.generate(seed=0)
    model.observe(frames(8, seed=3), state())
    model.set_instruction("pick up the cup")
    assert model.text_encodings == encodings and model.chunks_in_context == 1
    model.set_instruction("open the drawer")
    assert model.text_encodings == encodings + 1
    assert model.chunks_in_context == 0 and model.cache.length == 0
    with pytest.raises(RuntimeError, match="before observe"):
        model.generate()


def test_reset_on_request_empties_the_cache_and_needs_a_new_first_frame():
    model = started()
    model.reset()
    assert model.cache.length == 0
    with pytest.raises(RuntimeError, match="no first frame"):
        model.generate()
    model.observe(frames(1, seed=4), state())
    assert model.cache.length == model.config.tokens_per_latent_frame


def test_observe_before_an_instruction_and_a_wrong_state_length_are_refused():
    model = tiny_model()
    with pytest.raises(RuntimeError, match="set_instruction"):
        model.observe(frames(1, seed=0), state())
    model.set_instruction("wave")
    with pytest.raises(ValueError, match=r"state: expected \[8\]"):
        model.observe(frames(1, seed=0), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="frames: expected uint8"):
        model.observe(np.zeros((1, 10, 10, 3), np.uint8), state())


def test_a_chunk_with_an_unexpected_frame_count_is_resampled_to_eight_frames():
    model = started()
    model.generate(seed=0)
    model.observe(frames(6, seed=5), state())
    assert model.chunks_in_context == 1


def test_decode_video_returns_the_chunks_eight_uint8_frames_at_frame_size():
    model = started()
    generation = model.generate(seed=0)
    video = model.decode_video(generation.video_latents)
    assert video.shape == (8, *FRAME_SIZE, 3) and video.dtype == np.uint8


def test_sampler_knobs_are_constructor_overrides_and_attributes():
    model = tiny_model(num_steps=4, step_cache="none", cfg_scale=2.5, cfg_batched=False)
    assert (model.num_steps, model.step_cache, model.cfg_scale, model.cfg_batched) == (4, "none", 2.5, False)
    model.flash = True
    started(model)
    assert model.generate(seed=0).dit_forwards == 1
    with pytest.raises(ModelConfigError, match="step_cache"):
        model.step_cache = "sometimes"


def test_action_and_state_sizes_beyond_the_padded_widths_are_refused():
    with pytest.raises(ModelConfigError, match="action_dim"):
        tiny_model(action_dim=33)
    with pytest.raises(ModelConfigError, match="state_dim"):
        tiny_model(state_dim=65)


# ---- the release's inference semantics --------------------------------------------------------------------


def vae_latents_by_hand(model, pixels: torch.Tensor) -> torch.Tensor:
    """diffusers' own AutoencoderKLWan.encode (posterior mode) of a [1, 3, T, h, w] clip, normalised per channel."""
    with torch.no_grad():
        z = model.vae.model.encode(pixels).latent_dist.mode()
    return (z - model.vae.latents_mean) / model.vae.latents_std


class Recorder:
    """Wraps a model's sampler and transformer to record each chunk's y and each video-only cache write."""

    def __init__(self, model) -> None:
        self.requests, self.writes = [], []
        sample, forward = model.sampler.sample, model.transformer.forward_chunk

        def recording_sample(transformer, request, cache, generator=None):
            self.requests.append(request)
            return sample(transformer, request, cache, generator)

        def recording_forward(video, *args, **kwargs):
            if kwargs.get("chunk", 0) > 0 and kwargs.get("actions") is None:
                self.writes.append((kwargs["chunk"], kwargs["frame_offset"], video[:1].clone(), args[0].clone()))
            return forward(video, *args, **kwargs)

        model.sampler.sample = recording_sample
        model.transformer.forward_chunk = recording_forward


def test_y_is_the_first_frame_plus_32_zero_frames_and_chunk_k_denoises_and_writes_with_its_frames_2k_minus_1_and_2k():
    model = tiny_model()
    recorder = Recorder(model)
    first = frames(1, seed=1)
    started(model)
    for chunk in range(3):
        model.generate(seed=chunk)
        model.observe(frames(8, seed=20 + chunk), state())
    # by hand: [first frame, 32 zero frames] in [-1, 1] through diffusers' VAE -> 9 latent frames, mask channels first
    pixels = model.vae.frames_to_input(first)
    clip = torch.cat([pixels, torch.zeros(1, 3, 32, *pixels.shape[3:])], dim=2)
    latents = vae_latents_by_hand(model, clip)
    assert latents.shape[2] == 9
    mask = torch.zeros(1, 4, 9, *latents.shape[3:])
    mask[:, :, 0] = 1
    y = torch.cat([mask, latents], dim=1)
    z = model.config.latent_channels
    for k, request in enumerate(recorder.requests, start=1):
        assert request.chunk == k and request.frame_offset == 2 * k - 1
        assert torch.allclose(request.y, y[:, :, 2 * k - 1 : 2 * k + 1], atol=1e-5)
    assert [(chunk, offset) for chunk, offset, _, _ in recorder.writes] == [(1, 1), (2, 3), (3, 5)]
    for chunk, _, video, timestep in recorder.writes:
        assert torch.allclose(video[:, z:], y[:, :, 2 * chunk - 1 : 2 * chunk + 1], atol=1e-5)
        assert torch.equal(timestep, torch.zeros_like(timestep))  # real frames are written at t = 0


def test_four_received_frames_are_each_repeated_twice_with_the_first_prepended_and_encoded_from_scratch():
    model = tiny_model()
    received = frames(4, seed=30)
    np.testing.assert_array_equal(model.real_clip(received), received[[0, 0, 0, 1, 1, 2, 2, 3, 3]])
    eight = frames(8, seed=31)
    np.testing.assert_array_equal(model.real_clip(eight), eight[[0, 0, 1, 2, 3, 4, 5, 6, 7]])
    nine = frames(9, seed=32)
    np.testing.assert_array_equal(model.real_clip(nine), nine)
    recorder = Recorder(model)
    started(model)
    model.generate(seed=0)
    model.observe(received, state())
    (_, _, video, _), = recorder.writes
    clip = model.vae.frames_to_input(received[[0, 0, 0, 1, 1, 2, 2, 3, 3]])
    expected = vae_latents_by_hand(model, clip)[:, :, -2:]  # the clip's last 2 latents, encoded from scratch
    assert torch.allclose(video[:, : model.config.latent_channels], expected, atol=1e-5)


def test_writing_real_frames_to_the_cache_does_not_depend_on_the_generated_actions_or_the_state():
    caches = []
    for seed, value in ((1, -0.5), (2, 0.7)):
        model = tiny_model()
        model.set_instruction("pick up the cup")
        model.observe(frames(1, seed=1), state(value))
        model.generate(seed=seed)
        model.observe(frames(8, seed=2), state(-value))
        caches.append(model)
    a, b = caches
    assert a.cache.length == b.cache.length == 3 * a.config.tokens_per_latent_frame
    length = a.cache.length
    for layer in range(a.config.num_layers):
        assert torch.equal(a.cache._keys[layer][:, :length], b.cache._keys[layer][:, :length])
        assert torch.equal(a.cache._values[layer][:, :length], b.cache._values[layer][:, :length])


def test_a_one_frame_observation_starts_a_new_episode_from_that_frame():
    model = started()
    model.generate(seed=0)
    model.observe(frames(8, seed=40), state())
    model.generate(seed=1)
    resets = model.resets
    restart = frames(1, seed=41)
    model.observe(restart, state(0.2))
    assert model.resets == resets + 1 and model.chunks_in_context == 0
    assert model.cache.length == model.config.tokens_per_latent_frame
    fresh = tiny_model()
    fresh.set_instruction("pick up the cup")
    fresh.observe(restart, state(0.2))
    np.testing.assert_array_equal(model.generate(seed=5).actions, fresh.generate(seed=5).actions)


def test_an_episode_started_from_four_frames_is_conditioned_on_the_last_of_them():
    model = started()
    model.generate(seed=0)
    model.observe(frames(8, seed=50), state())
    model.set_instruction("open the drawer")
    four = frames(4, seed=51)
    model.observe(four, state(0.1))
    fresh = tiny_model()
    fresh.set_instruction("open the drawer")
    fresh.observe(four[-1:], state(0.1))
    np.testing.assert_array_equal(model.generate(seed=6).actions, fresh.generate(seed=6).actions)


def test_per_call_seeding_reproduces_a_chunk_exactly():
    def episode(model):
        model.set_instruction("pick up the cup")
        model.observe(frames(1, seed=1), state())
        first = model.generate()
        model.observe(frames(4, seed=2), state(0.3))
        return first, model.generate(), model.generate()

    first, second, again = episode(tiny_model(noise_seed=1140))
    _, replay, _ = episode(tiny_model(noise_seed=1140))
    np.testing.assert_array_equal(second.actions, again.actions)  # the same chunk twice: same noise, same cache
    np.testing.assert_array_equal(second.actions, replay.actions)
    assert torch.equal(second.video_latents, replay.video_latents)
    assert not np.array_equal(first.actions, second.actions)
    # without per-call seeding the model's generator moves on, so the same chunk sampled twice differs
    _, unseeded, unseeded_again = episode(tiny_model())
    assert not np.array_equal(unseeded.actions, unseeded_again.actions)


def test_clip_preprocessing_is_the_releases_bicubic_resize_of_the_minus_one_to_one_frame_without_antialias():
    model = tiny_model()
    frame = frames(1, seed=60)[0]
    pixels = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0 * 2.0 - 1.0
    size = model.image_encoder.image_size
    resized = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    normalised = (resized * 0.5 + 0.5 - mean) / std
    with torch.no_grad():
        hidden = model.image_encoder.model(pixel_values=normalised, output_hidden_states=True).hidden_states
        expected = hidden[-2]  # the penultimate block's output
        got = model.image_encoder.encode(frame)
        antialiased = torch.nn.functional.interpolate(pixels * 0.5 + 0.5, size=(size, size), mode="bilinear",
                                                      antialias=True)  # fmt: skip
        other = model.image_encoder.model(pixel_values=(antialiased - mean) / std, output_hidden_states=True)
    assert got.shape == (1, model.config.image_tokens, model.config.image_dim)
    assert torch.allclose(got, expected, atol=1e-5)
    assert (other.hidden_states[-2] - got).abs().max() > 1e-3  # the resize matters: the comparison means something
