"""The DDS environment dreamzero_ros processes run in (no rclpy import here).

One place decides the middleware settings for tests, the bringup runner and the demo:
localhost-only discovery (Kilted ignores ROS_LOCALHOST_ONLY), the Fast DDS profile with a large
shared-memory segment, and a ROS_DOMAIN_ID chosen so parallel or leftover runs never cross.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from dreamzero_ros.core.embodiment import config_dir

FASTDDS_PROFILE_NAME = "fastdds_profile.xml"


def fastdds_profile_path() -> Path:
    return config_dir() / FASTDDS_PROFILE_NAME


def fastdds_profile_variables(env: dict[str, str] | None = None) -> tuple[str, ...]:
    """The variable(s) naming the Fast DDS profile for the Fast DDS this process's ROS links.

    Fast DDS 3 (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE and warns about the old name in every
    node's log; Fast DDS 2.x (Humble, Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE. The library
    is looked for in this interpreter's prefix (the pip wheels) and the AMENT_PREFIX_PATH entries
    (/opt/ros/<distro>); when neither is found both are set.
    """
    env = os.environ if env is None else env
    prefixes = [Path(sys.prefix), *(Path(p) for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p)]
    for prefix in prefixes:
        if any((prefix / "lib").glob("libfastdds.so*")):
            return ("FASTDDS_DEFAULT_PROFILES_FILE",)
        if any((prefix / "lib").glob("libfastrtps.so*")):
            return ("FASTRTPS_DEFAULT_PROFILES_FILE",)
    return ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


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
        for name in fastdds_profile_variables(env):
            env[name] = str(fastdds_profile_path())
    return env
