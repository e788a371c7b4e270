"""Tiny mirrors of Wan's own encoder modules, to write checkpoints in the release's native names.

The module trees follow the reference code's attribute names (Wan's umT5 `T5Encoder` as the release's
WanTextEncoder; open-clip XLM-RoBERTa ViT-H/14 `XLMRobertaCLIP.visual` as wrapped by WanImageEncoder under `model.`;
the Wan 2.1 `VideoVAE_` as wrapped by WanVideoVAE under `model.`), so their `state_dict()` names are the released
names by construction; nothing here knows our transformers/diffusers names. T5 and CLIP also carry the reference
forward (T5: no attention scaling, tanh GELU gate, bidirectional relative buckets; CLIP: pre-norm blocks, the
tokens of all blocks but the last), so a loaded model can be compared with the module that wrote the weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- Wan umT5 encoder -----------------------------------------------------------------------------------------------


class T5LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)


class T5Attention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim_attn // num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x, mask, pos_bias):
        b, n, c = x.size(0), self.num_heads, self.head_dim
        q, k, v = (f(x).view(b, -1, n, c) for f in (self.q, self.k, self.v))
        bias = pos_bias.clone()
        bias = bias.masked_fill(mask.view(b, 1, 1, -1) == 0, torch.finfo(x.dtype).min)
        attn = torch.einsum("binc,bjnc->bnij", q, k) + bias  # T5: no 1/sqrt(d) scaling
        x = torch.einsum("bnij,bjnc->binc", F.softmax(attn.float(), dim=-1).type_as(attn), v)
        return self.o(x.reshape(b, -1, n * c))


class TanhGELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class T5FeedForward(nn.Module):
    def __init__(self, dim: int, dim_ffn: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), TanhGELU())
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x):
        return self.fc2(self.fc1(x) * self.gate(x))


class T5RelativeEmbedding(nn.Module):
    def __init__(self, num_buckets: int, num_heads: int, max_dist: int = 128) -> None:
        super().__init__()
        self.num_buckets, self.max_dist = num_buckets, max_dist
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, lq: int, lk: int):
        rel = torch.arange(lk).unsqueeze(0) - torch.arange(lq).unsqueeze(1)
        half = self.num_buckets // 2
        buckets = (rel > 0).long() * half
        rel = rel.abs()
        exact = half // 2
        large = exact + (torch.log(rel.float() / exact) / math.log(self.max_dist / exact) * (half - exact)).long()
        buckets = buckets + torch.where(rel < exact, rel, large.clamp(max=half - 1))
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)


class T5Block(nn.Module):
    def __init__(self, dim, dim_attn, dim_ffn, num_heads, num_buckets, max_dist) -> None:
        super().__init__()
        self.norm1 = T5LayerNorm(dim)
        self.attn = T5Attention(dim, dim_attn, num_heads)
        self.norm2 = T5LayerNorm(dim)
        self.ffn = T5FeedForward(dim, dim_ffn)
        self.pos_embedding = T5RelativeEmbedding(num_buckets, num_heads, max_dist)  # shared_pos=False: per block

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask, self.pos_embedding(x.size(1), x.size(1)))
        return x + self.ffn(self.norm2(x))


class WanT5Encoder(nn.Module):
    """Names: token_embedding, blocks.N.{norm1, attn.{q,k,v,o}, norm2, ffn.{gate.0, fc1, fc2},
    pos_embedding.embedding}, norm (the release stores these directly under action_head.text_encoder.)."""

    def __init__(self, vocab, dim, dim_attn, dim_ffn, num_heads, num_layers, num_buckets, max_dist=128) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(
            [T5Block(dim, dim_attn, dim_ffn, num_heads, num_buckets, max_dist) for _ in range(num_layers)]
        )
        self.norm = T5LayerNorm(dim)

    def forward(self, ids, mask):
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


# ---- Wan open-clip ViT ----------------------------------------------------------------------------------------------


class ClipSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.num_heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1))


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ClipBlock(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, num_heads: int, activation: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ClipSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), QuickGELU() if activation == "quick_gelu" else nn.GELU(),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(0.0))  # fmt: skip

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class WanVisionTransformer(nn.Module):
    """Names: patch_embedding (no bias: pre-norm), cls_embedding [1, 1, dim], pos_embedding [1, tokens, dim],
    pre_norm, transformer.N.{norm1, attn.to_qkv, attn.proj, norm2, mlp.0, mlp.2}, post_norm, head [dim, out]."""

    def __init__(self, image_size, patch_size, dim, mlp_dim, out_dim, num_heads, num_layers, activation="gelu"):
        super().__init__()
        tokens = (image_size // patch_size) ** 2 + 1
        self.patch_embedding = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size, bias=False)
        self.cls_embedding = nn.Parameter(torch.randn(1, 1, dim) / math.sqrt(dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens, dim) / math.sqrt(dim))
        self.pre_norm = nn.LayerNorm(dim, eps=1e-5)
        self.transformer = nn.Sequential(*[ClipBlock(dim, mlp_dim, num_heads, activation) for _ in range(num_layers)])
        self.post_norm = nn.LayerNorm(dim, eps=1e-5)
        self.head = nn.Parameter(torch.randn(dim, out_dim) / math.sqrt(dim))

    def forward(self, x):
        """The release's `use_31_block`: tokens after every block but the last."""
        x = self.patch_embedding(x).flatten(2).permute(0, 2, 1)
        x = torch.cat([self.cls_embedding.expand(x.size(0), -1, -1), x], dim=1) + self.pos_embedding
        return self.transformer[:-1](self.pre_norm(x))


