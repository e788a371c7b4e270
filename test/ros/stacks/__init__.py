"""Stand-ins of the robot stacks the shipped profiles plug into, built from their public sources.

Each is a real rclpy node (a RosProbe: own Context, spun on a thread) that subscribes where the
stack's controller or wrapper does, with the same message types, joint names and QoS, follows the
commands it receives the way that stack would, and publishes joint states (and camera images where
the stack has them) the way it does. Facts: ../../../shared/design/ROBOT_STACKS.md and the comments
in config/robots/*.yaml.
"""
