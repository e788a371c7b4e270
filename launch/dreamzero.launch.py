"""Launch the dreamzero_ros nodes for an embodiment on a full ROS 2 install.

    ros2 launch dreamzero_ros dreamzero.launch.py embodiment:=franka_droid backend:=remote \
        server:=ws://gpu-box:8000 sim:=false
    ros2 launch dreamzero_ros dreamzero.launch.py robot:=fr3_franka_ros2 backend:=remote server:=ws://gpu-box:8000
    ros2 launch dreamzero_ros dreamzero.launch.py sim:=true backend:=scripted namespace:=/robot1 \
        params_file:=/path/to/overrides.yaml use_sim_time:=false

The node plan (which nodes, parameters, remappings) comes from dreamzero_ros.bringup.plan.node_plan,
the same function `dreamzero bringup` uses where `ros2 launch` is not installed.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dreamzero_ros.bringup.plan import BringupOptions, launch_arguments, node_plan

ARGUMENTS = launch_arguments()  # {name: (default, description)}, generated from BringupOptions


def _nodes(context, *args, **kwargs):
    options = BringupOptions.from_strings({name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS})
    return [
        Node(
            package="dreamzero_ros",
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace,
            parameters=[spec.parameters, *spec.params_files],  # the operator's YAML last: its values win
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
