"""Attention rules (inference and training), rotary positions, timesteps and the KV cache of the WAM transformer
(tiny config, CPU, float32)."""

from __future__ import annotations

import pytest
from model_helpers import chunk_inputs, one_torch_thread, tiny_transformer  # noqa: F401

torch = pytest.importorskip("torch")

from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed  # noqa: E402

from dreamzero_ros.model.kv_cache import KVCache, KVCacheOverflowError  # noqa: E402
from dreamzero_ros.model.transformer import (  # noqa: E402
    AttentionPlan,
    Segment,
    SegmentKind,
    build_block_causal_mask,
    build_inference_mask,
    full_context_segments,
)

TOLERANCE = 1e-4


def run_cached(model, config, inputs, rows=slice(None)):
    """The inference path: the first frame, the real history written chunk by chunk with video-only forwards at
    t = 0 (committed), then the last chunk (video + actions + state) denoised against the cache."""
    cache = KVCache.for_config(config)
    context = model.embed_context(inputs["text"], inputs["image"])
    batch = inputs["first"].shape[0]
    model.forward_chunk(inputs["first"], torch.zeros(batch), context, chunk=0, frame_offset=0, cache=cache,
                        cache_rows=rows)  # fmt: skip
    cache.commit((Segment(SegmentKind.FIRST, 0, config.tokens_per_latent_frame),))
    *history, current = inputs["chunks"]
    video_tokens = config.tokens_per_latent_frame * config.latent_frames_per_chunk
    for index, chunk in enumerate(history, start=1):
        model.forward_chunk(chunk["video"], torch.zeros(batch), context, chunk=index,
                            frame_offset=1 + (index - 1) * config.latent_frames_per_chunk, cache=cache,
                            cache_rows=rows)  # fmt: skip
        cache.commit((Segment(SegmentKind.VIDEO, index, video_tokens),))
    index = len(history) + 1
    out = model.forward_chunk(
        current["video"], current["video_timestep"], context, chunk=index,
        frame_offset=1 + (index - 1) * config.latent_frames_per_chunk, actions=current["actions"],
        action_timestep=current["action_timestep"], state=current["state"], cache=cache, cache_rows=rows,
    )  # fmt: skip
    return out, cache


def inference_mask_by_hand(config, history_chunks: int) -> torch.Tensor:
    """The inference rule written out token by token, independently of the transformer's segment rules: tokens
    [first][real video 1..n-1][video n][actions n][state n]; the first frame sees itself, real video chunk i sees
    the first frame and real video <= i, and every token of chunk n sees everything."""
    frame = config.tokens_per_latent_frame
    chunk_video = frame * config.latent_frames_per_chunk
    history_end = frame + history_chunks * chunk_video
    total = history_end + chunk_video + config.horizon + 1
    mask = torch.zeros(total, total, dtype=torch.bool)
    mask[:frame, :frame] = True
    for i in range(history_chunks):
        start = frame + i * chunk_video
        mask[start : start + chunk_video, : start + chunk_video] = True
    mask[history_end:, :] = True
    return mask


def run_masked(model, config, inputs, mask):
    """One forward over the whole sequence with `mask` (history clean at t = 0, no history action/state tokens)."""
    context = model.embed_context(inputs["text"], inputs["image"])
    *history, current = inputs["chunks"]
    batch = inputs["first"].shape[0]
    category = torch.zeros(batch, dtype=torch.long)
    zero = torch.zeros(batch)
    blocks = [model.embed_video(inputs["first"], zero, 0, 0)]
    for index, chunk in enumerate(history, start=1):
        blocks.append(model.embed_video(chunk["video"], zero, index, 1 + (index - 1) * 2))
    n = len(history) + 1
    blocks.append(model.embed_video(current["video"], current["video_timestep"], n, 1 + (n - 1) * 2))
    blocks.append(model.embed_actions(current["actions"], current["action_timestep"], n, category))
    blocks.append(model.embed_state(current["state"], n, category, current["action_timestep"]))
    hidden = model._run_blocks(blocks, context, AttentionPlan(mask, 0))
    v0 = sum(b.segment.length for b in blocks[:-3])
    v1 = v0 + blocks[-3].segment.length
    video = model._video_head(hidden[:, v0:v1], current["video_timestep"], current["video"].shape)
    return video, model.action_decoder(hidden[:, v1 : v1 + config.horizon], category)


