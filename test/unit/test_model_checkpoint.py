"""Checkpoints in the released layout: 14B key fidelity, loading tiny checkpoints the test writes, refusals."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from model_helpers import frames, one_torch_thread, state, tiny_model  # noqa: F401

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

from dreamzero_ros.model.checkpoint import (  # noqa: E402
    CheckpointError,
    module_to_released_name,
    released_name,
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
