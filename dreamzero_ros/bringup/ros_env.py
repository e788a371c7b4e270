"""The DDS environment dreamzero_ros processes run in (no rclpy import here).

One place decides the middleware settings for tests, the bringup runner and the demo:
localhost-only discovery (Kilted ignores ROS_LOCALHOST_ONLY), the Fast DDS profile with a large
shared-memory segment, and a ROS_DOMAIN_ID chosen so parallel or leftover runs never cross.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from dreamzero_ros.core.embodiment import config_dir

FASTDDS_PROFILE_NAME = "fastdds_profile.xml"


def fastdds_profile_path() -> Path:
    return config_dir() / FASTDDS_PROFILE_NAME


def pick_domain_id(seed: int | None = None) -> int:
    """A ROS_DOMAIN_ID in 1..101 (0 is the robot default; >101 collides with ephemeral ports)."""
    rng = random.Random(seed if seed is not None else os.getpid() ^ int.from_bytes(os.urandom(4), "little"))
    return rng.randint(1, 101)


def ros_environment(
    domain_id: int | None = None,
    *,
    localhost_only: bool = True,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a ROS process: domain id, discovery range and (localhost) the DDS profile."""
    env = dict(os.environ if base is None else base)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    if localhost_only:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        # Fast DDS 3 (Kilted) reads FASTDDS_..., Fast DDS 2.x (Humble, Jazzy) only FASTRTPS_...
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile_path())
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile_path())
    return env
