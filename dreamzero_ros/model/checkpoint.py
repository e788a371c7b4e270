"""Checkpoints in the released DreamZero layout: key mapping, loading and writing.

Layout: `config.json`, `model.safetensors` or shards listed in `model.safetensors.index.json`, and
`experiment_cfg/metadata.json` (normalisation statistics per embodiment). This module owns the map between the
released key names (original Wan names under `action_head.model.`: `blocks.N.self_attn.q`, `cross_attn.k_img`,
`ffn.0`, `modulation`, `head.head`, `img_emb.proj.*`, and the GR00T-style `state_encoder.layer1.W`,
`action_encoder.W1.W`, `action_decoder.layer2.b`) and our module names (diffusers' Wan names), LoRA merging
(`base_layer` + `lora_A`/`lora_B`), shape checks that name the offending key, and the missing/unexpected report.
Nothing here touches the network.

Text encoder, image encoder and VAE weights live under `action_head.text_encoder.`, `action_head.image_encoder.`
and `action_head.vae.` with transformers'/diffusers' own parameter names inside the prefix.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dreamzero_ros.model.config import WamConfig, preset_config

log = logging.getLogger(__name__)

DIT_PREFIX = "action_head.model."
COMPONENT_PREFIXES = {
    "transformer": DIT_PREFIX,
    "text_encoder": "action_head.text_encoder.",
    "image_encoder": "action_head.image_encoder.",
    "vae": "action_head.vae.",
}
CONFIG_SECTION = "dreamzero_ros"  # our section of config.json: the WamConfig and the robot's action/state dims

# (released name, module name) templates; {n} is a block index, the parameter suffix follows the template.
_DIT_NAME_PAIRS: tuple[tuple[str, str], ...] = (
    ("patch_embedding", "patch_embedding"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("blocks.{n}.self_attn.q", "blocks.{n}.attn1.to_q"),
    ("blocks.{n}.self_attn.k", "blocks.{n}.attn1.to_k"),
    ("blocks.{n}.self_attn.v", "blocks.{n}.attn1.to_v"),
    ("blocks.{n}.self_attn.o", "blocks.{n}.attn1.to_out.0"),
    ("blocks.{n}.self_attn.norm_q", "blocks.{n}.attn1.norm_q"),
    ("blocks.{n}.self_attn.norm_k", "blocks.{n}.attn1.norm_k"),
    ("blocks.{n}.cross_attn.q", "blocks.{n}.attn2.to_q"),
    ("blocks.{n}.cross_attn.k", "blocks.{n}.attn2.to_k"),
    ("blocks.{n}.cross_attn.v", "blocks.{n}.attn2.to_v"),
    ("blocks.{n}.cross_attn.o", "blocks.{n}.attn2.to_out.0"),
    ("blocks.{n}.cross_attn.norm_q", "blocks.{n}.attn2.norm_q"),
    ("blocks.{n}.cross_attn.norm_k", "blocks.{n}.attn2.norm_k"),
    ("blocks.{n}.cross_attn.k_img", "blocks.{n}.attn2.add_k_proj"),
    ("blocks.{n}.cross_attn.v_img", "blocks.{n}.attn2.add_v_proj"),
    ("blocks.{n}.cross_attn.norm_k_img", "blocks.{n}.attn2.norm_added_k"),
    # Wan's affine cross-attention norm is `norm3`; diffusers calls it `norm2`
    ("blocks.{n}.norm3", "blocks.{n}.norm2"),
    ("blocks.{n}.ffn.0", "blocks.{n}.ffn.net.0.proj"),
    ("blocks.{n}.ffn.2", "blocks.{n}.ffn.net.2"),
    ("blocks.{n}.modulation", "blocks.{n}.scale_shift_table"),
    ("head.head", "proj_out"),
    ("head.modulation", "scale_shift_table"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
    ("state_encoder", "state_encoder"),
    ("action_encoder", "action_encoder"),
    ("action_decoder", "action_decoder"),
)


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(re.escape("{n}"), r"(?P<n>\d+)")
    return re.compile(rf"^{pattern}(?P<rest>(\.[A-Za-z0-9_]+)*)$")


_RELEASED_TO_MODULE = [(_compile(r), m) for r, m in _DIT_NAME_PAIRS]
_MODULE_TO_RELEASED = [(_compile(m), r) for r, m in _DIT_NAME_PAIRS]


def _translate(name: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, target in table:
        match = pattern.match(name)
        if match:
            block = match.groupdict().get("n")
            return (target.replace("{n}", block) if block is not None else target) + match.group("rest")
    return None


def released_to_module_name(name: str) -> str | None:
    """`blocks.3.self_attn.q.weight` -> `blocks.3.attn1.to_q.weight` (DiT names without the prefix); None if
    the name is not a known DiT parameter."""
    return _translate(name, _RELEASED_TO_MODULE)


def module_to_released_name(name: str) -> str | None:
    """Inverse of `released_to_module_name`."""
    return _translate(name, _MODULE_TO_RELEASED)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be loaded (missing file, missing keys, wrong shape); the message names the key/file."""


