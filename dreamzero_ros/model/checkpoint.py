"""Checkpoints in the released DreamZero layout: key mapping, loading and writing.

Layout: `config.json`, `model.safetensors` or shards listed in `model.safetensors.index.json`, and
`experiment_cfg/metadata.json` (normalisation statistics per embodiment). This module owns the map between the
released key names (original Wan names under `action_head.model.`: `blocks.N.self_attn.q`, `cross_attn.k_img`,
`ffn.0`, `modulation`, `head.head`, `img_emb.proj.*`, and the GR00T-style `state_encoder.layer1.W`,
`action_encoder.W1.W`, `action_decoder.layer2.b`) and our module names (diffusers' Wan names), LoRA merging
(`base_layer` + `lora_A`/`lora_B`), shape checks that name the offending key, and the missing/unexpected report.
Nothing here touches the network.

Text encoder, image encoder and VAE weights live under `action_head.text_encoder.`, `action_head.image_encoder.`
and `action_head.vae.`: the release stores them under Wan's own module names (mapped by model.native_names), our
own saves under transformers'/diffusers' names; both load. A folder without our config section is a released one:
its sizes, chunk timing, embodiment and sampler defaults come from its files and weight shapes (model.release), and
the umT5 tokenizer must be found locally before any weight is read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dreamzero_ros.core.inference_loop import valid_execute_steps
from dreamzero_ros.model import native_names
from dreamzero_ros.model.config import WamConfig, preset_config
from dreamzero_ros.model.release import (
    CheckpointInfo,
    ReleaseError,
    dims_from_metadata,
    find_mapping,
    find_tokenizer,
    infer_encoder_configs,
    pick_tag,
    read_conf_yaml,
    release_timing,
    released_sampler,
    tag_to_name,
)

log = logging.getLogger(__name__)

DIT_PREFIX = "action_head.model."
COMPONENT_PREFIXES = {
    "transformer": DIT_PREFIX,
    "text_encoder": "action_head.text_encoder.",
    "image_encoder": "action_head.image_encoder.",
    "vae": "action_head.vae.",
}
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(WamConfig)}
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
    ignored: list[str] = field(default_factory=list)  # known weights the deployed model does not use (CLIP head)
    native: list[str] = field(default_factory=list)  # components stored under Wan's own names
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} total)" if len(keys) > 8 else "")

        parts = [f"missing {len(self.missing)}" + (f" [{head(self.missing)}]" if self.missing else ""),
                 f"unexpected {len(self.unexpected)}" + (f" [{head(self.unexpected)}]" if self.unexpected else ""),
                 f"merged LoRA {len(self.merged_lora)}", f"ignored {len(self.ignored)}"]  # fmt: skip
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
_PEFT_WRAPPER = "base_model.model."


def strip_peft_wrapper(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PEFT wraps the DiT as `base_model.model.<name>`: `action_head.model.base_model.model.X` -> `action_head.model.X`
    (LoRA factors and `base_layer` keep their suffixes for merge_lora)."""
    wrapped = DIT_PREFIX + _PEFT_WRAPPER
    return {(DIT_PREFIX + k[len(wrapped) :] if k.startswith(wrapped) else k): v for k, v in tensors.items()}


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


def _lora_scale(folder: Path, raw_config: dict[str, Any], tensors: dict[str, torch.Tensor], report: LoadReport) -> float:
    """PEFT's scaling: lora_alpha / r (lora_alpha / sqrt(r) with use_rslora), from `adapter_config.json` (PEFT's
    own file) or config.json (the release's `lora_alpha` / `lora_rank`). The rank must match the lora_A rows."""
    ranks = {int(v.shape[0]) for k, v in tensors.items() if (m := _LORA.match(k)) and m.group("ab") == "A"}
    if not ranks:
        return 1.0
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        source, found = adapter, _find_keys(json.loads(adapter.read_text()), ("lora_alpha", "r", "use_rslora"))
        rank = found.get("r")
    else:
        source, found = folder / "config.json", _find_keys(raw_config, ("lora_alpha", "lora_rank", "use_rslora"))
        rank = found.get("lora_rank")
    alpha = found.get("lora_alpha")
    if alpha is None or rank is None:
        report.notes.append(f"LoRA alpha/rank not in {source.name}: merged with scale 1.0")
        return 1.0
    if ranks != {int(rank)}:
        raise CheckpointError(f"{source}: LoRA rank {rank}, but the lora_A weights have {sorted(ranks)} rows")
    return float(alpha) / (float(rank) ** 0.5 if found.get("use_rslora") else float(rank))


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


