"""Frozen encoders of the WAM: umT5 text encoder and CLIP image encoder (transformers), Wan VAE (diffusers) or the
fixed pixel-unshuffle codec of models trained from scratch here.

This module owns turning raw inputs into model tensors and back: prompt -> padded text embeddings [1, text_len,
text_dim], a stitched uint8 frame -> CLIP tokens (the release's bicubic preprocessing), uint8 clips -> normalised
VAE latents (each clip encoded from scratch, as the release does: the y conditioning clip [first frame + zero
frames] once per episode, each chunk's 9-frame clip of real frames), and latents -> uint8 frames. Nothing here touches the network: tokenizers are
either the local byte tokenizer or a `tokenizer/` folder loaded with local_files_only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, patchify
from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

from dreamzero_ros.model.config import WamConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ByteTokenizer:
    """UTF-8 bytes -> ids with umT5's special ids (pad 0, eos 1, unk 2; byte b -> b + 3). For tiny configs:
    deterministic, offline, and it needs no vocabulary file."""

    pad_id, eos_id, offset = 0, 1, 3
    vocab_size = 256 + 3

    def __call__(self, text: str, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (ids [1, max_length] long, attention mask [1, max_length] long), truncated then eos then padding."""
        ids = [b + self.offset for b in text.encode("utf-8")][: max_length - 1] + [self.eos_id]
        mask = [1] * len(ids) + [0] * (max_length - len(ids))
        ids = ids + [self.pad_id] * (max_length - len(ids))
        return torch.tensor([ids]), torch.tensor([mask])


class PretrainedTokenizer:
    """A transformers tokenizer loaded offline from a local folder (e.g. `<checkpoint>/tokenizer`)."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: tokenizer folder not found; the config asks for tokenizer='pretrained' "
                "(put the umT5 tokenizer files there, or use tokenizer='byte' for tiny configs)"
            )
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)

    def __call__(self, text: str, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._tokenizer(text, max_length=max_length, padding="max_length", truncation=True,
                              add_special_tokens=True, return_tensors="pt")  # fmt: skip
        return out.input_ids, out.attention_mask


class TextEncoder(nn.Module):
    """umT5 encoder: prompt -> [1, text_len, d_model], zero beyond the prompt's tokens (as Wan pads)."""

    def __init__(self, config: WamConfig, tokenizer: ByteTokenizer | PretrainedTokenizer | None = None) -> None:
        super().__init__()
        self.model = UMT5EncoderModel(UMT5Config(**config.text_encoder))
        self.text_len = config.text_len
        self.tokenizer = tokenizer if tokenizer is not None else ByteTokenizer()

    @torch.no_grad()
    def encode(self, prompt: str) -> torch.Tensor:
        ids, mask = self.tokenizer(prompt, self.text_len)
        device = next(self.model.parameters()).device
        hidden = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        return hidden * mask.to(device).unsqueeze(-1).to(hidden.dtype)


class ImageEncoder(nn.Module):
    """CLIP vision tower: stitched uint8 frame [H, W, 3] -> penultimate hidden states [1, tokens, hidden]
    (Wan's image-to-video conditioning uses the penultimate block's output).

    Preprocessing as the release: the frame in [-1, 1] (x / 255 - 0.5) / 0.5, resized to image_size x image_size
    with bicubic interpolation, align_corners=False and NO antialias, mapped back to [0, 1] (x * 0.5 + 0.5), then
    normalised with CLIP's mean/std."""

    def __init__(self, config: WamConfig) -> None:
        super().__init__()
        assert config.image_encoder is not None
        self.model = CLIPVisionModel(CLIPVisionConfig(**config.image_encoder))
        self.image_size = int(config.image_encoder["image_size"])
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def encode(self, frame: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(frame)).to(self.mean.device).permute(2, 0, 1)[None].float()
        pixels = (pixels / 255.0 - 0.5) / 0.5
        pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        pixels = ((pixels * 0.5 + 0.5 - self.mean) / self.std).to(next(self.model.parameters()).dtype)
        return self.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]