def run_full(model, inputs):
    context = model.embed_context(inputs["text"], inputs["image"])
    return model.forward_full(inputs["first"], inputs["chunks"], context)


@torch.no_grad()
def test_chunk_by_chunk_generation_with_the_cache_equals_one_full_forward_with_the_inference_mask():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=3, batch=2, seed=1)
    cached, _ = run_cached(model, config, inputs)
    video, actions = run_masked(model, config, inputs, inference_mask_by_hand(config, history_chunks=2))
    assert video.abs().max() > 0.1 and actions.abs().max() > 0.1  # non-trivial outputs: the comparison means something
    assert (cached.video - video).abs().max() < TOLERANCE
    assert (cached.actions - actions).abs().max() < TOLERANCE
    # the model's own masked reference builds the same mask from its segment rules
    context = model.embed_context(inputs["text"], inputs["image"])
    reference = model.forward_inference_masked(inputs["first"], [c["video"] for c in inputs["chunks"][:-1]],
                                               inputs["chunks"][-1], context)  # fmt: skip
    assert (cached.video - reference.video).abs().max() < TOLERANCE
    assert (cached.actions - reference.actions).abs().max() < TOLERANCE
    segments = (Segment(SegmentKind.FIRST, 0, config.tokens_per_latent_frame),
                *(Segment(SegmentKind.VIDEO, i, 2 * config.tokens_per_latent_frame) for i in (1, 2, 3)),
                Segment(SegmentKind.ACTION, 3, config.horizon), Segment(SegmentKind.STATE, 3, 1))  # fmt: skip
    assert torch.equal(build_inference_mask(segments, segments), inference_mask_by_hand(config, 2))


@torch.no_grad()
def test_each_guidance_branch_reads_only_its_own_cache_row():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=2, batch=2, seed=2)  # rows 0/1 carry different text: "cond"/"uncond"
    batched, cache = run_cached(model, config, inputs)
    context = model.embed_context(inputs["text"], inputs["image"])
    last = inputs["chunks"][-1]
    for row, branch in enumerate(("cond", "uncond")):
        single = slice(row, row + 1)
        out = model.forward_chunk(
            last["video"][single], last["video_timestep"][single], context[single], chunk=2, frame_offset=3,
            actions=last["actions"][single], action_timestep=last["action_timestep"][single],
            state=last["state"][single], cache=cache, cache_rows=cache.rows(branch),
        )  # fmt: skip
        assert (out.video - batched.video[single]).abs().max() < TOLERANCE


def _last_block_output(model, run):
    captured = []
    hook = model.blocks[-1].register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        run()
    finally:
        hook.remove()
    return captured[-1]


@torch.no_grad()
def test_at_inference_the_state_token_sees_the_video_of_its_own_chunk():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=2, batch=1, seed=3)
    changed = {**inputs, "chunks": [inputs["chunks"][0], {**inputs["chunks"][1]}]}
    video = changed["chunks"][1]["video"].clone()
    video[:, :, 0, 0, 0] += 1.0  # one video token of the current chunk
    changed["chunks"][1]["video"] = video
    base = _last_block_output(model, lambda: run_cached(model, config, inputs, rows=slice(0, 1)))
    moved = _last_block_output(model, lambda: run_cached(model, config, changed, rows=slice(0, 1)))
    # query order of a chunk: [video][actions][state]: the state token is the last one
    assert (base[:, -1] - moved[:, -1]).abs().max() > 1e-4
    assert (base[:, -1 - config.horizon : -1] - moved[:, -1 - config.horizon : -1]).abs().max() > 1e-4
    # under the training mask the same change leaves the state token alone
    train_base = _last_block_output(model, lambda: run_full(model, inputs))
    train_moved = _last_block_output(model, lambda: run_full(model, changed))
    assert torch.equal(train_base[:, -1], train_moved[:, -1])


