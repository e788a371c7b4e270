"""The package's rooms keep their import rules (docs/architecture.md), read from the source with ast.

Every `import` and `from ... import` in a module counts, at any depth (a lazy import inside a function
loads the package just the same when it runs). The checker itself is exercised on a small package
written to tmp_path, so a rule that could never fire would fail here too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "dreamzero_ros"

#: top-level names of ROS 2 Python packages (client library, message packages, tooling)
ROS_PACKAGE = re.compile(
    r"^(rclpy|rcl_interfaces|rosidl\w*|ament_\w+|launch|launch_ros|launch_\w+|\w+_msgs|\w+_srvs|\w+_interfaces"
    r"|builtin_interfaces|tf2\w*|cv_bridge|message_filters|rosbag2\w*|rpyutils|rmw\w*)$"
)
TORCH = re.compile(r"^(torch|torchvision|diffusers|transformers|safetensors|peft)$")


def imports_of(path: Path, root: Path) -> set[str]:
    """Dotted names of every module `path` imports; relative imports resolve against its place under `root`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.append("")  # a package's relative imports start from the package itself
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def violations(package_dir: Path) -> list[str]:
    """'<file>: <rule>: imports <name>' for every broken rule under `package_dir` (a dreamzero_ros tree)."""
    pkg = package_dir.name
    found: dict[tuple[str, str], str] = {}  # (file, rule) -> the first name that breaks it
    for path in sorted(package_dir.rglob("*.py")):
        room = path.relative_to(package_dir).parts[0] if len(path.relative_to(package_dir).parts) > 1 else ""
        rel = path.relative_to(package_dir.parent)
        for name in sorted(imports_of(path, package_dir.parent)):
            top = name.split(".")[0]
            inner = name.split(".")[1] if top == pkg and "." in name else ""
            if room == "core":
                if TORCH.match(top):
                    found.setdefault((str(rel), "core/ is pure (no torch)"), name)
                elif ROS_PACKAGE.match(top):
                    found.setdefault((str(rel), "core/ is pure (no ROS package)"), name)
                elif top == pkg and inner and inner != "core":
                    found.setdefault((str(rel), "core/ imports only core/"), name)
            if room in ("model", "backends") and ROS_PACKAGE.match(top):
                found.setdefault((str(rel), f"{room}/ never imports ROS"), name)
            if room == "training":
                if ROS_PACKAGE.match(top):
                    found.setdefault((str(rel), "training/ never imports ROS"), name)
                elif top == pkg and inner and inner not in ("core", "model", "datasets", "training"):
                    found.setdefault((str(rel), "training/ imports only core/, model/, datasets/"), name)
            if room == "nodes" and top == pkg and inner == "bringup":
                found.setdefault((str(rel), "nodes/ never import the node plan"), name)
            if rel.as_posix().endswith("ros/names.py") and ROS_PACKAGE.match(top):
                found.setdefault((str(rel), "the graph names import no ROS package"), name)
    return [f"{rel}: {rule}: imports {name}" for (rel, rule), name in found.items()]


def test_every_room_of_the_package_keeps_its_import_rules():
    assert violations(PACKAGE_DIR) == []


@pytest.mark.parametrize(
    ("room", "source", "rule"),
    [
        ("core", "import torch\n", "core/ is pure (no torch)"),
        ("core", "def f():\n    from rclpy.node import Node\n", "core/ is pure (no ROS package)"),
        ("core", "from sensor_msgs.msg import Image\n", "core/ is pure (no ROS package)"),
        ("core", "from ament_index_python.packages import get_package_share_directory\n",
         "core/ is pure (no ROS package)"),
        ("core", "from dreamzero_ros.model.stitching import stitch_views\n", "core/ imports only core/"),
        ("core", "from ..ros import qos\n", "core/ imports only core/"),
        ("model", "import rclpy\n", "model/ never imports ROS"),
        ("backends", "from std_msgs.msg import String\n", "backends/ never imports ROS"),
        ("training", "import rclpy\n", "training/ never imports ROS"),
        ("training", "from dreamzero_ros.backends.local import LocalBackend\n",
         "training/ imports only core/, model/, datasets/"),
        ("nodes", "from dreamzero_ros.bringup.plan import node_plan\n", "nodes/ never import the node plan"),
        ("nodes", "from ..bringup import plan\n", "nodes/ never import the node plan"),
    ],
)
def test_the_checker_flags_a_broken_rule(tmp_path, room, source, rule):
    pkg = tmp_path / "dreamzero_ros"
    (pkg / room).mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / room / "__init__.py").write_text("")
    (pkg / room / "offender.py").write_text(source)
    found = violations(pkg)
    assert len(found) == 1 and rule in found[0] and "offender.py" in found[0], found


def test_the_checker_lets_allowed_imports_through(tmp_path):
    pkg = tmp_path / "dreamzero_ros"
    for room, source in {
        "core": "import numpy\nimport cv2\nfrom dreamzero_ros.core.embodiment import ConfigError\nfrom . import chunk\n",
        "model": "import torch\nfrom dreamzero_ros.core.stitch import tile\n",
        "nodes": "import rclpy\nfrom dreamzero_ros.ros.names import CHUNK_TOPIC\n",
        "training": "import torch\nfrom dreamzero_ros.model.wam import WorldActionModel\n"
                    "from dreamzero_ros.datasets.lerobot import read_video\n",
    }.items():
        (pkg / room).mkdir(parents=True)
        (pkg / room / "__init__.py").write_text("")
        (pkg / room / "ok.py").write_text(source)
    (pkg / "__init__.py").write_text("")
    assert violations(pkg) == []
