"""Model configuration: the frozen `WamConfig` and its named presets (`tiny`, `sim_small`, `dreamzero_5b`,
`dreamzero_14b`).

This module owns every size of the World Action Model (DiT, action/state encoders, VAE, text and image
encoders) and the sampler defaults, validated once. Presets are named constructors; any field can be
overridden with keyword arguments. Derived sizes (input channels, frames per chunk, tokens per chunk) are
properties so they can never disagree with the fields they come from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: released Wan 2.1 VAE per-channel latent statistics (diffusers' AutoencoderKLWan defaults)
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip

CONDITIONING_MODES = ("i2v", "ti2v")
STEP_CACHE_MODES = ("none", "fixed", "adaptive")
SCHEDULERS = ("unipc", "euler")
TOKENIZERS = ("byte", "pretrained")
LATENT_ENCODERS = ("wan", "pixel_unshuffle")

#: DiT step caching of the release: of 16 solver steps the DiT runs only at these
FIXED_STEP_CACHE_SCHEDULE = (0, 1, 2, 6, 10, 13, 14, 15)
#: the seed the release draws every call's video and action noise from
RELEASE_NOISE_SEED = 1140
#: sampler settings the reference server always runs: a released checkpoint loads with these (WamConfig fields)
RELEASED_SAMPLER_DEFAULTS: dict[str, Any] = dict(
    num_steps=16, shift=5.0, cfg_scale=5.0, scheduler="unipc", step_cache="fixed", noise_seed=RELEASE_NOISE_SEED,
    flash=False,
)  # fmt: skip


class ModelConfigError(ValueError):
    """A model configuration value is invalid; the message names the field, the expectation and the value."""


@dataclass(frozen=True)
class WamConfig:
    """Sizes and defaults of one DreamZero World Action Model.

    Args:
        dim: DiT hidden size (heads x head dim).
        num_layers: number of DiT blocks.
        num_heads: attention heads (head dim = dim / num_heads, must be even and give a 3D rotary split).
        ffn_dim: feed-forward inner size.
        freq_dim: sinusoidal timestep embedding size.
        patch_size: (t, h, w) latent patch of the video tokens.
        latent_channels: VAE latent channels (16 for Wan 2.1, 48 for Wan 2.2).
        conditioning: "i2v" = Wan 2.1 image-to-video (y latent + 4 mask channels concatenated to the input,
            CLIP image tokens in cross-attention); "ti2v" = Wan 2.2 TI2V-5B (no extra channels, no CLIP).
        text_dim / text_len: text encoder width and the padded prompt length.
        image_dim / image_tokens: CLIP hidden size and token count (None / 0 without an image encoder).
        cross_attn_norm: affine LayerNorm before cross-attention (Wan's `norm3`).
        eps: normalisation epsilon.
        max_action_dim / max_state_dim: actions are zero-padded to 32, state to 64 (released shapes).
        encoder_hidden: hidden width of the state encoder and action decoder MLPs (1024).
        num_embodiments: weight slabs of the category-specific action/state layers (the release has 1).
        horizon: action tokens per chunk (24 in the released recipe: 1.6 s at 15 Hz for DROID, 0.8 s at 30 Hz for
            AgiBot G1 and YAM; the paper used 48 for AgiBot).
        latent_frames_per_chunk: latent frames per chunk (2 = 8 video frames).
        context_chunks: chunks kept in the KV cache before the episode context resets (4).
        frame_size: (H, W) of the stitched RGB frame the model sees.
        pixel_downsample: frames are shrunk by this factor before the VAE (1 for released models; the tiny
            preset uses 4 so that a 352x640 frame is cheap on one CPU thread).
        latent_encoder: "wan" (diffusers' AutoencoderKLWan, every released model) or "pixel_unshuffle" (a fixed,
            weightless codec: time-averaged groups of 4 frames, s x s pixel blocks as 3 s^2 channels; for models
            trained from scratch on small frames, see encoders.PixelUnshuffleVae).
        vae: keyword arguments of diffusers' AutoencoderKLWan; for "pixel_unshuffle" only scale_factor_spatial
            (s) and optionally latents_mean / latents_std.
        text_encoder: keyword arguments of transformers' UMT5Config.
        tokenizer: "byte" (a local UTF-8 byte tokenizer, for tiny configs) or "pretrained" (a `tokenizer/`
            folder next to the checkpoint, loaded offline).
        image_encoder: keyword arguments of transformers' CLIPVisionConfig (None without CLIP).
        num_steps / shift / cfg_scale / step_cache / flash / scheduler: sampler defaults (see sampler.py; a released
            checkpoint uses RELEASED_SAMPLER_DEFAULTS). flash = 1 solver step, only for checkpoints trained for it.
        noise_seed: None = noise continues the model's generator; an int = every chunk's noise is drawn afresh from
            it (the release: 1140 on every call).
        decouple_inference_noise / video_inference_final_noise: the release's variant for checkpoints trained with
            decoupled video/action noise: 16 steps, the video schedule ends at video_inference_final_noise (0.8).
        negative_prompt: text of the unconditional branch.
        embodiment_id: which category slab of the action/state layers to use.
    """

    dim: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    latent_channels: int = 16
    conditioning: str = "i2v"
    text_dim: int = 4096
    text_len: int = 512
    image_dim: int | None = 1280
    image_tokens: int = 257
    cross_attn_norm: bool = True
    eps: float = 1e-6
    max_action_dim: int = 32
    max_state_dim: int = 64
    encoder_hidden: int = 1024
    num_embodiments: int = 1
    horizon: int = 24
    latent_frames_per_chunk: int = 2
    context_chunks: int = 4
    frame_size: tuple[int, int] = (352, 640)
    pixel_downsample: int = 1
    latent_encoder: str = "wan"
    vae: dict[str, Any] = field(default_factory=dict)
    text_encoder: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "pretrained"
    image_encoder: dict[str, Any] | None = None
    num_steps: int = 16
    shift: float = 5.0
    cfg_scale: float = 5.0
    step_cache: str = "none"
    flash: bool = False
    scheduler: str = "unipc"
    noise_seed: int | None = None
    decouple_inference_noise: bool = False
    video_inference_final_noise: float = 0.8
    negative_prompt: str = ""
    embodiment_id: int = 0

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; coerce so configs compare equal after save/load.
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "frame_size", tuple(int(s) for s in self.frame_size))
        self.validate()

    # ---- derived sizes -------------------------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def in_channels(self) -> int:
        """DiT input channels: noisy latent (+ y latent + 4 mask channels for i2v): 16 + 20 = 36 for 14B."""
        if self.conditioning == "i2v":
            return 2 * self.latent_channels + 4
        return self.latent_channels

    @property
    def temporal_compression(self) -> int:
        return 4

    @property
    def spatial_compression(self) -> int:
        return int(self.vae.get("scale_factor_spatial", 8))

    @property
    def frames_per_chunk(self) -> int:
        """Video frames per chunk: 2 latent frames x 4 = 8."""
        return self.latent_frames_per_chunk * self.temporal_compression

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of one latent frame."""
        down = self.pixel_downsample * self.spatial_compression
        return self.frame_size[0] // down, self.frame_size[1] // down

    @property
    def tokens_per_latent_frame(self) -> int:
        h, w = self.latent_size
        return (h // self.patch_size[1]) * (w // self.patch_size[2])

    @property
    def condition_frames(self) -> int:
        """Frames of the y conditioning clip [first frame + zero frames]: 1 + 4 x 2 x 4 = 33 (9 latent frames)."""
        return 1 + self.temporal_compression * self.latent_frames_per_chunk * self.context_chunks

    @property
    def tokens_per_chunk(self) -> int:
        """Query tokens of one chunk: its video tokens + horizon action tokens + 1 state token."""
        return self.tokens_per_latent_frame * self.latent_frames_per_chunk + self.horizon + 1

    # ---- validation ----------------------------------------------------------------------------

    def validate(self) -> None:
        def need(ok: bool, name: str, expected: str, got: Any) -> None:
            if not ok:
                raise ModelConfigError(f"WamConfig.{name}: expected {expected}, got {got!r}")

        for name in ("dim", "num_layers", "num_heads", "ffn_dim", "freq_dim", "latent_channels", "text_dim",
                     "text_len", "encoder_hidden", "num_embodiments", "horizon", "latent_frames_per_chunk",
                     "context_chunks", "pixel_downsample", "num_steps", "max_action_dim", "max_state_dim"):
            value = getattr(self, name)
            need(isinstance(value, int) and value > 0, name, "a positive int", value)
        need(self.dim % self.num_heads == 0, "num_heads", f"a divisor of dim={self.dim}", self.num_heads)
        need(self.head_dim % 2 == 0 and self.head_dim >= 6, "num_heads",
             f"a head dim (dim/num_heads) that is even and >= 6, head dim {self.head_dim} from", self.num_heads)
        need(len(self.patch_size) == 3, "patch_size", "(t, h, w)", self.patch_size)
        need(self.patch_size[0] == 1, "patch_size", "a temporal patch of 1 (chunks are latent frames)",
             self.patch_size)
        need(self.conditioning in CONDITIONING_MODES, "conditioning", f"one of {CONDITIONING_MODES}",
             self.conditioning)
        if self.conditioning == "i2v":
            need(self.image_dim is not None and self.image_encoder is not None, "image_dim",
                 "an image encoder (image_dim and image_encoder) for i2v conditioning", self.image_dim)
        need(self.image_dim is None or self.image_tokens > 0, "image_tokens", "> 0 with an image encoder",
             self.image_tokens)
        need(self.step_cache in STEP_CACHE_MODES, "step_cache", f"one of {STEP_CACHE_MODES}", self.step_cache)
        need(self.scheduler in SCHEDULERS, "scheduler", f"one of {SCHEDULERS}", self.scheduler)
        need(self.tokenizer in TOKENIZERS, "tokenizer", f"one of {TOKENIZERS}", self.tokenizer)
        need(self.latent_encoder in LATENT_ENCODERS, "latent_encoder", f"one of {LATENT_ENCODERS}",
             self.latent_encoder)  # fmt: skip
        if self.latent_encoder == "pixel_unshuffle":
            extra = sorted(set(self.vae) - {"scale_factor_spatial", "latents_mean", "latents_std"})
            need(not extra, "vae", "only scale_factor_spatial, latents_mean, latents_std with pixel_unshuffle",
                 self.vae)  # fmt: skip
            z = 3 * self.spatial_compression**2
            need(self.latent_channels == z, "latent_channels",
                 f"3 x scale_factor_spatial^2 = {z} for the pixel_unshuffle codec", self.latent_channels)  # fmt: skip
        need(self.shift > 0, "shift", "> 0", self.shift)
        need(self.noise_seed is None or (isinstance(self.noise_seed, int) and self.noise_seed >= 0), "noise_seed",
             "None or an int >= 0", self.noise_seed)
        need(0.0 <= self.video_inference_final_noise < 1.0, "video_inference_final_noise", "a value in [0, 1)",
             self.video_inference_final_noise)
        need(not (self.decouple_inference_noise and self.flash), "flash",
             "False with decouple_inference_noise (the variant runs the 16-step schedule)", self.flash)
        need(0 <= self.embodiment_id < self.num_embodiments, "embodiment_id",
             f"in [0, {self.num_embodiments})", self.embodiment_id)
        down = self.pixel_downsample * self.spatial_compression
        for axis, size in zip(("H", "W"), self.frame_size, strict=True):
            need(size % down == 0, "frame_size", f"{axis} divisible by pixel_downsample x VAE stride = {down}",
                 self.frame_size)
        h, w = self.latent_size
        need(h % self.patch_size[1] == 0 and w % self.patch_size[2] == 0, "patch_size",
             f"a patch dividing the latent frame {h}x{w}", self.patch_size)

    # ---- (de)serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> WamConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelConfigError(f"{source}: unknown WamConfig keys {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    def replace(self, **overrides: Any) -> WamConfig:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ModelConfigError(f"unknown WamConfig overrides {unknown}; allowed: {sorted(known)}")
        return dataclasses.replace(self, **overrides)


# ---- presets ---------------------------------------------------------------------------------------

_UMT5_XXL = dict(
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
)  # fmt: skip
_CLIP_VIT_H_14 = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
    patch_size=14, hidden_act="gelu", projection_dim=1024,
)  # fmt: skip


def tiny_config(**overrides: Any) -> WamConfig:
    """CPU-fast model for tests and the closed-loop demo: dim 32, 2 layers, 2 heads, a 4-channel VAE that sees
    frames shrunk 4x (352x640 -> 88x160 -> 11x20 latents = 220 tokens per latent frame), a 1-layer umT5 over
    UTF-8 bytes and a 2-layer 32 px CLIP. Sampler default: 16 steps with the fixed 8-of-16 DiT step cache."""
    base = WamConfig(
        dim=32, num_layers=2, num_heads=2, ffn_dim=64, freq_dim=32, patch_size=(1, 1, 1), latent_channels=4,
        conditioning="i2v", text_dim=16, text_len=16, image_dim=16, image_tokens=5, encoder_hidden=32,
        pixel_downsample=4,
        vae=dict(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                 temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4),
        text_encoder=dict(vocab_size=259, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                          relative_attention_num_buckets=8, relative_attention_max_distance=16,
                          feed_forward_proj="gated-gelu"),
        tokenizer="byte",
        image_encoder=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=16, projection_dim=16),
        step_cache="fixed",
    )  # fmt: skip
    return base.replace(**overrides) if overrides else base