class LatentVideoCodec(nn.Module):
    """What every latent video codec of the WAM shares: frame checks and resizing, clip encoding in the Wan VAE's
    causal groups (the first frame alone, then groups of 4), the y conditioning clip, and latent normalisation
    (z - mean) / std, the space the DiT works in. Subclasses define `_encode_pixels`, `_decode_raw` and
    `new_feature_cache`."""

    def __init__(self, config: WamConfig, latents_mean: list[float], latents_std: list[float]) -> None:
        super().__init__()
        self.frame_size = config.frame_size
        self.pixel_downsample = config.pixel_downsample
        self.register_buffer("latents_mean", torch.tensor(latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1),
                             persistent=False)  # fmt: skip
        self.register_buffer("latents_std", torch.tensor(latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1),
                             persistent=False)  # fmt: skip

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    def new_feature_cache(self) -> list:
        """An empty causal feature cache for streaming `_encode_pixels` over a clip's groups."""
        raise NotImplementedError

    def _encode_pixels(self, pixels: torch.Tensor, feat_cache: list) -> torch.Tensor:
        """One causal group [B, 3, 1 or 4, h, w] in [-1, 1] -> normalised latents [B, z, 1, h', w']."""
        raise NotImplementedError

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Un-normalised latents [1, z, F, h', w'] -> video [3, 1 + 4 (F - 1), h, w] in [-1, 1]."""
        raise NotImplementedError

    def frames_to_input(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [T, H, W, 3] at frame_size -> [1, 3, T, H/d, W/d] in [-1, 1] (d = pixel_downsample)."""
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (*self.frame_size, 3) or frames.dtype != np.uint8:
            raise ValueError(
                f"frames: expected uint8 [T, {self.frame_size[0]}, {self.frame_size[1]}, 3], "
                f"got {frames.dtype} {list(frames.shape)}"
            )
        device = self.latents_mean.device
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
        if self.pixel_downsample > 1:
            size = (self.frame_size[0] // self.pixel_downsample, self.frame_size[1] // self.pixel_downsample)
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)
        pixels = (pixels - 0.5) / 0.5
        return pixels.permute(1, 0, 2, 3).unsqueeze(0).to(self.dtype)

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """A clip [1, 3, 1 + 4k, h, w] in [-1, 1] (model resolution) encoded from scratch -> latents [1, z, 1 + k,
        h', w']. Like diffusers' encode: the first frame alone, then groups of 4 through the causal feature cache."""
        if (pixels.shape[2] - 1) % 4:
            raise ValueError(f"clip: expected 1 + 4k frames, got {pixels.shape[2]}")
        feat_cache = self.new_feature_cache()
        groups = [pixels[:, :, :1]] + [pixels[:, :, i : i + 4] for i in range(1, pixels.shape[2], 4)]
        return torch.cat([self._encode_pixels(group, feat_cache) for group in groups], dim=2)

    @torch.no_grad()
    def encode_clip(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames [1 + 4k, H, W, 3] encoded from scratch -> normalised latents [1, z, 1 + k, h, w]."""
        return self.encode_pixels(self.frames_to_input(frames))

    @torch.no_grad()
    def encode_condition(self, first_frame: np.ndarray, num_frames: int) -> torch.Tensor:
        """The y latent of Wan I2V: [first frame, num_frames - 1 zero frames] (zeros in [-1, 1], i.e. mid grey)
        encoded from scratch -> [1, z, 1 + (num_frames - 1) / 4, h, w]; its latent frame 0 is the first frame's
        latent."""
        stream = ConditionStream(self, first_frame, num_frames)
        return stream.latents(stream.total)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents [1, z, F, h, w] -> uint8 frames [T, H, W, 3] at frame_size (T = 1 + 4 (F - 1))."""
        z = latents.float() * self.latents_std + self.latents_mean
        frames = self._decode_raw(z).float().permute(1, 0, 2, 3)  # [T, 3, h, w]
        if tuple(frames.shape[-2:]) != tuple(self.frame_size):
            frames = F.interpolate(frames, size=self.frame_size, mode="bilinear", align_corners=False)
        frames = ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return frames.permute(0, 2, 3, 1).cpu().numpy()


class VideoVae(LatentVideoCodec):
    """Wan VAE (diffusers' AutoencoderKLWan) with a streaming encoder; the codec of every released model."""

    def __init__(self, config: WamConfig) -> None:
        model = AutoencoderKLWan(**config.vae)
        super().__init__(config, list(model.config.latents_mean), list(model.config.latents_std))
        self.model = model
        self.z_dim = self.model.config.z_dim
        self._conv_count = sum(isinstance(m, WanCausalConv3d) for m in self.model.encoder.modules())

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def new_feature_cache(self) -> list:
        return [None] * self._conv_count

    def _encode_pixels(self, pixels: torch.Tensor, feat_cache: list) -> torch.Tensor:
        if self.model.config.patch_size is not None:
            pixels = patchify(pixels, patch_size=self.model.config.patch_size)
        out = self.model.encoder(pixels, feat_cache=feat_cache, feat_idx=[0])
        mean = self.model.quant_conv(out)[:, : self.z_dim]  # posterior mode: deterministic latents
        return (mean.float() - self.latents_mean) / self.latents_std

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z.to(self.dtype)).sample[0]