def rope_by_hand(head_dim: int, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """1D rotary cos/sin [L, head_dim], interleaved pairs: angle = position / 10000^(2i / head_dim)."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.tensor(positions, dtype=torch.float64)[:, None] * inv[None]
    return angles.cos().repeat_interleave(2, dim=1).float(), angles.sin().repeat_interleave(2, dim=1).float()


def test_action_and_state_rotary_positions_of_chunk_k_are_k_minus_1_times_h_plus_j_and_k_minus_1():
    config, model = tiny_transformer()
    horizon = config.horizon
    category = torch.zeros(1, dtype=torch.long)
    t = torch.full((1,), 500.0)
    for k in (1, 2, 3, 4):
        actions = model.embed_actions(torch.zeros(1, horizon, config.max_action_dim), t, k, category)
        state_block = model.embed_state(torch.zeros(1, config.max_state_dim), k, category, t)
        cos, sin = rope_by_hand(config.head_dim, [(k - 1) * horizon + j for j in range(horizon)])
        assert torch.allclose(actions.rope_cos, cos, atol=1e-6) and torch.allclose(actions.rope_sin, sin, atol=1e-6)
        cos, sin = rope_by_hand(config.head_dim, [k - 1])
        assert torch.allclose(state_block.rope_cos, cos, atol=1e-6)
        assert torch.allclose(state_block.rope_sin, sin, atol=1e-6)


@torch.no_grad()
def test_the_state_token_takes_the_chunks_noisy_action_timestep():
    config, model = tiny_transformer()
    category = torch.zeros(1, dtype=torch.long)
    block = model.embed_state(torch.zeros(1, config.max_state_dim), 2, category, torch.tensor([833]))
    assert block.timestep.tolist() == [833]
    # in a forward, the state token's output moves with the action timestep alone (its actions held fixed)
    inputs = chunk_inputs(config, count=1, batch=1, seed=4)
    cache_free = dict(chunk=1, frame_offset=1, actions=inputs["chunks"][0]["actions"],
                      state=inputs["chunks"][0]["state"])  # fmt: skip
    context = model.embed_context(inputs["text"], inputs["image"])
    video, t = inputs["chunks"][0]["video"], torch.tensor([700.0])
    out = [_last_block_output(model, lambda ts=ts: model.forward_chunk(video, t, context, action_timestep=ts,
                                                                        **cache_free))
           for ts in (torch.tensor([700.0]), torch.tensor([0.0]))]  # fmt: skip
    assert (out[0][:, -1] - out[1][:, -1]).abs().max() > 1e-4


def _segment_rows(segments, kind, chunk):
    start = 0
    for segment in segments:
        if segment.kind is kind and segment.chunk == chunk:
            return slice(start, start + segment.length)
        start += segment.length
    raise KeyError((kind, chunk))


def test_the_mask_lets_the_first_frame_attend_only_to_itself():
    segments = full_context_segments(num_chunks=3, frame_tokens=2, frames_per_chunk=2, horizon=3)
    mask = build_block_causal_mask(segments, segments)
    rows = _segment_rows(segments, SegmentKind.FIRST, 0)
    assert mask[rows, rows].all()
    assert mask[rows].sum() == 2 * 2


def test_the_mask_lets_state_tokens_attend_only_to_themselves():
    segments = full_context_segments(num_chunks=3, frame_tokens=2, frames_per_chunk=2, horizon=3)
    mask = build_block_causal_mask(segments, segments)
    for chunk in (1, 2, 3):
        rows = _segment_rows(segments, SegmentKind.STATE, chunk)
        assert mask[rows].sum() == 1 and mask[rows, rows].all()


def test_the_mask_lets_video_and_action_chunk_i_see_first_frame_earlier_video_and_only_their_own_action_and_state():
    segments = full_context_segments(num_chunks=3, frame_tokens=2, frames_per_chunk=2, horizon=3)
    mask = build_block_causal_mask(segments, segments)
    for query_kind in (SegmentKind.VIDEO, SegmentKind.ACTION):
        for i in (1, 2, 3):
            rows = _segment_rows(segments, query_kind, i)
            assert mask[rows, _segment_rows(segments, SegmentKind.FIRST, 0)].all()
            for j in (1, 2, 3):
                video = mask[rows, _segment_rows(segments, SegmentKind.VIDEO, j)]
                action = mask[rows, _segment_rows(segments, SegmentKind.ACTION, j)]
                state = mask[rows, _segment_rows(segments, SegmentKind.STATE, j)]
                assert bool(video.all()) == (j <= i) and bool(video.any()) == (j <= i)
                assert bool(action.all()) == (j == i) and bool(action.any()) == (j == i)
                assert bool(state.all()) == (j == i) and bool(state.any()) == (j == i)


def _perturbed(inputs, chunk_index, key, seed=9):
    gen = torch.Generator().manual_seed(seed)
    changed = {**inputs, "chunks": [dict(c) for c in inputs["chunks"]]}
    original = changed["chunks"][chunk_index][key]
    changed["chunks"][chunk_index][key] = original + torch.randn(original.shape, generator=gen)
    return changed


@torch.no_grad()
def test_changing_the_state_of_chunk_i_leaves_video_of_chunk_i_minus_1_unchanged_and_changes_chunk_i():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=3, batch=1, seed=3)
    base = run_full(model, inputs)
    changed = run_full(model, _perturbed(inputs, 1, "state"))  # state of chunk 2
    assert torch.equal(base[1].video, changed[1].video) and torch.equal(base[1].actions, changed[1].actions)
    assert not torch.allclose(base[2].video, changed[2].video)
    assert not torch.allclose(base[2].actions, changed[2].actions)


@torch.no_grad()
def test_changing_the_actions_of_chunk_i_leaves_the_first_frame_and_earlier_chunks_unchanged():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=3, batch=1, seed=4)
    base = run_full(model, inputs)
    changed = run_full(model, _perturbed(inputs, 1, "actions"))  # actions of chunk 2
    assert torch.equal(base[0].video, changed[0].video)
    assert torch.equal(base[1].video, changed[1].video) and torch.equal(base[1].actions, changed[1].actions)
    assert not torch.allclose(base[2].video, changed[2].video)
    assert not torch.allclose(base[2].actions, changed[2].actions)


@torch.no_grad()
def test_changing_a_later_video_chunk_leaves_the_first_frame_and_earlier_chunks_unchanged():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=3, batch=1, seed=5)
    base = run_full(model, inputs)
    changed = run_full(model, _perturbed(inputs, 2, "video"))  # video of chunk 3
    for index in (0, 1, 2):
        assert torch.equal(base[index].video, changed[index].video)
    assert torch.equal(base[1].actions, changed[1].actions) and torch.equal(base[2].actions, changed[2].actions)
    assert not torch.allclose(base[3].video, changed[3].video)


@torch.no_grad()
def test_under_the_training_mask_state_tokens_ignore_every_other_token_of_the_sequence():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=2, batch=1, seed=6)
    captured = []
    hook = model.blocks[-1].register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        run_full(model, inputs)
        # every other token changes (first frame, both video chunks, both action chunks); the text and image
        # context stays: cross-attention reads it for every token, self-attention is what the rule is about
        scrambled = _perturbed(_perturbed(_perturbed(inputs, 0, "video"), 1, "actions"), 1, "video")
        scrambled = _perturbed(scrambled, 0, "actions")
        scrambled["first"] = scrambled["first"] + 1.0
        run_full(model, scrambled)
    finally:
        hook.remove()
    # the last two tokens of the full sequence are the state tokens of chunks 1 and 2
    assert torch.equal(captured[0][:, -2:], captured[1][:, -2:])
    assert not torch.allclose(captured[0][:, :-2], captured[1][:, :-2])


def test_video_rotary_positions_continue_across_chunks_from_diffusers_tables():
    config, model = tiny_transformer()
    h, w = config.latent_size
    reference = WanRotaryPosEmbed(config.head_dim, config.patch_size, 1024)
    cos_ref, sin_ref = reference(torch.zeros(1, 1, 5, h, w))  # a 5-latent-frame video from frame 0
    cos, sin = model._video_rope(frame_offset=3, frames=2, height=h, width=w)
    tokens = h * w
    assert torch.equal(cos, cos_ref[0, 3 * tokens : 5 * tokens, 0])
    assert torch.equal(sin, sin_ref[0, 3 * tokens : 5 * tokens, 0])


@torch.no_grad()
def test_a_chunk_beyond_the_cache_capacity_is_refused():
    config, model = tiny_transformer(context_chunks=1)
    inputs = chunk_inputs(config, count=3, batch=1, seed=7)
    with pytest.raises(KVCacheOverflowError, match="reset the episode"):
        run_cached(model, config, inputs, rows=slice(0, 1))
