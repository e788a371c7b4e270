"""What a released DreamZero folder says about itself: chunk timing, embodiment, sampler defaults, encoder sizes,
the umT5 tokenizer's location.

The release ships `config.json` (its VLAConfig: `action_horizon`, `action_head_cfg.config.{lora_rank, lora_alpha,
decouple_inference_noise, video_inference_final_noise, diffusion_model_cfg.num_action_per_block, ...}`),
`experiment_cfg/conf.yaml` (the resolved training config: `action_horizon`, `num_action_per_block`,
`num_frame_per_block`, `fps` per embodiment tag, the data mixture) and `experiment_cfg/metadata.json` (statistics
per embodiment tag). This module reads those, infers the encoder sizes from the weights' shapes (Wan's own names),
and finds the tokenizer without ever touching the network. `CheckpointInfo` is what the loader hands on, so a
robot config that disagrees with the checkpoint can be refused (see core.embodiment.check_checkpoint_timing).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from dreamzero_ros.core.action_space import REFERENCE_TAGS
from dreamzero_ros.model.config import RELEASED_SAMPLER_DEFAULTS, WAN21_LATENTS_MEAN, WAN21_LATENTS_STD

#: the umT5 tokenizer the release downloads at run time (we never do)
TOKENIZER_REPO = "google/umt5-xxl"
#: released recipe: control rate = the dataset rate per embodiment tag (DREAMZERO_FACTS.md, "Embodiments")
RELEASED_CONTROL_RATE_HZ = {"oxe_droid": 15.0, "agibot": 30.0, "yam": 30.0}
#: Wan's open-clip ViT-H/14 head width (1280 = 16 heads x 80); CLIP heads cannot be read from weight shapes
CLIP_HEAD_DIM = 80
#: Wan's T5 relative position buckets reach this far (fixed in Wan's T5RelativeEmbedding)
T5_MAX_DISTANCE = 128


class ReleaseError(RuntimeError):
    """A released folder is incomplete or inconsistent; the message names the file, the key and what to do."""


@dataclass(frozen=True)
class CheckpointInfo:
    """Settings a checkpoint carries, with where each came from (for messages).

    released: True when config.json has no section of ours (a folder of the reference release).
    embodiment: our embodiment config name (franka_droid / agibot_g1 / yam) or None when unknown.
    tag: the release's embodiment tag (oxe_droid / agibot / yam) or None.
    horizon: action steps per chunk. frames_per_chunk: video frames per chunk (latent frames x 4).
    control_rate_hz / video_fps: None when the checkpoint does not say (our own saves).
    sampler: sampler defaults of the checkpoint (released: fixed 8-of-16 DiT step cache, noise seed 1140).
    execute_steps: control steps between the observations of consecutive chunks in training (`dreamzero train
        --execute-steps`), the cadence the inference node keeps where latency allows; None when not recorded.
    """

    released: bool
    embodiment: str | None
    tag: str | None
    horizon: int
    frames_per_chunk: int
    control_rate_hz: float | None
    video_fps: float | None
    action_dim: int
    state_dim: int
    sampler: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    execute_steps: int | None = None

    @property
    def chunk_duration(self) -> float | None:
        return None if self.control_rate_hz is None else self.horizon / self.control_rate_hz


# ---- files ---------------------------------------------------------------------------------------------------------


def read_conf_yaml(folder: Path) -> dict:
    path = folder / "experiment_cfg" / "conf.yaml"
    if not path.is_file():
        return {}
    try:
        conf = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ReleaseError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(conf, dict):
        raise ReleaseError(f"{path}: expected a mapping at the top, got {type(conf).__name__}")
    return conf


def find_key(tree: Any, name: str) -> Any:
    """The first scalar value of `name` anywhere in a nested dict (depth first, in file order); None if absent."""
    if isinstance(tree, dict):
        if name in tree and not isinstance(tree[name], dict | list):
            return tree[name]
        for value in tree.values():
            found = find_key(value, name)
            if found is not None:
                return found
    return None


def find_mapping(tree: Any, name: str) -> dict:
    """The first dict stored under `name` anywhere in a nested dict; {} if absent."""
    if isinstance(tree, dict):
        if isinstance(tree.get(name), dict):
            return tree[name]
        for value in tree.values():
            found = find_mapping(value, name)
            if found:
                return found
    return {}


def tag_to_name(tag: str | None) -> str | None:
    """The release's embodiment tag (oxe_droid, agibot, yam) -> our config name; None if unknown."""
    if tag is None:
        return None
    for name, tags in REFERENCE_TAGS.items():
        if tag == name or tag in tags:
            return name
    return None


def _name_to_tags(name: str | None) -> tuple[str, ...]:
    return () if name is None else (name, *REFERENCE_TAGS.get(name, ()))


def _mixture_tags(conf: dict) -> list[str]:
    """Embodiment tags of the training mixture (`train_dataset.mixture_spec[*].dataset_path` keys)."""
    spec = conf.get("train_dataset", {}).get("mixture_spec", []) if isinstance(conf.get("train_dataset"), dict) else []
    tags: list[str] = []
    for item in spec if isinstance(spec, list) else []:
        paths = item.get("dataset_path") if isinstance(item, dict) else None
        if isinstance(paths, dict):
            tags += [t for t in paths if t not in tags]
    return tags


