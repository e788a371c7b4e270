"""ament_python package dreamzero_ros (colcon on a robot, pip -e in the repo venv)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dreamzero_ros"

NODES = {
    "camera_stitcher": "dreamzero_ros.nodes.camera_stitcher_node:main",
    "action_executor": "dreamzero_ros.nodes.action_executor_node:main",
    "inference": "dreamzero_ros.nodes.inference_node:main",
    "sim_robot": "dreamzero_ros.nodes.sim_robot_node:main",
    "recorder": "dreamzero_ros.nodes.recorder_node:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/robots", glob("config/robots/*.yaml")),
        (f"share/{PACKAGE}/urdf", glob("urdf/*.urdf")),
    ],
    package_data={PACKAGE: ["py.typed"]},
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="dreamzero_ros maintainers",
    description="ROS 2 nodes that run the DreamZero World Action Model in closed loop on robots.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in NODES.items()]
        + ["dreamzero = dreamzero_ros.cli:main"],
    },
)
