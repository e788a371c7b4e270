"""Fixtures for process tests: a node launcher that cleans up and an rclpy probe."""

from __future__ import annotations

import pytest

from dreamzero_ros.testing.probes import NodeLauncher, RosProbe


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "test/ros/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.ros)


@pytest.fixture
def launcher():
    nodes = NodeLauncher()
    yield nodes
    nodes.stop_all()


@pytest.fixture
def probe():
    p = RosProbe()
    yield p
    p.close()
