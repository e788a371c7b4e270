"""The causal WAM transformer: diffusers' Wan DiT extended with action/state tokens, block-causal attention and a
KV cache.

This module owns the token layout of a chunk, the attention rules between token segments (the single place they
are written down: `may_attend`), the rotary positions with chunk offsets, the attention processors that carry the
mask and the cache, and the action/state encoders and action decoder with the released shapes.

`WamTransformer` subclasses diffusers' `WanTransformer3DModel`, so the patch embedding, condition embedder,
`WanTransformerBlock`s, output head and `WanRotaryPosEmbed` tables are diffusers' own modules; what diffusers
lacks (a causal mask, a KV cache, chunk-offset positions, per-token timesteps, an image-token count other than
"text length 512") is added here through custom attention processors and a different `forward`.

Two attention rules, both written down here:
- TRAINING (teacher forcing, `may_attend`): sequence [first frame][video chunks 1..n][action chunks 1..n][state
  chunks 1..n] with the block-causal mask (state tokens see only themselves). Kept for training and for tests.
- INFERENCE (`may_attend_at_inference`, what the release runs): a chunk is run alone as [video i][action i]
  [state i] against the KV cache, which holds the first frame's and earlier chunks' REAL video keys/values
  (written by video-only forwards at t = 0); every query of the chunk, the state token included, attends to the
  whole cache and to all of the chunk's own video, action and state tokens, with no mask.
Action and state tokens of chunk k (k = 1 is the first chunk after the first frame) sit at 1D rotary positions
(k-1)*H + j and k-1; the state token gets the chunk's action timestep.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_wan import WanAttention, WanTransformer3DModel

from dreamzero_ros.model.config import WamConfig
from dreamzero_ros.model.kv_cache import KVCache

# ---- token segments and the attention rules --------------------------------------------------------------------


class SegmentKind(enum.Enum):
    FIRST = "first"  # the conditioning first frame (chunk 0)
    VIDEO = "video"
    ACTION = "action"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of tokens of one kind belonging to one chunk (chunk 0 = the first frame)."""

    kind: SegmentKind
    chunk: int
    length: int


def may_attend(query: Segment, key: Segment) -> bool:
    """DreamZero's block-causal rule for a query segment looking at a key segment.

    The first frame attends to itself; video chunk i and action chunk i attend to the first frame, video chunks
    <= i, action chunk i and state chunk i; state chunks attend to themselves only.
    """
    if query.kind is SegmentKind.FIRST:
        return key.kind is SegmentKind.FIRST
    if query.kind is SegmentKind.STATE:
        return key.kind is SegmentKind.STATE and key.chunk == query.chunk
    if key.kind is SegmentKind.FIRST:
        return True
    if key.kind is SegmentKind.VIDEO:
        return key.chunk <= query.chunk
    return key.chunk == query.chunk  # action / state keys: only the query's own chunk


def may_attend_at_inference(query: Segment, key: Segment) -> bool:
    """The release's inference rule: the first frame sees itself; a query of chunk i (video, action or state)
    sees the first frame, the real video of earlier chunks and every token of chunk i."""
    if query.kind is SegmentKind.FIRST:
        return key.kind is SegmentKind.FIRST
    if key.kind is SegmentKind.FIRST:
        return True
    if key.chunk == query.chunk:
        return True
    return key.kind is SegmentKind.VIDEO and key.chunk < query.chunk


def build_block_causal_mask(queries: tuple[Segment, ...], keys: tuple[Segment, ...]) -> torch.Tensor:
    """The TRAINING mask [Lq, Lk] (True = may attend) from `may_attend` applied per segment pair."""
    return build_attention_mask(queries, keys, may_attend)


def build_inference_mask(queries: tuple[Segment, ...], keys: tuple[Segment, ...]) -> torch.Tensor:
    """The INFERENCE mask [Lq, Lk] from `may_attend_at_inference` (a full-sequence stand-in for the cache)."""
    return build_attention_mask(queries, keys, may_attend_at_inference)


def build_attention_mask(queries: tuple[Segment, ...], keys: tuple[Segment, ...], rule) -> torch.Tensor:
    """Boolean attention mask [Lq, Lk] (True = may attend) from `rule(query, key)` applied per segment pair."""
    total_q = sum(s.length for s in queries)
    total_k = sum(s.length for s in keys)
    mask = torch.zeros(total_q, total_k, dtype=torch.bool)
    q0 = 0
    for q in queries:
        k0 = 0
        for k in keys:
            if rule(q, k):
                mask[q0 : q0 + q.length, k0 : k0 + k.length] = True
            k0 += k.length
        q0 += q.length
    return mask


