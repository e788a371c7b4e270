"""The self-attention KV cache of the causal WAM: preallocated per-layer key/value buffers with one batch row per
guidance branch ("cond", "uncond").

This module owns the cache's memory layout and its two operations: `stage` (write the current chunk's keys and
values after the committed ones and return the prefix to attend over; nothing is committed, so the cache is
read-only while denoising) and `commit` (keep the leading staged tokens: the real observed frames written at
t = 0). Each branch's row is its own cache: the conditional and unconditional branches see different text,
so their deeper-layer keys/values differ.
"""

from __future__ import annotations

import torch

from dreamzero_ros.model.config import WamConfig


class KVCacheOverflowError(RuntimeError):
    """A chunk does not fit in the preallocated cache (more chunks than `context_chunks` without a reset)."""


class KVCache:
    """Keys/values [branches, max_tokens, heads, head_dim] per layer, plus the committed token segments."""

    def __init__(
        self,
        num_layers: int,
        max_tokens: int,
        heads: int,
        head_dim: int,
        *,
        branches: tuple[str, ...] = ("cond", "uncond"),
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.num_layers = num_layers
        self.max_tokens = max_tokens
        self.branches = branches
        shape = (len(branches), max_tokens, heads, head_dim)
        self._keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self._values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.length = 0
        self.segments: tuple = ()  # transformer.Segment of every committed run of tokens, in order
        self._staged = 0

    @classmethod
    def for_config(
        cls, config: WamConfig, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> KVCache:
        """Room for the first frame + `context_chunks` chunks of video + one chunk's staged query tokens."""
        frame_tokens = config.tokens_per_latent_frame
        committed = frame_tokens * (1 + config.latent_frames_per_chunk * config.context_chunks)
        return cls(config.num_layers, committed + config.tokens_per_chunk, config.num_heads, config.head_dim,
                   device=device, dtype=dtype)  # fmt: skip

    def rows(self, branch: str) -> slice:
        """The batch rows of one branch, e.g. rows("uncond") == slice(1, 2)."""
        index = self.branches.index(branch)
        return slice(index, index + 1)

    def stage(self, layer: int, key: torch.Tensor, value: torch.Tensor, rows: slice) -> tuple[torch.Tensor, ...]:
        """Write key/value [B, L, H, D] after the committed tokens of `rows`; return the keys/values to attend
        over ([B, committed + L, H, D] views). The committed prefix is never modified here."""
        start, end = self.length, self.length + key.shape[1]
        if end > self.max_tokens:
            raise KVCacheOverflowError(
                f"KV cache holds {self.length} tokens + {key.shape[1]} staged > capacity {self.max_tokens}: "
                "reset the episode after context_chunks chunks"
            )
        keys, values = self._keys[layer], self._values[layer]
        row_count = len(range(*rows.indices(len(self.branches))))
        if row_count != key.shape[0]:
            raise ValueError(f"KV cache rows {rows} select {row_count} branches for a batch of {key.shape[0]}")
        keys[rows, start:end] = key.to(keys.dtype)
        values[rows, start:end] = value.to(values.dtype)
        self._staged = key.shape[1]
        return keys[rows, :end], values[rows, :end]

    def commit(self, segments: tuple) -> None:
        """Keep the leading staged tokens covering `segments` (the video of a chunk written at t = 0)."""
        count = sum(s.length for s in segments)
        if count > self._staged:
            raise ValueError(f"commit of {count} tokens but only {self._staged} were staged")
        self.length += count
        self.segments = self.segments + tuple(segments)
        self._staged = 0

    def reset(self) -> None:
        """Forget every committed token (buffers are kept and overwritten)."""
        self.length = 0
        self.segments = ()
        self._staged = 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._keys + self._values)