class WanClip(nn.Module):
    """XLMRobertaCLIP with the text tower left out (`textual = None`), as the release builds it: visual + log_scale."""

    def __init__(self, **visual) -> None:
        super().__init__()
        self.visual = WanVisionTransformer(**visual)
        self.log_scale = nn.Parameter(math.log(1 / 0.07) * torch.ones([]))


class WanImageEncoder(nn.Module):
    def __init__(self, **visual) -> None:
        super().__init__()
        self.model = WanClip(**visual)


# ---- Wan 2.1 VAE (structure only) -----------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, images: bool = True) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))


class Resample(nn.Module):
    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0)), nn.Conv2d(dim, dim // 2, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = nn.Conv3d(dim, dim * 2, (3, 1, 1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
            if mode == "downsample3d":
                self.time_conv = nn.Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False), nn.SiLU(), nn.Conv3d(in_dim, out_dim, 3),
            RMSNorm(out_dim, images=False), nn.SiLU(), nn.Dropout(0.0), nn.Conv3d(out_dim, out_dim, 3),
        )  # fmt: skip
        self.shortcut = nn.Conv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()


class AttentionBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)


class Encoder3d(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_downsample) -> None:
        super().__init__()
        dims = [dim * u for u in [1, *dim_mult]]
        self.conv1 = nn.Conv3d(3, dims[0], 3)
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                blocks.append(Resample(out_dim, "downsample3d" if temperal_downsample[i] else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)
        self.middle = nn.Sequential(ResidualBlock(out_dim, out_dim), AttentionBlock(out_dim),
                                    ResidualBlock(out_dim, out_dim))  # fmt: skip
        self.head = nn.Sequential(RMSNorm(out_dim, images=False), nn.SiLU(), nn.Conv3d(out_dim, z_dim, 3))


class Decoder3d(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_upsample) -> None:
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv1 = nn.Conv3d(z_dim, dims[0], 3)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))  # fmt: skip
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if i in (1, 2, 3):
                in_dim = in_dim // 2
            for _ in range(num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                blocks.append(Resample(out_dim, "upsample3d" if temperal_upsample[i] else "upsample2d"))
        self.upsamples = nn.Sequential(*blocks)
        self.head = nn.Sequential(RMSNorm(out_dim, images=False), nn.SiLU(), nn.Conv3d(out_dim, 3, 3))


class VideoVAE(nn.Module):
    """Names: encoder.*, conv1 (2z -> 2z), conv2 (z -> z), decoder.* (WanVideoVAE keeps it as `model`)."""

    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_downsample) -> None:
        super().__init__()
        self.encoder = Encoder3d(dim, z_dim * 2, dim_mult, num_res_blocks, temperal_downsample)
        self.conv1 = nn.Conv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = nn.Conv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d(dim, z_dim, dim_mult, num_res_blocks, temperal_downsample[::-1])


