"""Launch the dreamzero_ros nodes for an embodiment on a full ROS 2 install.

    ros2 launch dreamzero_ros dreamzero.launch.py embodiment:=franka_droid backend:=remote \
        server:=ws://gpu-box:8000 sim:=false
    ros2 launch dreamzero_ros dreamzero.launch.py robot:=fr3_franka_ros2 backend:=remote server:=ws://gpu-box:8000

The node plan (which nodes, parameters, remappings) comes from dreamzero_ros.bringup.node_plan,
the same function `dreamzero bringup` uses where `ros2 launch` is not installed.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dreamzero_ros.bringup import BringupOptions, node_plan

ARGUMENTS = {
    "embodiment": ("franka_droid", "embodiment name (config/<name>.yaml) or path to a YAML"),
    "robot": ("", "robot profile (config/robots/<name>.yaml) or YAML path; it names its embodiment "
                  "(empty: the embodiment's own wiring)"),
    "backend": ("local", "policy backend: local | remote | scripted"),
    "server": ("", "policy server URL for the remote backend, e.g. ws://gpu-box:8000"),
    "checkpoint": ("", "checkpoint directory for the local backend (empty: tiny random weights)"),
    "sim": ("false", "start the MuJoCo simulated robot"),
    "dry_run": ("false", "executor publishes to the preview topic only"),
    "record": ("", "path of an MCAP file to record to (empty: no recording)"),
    "instruction": ("", "initial instruction (empty: wait for /dreamzero/instruction)"),
    "predicted_video": ("false", "decode and publish the model's predicted frames on /dreamzero/predicted_video"),
}


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _nodes(context, *args, **kwargs):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    options = BringupOptions(
        embodiment=value["embodiment"],
        robot=value["robot"],
        backend=value["backend"],
        server=value["server"],
        checkpoint=value["checkpoint"],
        sim=_truthy(value["sim"]),
        dry_run=_truthy(value["dry_run"]),
        record=value["record"],
        instruction=value["instruction"],
        predicted_video=_truthy(value["predicted_video"]),
    )
    return [
        Node(
            package="dreamzero_ros",
            executable=spec.executable,
            name=spec.name,
            parameters=[spec.parameters],
            remappings=list(spec.remappings),
            output="screen",
            # A required node that dies takes the whole bringup down, as the process runner does.
            on_exit=[Shutdown(reason=f"required node {spec.name} exited")] if spec.required else None,
        )
        for spec in node_plan(options)
    ]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=doc)
                for name, (default, doc) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