def full_context_segments(num_chunks: int, frame_tokens: int, frames_per_chunk: int, horizon: int) -> tuple:
    """Segments of a teacher-forced sequence: [first frame][video 1..n][action 1..n][state 1..n]."""
    segments = [Segment(SegmentKind.FIRST, 0, frame_tokens)]
    segments += [Segment(SegmentKind.VIDEO, i, frame_tokens * frames_per_chunk) for i in range(1, num_chunks + 1)]
    segments += [Segment(SegmentKind.ACTION, i, horizon) for i in range(1, num_chunks + 1)]
    segments += [Segment(SegmentKind.STATE, i, 1) for i in range(1, num_chunks + 1)]
    return tuple(segments)


@dataclass(frozen=True)
class AttentionPlan:
    """How self-attention runs for one forward call.

    mask: explicit [Lq, Lk] boolean mask over (cached keys + current keys), or None for the fast path in which
        the first `dense_queries` queries attend to every key and each remaining query attends only to itself
        (DreamZero's state token: softmax over one key is exactly that key's value, so no attention is run).
    cache / cache_rows: the KV cache and the batch rows (branches) this call reads; the current chunk's keys
        are staged after the cached ones, and the cache is committed by the caller (read-only while denoising).
    """

    mask: torch.Tensor | None
    dense_queries: int
    cache: KVCache | None = None
    cache_rows: slice = field(default_factory=lambda: slice(None))


@lru_cache(maxsize=64)
def _plan_for(
    queries: tuple[Segment, ...], cached: tuple[Segment, ...], training: bool = False
) -> tuple[torch.Tensor | None, int]:
    """Mask or fast-path split for `queries` against `cached` + `queries` under the inference rule (or the
    training rule); memoised (same every solver step). At inference every query is dense: no mask at all."""
    keys = cached + queries
    mask = build_attention_mask(queries, keys, may_attend if training else may_attend_at_inference)
    dense = 0
    while dense < mask.shape[0] and bool(mask[dense].all()):
        dense += 1
    rest = mask[dense:]
    n_cached = sum(s.length for s in cached)
    self_only = torch.zeros_like(rest)
    if rest.shape[0]:
        rows = torch.arange(rest.shape[0])
        self_only[rows, n_cached + dense + rows] = True
    if torch.equal(rest, self_only):
        return None, dense
    return mask, 0


# ---- rotary embeddings -------------------------------------------------------------------------------------------


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x [B, L, H, D] by cos/sin [1, L, 1, D] (diffusers' Wan layout)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos = cos[..., 0::2]
    sin = sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


# ---- attention processors ----------------------------------------------------------------------------------------


class AttentionState:
    """The plan shared by every layer's self-attention processor during one forward call."""

    def __init__(self) -> None:
        self.plan: AttentionPlan | None = None


class BlockCausalAttnProcessor:
    """Self-attention with the block-causal mask (or its fast path) and KV-cache reads/staging.

    Projection, RMS q/k norm and rotary follow diffusers' WanAttnProcessor; keys are cached after norm and rotary
    (positions are absolute, so cached keys never need re-rotating).
    """

    def __init__(self, layer_index: int, state: AttentionState) -> None:
        self.layer_index = layer_index
        self.state = state

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        plan = self.state.plan
        if plan is None:
            raise RuntimeError("BlockCausalAttnProcessor called outside WamTransformer.forward (no attention plan)")
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query = apply_rotary(query, *rotary_emb)
            key = apply_rotary(key, *rotary_emb)

        keys, values = key, value
        if plan.cache is not None:
            keys, values = plan.cache.stage(self.layer_index, key, value, plan.cache_rows)

        # [B, L, H, D] -> [B, H, L, D] for SDPA
        q_t, k_t, v_t = query.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2)
        if plan.mask is not None:
            out = F.scaled_dot_product_attention(q_t, k_t, v_t, attn_mask=plan.mask.to(q_t.device))
        else:
            dense = plan.dense_queries
            out = F.scaled_dot_product_attention(q_t[:, :, :dense], k_t, v_t)
            if dense < q_t.shape[2]:
                out = torch.cat([out, value.transpose(1, 2)[:, :, dense:]], dim=2)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