def pick_tag(metadata: dict | None, conf: dict, hint: str | None) -> str | None:
    """The release's embodiment tag of this checkpoint: the hint's tag when the metadata has it, else the only tag
    with statistics, else the only tag of the training mixture."""
    with_stats = [k for k, v in (metadata or {}).items() if isinstance(v, dict) and "statistics" in v]
    for tag in _name_to_tags(hint):
        if tag in with_stats:
            return tag
    if len(with_stats) == 1:
        return with_stats[0]
    mixture = _mixture_tags(conf)
    if len(mixture) == 1:
        return mixture[0]
    return None


def dims_from_metadata(metadata: dict | None, tag: str | None) -> dict[str, int] | None:
    """{"action_dim", "state_dim"}: the lengths of every statistics group of the tag, summed; None if absent."""
    entry = (metadata or {}).get(tag) if tag else None
    stats = entry.get("statistics") if isinstance(entry, dict) else None
    if not isinstance(stats, dict):
        return None
    dims = {}
    for kind in ("state", "action"):
        groups = stats.get(kind)
        if not isinstance(groups, dict) or not groups:
            return None
        dims[f"{kind}_dim"] = sum(len(g.get("q01", [])) if isinstance(g, dict) else 0 for g in groups.values())
    return dims


def release_timing(raw: dict, conf: dict, metadata: dict | None, tag: str | None) -> tuple[dict, dict[str, str]]:
    """{"horizon", "latent_frames_per_chunk", "control_rate_hz"} with the source of each. Horizon: conf.yaml's
    num_action_per_block (the DiT's action tokens per chunk), else config.json's; control rate: conf.yaml's fps of
    the tag, else the metadata's video fps of the tag, else the released recipe's dataset rate of the tag."""
    out: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, label in (("num_action_per_block", "horizon"), ("action_horizon", "horizon"),
                       ("num_frame_per_block", "latent_frames_per_chunk")):  # fmt: skip
        if label in out:
            continue
        for name, tree in (("experiment_cfg/conf.yaml", conf), ("config.json", raw)):
            value = find_key(tree, key)
            if value is not None:
                out[label] = int(value)
                sources[label] = f"{name}: {key}"
                break
    rates = conf.get("fps")
    if tag and isinstance(rates, dict) and rates.get(tag) is not None:
        out["control_rate_hz"], sources["control_rate_hz"] = float(rates[tag]), f"experiment_cfg/conf.yaml: fps.{tag}"
    elif tag and (fps := _metadata_fps(metadata, tag)) is not None:
        out["control_rate_hz"] = fps
        sources["control_rate_hz"] = f"experiment_cfg/metadata.json: {tag}.modalities.video.*.fps"
    elif tag in RELEASED_CONTROL_RATE_HZ:
        out["control_rate_hz"] = RELEASED_CONTROL_RATE_HZ[tag]
        sources["control_rate_hz"] = f"released recipe dataset rate of {tag!r}"
    return out, sources


def _metadata_fps(metadata: dict | None, tag: str) -> float | None:
    video = ((metadata or {}).get(tag) or {}).get("modalities", {}).get("video")
    if isinstance(video, dict):
        rates = {float(v["fps"]) for v in video.values() if isinstance(v, dict) and v.get("fps") is not None}
        if len(rates) == 1:
            return rates.pop()
    return None


def released_sampler(raw: dict) -> dict[str, Any]:
    """The reference server's sampler: fixed 8-of-16 DiT step cache, seed 1140 per call, and the
    `decouple_inference_noise` variant when the checkpoint's config asks for it."""
    sampler = dict(RELEASED_SAMPLER_DEFAULTS)
    if find_key(raw, "decouple_inference_noise"):
        sampler["decouple_inference_noise"] = True
        final = find_key(raw, "video_inference_final_noise")
        if final is not None:
            sampler["video_inference_final_noise"] = float(final)
    return sampler


# ---- encoder sizes from Wan-named weights ---------------------------------------------------------------------------


def _count(keys: list[str], pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := regex.match(k))}
    return 1 + max(found) if found else 0


