"""The graph contract: every topic and service name dreamzero_ros publishes, serves or calls.

Nodes, the node plan, the operator commands, the report and the tests import the names from here
and from nowhere else. Importing this module needs no rclpy (the report reads MCAP files with it).
Robot-side topics (cameras, joint states, commands) are not here: they come from the embodiment's
YAML in config/.
"""

from __future__ import annotations

STITCHED_TOPIC = "/dreamzero/stitched_image"
CHUNK_TOPIC = "/dreamzero/action_chunk"
INSTRUCTION_TOPIC = "/dreamzero/instruction"
PREDICTED_VIDEO_TOPIC = "/dreamzero/predicted_video"
STATUS_TOPIC = "/dreamzero/status"
ESTOP_TOPIC = "/dreamzero/estop"
PREVIEW_TOPIC = "/dreamzero/command_preview"
DIAGNOSTICS_TOPIC = "/diagnostics"
CLOCK_TOPIC = "/clock"

VIEWS_TOPIC_PREFIX = "/dreamzero/views/"


def view_topic(camera: str) -> str:
    """Where the camera_stitcher publishes `camera`'s view at its training resolution (remote backend input)."""
    return f"{VIEWS_TOPIC_PREFIX}{camera}"


SET_INSTRUCTION_SERVICE = "/dreamzero/set_instruction"
RESET_EPISODE_SERVICE = "/dreamzero/reset_episode"
ARM_SERVICE = "/dreamzero/arm"
RESET_ESTOP_SERVICE = "/dreamzero/reset_estop"
HOME_SERVICE = "/dreamzero/home"
SIM_RESET_SERVICE = "/sim/reset"
SIM_TASK_TOPIC = "/sim/task"