def sim_small_config(**overrides: Any) -> WamConfig:
    """The preset `dreamzero train` trains on this 2-core CPU for the simulated tasks (docs/learning_loop_design.md).

    Why these sizes: issue 13's first attempt spent ~93% of its tokens and compute on video in pixel space and
    underfit after 42 min. Here frames are shrunk 8x (352x640 -> 44x80) and go through the fixed pixel-unshuffle
    codec (encoders.PixelUnshuffleVae): 4x4 pixel blocks -> 48 channels on an 11x20 latent grid, time-averaged per
    causal group of 4 frames. Unlike the tiny preset's random frozen 4-channel Wan VAE, it keeps every pixel and
    colour of the 44x80 frame, so a 6 cm cube (~3 px) stays visible to the DiT; a first run with that random VAE
    reached the cubes' neighbourhood but 1/30 of them. 352 = 32 x 11 admits no 2x2 patch, so the patch is
    (1, 1, 4): 11x5 = 55 tokens per latent frame, 110 per chunk, against 24 action + 1 state tokens. Training
    cost grows with the tokens (a 4-chunk teacher-forced sequence is 55 + 4 x 135 = 595 tokens); measured with
    benchmarks/bench_train.py. The DiT is dim 128, 4 layers, 4 heads of 32 (the smallest head that still splits
    12/10/10 for the 3D rotary), ffn 512: ~1.6M parameters. Latent statistics: the per-channel RGB mean and std
    of the task scenes' frames in [-1, 1], measured on generated episodes. Text: a 1-layer byte-level umT5 with a
    96-byte window, which covers the DROID template up to and including the instruction (the instruction starts
    at byte 38; the tiny preset's 16 bytes never reach it). Encoders (umT5, CLIP) are frozen at their seeded
    initialisation, as the release keeps its encoders frozen; only the DiT trains."""
    base = tiny_config().replace(
        dim=128, num_layers=4, num_heads=4, ffn_dim=512, freq_dim=64, patch_size=(1, 1, 4), encoder_hidden=256,
        text_len=96, pixel_downsample=8, latent_encoder="pixel_unshuffle", latent_channels=48,
        vae=dict(scale_factor_spatial=4, latents_mean=[0.30] * 16 + [0.03] * 16 + [-0.27] * 16,
                 latents_std=[0.74] * 16 + [0.56] * 16 + [0.38] * 16),
        text_encoder=dict(vocab_size=259, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
                          relative_attention_num_buckets=16, relative_attention_max_distance=64,
                          feed_forward_proj="gated-gelu"),
        text_dim=32,
    )  # fmt: skip
    return base.replace(**overrides) if overrides else base


