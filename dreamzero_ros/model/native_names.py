"""Wan's own encoder parameter names (as the released DreamZero checkpoint stores them) -> our modules' names.

The release keeps its frozen encoders under the module names of Wan's reference code, not transformers'/diffusers':
- text encoder (Wan's umT5 `T5Encoder`, under `action_head.text_encoder.`): `token_embedding`, `blocks.N.norm1`,
  `blocks.N.attn.{q,k,v,o}`, `blocks.N.pos_embedding.embedding` (one relative bias per block), `blocks.N.norm2`,
  `blocks.N.ffn.{gate.0,fc1,fc2}`, `norm` -> transformers' UMT5EncoderModel;
- image encoder (Wan's open-clip XLM-RoBERTa ViT-H/14, under `action_head.image_encoder.`): `model.visual.*` with
  `patch_embedding`, `cls_embedding`, `pos_embedding`, `pre_norm`, `transformer.N.{norm1,attn.to_qkv,attn.proj,
  norm2,mlp.0,mlp.2}`, `post_norm`, `head` -> transformers' CLIPVisionModel (the fused qkv is split in three);
- VAE (Wan 2.1 `VideoVAE_`, under `action_head.vae.`): `model.conv1/conv2`, `model.encoder.downsamples.K`,
  `model.decoder.upsamples.K`, `middle.{0,1,2}`, `head.{0,2}`, `residual.{0,2,3,6}`, `shortcut` -> diffusers'
  AutoencoderKLWan (the same renaming diffusers' `convert_wan_vae_to_diffusers` does for the 14B layout, derived
  here for any `num_res_blocks` / number of stages so tiny VAEs map too); Wan 2.2's residual stages
  (`downsamples.i.downsamples.j`, `upsamples.i.upsamples.j`) -> diffusers' residual down/up blocks.

Weights the deployed model never uses (CLIP's projection `head`, `log_scale`, its text tower) are returned as
ignored, not as unexpected. A key that fits none of the patterns is passed through unchanged, so the loader
reports it as unexpected under its checkpoint name.
"""

from __future__ import annotations

import re

import torch

# ---- detection -----------------------------------------------------------------------------------------------------


def is_native(component: str, keys: list[str] | set[str]) -> bool:
    """Whether a component's keys (prefix stripped) are in Wan's own names rather than ours."""
    if component == "text_encoder":
        return any(k.startswith(("blocks.", "token_embedding.")) for k in keys)
    if component == "image_encoder":
        return any(k.startswith("model.visual.") for k in keys)
    if component == "vae":
        return any(k.startswith(("model.encoder.downsamples.", "model.conv1.")) for k in keys)
    return False


# ---- umT5 ----------------------------------------------------------------------------------------------------------

_T5_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # gelu(wi_0 x) * wi_1 x == fc1(x) * gelu(gate(x))
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_BLOCK = re.compile(r"^blocks\.(?P<n>\d+)\.(?P<rest>.+)$")


