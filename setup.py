"""ament_python package dreamzero_ros (colcon on a robot, pip -e in the repo venv)."""

import os

from setuptools import find_packages, setup

PACKAGE = "dreamzero_ros"

NODES = {
    "camera_stitcher": "dreamzero_ros.nodes.camera_stitcher_node:main",
    "action_executor": "dreamzero_ros.nodes.action_executor_node:main",
    "inference": "dreamzero_ros.nodes.inference_node:main",
    "sim_robot": "dreamzero_ros.nodes.sim_robot_node:main",
    "recorder": "dreamzero_ros.nodes.recorder_node:main",
}


def _share_tree(top: str) -> list[tuple[str, list[str]]]:
    """(install dir, files) for every folder under `top`, so share/ mirrors the source tree
    (config/robots/*.yaml, meshes next to a URDF, ...), as colcon installs it."""
    entries = []
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        if files:
            entries.append((f"share/{PACKAGE}/{folder}", sorted(os.path.join(folder, f) for f in files)))
    return entries


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *_share_tree("launch"),
        *_share_tree("config"),
        *_share_tree("urdf"),
        *_share_tree("checkpoints"),  # the demo's trained checkpoints, found next to config/
    ],
    package_data={PACKAGE: ["py.typed"]},
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="dreamzero_ros maintainers",
    description="ROS 2 nodes that run the DreamZero World Action Model in closed loop on robots.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in NODES.items()]
        + ["dreamzero = dreamzero_ros.apps.cli:main"],
    },
)
