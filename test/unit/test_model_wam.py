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
