"""The graph contract: every topic and service name dreamzero_ros publishes, serves or calls.

Nodes, the node plan, the operator commands, the report and the tests import the names from here
and from nowhere else. Importing this module needs no rclpy (the report reads MCAP files with it).
Robot-side topics (cameras, joint states, commands) are not here: they come from the embodiment's
YAML in config/ and the robot profiles in config/robots/.

dreamzero's own names are relative, so they resolve under the node's namespace: a bringup with
namespace /robot1 serves /robot1/dreamzero/arm, and one without serves /dreamzero/arm. Two names stay
absolute by ROS convention: /diagnostics (the diagnostic aggregator and rqt_robot_monitor listen there,
one per graph, and each status names its node) and /clock (rclpy's time source subscribes to the
absolute /clock whatever the node's namespace, so one simulator is the clock of its graph).
"""

from __future__ import annotations

import re

STITCHED_TOPIC = "dreamzero/stitched_image"
CHUNK_TOPIC = "dreamzero/action_chunk"
INSTRUCTION_TOPIC = "dreamzero/instruction"
PREDICTED_VIDEO_TOPIC = "dreamzero/predicted_video"
STATUS_TOPIC = "dreamzero/status"
ESTOP_TOPIC = "dreamzero/estop"
PREVIEW_TOPIC = "dreamzero/command_preview"
DIAGNOSTICS_TOPIC = "/diagnostics"
CLOCK_TOPIC = "/clock"

VIEWS_TOPIC_PREFIX = "dreamzero/views/"


def view_topic(camera: str) -> str:
    """Where the camera_stitcher publishes `camera`'s view at its training resolution (remote backend input)."""
    return f"{VIEWS_TOPIC_PREFIX}{camera}"


SET_INSTRUCTION_SERVICE = "dreamzero/set_instruction"
RESET_EPISODE_SERVICE = "dreamzero/reset_episode"
ARM_SERVICE = "dreamzero/arm"
RESET_ESTOP_SERVICE = "dreamzero/reset_estop"
HOME_SERVICE = "dreamzero/home"
SIM_RESET_SERVICE = "sim/reset"
SIM_TASK_TOPIC = "sim/task"

_NAMESPACE = re.compile(r"(/[A-Za-z_][A-Za-z0-9_]*)+")


def normalize_namespace(namespace: str, what: str = "namespace") -> str:
    """'' or '/' -> '/'; 'robot1' or '/robot1/' -> '/robot1'. Refuses what ROS would refuse, naming `what`."""
    text = namespace.strip().strip("/")
    if not text:
        return "/"
    text = "/" + text
    if not _NAMESPACE.fullmatch(text):
        raise ValueError(f"{what}: expected a ROS namespace like /robot1 (letters, digits and _ per "
                         f"'/'-separated token, not starting with a digit), got {namespace!r}")
    return text


def resolve(name: str, namespace: str = "/") -> str:
    """The fully qualified name of `name` for a node in `namespace` (absolute names are kept), as it
    appears in the graph and in recordings: resolve('dreamzero/status', '/robot1') == '/robot1/dreamzero/status'."""
    if name.startswith("/"):
        return name
    ns = normalize_namespace(namespace)
    return f"{ns.rstrip('/')}/{name}"