class WanVideoVAE(nn.Module):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.model = VideoVAE(**kwargs)


class Resample38(nn.Module):
    """Wan 2.2: the upsampling conv keeps the width (Wan 2.1 halves it)."""

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0)), nn.Conv2d(dim, dim, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = nn.Conv3d(dim, dim * 2, (3, 1, 1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
            if mode == "downsample3d":
                self.time_conv = nn.Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))


class DownResidualBlock(nn.Module):
    """Names: downsamples.j (residual blocks, then the resample); the averaging shortcut has no weights."""

    def __init__(self, in_dim, out_dim, mult, temporal, down) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for _ in range(mult):
            blocks.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if down:
            blocks.append(Resample38(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)


class UpResidualBlock(nn.Module):
    def __init__(self, in_dim, out_dim, mult, temporal, up) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for _ in range(mult):
            blocks.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if up:
            blocks.append(Resample38(out_dim, "upsample3d" if temporal else "upsample2d"))
        self.upsamples = nn.Sequential(*blocks)


class Encoder3d38(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_downsample) -> None:
        super().__init__()
        dims = [dim * u for u in [1, *dim_mult]]
        self.conv1 = nn.Conv3d(12, dims[0], 3)  # 2x2 patchified RGB
        self.downsamples = nn.Sequential(*[
            DownResidualBlock(i_dim, o_dim, num_res_blocks, i < len(temperal_downsample) and temperal_downsample[i],
                              i != len(dim_mult) - 1)
            for i, (i_dim, o_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True))])  # fmt: skip
        out_dim = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(out_dim, out_dim), AttentionBlock(out_dim),
                                    ResidualBlock(out_dim, out_dim))  # fmt: skip
        self.head = nn.Sequential(RMSNorm(out_dim, images=False), nn.SiLU(), nn.Conv3d(out_dim, z_dim, 3))


class Decoder3d38(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_upsample) -> None:
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv1 = nn.Conv3d(z_dim, dims[0], 3)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))  # fmt: skip
        self.upsamples = nn.Sequential(*[
            UpResidualBlock(i_dim, o_dim, num_res_blocks + 1, i < len(temperal_upsample) and temperal_upsample[i],
                            i != len(dim_mult) - 1)
            for i, (i_dim, o_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True))])  # fmt: skip
        self.head = nn.Sequential(RMSNorm(dims[-1], images=False), nn.SiLU(), nn.Conv3d(dims[-1], 12, 3))


class VideoVAE38(nn.Module):
    """Wan 2.2 (TI2V-5B) VAE: residual stages, separate decoder width."""

    def __init__(self, dim, dec_dim, z_dim, dim_mult, num_res_blocks, temperal_downsample) -> None:
        super().__init__()
        self.encoder = Encoder3d38(dim, z_dim * 2, dim_mult, num_res_blocks, temperal_downsample)
        self.conv1 = nn.Conv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = nn.Conv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d38(dec_dim, z_dim, dim_mult, num_res_blocks, temperal_downsample[::-1])


def native_state(module: nn.Module, prefix: str, seed: int) -> dict[str, torch.Tensor]:
    """The module's weights, re-drawn from a seed so that no two tensors are equal, under `prefix`."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in module.state_dict().items():
        value = torch.randn(tensor.shape, generator=gen) * 0.2
        if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "pre_norm.weight", "post_norm.weight")):
            value = value + 1.0  # layer norm scales near 1 keep the activations sane
        out[prefix + name] = value
    module.load_state_dict({k[len(prefix) :]: v for k, v in out.items()})
    return out