def t5_to_module(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Wan T5 encoder names -> `TextEncoder` keys (`model.` + UMT5EncoderModel). -> (state, ignored keys)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key == "token_embedding.weight":
            # UMT5EncoderModel ties `shared` and `encoder.embed_tokens`: both names must be given
            out["model.shared.weight"] = tensor
            out["model.encoder.embed_tokens.weight"] = tensor
        elif key == "norm.weight":
            out["model.encoder.final_layer_norm.weight"] = tensor
        elif (match := _BLOCK.match(key)) and match.group("rest") in _T5_BLOCK:
            out[f"model.encoder.block.{match.group('n')}.{_T5_BLOCK[match.group('rest')]}"] = tensor
        else:
            out[key] = tensor
    return out, []


# ---- open-clip ViT-H/14 --------------------------------------------------------------------------------------------

_CLIP_LAYER = {
    "norm1": "layer_norm1",
    "attn.proj": "self_attn.out_proj",
    "norm2": "layer_norm2",
    "mlp.0": "mlp.fc1",
    "mlp.2": "mlp.fc2",
}
_CLIP_TOP = {
    "patch_embedding.weight": "embeddings.patch_embedding.weight",
    "pre_norm.weight": "pre_layrnorm.weight",
    "pre_norm.bias": "pre_layrnorm.bias",
    "post_norm.weight": "post_layernorm.weight",
    "post_norm.bias": "post_layernorm.bias",
}
_CLIP_LAYER_KEY = re.compile(r"^transformer\.(?P<n>\d+)\.(?P<module>.+)\.(?P<param>weight|bias)$")


def clip_to_module(state: dict[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Wan CLIP names (`model.visual.*`) -> `ImageEncoder` keys; `prefix` is the CLIPVisionModel prefix of the
    module's own state dict (`model.` or `model.vision_model.`, by transformers version). -> (state, ignored)."""
    out: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, tensor in state.items():
        if key == "model.log_scale" or key.startswith("model.textual."):
            ignored.append(key)  # CLIP's contrastive temperature and text tower: not part of the image tokens
            continue
        if not key.startswith("model.visual."):
            out[key] = tensor
            continue
        name = key[len("model.visual.") :]
        if name == "head":
            ignored.append(key)  # projection to the joint embedding: unused (the WAM takes block tokens)
        elif name == "cls_embedding":
            out[prefix + "embeddings.class_embedding"] = tensor.reshape(-1)
        elif name == "pos_embedding":
            out[prefix + "embeddings.position_embedding.weight"] = tensor.reshape(tensor.shape[-2], tensor.shape[-1])
        elif name in _CLIP_TOP:
            out[prefix + _CLIP_TOP[name]] = tensor
        elif match := _CLIP_LAYER_KEY.match(name):
            layer = f"{prefix}encoder.layers.{match.group('n')}."
            module, param = match.group("module"), match.group("param")
            if module == "attn.to_qkv":
                # open-clip fuses q, k, v along the output dimension in that order
                for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                    out[f"{layer}self_attn.{part}.{param}"] = chunk
            elif module in _CLIP_LAYER:
                out[f"{layer}{_CLIP_LAYER[module]}.{param}"] = tensor
            else:
                out[key] = tensor
        else:
            out[key] = tensor
    return out, ignored


# ---- Wan 2.1 VAE ---------------------------------------------------------------------------------------------------

_RESNET = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}
_VAE_TOP = {
    "conv1.weight": "quant_conv.weight",
    "conv1.bias": "quant_conv.bias",
    "conv2.weight": "post_quant_conv.weight",
    "conv2.bias": "post_quant_conv.bias",
}
_CODER = {
    "conv1.weight": "conv_in.weight",
    "conv1.bias": "conv_in.bias",
    "head.0.gamma": "norm_out.gamma",
    "head.2.weight": "conv_out.weight",
    "head.2.bias": "conv_out.bias",
}
_INDEXED = re.compile(r"^(?P<list>downsamples|upsamples|middle)\.(?P<k>\d+)\.(?P<rest>.+)$")
_NESTED = re.compile(r"^(?:downsamples|upsamples)\.(?P<j>\d+)\.(?P<rest>.+)$")


def _resnet_or_same(rest: str) -> str:
    return _RESNET.get(rest, rest)


def vae_to_module(state: dict[str, torch.Tensor], num_res_blocks: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Wan VAE names (`model.*`) -> `VideoVae` keys (`model.` + AutoencoderKLWan). The decoder's flat
    `upsamples` list holds, per stage, num_res_blocks + 1 residual blocks then one resample (none after the last
    stage); diffusers groups them as up_blocks[stage].resnets[j] / .upsamplers[0]. No attention inside stages
    (attn_scales is empty in every Wan 2.1 VAE)."""
    per_stage = num_res_blocks + 2
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = key[len("model.") :] if key.startswith("model.") else None
        if name is None:
            out[key] = tensor
            continue
        if name in _VAE_TOP:
            out["model." + _VAE_TOP[name]] = tensor
            continue
        coder, _, rest = name.partition(".")
        if coder not in ("encoder", "decoder"):
            out[key] = tensor
            continue
        if rest in _CODER:
            out[f"model.{coder}.{_CODER[rest]}"] = tensor
            continue
        match = _INDEXED.match(rest)
        if match is None:
            out[key] = tensor
            continue
        k, tail = int(match.group("k")), match.group("rest")
        nested = _NESTED.match(tail)
        if nested is not None and match.group("list") != "middle":
            # Wan 2.2 (5B) residual stages: downsamples.i.downsamples.j / upsamples.i.upsamples.j, the stage's
            # resample last (encoder: after num_res_blocks blocks, decoder: after num_res_blocks + 1)
            j, inner = int(nested.group("j")), nested.group("rest")
            blocks = num_res_blocks if coder == "encoder" else num_res_blocks + 1
            kind = "down_blocks" if coder == "encoder" else "up_blocks"
            sampler = "downsampler" if coder == "encoder" else "upsampler"
            target = (f"{kind}.{k}.{sampler}.{inner}" if j == blocks
                      else f"{kind}.{k}.resnets.{j}.{_resnet_or_same(inner)}")  # fmt: skip
        elif match.group("list") == "middle":
            target = f"mid_block.attentions.0.{tail}" if k == 1 else f"mid_block.resnets.{k // 2}.{_resnet_or_same(tail)}"
        elif match.group("list") == "downsamples" and coder == "encoder":
            target = f"down_blocks.{k}.{_resnet_or_same(tail)}"
        elif match.group("list") == "upsamples" and coder == "decoder":
            stage, j = divmod(k, per_stage)
            if j == num_res_blocks + 1:
                target = f"up_blocks.{stage}.upsamplers.0.{tail}"
            else:
                target = f"up_blocks.{stage}.resnets.{j}.{_resnet_or_same(tail)}"
        else:
            out[key] = tensor
            continue
        out[f"model.{coder}.{target}"] = tensor
    return out, []
