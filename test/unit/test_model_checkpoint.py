"""Checkpoints in the released layout: 14B key fidelity, loading tiny checkpoints the test writes, refusals."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import wan_reference as wan
from model_helpers import frames, one_torch_thread, state, tiny_model  # noqa: F401

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

from dreamzero_ros.model.checkpoint import (  # noqa: E402
    CheckpointError,
    module_to_released_name,
    released_name,
    released_state_dict,
    released_to_module_name,
    save_checkpoint,
)
from dreamzero_ros.model.config import dreamzero_5b_config, dreamzero_14b_config  # noqa: E402
from dreamzero_ros.model.transformer import WamTransformer  # noqa: E402
from dreamzero_ros.model.wam import WorldActionModel  # noqa: E402


def released_dit_shapes(dim, layers, ffn, in_channels, out_channels, text_dim, freq_dim, image_dim=None):
    """The released DiT's keys and shapes, written out from the published dimensions (DREAMZERO_FACTS.md):
    original Wan names under action_head.model., GR00T-style category layers with one embodiment slab,
    state padded to 64, actions to 32, MLP hidden 1024, patch (1, 2, 2)."""
    shapes = {
        "patch_embedding.weight": (dim, in_channels, 1, 2, 2), "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, text_dim), "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim), "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, freq_dim), "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim), "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim), "time_projection.1.bias": (6 * dim,),
        "head.head.weight": (out_channels * 4, dim), "head.head.bias": (out_channels * 4,),
        "head.modulation": (1, 2, dim),
        "state_encoder.layer1.W": (1, 64, 1024), "state_encoder.layer1.b": (1, 1024),
        "state_encoder.layer2.W": (1, 1024, dim), "state_encoder.layer2.b": (1, dim),
        "action_encoder.W1.W": (1, 32, dim), "action_encoder.W1.b": (1, dim),
        "action_encoder.W2.W": (1, 2 * dim, dim), "action_encoder.W2.b": (1, dim),
        "action_encoder.W3.W": (1, dim, dim), "action_encoder.W3.b": (1, dim),
        "action_decoder.layer1.W": (1, dim, 1024), "action_decoder.layer1.b": (1, 1024),
        "action_decoder.layer2.W": (1, 1024, 32), "action_decoder.layer2.b": (1, 32),
    }  # fmt: skip
    if image_dim is not None:
        shapes.update({
            "img_emb.proj.0.weight": (image_dim,), "img_emb.proj.0.bias": (image_dim,),
            "img_emb.proj.1.weight": (image_dim, image_dim), "img_emb.proj.1.bias": (image_dim,),
            "img_emb.proj.3.weight": (dim, image_dim), "img_emb.proj.3.bias": (dim,),
            "img_emb.proj.4.weight": (dim,), "img_emb.proj.4.bias": (dim,),
        })  # fmt: skip
    attention = ["self_attn", "cross_attn"]
    for n in range(layers):
        block = f"blocks.{n}."
        for attn in attention:
            projections = ["q", "k", "v", "o"] + (["k_img", "v_img"] if attn == "cross_attn" and image_dim else [])
            for p in projections:
                shapes[f"{block}{attn}.{p}.weight"] = (dim, dim)
                shapes[f"{block}{attn}.{p}.bias"] = (dim,)
            shapes[f"{block}{attn}.norm_q.weight"] = (dim,)
            shapes[f"{block}{attn}.norm_k.weight"] = (dim,)
        if image_dim:
            shapes[f"{block}cross_attn.norm_k_img.weight"] = (dim,)
        shapes[f"{block}norm3.weight"] = (dim,)
        shapes[f"{block}norm3.bias"] = (dim,)
        shapes[f"{block}ffn.0.weight"] = (ffn, dim)
        shapes[f"{block}ffn.0.bias"] = (ffn,)
        shapes[f"{block}ffn.2.weight"] = (dim, ffn)
        shapes[f"{block}ffn.2.bias"] = (dim,)
        shapes[f"{block}modulation"] = (1, 6, dim)
    return {"action_head.model." + k: v for k, v in shapes.items()}


def exposed_dit_shapes(config) -> tuple[dict, int]:
    with torch.device("meta"):
        model = WamTransformer.from_wam_config(config)
    shapes = {released_name("transformer", k): tuple(v.shape) for k, v in model.state_dict().items()}
    return shapes, model.num_parameters_total()


def test_the_14b_preset_exposes_exactly_the_released_dit_key_names_and_shapes():
    exposed, parameters = exposed_dit_shapes(dreamzero_14b_config())
    expected = released_dit_shapes(dim=5120, layers=40, ffn=13824, in_channels=36, out_channels=16,
                                   text_dim=4096, freq_dim=256, image_dim=1280)  # fmt: skip
    assert sorted(set(exposed) - set(expected)) == [] and sorted(set(expected) - set(exposed)) == []
    assert {k: v for k, v in exposed.items() if expected[k] != v} == {}
    assert parameters == sum(int(np.prod(s)) for s in expected.values())
    print(f"dreamzero_14b DiT parameters: {parameters / 1e9:.3f} B")  # 16.484 B (I2V cross-attention included)


def test_the_5b_preset_exposes_the_released_ti2v_dit_dimensions():
    exposed, parameters = exposed_dit_shapes(dreamzero_5b_config())
    expected = released_dit_shapes(dim=3072, layers=30, ffn=14336, in_channels=48, out_channels=48,
                                   text_dim=4096, freq_dim=256)  # fmt: skip
    assert exposed == expected
    assert parameters == sum(int(np.prod(s)) for s in expected.values())


@pytest.mark.parametrize(
    ("released", "module"),
    [
        ("blocks.7.self_attn.q.weight", "blocks.7.attn1.to_q.weight"),
        ("blocks.7.self_attn.o.bias", "blocks.7.attn1.to_out.0.bias"),
        ("blocks.0.cross_attn.k_img.weight", "blocks.0.attn2.add_k_proj.weight"),
        ("blocks.0.cross_attn.norm_k_img.weight", "blocks.0.attn2.norm_added_k.weight"),
        ("blocks.12.ffn.0.weight", "blocks.12.ffn.net.0.proj.weight"),
        ("blocks.3.norm3.bias", "blocks.3.norm2.bias"),
        ("blocks.39.modulation", "blocks.39.scale_shift_table"),
        ("head.head.weight", "proj_out.weight"),
        ("head.modulation", "scale_shift_table"),
        ("img_emb.proj.3.weight", "condition_embedder.image_embedder.ff.net.2.weight"),
        ("state_encoder.layer1.W", "state_encoder.layer1.W"),
        ("action_encoder.W1.W", "action_encoder.W1.W"),
        ("action_decoder.layer2.b", "action_decoder.layer2.b"),
    ],
)
def test_released_key_names_map_onto_module_names_and_back(released, module):
    assert released_to_module_name(released) == module
    assert module_to_released_name(module) == released


@pytest.fixture(scope="module")
def writer():
    """The model that writes the checkpoints, with its outputs for one observed chunk."""
    model = tiny_model(seed=3)
    model.metadata = {"oxe_droid": {"statistics": {"state": {"joint_position": {"q01": [0.0], "q99": [1.0]}}}}}
    return model


def outputs_of(model) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    model.reset()
    model.set_instruction("stack the blocks")
    model.observe(frames(1, seed=1), state(0.0))
    first = model.generate(seed=5)
    model.observe(frames(8, seed=2), state(0.5))
    second = model.generate(seed=6)
    return first.actions, second.actions, second.video_latents


def test_a_sharded_tiny_checkpoint_in_the_released_layout_loads_and_reproduces_its_writer(writer, tmp_path):
    folder = save_checkpoint(writer, tmp_path / "ckpt", max_shard_bytes=100_000)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) >= 2 and all((folder / s).is_file() for s in shards)
    assert "action_head.model.blocks.0.self_attn.q.weight" in index["weight_map"]
    assert "action_head.model.blocks.0.attn1.to_q.weight" not in index["weight_map"]
    assert (folder / "experiment_cfg" / "metadata.json").is_file() and (folder / "config.json").is_file()

    loaded = WorldActionModel.from_checkpoint(folder)
    assert loaded.metadata == writer.metadata
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    assert (loaded.action_dim, loaded.state_dim, loaded.horizon) == (writer.action_dim, writer.state_dim, 24)
    expected, got = outputs_of(writer), outputs_of(loaded)
    np.testing.assert_array_equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    assert torch.equal(expected[2], got[2])


def test_a_single_file_checkpoint_loads_without_touching_the_network(writer, tmp_path, monkeypatch):
    folder = save_checkpoint(writer, tmp_path / "ckpt")
    assert (folder / "model.safetensors").is_file()

    def no_network(*args, **kwargs):
        raise AssertionError("checkpoint loading tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    loaded = WorldActionModel.from_checkpoint(folder)
    assert torch.equal(loaded.transformer.proj_out.weight, writer.transformer.proj_out.weight)


def test_lora_base_layer_keys_are_merged_into_the_weights(writer, tmp_path):
    folder = save_checkpoint(writer, tmp_path / "ckpt")
    tensors = load_file(str(folder / "model.safetensors"))
    key = "action_head.model.blocks.1.self_attn.q"
    base = tensors.pop(f"{key}.weight")
    tensors[f"{key}.base_layer.weight"] = base
    tensors[f"{key}.base_layer.bias"] = tensors.pop(f"{key}.bias")
    lora_a, lora_b = torch.randn(4, base.shape[1]), torch.randn(base.shape[0], 4)
    tensors[f"{key}.lora_A.default.weight"] = lora_a
    tensors[f"{key}.lora_B.default.weight"] = lora_b
    save_file(tensors, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["lora"] = {"lora_alpha": 8, "lora_rank": 4}
    (folder / "config.json").write_text(json.dumps(config))

    loaded = WorldActionModel.from_checkpoint(folder)
    merged = loaded.transformer.blocks[1].attn1.to_q.weight
    assert torch.allclose(merged, base + 2.0 * lora_b @ lora_a, atol=1e-5)
    assert loaded.load_report.merged_lora == [f"{key}.weight"]


def test_a_wrong_shape_key_is_refused_with_the_key_named(writer, tmp_path):
    folder = save_checkpoint(writer, tmp_path / "ckpt")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["action_head.model.action_decoder.layer2.W"] = torch.zeros(1, 32, 16)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"action_head\.model\.action_decoder\.layer2\.W: shape \[1, 32, 16\]"):
        WorldActionModel.from_checkpoint(folder)


def test_missing_keys_are_refused_and_unexpected_keys_reported_by_their_released_names(writer, tmp_path):
    folder = save_checkpoint(writer, tmp_path / "ckpt")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["action_head.model.registers.weight"] = torch.zeros(3)
    save_file(tensors, str(folder / "model.safetensors"))
    loaded = WorldActionModel.from_checkpoint(folder)
    assert loaded.load_report.unexpected == ["action_head.model.registers.weight"]

    del tensors["action_head.model.blocks.0.cross_attn.k_img.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing 1 \[action_head\.model\.blocks\.0\.cross_attn\.k_img\.weight\]"):
        WorldActionModel.from_checkpoint(folder)


def test_a_folder_without_weights_is_refused_with_the_folder_named(tmp_path):
    with pytest.raises(CheckpointError, match="neither model.safetensors nor"):
        WorldActionModel.from_checkpoint(tmp_path)


# ---- Wan-native encoder names (the release's own layout) ----------------------------------------------------------

T5_PREFIX, CLIP_PREFIX, VAE_PREFIX = "action_head.text_encoder.", "action_head.image_encoder.", "action_head.vae."


def replace_component(tensors: dict, prefix: str, native: dict) -> dict:
    """The checkpoint's tensors with one component's keys swapped for Wan-named ones."""
    return {**{k: v for k, v in tensors.items() if not k.startswith(prefix)}, **native}


def tiny_wan_t5(config) -> wan.WanT5Encoder:
    t5 = config.text_encoder
    return wan.WanT5Encoder(vocab=t5["vocab_size"], dim=t5["d_model"], dim_attn=t5["d_kv"] * t5["num_heads"],
                            dim_ffn=t5["d_ff"], num_heads=t5["num_heads"], num_layers=t5["num_layers"],
                            num_buckets=t5["relative_attention_num_buckets"],
                            max_dist=t5["relative_attention_max_distance"]).eval()  # fmt: skip


def tiny_wan_clip(config) -> wan.WanImageEncoder:
    c = config.image_encoder
    return wan.WanImageEncoder(image_size=c["image_size"], patch_size=c["patch_size"], dim=c["hidden_size"],
                               mlp_dim=c["intermediate_size"], out_dim=c.get("projection_dim", 16),
                               num_heads=c["num_attention_heads"], num_layers=c["num_hidden_layers"],
                               activation=c.get("hidden_act", "quick_gelu")).eval()  # fmt: skip


def tiny_wan_vae(config) -> wan.WanVideoVAE:
    v = config.vae
    return wan.WanVideoVAE(dim=v["base_dim"], z_dim=v["z_dim"], dim_mult=v["dim_mult"],
                           num_res_blocks=v["num_res_blocks"], temperal_downsample=v["temperal_downsample"])  # fmt: skip


@pytest.fixture(scope="module")
def native_folder(writer, tmp_path_factory):
    """The writer's checkpoint with all three encoders rewritten in Wan's native names by Wan-structured modules."""
    folder = save_checkpoint(writer, tmp_path_factory.mktemp("native") / "ckpt")
    tensors = load_file(str(folder / "model.safetensors"))
    t5, clip, vae = tiny_wan_t5(writer.config), tiny_wan_clip(writer.config), tiny_wan_vae(writer.config)
    native = {**wan.native_state(t5, T5_PREFIX, 11), **wan.native_state(clip, CLIP_PREFIX, 12),
              **wan.native_state(vae, VAE_PREFIX, 13)}  # fmt: skip
    save_file(replace_component(tensors, "action_head.text_encoder.", native), str(folder / "model.safetensors"))
    tensors = load_file(str(folder / "model.safetensors"))
    tensors = replace_component(tensors, CLIP_PREFIX, {k: v for k, v in native.items() if k.startswith(CLIP_PREFIX)})
    tensors = replace_component(tensors, VAE_PREFIX, {k: v for k, v in native.items() if k.startswith(VAE_PREFIX)})
    save_file(tensors, str(folder / "model.safetensors"))
    return folder, native, t5, clip


def test_wan_native_names_are_what_the_release_stores_under_each_encoder_prefix(native_folder):
    _, native, _, _ = native_folder
    # names quoted in DREAMZERO_FACTS.md, "Checkpoint layout of the release"
    assert "action_head.text_encoder.blocks.0.attn.q.weight" in native
    assert any(k.startswith("action_head.image_encoder.model.visual.") for k in native)
    assert "action_head.vae.model.conv1.weight" in native
    assert any(k.startswith("action_head.vae.model.encoder.downsamples.") for k in native)


def test_a_checkpoint_with_wan_native_encoders_loads_with_nothing_missing_or_unexpected(native_folder):
    folder, native, _, _ = native_folder
    loaded = WorldActionModel.from_checkpoint(folder)
    report = loaded.load_report
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.native) == ["image_encoder", "text_encoder", "vae"]
    # CLIP's projection head and temperature are stored but unused by the WAM (it takes block tokens)
    assert sorted(report.ignored) == [CLIP_PREFIX + "model.log_scale", CLIP_PREFIX + "model.visual.head"]
    # every native tensor landed in exactly one of our parameters (the tied umT5 embedding in both of its names)
    ours = {**{T5_PREFIX + k: v for k, v in loaded.text_encoder.state_dict().items()},
            **{VAE_PREFIX + k: v for k, v in loaded.vae.state_dict().items()}}  # fmt: skip
    used = [k for k, v in native.items() if k.startswith((T5_PREFIX, VAE_PREFIX))
            and sum(torch.equal(v, w) for w in ours.values()) >= 1]  # fmt: skip
    assert sorted(used) == sorted(k for k in native if k.startswith((T5_PREFIX, VAE_PREFIX)))


def test_wan_native_umt5_weights_reproduce_the_wan_text_encoder_that_wrote_them(native_folder):
    folder, _, t5, _ = native_folder
    loaded = WorldActionModel.from_checkpoint(folder)
    prompt = "a robot stacks the red block on the blue one"
    ids, mask = loaded.text_encoder.tokenizer(prompt, loaded.config.text_len)
    with torch.no_grad():
        expected = t5(ids, mask) * mask.unsqueeze(-1)
    got = loaded.text_encoder.encode(prompt)
    assert float(expected.abs().max()) > 0.1
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_wan_native_clip_weights_reproduce_the_wan_vision_tower_tokens(native_folder):
    folder, _, _, clip = native_folder
    loaded = WorldActionModel.from_checkpoint(folder)
    size = loaded.config.image_encoder["image_size"]
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = clip.model.visual(pixels)  # the release's use_31_block: all blocks but the last
        got = loaded.image_encoder.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    assert got.shape == expected.shape == (1, loaded.config.image_tokens, loaded.config.image_dim)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_the_wan_vae_renaming_equals_diffusers_own_conversion_on_the_released_vae_layout():
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    from dreamzero_ros.model.native_names import vae_to_module

    # the released Wan 2.1 VAE layout (num_res_blocks 2, dim_mult [1, 2, 4, 4]) at a small width
    vae = wan.WanVideoVAE(dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                          temperal_downsample=[False, True, True])  # fmt: skip
    native = wan.native_state(vae, "", 21)
    expected = {"model." + k: v for k, v in convert_wan_vae_to_diffusers(
        {k[len("model."):]: v for k, v in native.items()}).items()}  # fmt: skip
    got, ignored = vae_to_module(native, num_res_blocks=2)
    assert ignored == [] and sorted(got) == sorted(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_the_tiny_vae_renaming_matches_hand_listed_pairs():
    """One residual block per stage: the decoder's flat list is [res, res, resample] x 3 + [res, res]."""
    from dreamzero_ros.model.native_names import vae_to_module

    pairs = {
        "model.encoder.conv1.weight": "model.encoder.conv_in.weight",
        "model.encoder.downsamples.1.resample.1.weight": "model.encoder.down_blocks.1.resample.1.weight",
        "model.encoder.downsamples.3.time_conv.bias": "model.encoder.down_blocks.3.time_conv.bias",
        "model.encoder.downsamples.2.residual.3.gamma": "model.encoder.down_blocks.2.norm2.gamma",
        "model.encoder.middle.1.to_qkv.weight": "model.encoder.mid_block.attentions.0.to_qkv.weight",
        "model.encoder.middle.2.residual.6.bias": "model.encoder.mid_block.resnets.1.conv2.bias",
        "model.encoder.head.2.weight": "model.encoder.conv_out.weight",
        "model.conv1.bias": "model.quant_conv.bias",
        "model.conv2.weight": "model.post_quant_conv.weight",
        "model.decoder.upsamples.1.residual.2.weight": "model.decoder.up_blocks.0.resnets.1.conv1.weight",
        "model.decoder.upsamples.2.time_conv.weight": "model.decoder.up_blocks.0.upsamplers.0.time_conv.weight",
        "model.decoder.upsamples.3.shortcut.weight": "model.decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
        "model.decoder.upsamples.8.resample.1.bias": "model.decoder.up_blocks.2.upsamplers.0.resample.1.bias",
        "model.decoder.upsamples.10.residual.0.gamma": "model.decoder.up_blocks.3.resnets.1.norm1.gamma",
        "model.decoder.head.0.gamma": "model.decoder.norm_out.gamma",
    }
    got, _ = vae_to_module({k: torch.tensor([float(i)]) for i, k in enumerate(pairs)}, num_res_blocks=1)
    assert {k: float(v) for k, v in got.items()} == {pairs[k]: float(i) for i, k in enumerate(pairs)}