class WamCrossAttnProcessor:
    """Cross-attention to [image tokens][text tokens], with the image-token count from the config.

    diffusers' WanAttnProcessor assumes exactly 512 text tokens; here the split is explicit. The projected
    context keys/values are memoised per context tensor: the context is fixed for a whole chunk (every solver
    step) and usually for a whole instruction, so recomputing them each step would be wasted work.
    """

    def __init__(self, image_tokens: int) -> None:
        self.image_tokens = image_tokens
        self._memo: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None = None

    def _context_kv(self, attn: WanAttention, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self._memo is not None and self._memo[0] is context:
            return self._memo[1]
        image_ctx = None
        if attn.add_k_proj is not None:
            image_ctx, context_text = context[:, : self.image_tokens], context[:, self.image_tokens :]
        else:
            context_text = context
        kv: tuple[torch.Tensor, ...] = (
            attn.norm_k(attn.to_k(context_text)).unflatten(2, (attn.heads, -1)).transpose(1, 2),
            attn.to_v(context_text).unflatten(2, (attn.heads, -1)).transpose(1, 2),
        )
        if image_ctx is not None:
            kv += (
                attn.norm_added_k(attn.add_k_proj(image_ctx)).unflatten(2, (attn.heads, -1)).transpose(1, 2),
                attn.add_v_proj(image_ctx).unflatten(2, (attn.heads, -1)).transpose(1, 2),
            )
        if not torch.is_grad_enabled():
            self._memo = (context, kv)
        return kv

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        kv = self._context_kv(attn, encoder_hidden_states)
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, kv[0], kv[1])
        if len(kv) == 4:
            out = out + F.scaled_dot_product_attention(query, kv[2], kv[3])
        out = out.transpose(1, 2).flatten(2, 3).type_as(hidden_states)
        return attn.to_out[1](attn.to_out[0](out))


# ---- action / state encoders and decoder (released shapes) --------------------------------------------------------


class CategorySpecificLinear(nn.Module):
    """y = x @ W[c] + b[c], one weight slab per embodiment category. W [C, in, out], b [C, out]."""

    def __init__(self, num_categories: int, input_dim: int, output_dim: int) -> None:
        super().__init__()
        # fan-in scaled so random-weight presets give actions of order 1 (released weights replace it)
        self.W = nn.Parameter(torch.randn(num_categories, input_dim, output_dim) / math.sqrt(input_dim))
        self.b = nn.Parameter(torch.zeros(num_categories, output_dim))

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        # x [B, L, in], category [B] -> [B, L, out]
        return torch.bmm(x, self.W[category]) + self.b[category].unsqueeze(1)


class CategorySpecificMLP(nn.Module):
    """layer2(relu(layer1(x))): the state encoder (64 -> 1024 -> dim) and action decoder (dim -> 1024 -> 32)."""

    def __init__(self, num_categories: int, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, input_dim, hidden_dim)
        self.layer2 = CategorySpecificLinear(num_categories, hidden_dim, output_dim)

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, category)), category)


def sinusoidal_encoding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """[..., ] timesteps -> [..., dim] as [sin, cos] over log-spaced frequencies (max period 10000)."""
    half = dim // 2
    # log(10000) as a float32 tensor divided by half, as the release computes it (bit-equal frequencies)
    exponent = -torch.arange(half, dtype=torch.float32, device=timesteps.device) * (
        torch.log(torch.tensor(10000.0)).to(timesteps.device) / half
    )
    freqs = timesteps.float().unsqueeze(-1) * exponent.exp()
    return torch.cat([freqs.sin(), freqs.cos()], dim=-1)


def wan_sinusoid(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] timesteps -> [B, dim] float32 as [cos, sin] over 10000^(-i/half), computed in float64 (Wan's DiT)."""
    half = dim // 2
    position = timesteps.to(torch.float64)
    freqs = torch.pow(10000, -torch.arange(half, dtype=torch.float64, device=position.device).div(half))
    sinusoid = torch.outer(position, freqs)
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1).float()