@dataclass
class LoadReport:
    """What loading found: keys the modules needed but the checkpoint lacks, keys nobody used, notes."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    merged_lora: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} total)" if len(keys) > 8 else "")

        parts = [f"missing {len(self.missing)}" + (f" [{head(self.missing)}]" if self.missing else ""),
                 f"unexpected {len(self.unexpected)}" + (f" [{head(self.unexpected)}]" if self.unexpected else ""),
                 f"merged LoRA {len(self.merged_lora)}"]  # fmt: skip
        return "; ".join(parts + self.notes)


# ---- reading ------------------------------------------------------------------------------------------------------


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of `model.safetensors` or of the shards in `model.safetensors.index.json`."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
    elif single.is_file():
        weight_map, files = None, ["model.safetensors"]
    else:
        raise CheckpointError(f"{folder}: neither model.safetensors nor model.safetensors.index.json found")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{index}: shard {name} listed in weight_map is missing")
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                if weight_map is not None and weight_map.get(key) != name:
                    raise CheckpointError(f"{path}: key {key} is not mapped to this shard in {index.name}")
                tensors[key] = handle.get_tensor(key)
    if weight_map is not None:
        absent = sorted(set(weight_map) - set(tensors))
        if absent:
            raise CheckpointError(f"{index}: keys listed in weight_map but absent from their shards: {absent[:8]}")
    return tensors


_LORA = re.compile(r"^(?P<base>.+)\.lora_(?P<ab>[AB])(\.[A-Za-z0-9_]+)?\.weight$")


def merge_lora(tensors: dict[str, torch.Tensor], scale: float, report: LoadReport) -> dict[str, torch.Tensor]:
    """Fold PEFT LoRA into plain weights: `X.base_layer.P` -> `X.P`, and `X.weight += scale * B @ A`."""
    merged: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _LORA.match(key)
        if match:
            lora.setdefault(match.group("base"), {})[match.group("ab")] = tensor
        else:
            merged[key.replace(".base_layer.", ".")] = tensor
    for base, pair in lora.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"LoRA {base}: expected lora_A and lora_B, got {sorted(pair)}")
        weight_key = f"{base}.weight"
        if weight_key not in merged:
            raise CheckpointError(f"LoRA {base}: no base weight {weight_key} (or {base}.base_layer.weight)")
        weight = merged[weight_key]
        delta = pair["B"].float() @ pair["A"].float()
        if delta.shape != weight.shape:
            raise CheckpointError(f"LoRA {base}: B @ A has shape {list(delta.shape)}, weight {list(weight.shape)}")
        merged[weight_key] = (weight.float() + scale * delta).to(weight.dtype)
        report.merged_lora.append(weight_key)
    return merged


def _lora_scale(raw_config: dict[str, Any], tensors: dict[str, torch.Tensor], report: LoadReport) -> float:
    if not any(_LORA.match(k) for k in tensors):
        return 1.0
    found = _find_keys(raw_config, ("lora_alpha", "lora_rank", "r"))
    alpha, rank = found.get("lora_alpha"), found.get("lora_rank", found.get("r"))
    if alpha is None or rank is None:
        report.notes.append("LoRA alpha/rank not in config.json: merged with scale 1.0")
        return 1.0
    return float(alpha) / float(rank)


def _find_keys(tree: Any, names: tuple[str, ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key in names and not isinstance(value, dict | list):
                found.setdefault(key, value)
            for k, v in _find_keys(value, names).items():
                found.setdefault(k, v)
    return found


def read_metadata(folder: Path) -> dict | None:
    path = folder / "experiment_cfg" / "metadata.json"
    if not path.is_file():
        return None
    metadata = json.loads(path.read_text())
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(metadata).__name__}")
    return metadata


def read_config(folder: Path, tensors: dict[str, torch.Tensor]) -> tuple[WamConfig, dict[str, Any], dict]:
    """-> (WamConfig, {"action_dim", "state_dim"}, the raw config.json). Our own section when present, else
    sizes inferred from the DiT tensors on top of the 14B/5B preset they match."""
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: config.json not found")
    raw = json.loads(path.read_text())
    section = raw.get(CONFIG_SECTION)
    if section is not None:
        config = WamConfig.from_dict(section["wam_config"], source=f"{path}: {CONFIG_SECTION}.wam_config")
        return config, {"action_dim": section["action_dim"], "state_dim": section["state_dim"]}, raw
    return infer_config(tensors, raw, source=str(path))


def infer_config(tensors: dict[str, torch.Tensor], raw: dict, *, source: str) -> tuple[WamConfig, dict, dict]:
    """Sizes of a checkpoint without our config section, from tensor shapes (head dim 128 as in every Wan)."""

    def shape(name: str) -> tuple[int, ...]:
        key = DIT_PREFIX + name
        if key not in tensors:
            raise CheckpointError(f"{source}: cannot infer the model size: {key} not in the checkpoint")
        return tuple(tensors[key].shape)

    dim, in_channels = shape("patch_embedding.weight")[:2]
    layers = 1 + max(int(k.split(".")[3]) for k in tensors if k.startswith(DIT_PREFIX + "blocks."))
    has_image = DIT_PREFIX + "img_emb.proj.1.weight" in tensors
    preset = "dreamzero_14b" if has_image else "dreamzero_5b"
    found = _find_keys(raw, ("action_horizon", "num_action_per_block"))
    horizon = int(found.get("num_action_per_block", found.get("action_horizon", 24)))
    config = preset_config(
        preset, dim=dim, num_layers=layers, num_heads=dim // 128, ffn_dim=shape("blocks.0.ffn.0.weight")[0],
        freq_dim=shape("time_embedding.0.weight")[1], text_dim=shape("text_embedding.0.weight")[1],
        latent_channels=shape("head.head.weight")[0] // 4, max_action_dim=shape("action_encoder.W1.W")[1],
        max_state_dim=shape("state_encoder.layer1.W")[1], encoder_hidden=shape("state_encoder.layer1.W")[2],
        num_embodiments=shape("state_encoder.layer1.W")[0], horizon=horizon,
    )  # fmt: skip
    if config.in_channels != in_channels:
        raise CheckpointError(f"{source}: patch_embedding has {in_channels} input channels, the inferred "
                              f"{preset} layout expects {config.in_channels}")  # fmt: skip
    return config, {"action_dim": config.max_action_dim, "state_dim": config.max_state_dim}, raw


# ---- mapping and loading -------------------------------------------------------------------------------------------


def split_components(tensors: dict[str, torch.Tensor], report: LoadReport) -> dict[str, dict[str, torch.Tensor]]:
    """Released keys -> {component: {module key: tensor}}; keys of no component go to report.unexpected."""
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in COMPONENT_PREFIXES}
    for key, tensor in tensors.items():
        if key.startswith(DIT_PREFIX):
            module_key = released_to_module_name(key[len(DIT_PREFIX) :])
            if module_key is None:
                report.unexpected.append(key)
            else:
                parts["transformer"][module_key] = tensor
            continue
        for component, prefix in COMPONENT_PREFIXES.items():
            if component != "transformer" and key.startswith(prefix):
                parts[component][key[len(prefix) :]] = tensor
                break
        else:
            report.unexpected.append(key)
    return parts


def released_name(component: str, module_key: str) -> str:
    """The checkpoint key of a module parameter (for messages and for writing)."""
    if component == "transformer":
        mapped = module_to_released_name(module_key)
        return DIT_PREFIX + (mapped if mapped is not None else module_key)
    return COMPONENT_PREFIXES[component] + module_key


def load_component(
    component: str, module: torch.nn.Module, state: dict[str, torch.Tensor], report: LoadReport
) -> None:
    """Assign `state` to `module` (built with empty weights); refuse a shape mismatch naming the released key."""
    expected = module.state_dict()
    for key, tensor in state.items():
        if key not in expected:
            report.unexpected.append(released_name(component, key))
            continue
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{released_name(component, key)}: shape {list(tensor.shape)} does not match the model's "
                f"{list(expected[key].shape)} ({component}.{key})"
            )
    report.missing += [released_name(component, k) for k in expected if k not in state]
    usable = {k: v for k, v in state.items() if k in expected}
    module.load_state_dict(usable, strict=False, assign=True)


def load_world_action_model(cls: type, folder: Path, *, device: str = "cpu", dtype: torch.dtype | None = None):
    """Build a `WorldActionModel` (cls) from a checkpoint folder in the released layout."""
    from accelerate import init_empty_weights

    from dreamzero_ros.model.encoders import ImageEncoder, PretrainedTokenizer, TextEncoder, VideoVae
    from dreamzero_ros.model.transformer import WamTransformer

    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    report = LoadReport()
    tensors = read_tensors(folder)
    config, dims, raw = read_config(folder, tensors)
    tensors = merge_lora(tensors, _lora_scale(raw, tensors, report), report)
    parts = split_components(tensors, report)
    checkpoint_dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    if dtype is None:
        dtype = checkpoint_dtype if torch.device(device).type == "cuda" else torch.float32

    tokenizer = PretrainedTokenizer(folder / "tokenizer") if config.tokenizer == "pretrained" else None
    # parameters on the meta device (no random init of billions of weights); buffers stay real
    with init_empty_weights(include_buffers=False):
        modules = {
            "transformer": WamTransformer.from_wam_config(config),
            "text_encoder": TextEncoder(config, tokenizer),
            "vae": VideoVae(config),
            "image_encoder": ImageEncoder(config) if config.image_encoder is not None else None,
        }
    for component, module in modules.items():
        if module is None:
            report.unexpected += [COMPONENT_PREFIXES[component] + k for k in parts[component]]
            continue
        load_component(component, module, parts[component], report)
    if report.missing:
        raise CheckpointError(f"{folder}: checkpoint lacks weights the model needs: {report.summary()}")
    if report.unexpected:
        log.warning("checkpoint %s: %s", folder, report.summary())
    model = cls(config, modules["transformer"], modules["text_encoder"], modules["vae"], modules["image_encoder"],
                action_dim=dims["action_dim"], state_dim=dims["state_dim"], device=device, dtype=dtype,
                metadata=read_metadata(folder))  # fmt: skip
    model.load_report = report
    return model


# ---- writing -------------------------------------------------------------------------------------------------------


def released_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """Every weight of a WorldActionModel under its released checkpoint key."""
    components = {"transformer": model.transformer, "text_encoder": model.text_encoder, "vae": model.vae,
                  "image_encoder": model.image_encoder}  # fmt: skip
    out: dict[str, torch.Tensor] = {}
    for component, module in components.items():
        if module is None:
            continue
        for key, tensor in module.state_dict().items():
            out[released_name(component, key)] = tensor.detach().cpu().contiguous()
    return out


def save_checkpoint(
    model: Any, folder: str | Path, *, max_shard_bytes: int | None = None, metadata: dict | None = None
) -> Path:
    """Write `model` in the released layout; sharded with an index when `max_shard_bytes` is given."""
    folder = Path(folder)
    (folder / "experiment_cfg").mkdir(parents=True, exist_ok=True)
    tensors = released_state_dict(model)
    # safetensors refuses tensors that share storage (tied weights): store independent copies
    tensors = {k: v.clone() for k, v in tensors.items()}
    config = {CONFIG_SECTION: {"wam_config": model.config.to_dict(), "action_dim": model.action_dim,
                               "state_dim": model.state_dim}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "experiment_cfg" / "metadata.json").write_text(json.dumps(metadata or model.metadata or {}, indent=2))
    if max_shard_bytes is None:
        save_file(tensors, str(folder / "model.safetensors"))
        return folder
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    weight_map = {}
    for index, shard in enumerate(shards, start=1):
        name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name))
        weight_map.update({key: name for key in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return folder