# ---- a folder of the release: its own config.json / conf.yaml / metadata.json, no section of ours ------------------

AGIBOT_GROUPS = [("left_arm_joint_position", 7), ("right_arm_joint_position", 7), ("left_effector_position", 1),
                 ("right_effector_position", 1), ("head_position", 2), ("waist_position", 2)]  # fmt: skip


def write_tokenizer(folder) -> None:
    """A small word-level tokenizer saved the way transformers saves umT5's (tokenizer_config.json etc.)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>", *"a multi-view video shows that robot stack the blocks".split()]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(str(folder))  # fmt: skip


def released_config_json(horizon: int = 24) -> dict:
    """Keys of the release's config.json (its VLAConfig with the action head's WANPolicyHeadConfig)."""
    return {
        "model_type": "vla", "action_horizon": horizon, "action_dim": 32, "compute_dtype": "bfloat16",
        "backbone_cfg": {"_target_": "groot.vla.model.dreamzero.backbone.identity.IdentityBackbone"},
        "action_head_cfg": {
            "_target_": "groot.vla.model.dreamzero.action_head.wan_flow_matching_action_tf.WANPolicyHead",
            "config": {
                "action_horizon": horizon, "action_dim": 32, "max_state_dim": 64, "num_frames": 33,
                "num_frame_per_block": 2, "lora_rank": 4, "lora_alpha": 4, "train_architecture": "lora",
                "decouple_inference_noise": False, "video_inference_final_noise": 0.8,
                "diffusion_model_cfg": {"model_type": "i2v", "dim": 32, "num_heads": 2, "num_layers": 2,
                                        "num_action_per_block": horizon,
                                        "num_frame_per_block": 2, "num_state_per_block": 1},
            },
        },
    }  # fmt: skip


def released_conf_yaml(horizon: int = 24) -> str:
    """The resolved training config's keys that matter (groot/vla/configs/data/dreamzero/*, scripts/train/*)."""
    return (f"action_horizon: {horizon}\nnum_action_per_block: {horizon}\nnum_frame_per_block: 2\n"
            "num_state_per_block: 1\nnum_frames: 33\nmax_state_dim: 64\nfps:\n  yam: 30\n"
            "train_dataset:\n  mixture_spec:\n  - dataset_path:\n      agibot:\n      - ./data/agibot_lerobot\n"
            "    dataset_weight: 1.0\n")  # fmt: skip


