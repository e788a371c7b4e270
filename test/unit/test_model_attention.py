"""Block-causal attention and the KV cache of the WAM transformer (tiny config, CPU, float32)."""

from __future__ import annotations

import pytest
from model_helpers import chunk_inputs, one_torch_thread, tiny_transformer  # noqa: F401

torch = pytest.importorskip("torch")

from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed  # noqa: E402

from dreamzero_ros.model.kv_cache import KVCache, KVCacheOverflowError  # noqa: E402
from dreamzero_ros.model.transformer import (  # noqa: E402
    Segment,
    SegmentKind,
    build_block_causal_mask,
    full_context_segments,
)

TOLERANCE = 1e-4


def run_cached(model, config, inputs, rows=slice(None)):
    """The inference path: first frame, then each chunk against the cache; past chunks are committed."""
    cache = KVCache.for_config(config)
    context = model.embed_context(inputs["text"], inputs["image"])
    batch = inputs["first"].shape[0]
    outputs = [model.forward_chunk(inputs["first"], torch.zeros(batch), context, chunk=0, frame_offset=0,
                                   cache=cache, cache_rows=rows)]  # fmt: skip
    cache.commit((Segment(SegmentKind.FIRST, 0, config.tokens_per_latent_frame),))
    for index, chunk in enumerate(inputs["chunks"], start=1):
        out = model.forward_chunk(
            chunk["video"], chunk["video_timestep"], context, chunk=index,
            frame_offset=1 + (index - 1) * config.latent_frames_per_chunk, actions=chunk["actions"],
            action_timestep=chunk["action_timestep"], state=chunk["state"], cache=cache, cache_rows=rows,
        )  # fmt: skip
        outputs.append(out)
        video_tokens = config.tokens_per_latent_frame * config.latent_frames_per_chunk
        cache.commit((Segment(SegmentKind.VIDEO, index, video_tokens),))
    return outputs, cache


def run_full(model, inputs):
    context = model.embed_context(inputs["text"], inputs["image"])
    return model.forward_full(inputs["first"], inputs["chunks"], context)


@torch.no_grad()
def test_chunk_by_chunk_generation_with_the_cache_equals_one_full_forward_with_the_explicit_mask():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=3, batch=2, seed=1)
    cached, _ = run_cached(model, config, inputs)
    full = run_full(model, inputs)
    assert (cached[0].video - full[0].video).abs().max() < TOLERANCE
    for index in range(1, 4):
        assert full[index].video.abs().max() > 0.1  # a non-trivial output, so the comparison means something
        assert (cached[index].video - full[index].video).abs().max() < TOLERANCE
        assert (cached[index].actions - full[index].actions).abs().max() < TOLERANCE


@torch.no_grad()
def test_each_guidance_branch_reads_only_its_own_cache_row():
    config, model = tiny_transformer()
    inputs = chunk_inputs(config, count=2, batch=2, seed=2)  # rows 0/1 carry different text: "cond"/"uncond"
    batched, cache = run_cached(model, config, inputs)
    context = model.embed_context(inputs["text"], inputs["image"])
    last = inputs["chunks"][-1]
    # re-stage the last chunk per branch (batch 1) against the committed caches of chunks < 2
    cache.length -= config.tokens_per_latent_frame * config.latent_frames_per_chunk
    cache.segments = cache.segments[:-1]
    for row, branch in enumerate(("cond", "uncond")):
        single = slice(row, row + 1)
        out = model.forward_chunk(
            last["video"][single], last["video_timestep"][single], context[single], chunk=2, frame_offset=3,
            actions=last["actions"][single], action_timestep=last["action_timestep"][single],
            state=last["state"][single], cache=cache, cache_rows=cache.rows(branch),
        )  # fmt: skip
        assert (out.video - batched[2].video[single]).abs().max() < TOLERANCE


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
def test_state_tokens_ignore_every_other_token_of_the_sequence():
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