def infer_encoder_configs(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """WamConfig overrides (text_encoder, image_encoder, image_dim, image_tokens, vae) read from the shapes of
    Wan-named encoder weights; components stored under other names are left to the preset."""
    keys = list(tensors)
    out: dict[str, Any] = {}
    t5 = "action_head.text_encoder."
    if t5 + "token_embedding.weight" in tensors:
        vocab, d_model = tensors[t5 + "token_embedding.weight"].shape
        buckets, heads = tensors[t5 + "blocks.0.pos_embedding.embedding.weight"].shape
        dim_attn = tensors[t5 + "blocks.0.attn.q.weight"].shape[0]
        out["text_encoder"] = dict(
            vocab_size=int(vocab), d_model=int(d_model), d_kv=int(dim_attn // heads),
            d_ff=int(tensors[t5 + "blocks.0.ffn.fc1.weight"].shape[0]),
            num_layers=_count(keys, re.escape(t5) + r"blocks\.(\d+)\."), num_heads=int(heads),
            relative_attention_num_buckets=int(buckets), relative_attention_max_distance=T5_MAX_DISTANCE,
            feed_forward_proj="gated-gelu",
        )  # fmt: skip
    clip = "action_head.image_encoder.model.visual."
    if clip + "patch_embedding.weight" in tensors:
        dim, _, patch, _ = tensors[clip + "patch_embedding.weight"].shape
        tokens = tensors[clip + "pos_embedding"].shape[-2]
        side = int(round((tokens - 1) ** 0.5))
        if dim % CLIP_HEAD_DIM:
            raise ReleaseError(f"{clip}patch_embedding.weight: width {dim} is not a multiple of ViT-H's head dim "
                               f"{CLIP_HEAD_DIM}; the head count cannot be inferred")  # fmt: skip
        out["image_encoder"] = dict(
            hidden_size=int(dim), intermediate_size=int(tensors[clip + "transformer.0.mlp.0.weight"].shape[0]),
            num_hidden_layers=_count(keys, re.escape(clip) + r"transformer\.(\d+)\."),
            num_attention_heads=int(dim // CLIP_HEAD_DIM), image_size=int(side * patch), patch_size=int(patch),
            hidden_act="gelu", layer_norm_eps=1e-5,
        )  # fmt: skip
        out["image_dim"], out["image_tokens"] = int(dim), int(tokens)
    vae = "action_head.vae.model."
    # the Wan 2.2 (5B) VAE's residual stages keep the preset's layout (its statistics are not in the files)
    if vae + "encoder.conv1.weight" in tensors and vae + "encoder.downsamples.0.downsamples.0.residual.6.weight" \
            not in tensors:  # fmt: skip
        out["vae"] = _infer_vae(tensors, keys, vae)
    return out


def _infer_vae(tensors: dict[str, torch.Tensor], keys: list[str], prefix: str) -> dict[str, Any]:
    """Wan 2.1 VAE layout from its encoder: per stage num_res_blocks residual blocks then a resample (time_conv
    present = temporal downsampling), no resample after the last stage."""
    base = int(tensors[prefix + "encoder.conv1.weight"].shape[0])
    z_dim = int(tensors[prefix + "conv2.weight"].shape[0])
    count = _count(keys, re.escape(prefix) + r"encoder\.downsamples\.(\d+)\.")
    stages: list[list[int]] = [[]]
    temporal: list[bool] = []
    for k in range(count):
        block = f"{prefix}encoder.downsamples.{k}."
        if block + "residual.6.weight" in tensors:
            stages[-1].append(int(tensors[block + "residual.6.weight"].shape[0]))
        elif block + "resample.1.weight" in tensors:
            temporal.append(block + "time_conv.weight" in tensors)
            stages.append([])
    num_res_blocks = len(stages[0])
    stats = (list(WAN21_LATENTS_MEAN), list(WAN21_LATENTS_STD)) if z_dim == 16 else ([0.0] * z_dim, [1.0] * z_dim)
    return dict(base_dim=base, z_dim=z_dim, dim_mult=[s[-1] // base for s in stages], num_res_blocks=num_res_blocks,
                attn_scales=[], temperal_downsample=temporal, latents_mean=stats[0], latents_std=stats[1])  # fmt: skip


# ---- tokenizer -----------------------------------------------------------------------------------------------------


def find_tokenizer(folder: Path, explicit: str | Path | None = None) -> Path:
    """The umT5 tokenizer, offline: `explicit` (a folder), else `<checkpoint>/tokenizer/`, else $DREAMZERO_TOKENIZER,
    else a local Hugging Face cache entry of google/umt5-xxl. Raises ReleaseError saying what to download and where
    when none is there; nothing is ever downloaded."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    candidates.append(folder / "tokenizer")
    if os.environ.get("DREAMZERO_TOKENIZER"):
        candidates.append(Path(os.environ["DREAMZERO_TOKENIZER"]))
    for path in candidates:
        if (path / "tokenizer_config.json").is_file() or (path / "spiece.model").is_file():
            return path
    cached = _cached_snapshot()
    if cached is not None:
        return cached
    target = folder / "tokenizer"
    looked = ", ".join(str(p) for p in candidates)
    raise ReleaseError(
        f"umT5 tokenizer not found (the release does not ship it; its code downloads {TOKENIZER_REPO}, we never "
        f"download at run time). Looked in: {looked}, and the Hugging Face cache {_cache_dir()}. Download it once "
        f"with network access (the tokenizer files only, not the model weights):\n  huggingface-cli download "
        f"{TOKENIZER_REPO} --exclude '*.bin' '*.safetensors' '*.h5' '*.msgpack' --local-dir {target}\n"
        f"(or set DREAMZERO_TOKENIZER to a folder holding spiece.model / tokenizer_config.json)"
    )


def _cache_dir() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def _cached_snapshot() -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(TOKENIZER_REPO, cache_dir=_cache_dir(), local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return path if (path / "tokenizer_config.json").is_file() or (path / "spiece.model").is_file() else None