def agibot_metadata() -> dict:
    state = {k: {"q01": [-1.0] * n, "q99": [1.0] * n} for k, n in AGIBOT_GROUPS}
    action = {**state, "robot_velocity": {"q01": [-0.5, -1.0], "q99": [0.5, 1.0]}}
    return {"agibot": {"statistics": {"state": state, "action": action}}}


@pytest.fixture(scope="module")
def released_folder(tmp_path_factory):
    """A tiny folder in the release's layout: DiT weights from a tiny model, encoders written by Wan-structured
    modules under their native names, the release's config.json / conf.yaml / metadata.json, a tokenizer folder."""
    # CLIP width 160 = 2 heads of ViT-H's 80 (the head count is not in the weights)
    clip = dict(hidden_size=160, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
                patch_size=14, projection_dim=16, hidden_act="gelu")  # fmt: skip
    # the DiT patch of the release (1, 2, 2); the folder's model sees full-size frames (pixel_downsample 1)
    dit = tiny_model(seed=7, action_dim=22, state_dim=20, image_dim=160, image_tokens=5, image_encoder=clip,
                     patch_size=(1, 2, 2), pixel_downsample=2)  # fmt: skip
    folder = tmp_path_factory.mktemp("released") / "DreamZero-AgiBot"
    (folder / "experiment_cfg").mkdir(parents=True)
    t5_cfg = {**dit.config.text_encoder, "relative_attention_max_distance": 128}  # Wan's T5 buckets reach 128
    t5 = tiny_wan_t5(dit.config.replace(text_encoder=t5_cfg))
    clip_module, vae = tiny_wan_clip(dit.config), tiny_wan_vae(dit.config)
    tensors = {k: v for k, v in released_state_dict(dit).items() if k.startswith("action_head.model.")}
    tensors.update({**wan.native_state(t5, T5_PREFIX, 31), **wan.native_state(clip_module, CLIP_PREFIX, 32),
                    **wan.native_state(vae, VAE_PREFIX, 33)})  # fmt: skip
    save_file({k: v.clone().to(torch.bfloat16) for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(released_config_json()))
    (folder / "experiment_cfg" / "conf.yaml").write_text(released_conf_yaml())
    (folder / "experiment_cfg" / "metadata.json").write_text(json.dumps(agibot_metadata()))
    write_tokenizer(folder / "tokenizer")
    return folder, dit, t5


def test_a_released_folder_loads_with_every_setting_inferred_from_its_files_and_weights(released_folder,
                                                                                       monkeypatch):  # fmt: skip
    folder, dit, t5 = released_folder

    def no_network(*args, **kwargs):
        raise AssertionError("loading a released folder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # offline by construction, not by environment
    loaded = WorldActionModel.from_checkpoint(folder)
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    info, config = loaded.checkpoint_info, loaded.config
    # the released recipe for AgiBot: 24 steps per chunk at the dataset's 30 Hz, 8 frames per chunk -> 10 fps
    assert (info.released, info.tag, info.embodiment) == (True, "agibot", "agibot_g1")
    assert (info.horizon, info.control_rate_hz, info.frames_per_chunk) == (24, 30.0, 8)
    assert info.video_fps == pytest.approx(10.0) and info.chunk_duration == pytest.approx(0.8)
    assert (info.state_dim, info.action_dim) == (14 + 2 + 2 + 2, 20 + 2)  # metadata groups, robot_velocity included
    assert (loaded.state_dim, loaded.action_dim, loaded.horizon) == (20, 22, 24)
    # the reference server's sampler: fixed 8-of-16 DiT step cache, noise seeded with 1140 on every call
    # The reference server's sampler (DREAMZERO_FACTS.md, Sampling): UniPC, 16 steps, shift 5, CFG 5 on video,
    # fixed 8-of-16 DiT step cache, seed 1140 per call; no 1-step Flash.
    assert config.step_cache == "fixed" and info.sampler == {
        "num_steps": 16, "shift": 5.0, "cfg_scale": 5.0, "scheduler": "unipc", "step_cache": "fixed",
        "noise_seed": 1140, "flash": False}
    settings = loaded.sampler.settings
    if hasattr(settings, "noise_seed"):
        assert settings.noise_seed == 1140
    else:
        assert "sampler option noise_seed=1140 of the checkpoint is not supported by this sampler" in \
            loaded.load_report.notes  # fmt: skip
    # sizes from the weights: DiT, Wan T5, ViT, VAE
    assert (config.dim, config.num_layers, config.patch_size) == (dit.config.dim, 2, (1, 2, 2))
    assert config.text_encoder["num_layers"] == 1 and config.text_encoder["d_model"] == 16
    assert config.text_encoder["relative_attention_num_buckets"] == 8 and config.text_encoder["d_kv"] == 8
    assert (config.image_dim, config.image_tokens, config.image_encoder["num_attention_heads"]) == (160, 5, 2)
    assert config.image_encoder["image_size"] == 28 and config.image_encoder["patch_size"] == 14
    assert config.vae["dim_mult"] == [1, 1, 1, 1] and config.vae["num_res_blocks"] == 1
    assert config.vae["temperal_downsample"] == [False, True, True]
    # the tokenizer folder's tokenizer feeds the Wan T5 that wrote the weights
    prompt = "a robot stack the blocks"
    ids, mask = loaded.text_encoder.tokenizer(prompt, config.text_len)
    assert ids[0, :5].tolist() == [3, 8, 9, 10, 11]  # a, robot, stack, the, blocks in the vocabulary above
    with torch.no_grad():
        expected = t5(ids, mask) * mask.unsqueeze(-1)
    torch.testing.assert_close(loaded.text_encoder.encode(prompt), expected.to(torch.bfloat16).float(),
                               atol=0.05, rtol=0.05)  # fmt: skip


def test_the_local_backend_takes_the_released_timing_and_refuses_a_config_that_disagrees(released_folder, tmp_path):
    from dreamzero_ros.backends.base import Observation
    from dreamzero_ros.backends.local import LocalBackend
    from dreamzero_ros.core.embodiment import ConfigError, config_dir, load_embodiment

    folder, _, _ = released_folder
    g1 = load_embodiment("agibot_g1")
    backend = LocalBackend(g1, checkpoint=folder)
    assert backend.space.action_dim == 22 and not backend.space.identity
    # one chunk end to end: 24 rows of the 20 joints + robot_velocity, inside the metadata's ranges
    backend.set_instruction("stack the blocks")
    lo, hi, _ = g1.limits_arrays(g1.state_joints)
    frame = np.random.default_rng(0).integers(0, 256, (1, 352, 640, 3), dtype=np.uint8)
    result = backend.infer(Observation(stamp=0.0, frames=frame, state=(lo + hi) / 2))
    assert result.positions.shape == (24, 20) and result.extras["robot_velocity"].shape == (24, 2)
    assert np.all(np.isfinite(result.positions)) and np.all(np.abs(result.extras["robot_velocity"]) <= [0.5, 1.0])
    # the paper's 48-step AgiBot setting (1.6 s, 5 fps) against a checkpoint of the released recipe
    paper = (config_dir() / "agibot_g1.yaml").read_text().replace("horizon: 24", "horizon: 48")
    paper = paper.replace("chunk_duration: 0.8", "chunk_duration: 1.6").replace("fps: 10", "fps: 5")
    (tmp_path / "agibot_paper.yaml").write_text(paper)
    with pytest.raises(ConfigError, match=r"control\.horizon is 48 in the config but 24 in the checkpoint.*"
                                          r"video\.fps is 5 in the config but 10 in the checkpoint"):
        LocalBackend(load_embodiment(tmp_path / "agibot_paper.yaml"), model=backend.model)


def test_without_a_tokenizer_loading_stops_before_the_weights_and_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.delenv("DREAMZERO_TOKENIZER", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    folder = tmp_path / "DreamZero-DROID"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(released_config_json()))
    (folder / "model.safetensors").write_bytes(b"not safetensors: reading the weights would fail differently")
    with pytest.raises(CheckpointError) as caught:
        WorldActionModel.from_checkpoint(folder)
    message = str(caught.value)
    assert "umT5 tokenizer not found" in message and "google/umt5-xxl" in message
    assert f"--local-dir {folder / 'tokenizer'}" in message and "DREAMZERO_TOKENIZER" in message


def test_a_tokenizer_in_the_local_hugging_face_cache_is_found_offline(tmp_path, monkeypatch):
    from dreamzero_ros.model.release import find_tokenizer

    monkeypatch.delenv("DREAMZERO_TOKENIZER", raising=False)
    cache = tmp_path / "hub"
    snapshot = cache / "models--google--umt5-xxl" / "snapshots" / "0123456789abcdef"
    write_tokenizer(snapshot)
    (cache / "models--google--umt5-xxl" / "refs").mkdir()
    (cache / "models--google--umt5-xxl" / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert find_tokenizer(tmp_path / "ckpt") == snapshot
    # an explicit folder wins over the cache
    write_tokenizer(tmp_path / "mine")
    assert find_tokenizer(tmp_path / "ckpt", tmp_path / "mine") == tmp_path / "mine"


# ---- PEFT LoRA saves --------------------------------------------------------------------------------------------


def peft_folder(writer, folder, adapter: dict | None, config_lora: dict | None):
    """The writer's checkpoint as PEFT saves a LoRA-wrapped DiT: every DiT key under base_model.model., the
    adapted linears as base_layer + lora_A/B.default."""
    folder = save_checkpoint(writer, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    gen = torch.Generator().manual_seed(9)
    factors = {}
    out = {}
    for key, value in tensors.items():
        if not key.startswith("action_head.model."):
            out[key] = value
            continue
        name = key[len("action_head.model."):]
        wrapped = "action_head.model.base_model.model."
        module = name.rsplit(".", 1)[0]
        if module in ("blocks.0.self_attn.q", "blocks.1.ffn.0"):
            out[f"{wrapped}{module}.base_layer.{name.rsplit('.', 1)[1]}"] = value
            if name.endswith(".weight"):
                a, b = torch.randn(4, value.shape[1], generator=gen), torch.randn(value.shape[0], 4, generator=gen)
                out[f"{wrapped}{module}.lora_A.default.weight"] = a
                out[f"{wrapped}{module}.lora_B.default.weight"] = b
                factors[module] = (value, a, b)
        else:
            out[wrapped + name] = value
    save_file(out, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    if config_lora is not None:
        config["action_head_cfg"] = {"config": config_lora}
    (folder / "config.json").write_text(json.dumps(config))
    if adapter is not None:
        (folder / "adapter_config.json").write_text(json.dumps(adapter))
    return folder, factors


@pytest.mark.parametrize(("adapter", "config_lora", "scale"), [
    (None, {"lora_rank": 4, "lora_alpha": 16}, 16 / 4),  # the release's config.json keys: alpha / r
    ({"r": 4, "lora_alpha": 8, "use_rslora": False}, None, 8 / 4),  # PEFT's adapter_config.json
    ({"r": 4, "lora_alpha": 8, "use_rslora": True}, None, 8 / 2),  # rank-stabilised: alpha / sqrt(r)
])  # fmt: skip
def test_a_peft_lora_save_loads_and_merges_w_plus_alpha_over_r_times_b_a(writer, tmp_path, adapter, config_lora,
                                                                          scale):  # fmt: skip
    folder, factors = peft_folder(writer, tmp_path / "ckpt", adapter, config_lora)
    loaded = WorldActionModel.from_checkpoint(folder)
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    got = {"blocks.0.self_attn.q": loaded.transformer.blocks[0].attn1.to_q.weight,
           "blocks.1.ffn.0": loaded.transformer.blocks[1].ffn.net[0].proj.weight}  # fmt: skip
    for module, (weight, a, b) in factors.items():
        expected = weight.double() + scale * (b.double() @ a.double())
        torch.testing.assert_close(got[module].double(), expected, atol=1e-5, rtol=1e-5)
    assert sorted(loaded.load_report.merged_lora) == ["action_head.model.blocks.0.self_attn.q.weight",
                                                      "action_head.model.blocks.1.ffn.0.weight"]  # fmt: skip
    # the rest of the DiT came through the base_model.model. wrapper unchanged
    assert torch.equal(loaded.transformer.proj_out.weight, writer.transformer.proj_out.weight)


def test_a_lora_rank_that_disagrees_with_the_factors_is_refused(writer, tmp_path):
    folder, _ = peft_folder(writer, tmp_path / "ckpt", {"r": 8, "lora_alpha": 8}, None)
    with pytest.raises(CheckpointError, match=r"adapter_config.json: LoRA rank 8, but the lora_A weights have \[4\]"):
        WorldActionModel.from_checkpoint(folder)


def test_the_local_backend_loads_a_checkpoint_of_our_own_save_path_and_refuses_a_robot_of_other_sizes(writer,
                                                                                                       tmp_path):  # fmt: skip
    from dreamzero_ros.backends.local import LocalBackend
    from dreamzero_ros.core.embodiment import ConfigError, load_embodiment

    def entry(n: int) -> dict:
        return {"q01": [-1.0] * n, "q99": [1.0] * n}

    metadata = {"oxe_droid": {"statistics": {"state": {"joint_position": entry(7), "gripper_position": entry(1)},
                                             "action": {"joint_position": entry(7), "gripper_position": entry(1)}}}}
    folder = save_checkpoint(writer, tmp_path / "ckpt", metadata=metadata)
    backend = LocalBackend(load_embodiment("franka_droid"), checkpoint=folder)
    info = backend.model.checkpoint_info
    assert (info.released, info.tag, info.embodiment, info.horizon) == (False, "oxe_droid", "franka_droid", 24)
    assert info.control_rate_hz is None and not backend.space.identity
    assert info.execute_steps is None and backend.execute_steps is None  # the release's recipe: not recorded
    # A checkpoint trained at a cadence (`dreamzero train --execute-steps 12`) carries it to the backend.
    cadenced = save_checkpoint(writer, tmp_path / "cadenced", metadata=metadata, execute_steps=12)
    assert json.loads((cadenced / "config.json").read_text())["dreamzero_ros"]["execute_steps"] == 12
    assert LocalBackend(load_embodiment("franka_droid"), checkpoint=cadenced).execute_steps == 12
    raw = json.loads((cadenced / "config.json").read_text())
    raw["dreamzero_ros"]["execute_steps"] = 30
    (cadenced / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"dreamzero_ros\.execute_steps: expected whole control steps in "
                                              r"1\.\.24 \(the horizon\), got 30"):
        WorldActionModel.from_checkpoint(cadenced)
    # YAM: the same 24-step horizon, but 14 state values where the checkpoint's model has 8
    with pytest.raises(ConfigError, match=r"yam\.yaml: action: 14 values in the config but 8 in the checkpoint"):
        LocalBackend(load_embodiment("yam"), model=backend.model)


def test_the_wan_2_2_vae_of_the_5b_variant_maps_onto_diffusers_residual_blocks_name_for_name_and_shape():
    from diffusers import AutoencoderKLWan

    from dreamzero_ros.model.native_names import vae_to_module

    layout = dict(z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=2, temperal_downsample=[False, True, True])
    native = wan.native_state(wan.VideoVAE38(dim=4, dec_dim=8, **layout), "model.", 41)
    got, _ = vae_to_module(native, num_res_blocks=2)
    ours = AutoencoderKLWan(base_dim=4, decoder_base_dim=8, is_residual=True, patch_size=2, in_channels=12,
                            out_channels=12, attn_scales=[], latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
                            scale_factor_spatial=16, **layout).state_dict()  # fmt: skip
    assert sorted(got) == sorted("model." + k for k in ours)
    assert {k: tuple(v.shape) for k, v in got.items()} == {"model." + k: tuple(v.shape) for k, v in ours.items()}
    # hand-listed: stage 1's resample follows its 2 residual blocks in the encoder, 3 in the decoder
    assert torch.equal(got["model.encoder.down_blocks.1.downsampler.time_conv.weight"],
                       native["model.encoder.downsamples.1.downsamples.2.time_conv.weight"])  # fmt: skip
    assert torch.equal(got["model.decoder.up_blocks.0.upsampler.resample.1.weight"],
                       native["model.decoder.upsamples.0.upsamples.3.resample.1.weight"])  # fmt: skip
    assert torch.equal(got["model.decoder.up_blocks.2.resnets.2.norm2.gamma"],
                       native["model.decoder.upsamples.2.upsamples.2.residual.3.gamma"])  # fmt: skip


def test_dreamzero_serve_refuses_a_config_whose_timing_differs_from_the_checkpoint_and_exits_2(released_folder,
                                                                                              tmp_path, capsys):  # fmt: skip
    import argparse

    from dreamzero_ros.backends.server import add_arguments, run
    from dreamzero_ros.core.embodiment import config_dir

    folder, _, _ = released_folder
    paper = (config_dir() / "agibot_g1.yaml").read_text().replace("horizon: 24", "horizon: 48")
    (tmp_path / "agibot_paper.yaml").write_text(paper.replace("chunk_duration: 0.8", "chunk_duration: 1.6"))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--embodiment", str(tmp_path / "agibot_paper.yaml"), "--checkpoint", str(folder),
                              "--port", "0", "--torch-threads", "1"])  # fmt: skip
    assert run(args) == 2
    out = capsys.readouterr().out
    assert "agibot_paper.yaml: control.horizon is 48 in the config but 24 in the checkpoint" in out
