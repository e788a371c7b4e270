"""The DreamZero World Action Model in torch + diffusers (no rclpy).

Modules: config (sizes, presets), transformer (causal Wan DiT with action/state tokens), kv_cache, sampler (flow
matching, CFG, DiT step caching, Flash), encoders (umT5, CLIP, Wan VAE), checkpoint (released layout), wam (the
`WorldActionModel` facade). Importing the package is cheap: torch loads on first use of a name below.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "WorldActionModel": "dreamzero_ros.model.wam",
    "Generation": "dreamzero_ros.model.wam",
    "WamConfig": "dreamzero_ros.model.config",
    "preset_config": "dreamzero_ros.model.config",
    "CheckpointError": "dreamzero_ros.model.checkpoint",
    "save_checkpoint": "dreamzero_ros.model.checkpoint",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dreamzero_ros.model' has no attribute {name!r}")