def dreamzero_14b_config(**overrides: Any) -> WamConfig:
    """Released DreamZero 14B (Wan2.1-I2V-14B-480P backbone): dim 5120, 40 layers, 40 heads, ffn 13824,
    36 input channels, umT5-XXL text (512 x 4096), CLIP ViT-H/14 (257 x 1280), Wan 2.1 VAE."""
    base = WamConfig(
        dim=5120, num_layers=40, num_heads=40, ffn_dim=13824, freq_dim=256, patch_size=(1, 2, 2),
        latent_channels=16, conditioning="i2v", text_dim=4096, text_len=512, image_dim=1280, image_tokens=257,
        vae=dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True], latents_mean=list(WAN21_LATENTS_MEAN),
                 latents_std=list(WAN21_LATENTS_STD)),
        text_encoder=dict(_UMT5_XXL), image_encoder=dict(_CLIP_VIT_H_14),
    )  # fmt: skip
    return base.replace(**overrides) if overrides else base


def dreamzero_5b_config(**overrides: Any) -> WamConfig:
    """Released DreamZero 5B (Wan2.2-TI2V-5B backbone): dim 3072, 30 layers, 24 heads, ffn 14336, 48 latent
    channels from the 16x Wan 2.2 VAE, no CLIP. The Wan 2.2 VAE statistics are not in the facts: they come from
    the checkpoint's config.json (the preset's zeros/ones are placeholders for random weights)."""
    base = WamConfig(
        dim=3072, num_layers=30, num_heads=24, ffn_dim=14336, freq_dim=256, patch_size=(1, 2, 2),
        latent_channels=48, conditioning="ti2v", text_dim=4096, text_len=512, image_dim=None, image_tokens=0,
        vae=dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 attn_scales=[], temperal_downsample=[False, True, True], is_residual=True, patch_size=2,
                 in_channels=12, out_channels=12,  # 2x2-patchified RGB in and out
                 scale_factor_spatial=16, latents_mean=[0.0] * 48, latents_std=[1.0] * 48),
        text_encoder=dict(_UMT5_XXL), image_encoder=None,
    )  # fmt: skip
    return base.replace(**overrides) if overrides else base


PRESETS = {"tiny": tiny_config, "sim_small": sim_small_config, "dreamzero_5b": dreamzero_5b_config, "dreamzero_14b": dreamzero_14b_config}


def preset_config(name: str, **overrides: Any) -> WamConfig:
    """The named preset with `overrides` applied; unknown names list the known ones."""
    if name not in PRESETS:
        raise ModelConfigError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name](**overrides)
