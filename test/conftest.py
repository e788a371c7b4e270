"""Session-wide test setup: one ROS_DOMAIN_ID and localhost-only DDS for every test process."""

from __future__ import annotations

import os

import pytest

from dreamzero_ros.bringup.ros_env import pick_domain_id, ros_environment


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo in tests and the sim node subprocesses
    # Set before any test imports rclpy: every process of this run (the test process's probes and
    # the node subprocesses, which inherit os.environ) shares one private domain on loopback.
    domain = int(os.environ.get("DZ_TEST_DOMAIN_ID") or pick_domain_id())
    os.environ.update(ros_environment(domain))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