def read_config_json(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: config.json not found")
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def needs_pretrained_tokenizer(raw: dict) -> bool:
    """Released folders always need umT5's tokenizer; our saves say which tokenizer they use."""
    section = raw.get(CONFIG_SECTION)
    if section is None:
        return True
    return section.get("wam_config", {}).get("tokenizer", "pretrained") == "pretrained"


def read_config(
    folder: Path, tensors: dict[str, torch.Tensor], raw: dict | None = None, *, metadata: dict | None = None,
    embodiment: str | None = None,
) -> tuple[WamConfig, CheckpointInfo, dict]:  # fmt: skip
    """-> (WamConfig, CheckpointInfo, the raw config.json). Our own section when present, else everything inferred
    from the released files and the tensor shapes. `embodiment` (our config name) picks among several tags."""
    raw = read_config_json(folder) if raw is None else raw
    path = folder / "config.json"
    section = raw.get(CONFIG_SECTION)
    conf = read_conf_yaml(folder)
    tag = pick_tag(metadata, conf, embodiment)
    if section is not None:
        config = WamConfig.from_dict(section["wam_config"], source=f"{path}: {CONFIG_SECTION}.wam_config")
        info = CheckpointInfo(
            released=False, embodiment=section.get("embodiment") or tag_to_name(tag), tag=tag, horizon=config.horizon,
            frames_per_chunk=config.frames_per_chunk, control_rate_hz=section.get("control_rate_hz"),
            video_fps=section.get("video_fps"), action_dim=section["action_dim"], state_dim=section["state_dim"],
            sources={"horizon": f"config.json: {CONFIG_SECTION}.wam_config.horizon"},
            execute_steps=_execute_steps(section.get("execute_steps"), config.horizon, path),
        )  # fmt: skip
        return config, info, raw
    return infer_config(tensors, raw, source=str(path), conf=conf, metadata=metadata, tag=tag)


def _execute_steps(value: Any, horizon: int, path: Path) -> int | None:
    if value is None:
        return None
    if not valid_execute_steps(value, horizon):
        raise CheckpointError(f"{path}: {CONFIG_SECTION}.execute_steps: expected whole control steps in 1..{horizon} "
                              f"(the horizon), got {value!r}")
    return value


def infer_config(
    tensors: dict[str, torch.Tensor], raw: dict, *, source: str, conf: dict | None = None,
    metadata: dict | None = None, tag: str | None = None,
) -> tuple[WamConfig, CheckpointInfo, dict]:  # fmt: skip
    """A checkpoint without our config section: DiT and encoder sizes from tensor shapes (head dim 128 as in every
    Wan), chunk timing from conf.yaml / config.json, robot dims from the metadata, the release's sampler."""

    def shape(name: str) -> tuple[int, ...]:
        key = DIT_PREFIX + name
        if key not in tensors:
            raise CheckpointError(f"{source}: cannot infer the model size: {key} not in the checkpoint")
        return tuple(tensors[key].shape)

    conf = conf or {}
    dim, in_channels = shape("patch_embedding.weight")[:2]
    layers = 1 + max(int(k.split(".")[3]) for k in tensors if k.startswith(DIT_PREFIX + "blocks."))
    has_image = DIT_PREFIX + "img_emb.proj.1.weight" in tensors
    preset = "dreamzero_14b" if has_image else "dreamzero_5b"
    timing, sources = release_timing(raw, conf, metadata, tag)
    sampler = released_sampler(raw)
    try:
        encoders = infer_encoder_configs(tensors)
    except ReleaseError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    # heads are not in the weights: config.json's diffusion_model_cfg.num_heads, else Wan's head dim of 128
    heads = int(find_mapping(raw, "diffusion_model_cfg").get("num_heads") or dim // 128)
    patch = shape("patch_embedding.weight")[2:]
    config = preset_config(
        preset, dim=dim, num_layers=layers, patch_size=patch, num_heads=heads,
        ffn_dim=shape("blocks.0.ffn.0.weight")[0],
        freq_dim=shape("time_embedding.0.weight")[1], text_dim=shape("text_embedding.0.weight")[1],
        latent_channels=shape("head.head.weight")[0] // (patch[0] * patch[1] * patch[2]), max_action_dim=shape("action_encoder.W1.W")[1],
        max_state_dim=shape("state_encoder.layer1.W")[1], encoder_hidden=shape("state_encoder.layer1.W")[2],
        num_embodiments=shape("state_encoder.layer1.W")[0], horizon=timing.get("horizon", 24),
        latent_frames_per_chunk=timing.get("latent_frames_per_chunk", 2),
        **{k: v for k, v in sampler.items() if k in _CONFIG_FIELDS}, **encoders,
    )  # fmt: skip
    if config.in_channels != in_channels:
        raise CheckpointError(f"{source}: patch_embedding has {in_channels} input channels, the inferred "
                              f"{preset} layout expects {config.in_channels}")  # fmt: skip
    dims = dims_from_metadata(metadata, tag) or {"action_dim": config.max_action_dim, "state_dim": config.max_state_dim}
    rate = timing.get("control_rate_hz")
    info = CheckpointInfo(
        released=True, embodiment=tag_to_name(tag), tag=tag, horizon=config.horizon,
        frames_per_chunk=config.frames_per_chunk, control_rate_hz=rate,
        video_fps=None if rate is None else rate * config.frames_per_chunk / config.horizon,
        action_dim=dims["action_dim"], state_dim=dims["state_dim"], sampler=sampler, sources=sources,
    )  # fmt: skip
    return config, info, raw


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


def convert_native(
    component: str, state: dict[str, torch.Tensor], config: WamConfig, module: torch.nn.Module, report: LoadReport
) -> dict[str, torch.Tensor]:
    """A component stored under Wan's own names -> our module's names (unchanged when already ours)."""
    if not native_names.is_native(component, set(state)):
        return state
    if component == "text_encoder":
        converted, ignored = native_names.t5_to_module(state)
    elif component == "image_encoder":
        anchor = "embeddings.class_embedding"
        prefix = next((k[: -len(anchor)] for k in module.state_dict() if k.endswith(anchor)), "model.")
        converted, ignored = native_names.clip_to_module(state, prefix)
    else:
        converted, ignored = native_names.vae_to_module(state, int(config.vae.get("num_res_blocks", 2)))
    report.native.append(component)
    report.ignored += [COMPONENT_PREFIXES[component] + k for k in ignored]
    return converted


def load_world_action_model(
    cls: type, folder: Path, *, device: str = "cpu", dtype: torch.dtype | None = None,
    tokenizer: str | Path | None = None, embodiment: str | None = None,
):  # fmt: skip
    """Build a `WorldActionModel` (cls) from a checkpoint folder in the released layout.

    tokenizer: a folder with the umT5 tokenizer (default: `<folder>/tokenizer`, $DREAMZERO_TOKENIZER, the local
    Hugging Face cache); looked up before any weight is read. embodiment: our config name, to pick the statistics
    and timing of one embodiment tag when the metadata holds several. The result carries `checkpoint_info`."""
    from accelerate import init_empty_weights

    from dreamzero_ros.model.encoders import ImageEncoder, PretrainedTokenizer, TextEncoder, build_video_vae
    from dreamzero_ros.model.transformer import WamTransformer

    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    if not (folder / "model.safetensors").is_file() and not (folder / "model.safetensors.index.json").is_file():
        raise CheckpointError(f"{folder}: neither model.safetensors nor model.safetensors.index.json found")
    raw = read_config_json(folder)
    tokenizer_dir = None
    if needs_pretrained_tokenizer(raw):
        try:
            tokenizer_dir = find_tokenizer(folder, tokenizer)
        except ReleaseError as exc:
            raise CheckpointError(f"{folder}: {exc}") from exc
    report = LoadReport()
    metadata = read_metadata(folder)
    tensors = strip_peft_wrapper(read_tensors(folder))
    config, info, raw = read_config(folder, tensors, raw, metadata=metadata, embodiment=embodiment)
    tensors = merge_lora(tensors, _lora_scale(folder, raw, tensors, report), report)
    parts = split_components(tensors, report)
    checkpoint_dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    if dtype is None:
        dtype = checkpoint_dtype if torch.device(device).type == "cuda" else torch.float32

    text_tokenizer = PretrainedTokenizer(tokenizer_dir) if tokenizer_dir is not None else None
    # parameters on the meta device (no random init of billions of weights); buffers stay real
    with init_empty_weights(include_buffers=False):
        modules = {
            "transformer": WamTransformer.from_wam_config(config),
            "text_encoder": TextEncoder(config, text_tokenizer),
            "vae": build_video_vae(config),
            "image_encoder": ImageEncoder(config) if config.image_encoder is not None else None,
        }
    for component, module in modules.items():
        if module is None:
            report.unexpected += [COMPONENT_PREFIXES[component] + k for k in parts[component]]
            continue
        if component != "transformer":
            parts[component] = convert_native(component, parts[component], config, module, report)
        load_component(component, module, parts[component], report)
    if report.missing:
        raise CheckpointError(f"{folder}: checkpoint lacks weights the model needs: {report.summary()}")
    if report.unexpected:
        log.warning("checkpoint %s: %s", folder, report.summary())
    model = cls(config, modules["transformer"], modules["text_encoder"], modules["vae"], modules["image_encoder"],
                action_dim=info.action_dim, state_dim=info.state_dim, device=device, dtype=dtype,
                metadata=metadata)  # fmt: skip
    _apply_sampler_defaults(model, info, report)
    model.load_report = report
    model.checkpoint_info = info
    return model


def _apply_sampler_defaults(model: Any, info: CheckpointInfo, report: LoadReport) -> None:
    """Set the checkpoint's sampler defaults on the model's sampler (step_cache is already in the WamConfig);
    options this sampler does not have yet are noted, not silently dropped."""
    settings = getattr(getattr(model, "sampler", None), "settings", None)
    for name, value in info.sampler.items():
        if name == "step_cache":
            continue
        if settings is not None and hasattr(settings, name):
            setattr(settings, name, value)
        else:
            report.notes.append(f"sampler option {name}={value!r} of the checkpoint is not supported by this sampler")
    if settings is not None and hasattr(settings, "validate"):
        settings.validate()


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
    model: Any, folder: str | Path, *, max_shard_bytes: int | None = None, metadata: dict | None = None,
    execute_steps: int | None = None,
) -> Path:
    """Write `model` in the released layout; sharded with an index when `max_shard_bytes` is given.
    execute_steps: the training cadence (`CheckpointInfo.execute_steps`), recorded when given."""
    folder = Path(folder)
    (folder / "experiment_cfg").mkdir(parents=True, exist_ok=True)
    tensors = released_state_dict(model)
    # safetensors refuses tensors that share storage (tied weights): store independent copies
    tensors = {k: v.clone() for k, v in tensors.items()}
    config = {CONFIG_SECTION: {"wam_config": model.config.to_dict(), "action_dim": model.action_dim,
                               "state_dim": model.state_dim}}  # fmt: skip
    if execute_steps is not None:
        config[CONFIG_SECTION]["execute_steps"] = execute_steps
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
