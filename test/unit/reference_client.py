"""What the reference release's client does with a server's handshake (DREAMZERO_FACTS.md), for the tests.

The reference test client builds `PolicyServerConfig(**config)` from the handshake, which raises TypeError
on any key beyond its six fields; this dataclass has exactly those fields and defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReferencePolicyServerConfig:
    image_resolution: tuple[int, int] | None = (224, 224)
    needs_wrist_camera: bool = True
    n_external_cameras: int = 1
    needs_stereo_camera: bool = False
    needs_session_id: bool = False
    action_space: str = "joint_position"
