"""The fixed pixel-unshuffle latent codec (`latent_encoder: pixel_unshuffle`, the `sim_small` preset's): latents
checked against the codec's definition computed here by hand (time-mean of each causal group, s x s pixel blocks
as channels c * s^2 + i * s + j, then (x - mean) / std), exact decoding of a still clip, the y clip's zero frames,
the config's refusals, and a model with it saved and loaded in the released layout (no VAE weights at all)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamzero_ros.model.config import ModelConfigError, preset_config
from dreamzero_ros.model.encoders import PixelUnshuffleVae, build_video_vae

S = 4
MEAN = [0.1] * 16 + [0.0] * 16 + [-0.2] * 16
STD = [0.5] * 16 + [0.25] * 16 + [1.0] * 16


def _config(**overrides):
    fields = dict(latent_encoder="pixel_unshuffle", latent_channels=3 * S * S, pixel_downsample=1, frame_size=(16, 32),
                  vae=dict(scale_factor_spatial=S, latents_mean=MEAN, latents_std=STD))  # fmt: skip
    return preset_config("tiny", **(fields | overrides))


def test_latents_are_the_time_mean_of_each_group_in_blocks_normalised_per_channel():
    codec = build_video_vae(_config())
    assert isinstance(codec, PixelUnshuffleVae) and codec.z_dim == 48
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.uniform(-1, 1, size=(1, 3, 5, 16, 32)).astype(np.float32))
    latents = codec.encode_pixels(pixels)
    assert tuple(latents.shape) == (1, 48, 2, 4, 8)
    p = pixels.numpy()[0]
    groups = [p[:, :1].mean(axis=1), p[:, 1:5].mean(axis=1)]  # the first frame alone, then 4
    for f, group in enumerate(groups):
        for c, i, j, y, x in [(0, 0, 0, 0, 0), (1, 2, 3, 3, 7), (2, 3, 1, 1, 4), (0, 1, 2, 2, 5)]:
            channel = c * S * S + i * S + j
            expected = (group[c, S * y + i, S * x + j] - MEAN[channel]) / STD[channel]
            assert latents[0, channel, f, y, x].item() == pytest.approx(expected, abs=1e-5)


def test_a_still_clip_decodes_to_its_own_pixels_and_motion_to_the_group_mean():
    codec = build_video_vae(_config())
    rng = np.random.default_rng(1)
    still = np.repeat(rng.integers(0, 256, size=(1, 16, 32, 3), dtype=np.uint8), 9, axis=0)
    assert np.array_equal(codec.decode(codec.encode_clip(still)), still)

    moving = np.zeros((5, 16, 32, 3), np.uint8)
    moving[1:5] = np.array([0, 40, 80, 120], np.uint8)[:, None, None, None]  # group mean 60
    decoded = codec.decode(codec.encode_clip(moving))
    assert decoded.shape == (5, 16, 32, 3)
    assert np.all(decoded[0] == 0) and np.all(np.abs(decoded[1:].astype(int) - 60) <= 1)


def test_the_y_clip_after_the_first_frame_is_mid_grey():
    codec = build_video_vae(_config())
    frame = np.full((16, 32, 3), 200, np.uint8)
    y = codec.encode_condition(frame, 9)  # [first, 8 zero frames] -> 3 latent frames
    grey = (0.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(y[0, :, 1:], grey.view(48, 1, 1, 1).expand(48, 2, 4, 8), atol=1e-6)
    first = (200 / 127.5 - 1 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(y[0, :, 0], first.view(48, 1, 1).expand(48, 4, 8), atol=1e-5)


def test_bad_codec_configs_name_the_field():
    with pytest.raises(ModelConfigError, match="latent_channels: expected 3 x scale_factor_spatial"):
        _config(latent_channels=16)
    with pytest.raises(ModelConfigError, match="WamConfig.vae: expected only scale_factor_spatial"):
        preset_config("tiny", latent_encoder="pixel_unshuffle", latent_channels=192)
    with pytest.raises(ModelConfigError, match="latent_encoder: expected one of"):
        preset_config("tiny", latent_encoder="jpeg")


def test_a_model_with_the_codec_saves_no_vae_weights_and_loads_in_the_released_layout(tmp_path):
    from dreamzero_ros.model.checkpoint import released_state_dict, save_checkpoint
    from dreamzero_ros.model.wam import WorldActionModel

    model = WorldActionModel.from_preset("sim_small", action_dim=8, state_dim=8, horizon=24, seed=0)
    assert not any(k.startswith("action_head.vae.") for k in released_state_dict(model))
    loaded = WorldActionModel.from_checkpoint(save_checkpoint(model, tmp_path / "ckpt"))
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    assert isinstance(loaded.vae, PixelUnshuffleVae)
    frames = np.random.default_rng(2).integers(0, 256, size=(5, 352, 640, 3), dtype=np.uint8)
    assert torch.equal(loaded.vae.encode_clip(frames), model.vae.encode_clip(frames))