class ActionEncoder(nn.Module):
    """Timestep-aware action encoder: W1 (32 -> dim); [W1 a, sinusoid(t)] -> W2 (2 dim -> dim), swish -> W3."""

    def __init__(self, num_categories: int, action_dim: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.W1 = CategorySpecificLinear(num_categories, action_dim, dim)
        self.W2 = CategorySpecificLinear(num_categories, 2 * dim, dim)
        self.W3 = CategorySpecificLinear(num_categories, dim, dim)

    def forward(self, actions: torch.Tensor, timestep: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        # actions [B, H, A], timestep [B] (0..1000) -> [B, H, dim]
        embedded = self.W1(actions, category)
        tau = sinusoidal_encoding(timestep.unsqueeze(1).expand(-1, actions.shape[1]), self.dim).to(embedded.dtype)
        hidden = F.silu(self.W2(torch.cat([embedded, tau], dim=-1), category))
        return self.W3(hidden, category)


# ---- the transformer ----------------------------------------------------------------------------------------------


@dataclass
class TokenBlock:
    """Embedded tokens of one segment with their timestep and rotary tables."""

    segment: Segment
    tokens: torch.Tensor  # [B, L, dim]
    timestep: torch.Tensor  # [B]
    rope_cos: torch.Tensor  # [L, head_dim]
    rope_sin: torch.Tensor


@dataclass
class ChunkOutput:
    """Velocities predicted for one chunk: video [B, C, F, h, w] and actions [B, horizon, max_action_dim]."""

    video: torch.Tensor
    actions: torch.Tensor | None


class WamTransformer(WanTransformer3DModel):
    """Wan DiT + action/state tokens + block-causal attention with a KV cache.

    Module names follow diffusers (`blocks.N.attn1.to_q`, `proj_out`, ...); checkpoint.py maps the released
    names (`blocks.N.self_attn.q`, `head.head`, ...) onto them.
    """

    _no_split_modules = ["WanTransformerBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        eps: float = 1e-6,
        image_dim: int | None = 1280,
        image_tokens: int = 257,
        max_action_dim: int = 32,
        max_state_dim: int = 64,
        encoder_hidden: int = 1024,
        num_embodiments: int = 1,
        horizon: int = 24,
    ) -> None:
        dim = num_attention_heads * attention_head_dim
        super().__init__(
            patch_size=tuple(patch_size), num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim, in_channels=in_channels, out_channels=out_channels,
            text_dim=text_dim, freq_dim=freq_dim, ffn_dim=ffn_dim, num_layers=num_layers,
            cross_attn_norm=cross_attn_norm, qk_norm="rms_norm_across_heads", eps=eps, image_dim=image_dim,
            added_kv_proj_dim=dim if image_dim is not None else None, rope_max_seq_len=1024,
        )  # fmt: skip
        self.dim = dim
        self.heads = num_attention_heads
        self.horizon = horizon
        self.state_encoder = CategorySpecificMLP(num_embodiments, max_state_dim, encoder_hidden, dim)
        self.action_encoder = ActionEncoder(num_embodiments, max_action_dim, dim)
        self.action_decoder = CategorySpecificMLP(num_embodiments, dim, encoder_hidden, max_action_dim)
        self.attention_state = AttentionState()
        for index, block in enumerate(self.blocks):
            block.attn1.set_processor(BlockCausalAttnProcessor(index, self.attention_state))
            block.attn2.set_processor(WamCrossAttnProcessor(image_tokens if image_dim is not None else 0))

    @classmethod
    def from_wam_config(cls, config: WamConfig) -> WamTransformer:
        return cls(
            patch_size=config.patch_size, num_attention_heads=config.num_heads, attention_head_dim=config.head_dim,
            in_channels=config.in_channels, out_channels=config.latent_channels, text_dim=config.text_dim,
            freq_dim=config.freq_dim, ffn_dim=config.ffn_dim, num_layers=config.num_layers,
            cross_attn_norm=config.cross_attn_norm, eps=config.eps, image_dim=config.image_dim,
            image_tokens=config.image_tokens, max_action_dim=config.max_action_dim,
            max_state_dim=config.max_state_dim, encoder_hidden=config.encoder_hidden,
            num_embodiments=config.num_embodiments, horizon=config.horizon,
        )  # fmt: skip

    def num_parameters_total(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- embeddings ------------------------------------------------------------------------------------------

    def embed_context(self, text: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        """Project text [B, Lt, text_dim] (and CLIP tokens [B, Li, image_dim]) into [B, Li + Lt, dim].

        Done once per instruction/episode rather than every solver step (it does not depend on the timestep).
        """
        embedder = self.condition_embedder
        context = embedder.text_embedder(text)
        if embedder.image_embedder is not None:
            if image is None:
                raise ValueError("this transformer has an image embedder: image tokens are required")
            context = torch.cat([embedder.image_embedder(image), context], dim=1)
        return context

    def _time_embeddings(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """timestep [B] (0..1000) -> (temb [B, dim], modulation [B, 6, dim]).

        The sinusoid is Wan's [cos, sin] with frequencies 10000^(-i/half), computed in float64 as the release
        does (diffusers' Timesteps computes the same in float32, off by ~1e-4 at t ~ 1000)."""
        embedder = self.condition_embedder
        projected = wan_sinusoid(timestep, self.config.freq_dim)
        weight_dtype = embedder.time_embedder.linear_1.weight.dtype
        temb = embedder.time_embedder(projected.to(weight_dtype))
        modulation = embedder.time_proj(embedder.act_fn(temb)).unflatten(1, (6, -1))
        return temb, modulation

    def _video_rope(self, frame_offset: int, frames: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
        """3D rotary tables [frames*height*width, head_dim] for latent frames starting at `frame_offset`.

        diffusers' WanRotaryPosEmbed always starts at frame 0; its precomputed tables are indexed here instead.
        """
        rope = self.rope
        split = [rope.t_dim, rope.h_dim, rope.w_dim]
        tables = []
        for full in (rope.freqs_cos, rope.freqs_sin):
            t_part, h_part, w_part = full.split(split, dim=1)
            t = t_part[frame_offset : frame_offset + frames].view(frames, 1, 1, -1).expand(frames, height, width, -1)
            h = h_part[:height].view(1, height, 1, -1).expand(frames, height, width, -1)
            w = w_part[:width].view(1, 1, width, -1).expand(frames, height, width, -1)
            tables.append(torch.cat([t, h, w], dim=-1).reshape(frames * height * width, -1))
        return tables[0], tables[1]

    def _rope_1d(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """1D rotary tables [L, head_dim] over the whole head for action/state token positions."""
        cos, sin = get_1d_rotary_pos_embed(
            self.config.attention_head_dim, positions.to(torch.float64), use_real=True,
            repeat_interleave_real=True, freqs_dtype=torch.float64,
        )  # fmt: skip
        return cos.to(self.rope.freqs_cos.device), sin.to(self.rope.freqs_cos.device)

    def embed_video(
        self, latents: torch.Tensor, timestep: torch.Tensor, chunk: int, frame_offset: int
    ) -> TokenBlock:
        """latents [B, in_channels, F, h, w] (noisy latent ++ y) -> video tokens of chunk `chunk`."""
        _, _, frames, height, width = latents.shape
        p_t, p_h, p_w = self.config.patch_size
        tokens = self.patch_embedding(latents.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        cos, sin = self._video_rope(frame_offset, frames // p_t, height // p_h, width // p_w)
        kind = SegmentKind.FIRST if chunk == 0 else SegmentKind.VIDEO
        return TokenBlock(Segment(kind, chunk, tokens.shape[1]), tokens.contiguous(), timestep, cos, sin)

    def embed_actions(self, actions: torch.Tensor, timestep: torch.Tensor, chunk: int, category: torch.Tensor):
        """actions [B, H, max_action_dim] of chunk `chunk` (>= 1) -> action tokens at 1D positions (chunk-1)*H + j."""
        horizon = actions.shape[1]
        tokens = self.action_encoder(actions.to(self.patch_embedding.weight.dtype), timestep, category)
        positions = (chunk - 1) * horizon + torch.arange(horizon)
        cos, sin = self._rope_1d(positions)
        return TokenBlock(Segment(SegmentKind.ACTION, chunk, horizon), tokens, timestep, cos, sin)

    def embed_state(
        self, state: torch.Tensor, chunk: int, category: torch.Tensor, action_timestep: torch.Tensor
    ) -> TokenBlock:
        """state [B, max_state_dim] of chunk `chunk` (>= 1) -> one state token at 1D position chunk-1. Its adaLN
        timestep is the chunk's (noisy) action timestep, as in the release."""
        tokens = self.state_encoder(state.to(self.patch_embedding.weight.dtype).unsqueeze(1), category)
        cos, sin = self._rope_1d(torch.tensor([chunk - 1]))
        return TokenBlock(Segment(SegmentKind.STATE, chunk, 1), tokens, action_timestep, cos, sin)

    # ---- core --------------------------------------------------------------------------------------------------

    def _run_blocks(self, blocks: list[TokenBlock], context: torch.Tensor, plan: AttentionPlan) -> torch.Tensor:
        """Run the DiT blocks over the concatenated token blocks; returns hidden states [B, L, dim]."""
        hidden = torch.cat([b.tokens for b in blocks], dim=1)
        modulations = []
        for block in blocks:
            _, modulation = self._time_embeddings(block.timestep)
            modulations.append(modulation.unsqueeze(1).expand(-1, block.segment.length, -1, -1))
        # per-token adaLN modulation [B, L, 6, dim]: diffusers' blocks take this (Wan 2.2 TI2V) layout
        modulation = torch.cat(modulations, dim=1)
        cos = torch.cat([b.rope_cos for b in blocks], dim=0)[None, :, None, :]
        sin = torch.cat([b.rope_sin for b in blocks], dim=0)[None, :, None, :]
        self.attention_state.plan = plan
        try:
            for block in self.blocks:
                hidden = block(hidden, context, modulation, (cos, sin))
        finally:
            self.attention_state.plan = None
        return hidden

    def _video_head(self, hidden: torch.Tensor, timestep: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Video tokens [B, L, dim] -> velocity [B, out_channels, F, h, w] (diffusers' norm_out/proj_out)."""
        temb, _ = self._time_embeddings(timestep)
        shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        hidden = (self.norm_out(hidden.float()) * (1 + scale) + shift).type_as(hidden)
        hidden = self.proj_out(hidden)
        batch, _, frames, height, width = shape
        p_t, p_h, p_w = self.config.patch_size
        hidden = hidden.reshape(batch, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        return hidden.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def _category(self, batch: int, device: torch.device, embodiment_id: int) -> torch.Tensor:
        return torch.full((batch,), embodiment_id, dtype=torch.long, device=device)

    def forward_chunk(
        self,
        video: torch.Tensor,
        video_timestep: torch.Tensor,
        context: torch.Tensor,
        *,
        chunk: int,
        frame_offset: int,
        actions: torch.Tensor | None = None,
        action_timestep: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        cache: KVCache | None = None,
        cache_rows: slice = slice(None),
        embodiment_id: int = 0,
    ) -> ChunkOutput:
        """One chunk against the KV cache, under the inference rule (every query sees the cache and the whole chunk).

        chunk 0 is the first frame alone. For chunk >= 1, give actions, action_timestep and state to denoise the
        chunk (video + action + state tokens), or none of them for a VIDEO-ONLY forward (how real frames are
        written to the cache at t = 0: their keys/values then cannot depend on actions or state).
        video [B, in_channels, F, h, w] (latent ++ y), video_timestep/action_timestep [B] in 0..1000, actions
        [B, H, max_action_dim], state [B, max_state_dim], context [B, Lc, dim] from `embed_context`.
        The chunk's keys/values are staged in `cache` after its committed tokens; call `cache.commit(...)` to
        keep the video part (only after a video-only forward of real observations).
        """
        batch = video.shape[0]
        category = self._category(batch, video.device, embodiment_id)
        blocks = [self.embed_video(video, video_timestep, chunk, frame_offset)]
        given = [x is not None for x in (actions, action_timestep, state)]
        if any(given):
            if not all(given):
                raise ValueError(f"chunk {chunk}: give actions, action_timestep and state together (or none of them "
                                 f"for a video-only forward); got {given}")
            if chunk < 1:
                raise ValueError("chunk 0 (the first frame) has no action or state tokens")
            blocks.append(self.embed_actions(actions, action_timestep, chunk, category))
            blocks.append(self.embed_state(state, chunk, category, action_timestep))
        queries = tuple(b.segment for b in blocks)
        cached = cache.segments if cache is not None else ()
        mask, dense = _plan_for(queries, cached)
        hidden = self._run_blocks(blocks, context, AttentionPlan(mask, dense, cache, cache_rows))
        n_video = blocks[0].segment.length
        video_velocity = self._video_head(hidden[:, :n_video], video_timestep, video.shape)
        action_velocity = None
        if len(blocks) > 1:
            action_hidden = hidden[:, n_video : n_video + blocks[1].segment.length]
            action_velocity = self.action_decoder(action_hidden, category)
        return ChunkOutput(video_velocity, action_velocity)

    def forward_inference_masked(
        self,
        first: torch.Tensor,
        history: list[torch.Tensor],
        current: dict[str, torch.Tensor],
        context: torch.Tensor,
        embodiment_id: int = 0,
    ) -> ChunkOutput:
        """What the cached inference path computes for one chunk, as ONE forward with an explicit mask (the
        reference the cache must equal).

        Tokens [first frame][real video of chunks 1..n-1][video n][actions n][state n]; the first frame and the
        real history are clean (t = 0) and carry no action/state tokens; the mask is `build_inference_mask`.
        first: [B, in_channels, 1, h, w]; history[i]: [B, in_channels, F, h, w] of chunk i+1; current: {"video",
        "video_timestep", "actions", "action_timestep", "state"} of chunk n = len(history) + 1.
        Returns chunk n's output.
        """
        batch = first.shape[0]
        category = self._category(batch, first.device, embodiment_id)
        zero = torch.zeros(batch, device=first.device)
        blocks = [self.embed_video(first, zero, 0, 0)]
        offset = first.shape[2]
        for index, video in enumerate(history, start=1):
            blocks.append(self.embed_video(video, zero, index, offset))
            offset += video.shape[2]
        n = len(history) + 1
        blocks.append(self.embed_video(current["video"], current["video_timestep"], n, offset))
        blocks.append(self.embed_actions(current["actions"], current["action_timestep"], n, category))
        blocks.append(self.embed_state(current["state"], n, category, current["action_timestep"]))
        segments = tuple(b.segment for b in blocks)
        hidden = self._run_blocks(blocks, context, AttentionPlan(build_inference_mask(segments, segments), 0))
        v0 = sum(b.segment.length for b in blocks[:-3])
        v1 = v0 + blocks[-3].segment.length
        a1 = v1 + blocks[-2].segment.length
        video_velocity = self._video_head(hidden[:, v0:v1], current["video_timestep"], current["video"].shape)
        return ChunkOutput(video_velocity, self.action_decoder(hidden[:, v1:a1], category))

    def forward_full(
        self,
        first: torch.Tensor,
        chunks: list[dict[str, torch.Tensor]],
        context: torch.Tensor,
        embodiment_id: int = 0,
    ) -> list[ChunkOutput]:
        """The TRAINING layout: the whole context in one pass with the block-causal training mask (teacher
        forcing). Generation does not use it; see `forward_chunk` and `forward_inference_masked`.

        first: [B, in_channels, 1, h, w] first-frame latent ++ y (t = 0). chunks[i]: {"video" [B, in_channels,
        F, h, w], "video_timestep" [B], "actions" [B, H, A], "action_timestep" [B], "state" [B, S]}.
        Returns the first frame's output followed by one ChunkOutput per chunk.
        """
        batch = first.shape[0]
        category = self._category(batch, first.device, embodiment_id)
        zero = torch.zeros(batch, device=first.device)
        video_blocks = [self.embed_video(first, zero, 0, 0)]
        offset = first.shape[2]
        action_blocks, state_blocks = [], []
        for index, chunk in enumerate(chunks, start=1):
            video_blocks.append(self.embed_video(chunk["video"], chunk["video_timestep"], index, offset))
            offset += chunk["video"].shape[2]
            action_blocks.append(self.embed_actions(chunk["actions"], chunk["action_timestep"], index, category))
            state_blocks.append(self.embed_state(chunk["state"], index, category, chunk["action_timestep"]))
        blocks = video_blocks + action_blocks + state_blocks
        segments = tuple(b.segment for b in blocks)
        mask = build_block_causal_mask(segments, segments)
        hidden = self._run_blocks(blocks, context, AttentionPlan(mask, 0))
        outputs, start = [], 0
        spans = {}
        for block in blocks:
            spans[(block.segment.kind, block.segment.chunk)] = (start, start + block.segment.length)
            start += block.segment.length
        first_span = spans[(SegmentKind.FIRST, 0)]
        outputs.append(ChunkOutput(self._video_head(hidden[:, slice(*first_span)], zero, first.shape), None))
        for index, chunk in enumerate(chunks, start=1):
            v0, v1 = spans[(SegmentKind.VIDEO, index)]
            a0, a1 = spans[(SegmentKind.ACTION, index)]
            video_velocity = self._video_head(hidden[:, v0:v1], chunk["video_timestep"], chunk["video"].shape)
            outputs.append(ChunkOutput(video_velocity, self.action_decoder(hidden[:, a0:a1], category)))
        return outputs