class PixelUnshuffleVae(LatentVideoCodec):
    """A fixed, weightless latent codec for models trained from scratch on small frames (the `sim_small` preset):
    each causal group of frames (the first alone, then 4) is averaged over time, and its s x s pixel blocks become
    3 s^2 channels (pixel unshuffle); decoding is the exact inverse in space (pixel shuffle) and repeats each latent
    frame 4 times. It keeps every pixel of the model-resolution frame and every colour, which a random frozen Wan VAE
    of a few channels does not: a cube of 3 pixels stays a cube. Why not train a VAE here: that is a separate
    training run the 2-core CPU budget cannot hold (docs/learning_loop_design.md)."""

    def __init__(self, config: WamConfig) -> None:
        self.factor = config.spatial_compression
        self.temporal = config.temporal_compression
        self.z_dim = 3 * self.factor**2
        mean = config.vae.get("latents_mean", [0.0] * self.z_dim)
        std = config.vae.get("latents_std", [PIXEL_LATENT_STD] * self.z_dim)
        super().__init__(config, list(mean), list(std))

    @property
    def dtype(self) -> torch.dtype:
        return self.latents_mean.dtype

    def new_feature_cache(self) -> list:
        return []

    def _encode_pixels(self, pixels: torch.Tensor, feat_cache: list) -> torch.Tensor:
        frame = pixels.float().mean(dim=2)  # [B, 3, h, w]
        latents = F.pixel_unshuffle(frame, self.factor).unsqueeze(2)
        return (latents - self.latents_mean) / self.latents_std

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        frames = F.pixel_shuffle(z[0].permute(1, 0, 2, 3), self.factor)  # [F, 3, h, w]
        repeats = torch.tensor([1] + [self.temporal] * (frames.shape[0] - 1), device=frames.device)
        return frames.repeat_interleave(repeats, dim=0).permute(1, 0, 2, 3)


#: latent scale of PixelUnshuffleVae: pixels in [-1, 1] of the simulator's scenes have a std near 0.6, so that
#: (pixel - 0) / 0.5 has about the unit variance of the flow's noise
PIXEL_LATENT_STD = 0.5


def build_video_vae(config: WamConfig) -> LatentVideoCodec:
    """The latent codec `config.latent_encoder` names: the Wan VAE or the fixed pixel-unshuffle codec."""
    if config.latent_encoder == "pixel_unshuffle":
        return PixelUnshuffleVae(config)
    return VideoVae(config)


class ConditionStream:
    """The y clip [first frame, num_frames - 1 zero frames] encoded lazily: latent frame j is computed the first time
    a caller needs it, by continuing the causal encoder over the next 4 zero frames.

    The latents are those of encoding the whole clip in one pass (the encoder runs the same groups in the same
    order with the same feature cache); only WHEN each group runs changes. An episode start then pays for 1 + 8
    frames instead of 33, and each later chunk for the 8 zero frames of its own y slice, which keeps the slowest
    observe() (the one the asynchronous schedule has to plan for) short."""

    def __init__(self, vae: LatentVideoCodec, first_frame: np.ndarray, num_frames: int) -> None:
        if (num_frames - 1) % 4:
            raise ValueError(f"condition clip: expected 1 + 4k frames, got {num_frames}")
        self.vae = vae
        self.total = 1 + (num_frames - 1) // 4
        self._cache = vae.new_feature_cache()
        first = vae.frames_to_input(first_frame[None])
        self._zeros = torch.zeros(*first.shape[:2], 4, *first.shape[3:], device=first.device, dtype=first.dtype)
        with torch.no_grad():
            self._latents = [vae._encode_pixels(first, self._cache)]

    @torch.no_grad()
    def latents(self, count: int) -> torch.Tensor:
        """Latent frames 0 .. count-1 of the clip [1, z, count, h, w] (count <= total)."""
        if not 1 <= count <= self.total:
            raise ValueError(f"condition clip: expected 1..{self.total} latent frames, got {count}")
        while len(self._latents) < count:
            self._latents.append(self.vae._encode_pixels(self._zeros, self._cache))
        return torch.cat(self._latents[:count], dim=2)
