"""A robot profile's wiring on the node side: joint-state inputs and per-tick command outputs.

`JointStateInputs` subscribes to every joint-state topic of a profile (each with its QoS), maps the
robot's names and values into the model's joint order (core.robot_profile.JointStateAssembler) and
hands a complete model-ordered state to the node once every topic has reported. `CommandOutputs`
builds one publisher per command output and sends a model-ordered command [A] to each in the
robot's names and units. The per-tick types (JointState, Float64MultiArray) are sent every tick;
JointTrajectory outputs get whole trajectories from core.trajectory_stream (per chunk, hold or
homing: `CommandOutputs.stream`); GripperCommand outputs are action clients that send a goal when
the target moved past the output's deadband (see `CommandOutputs`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dreamzero_ros.core.robot_profile import (
    FLOAT64_ARRAY,
    GRIPPER_COMMAND,
    JOINT_STATE,
    JOINT_TRAJECTORY,
    CommandOutput,
    JointStateAssembler,
    RobotProfile,
)
from dreamzero_ros.core.trajectory_stream import StreamedTrajectory
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.runtime import seconds_to_stamp


class JointStateInputs:
    """Subscribes to a profile's joint-state topics; calls `on_state(names, values, stamp_s)` per complete state.

    A message that cannot be used (a joint missing, sizes differ) is logged (throttled) and passed to
    `on_problem(text)` when given.

    `stamp_s` is the node-clock time (s) of the OLDEST input's latest message, so one silent topic
    makes the whole state age (and go stale) instead of hiding behind a lively one.
    """

    def __init__(self, node: Node, profile: RobotProfile,
                 on_state: Callable[[list[str], list[float], float], None],
                 on_problem: Callable[[str], None] | None = None) -> None:
        self._node = node
        self._on_state = on_state
        self._on_problem = on_problem
        self.assembler = JointStateAssembler(profile)
        self.received = 0
        for i, inp in enumerate(profile.joint_states):
            node.create_subscription(JointState, inp.topic, lambda m, i=i: self._on_message(i, m),
                                     qos.from_spec(inp.qos))

    def _on_message(self, index: int, msg: JointState) -> None:
        now = self._node.get_clock().now().nanoseconds * 1e-9
        problem = self.assembler.update(index, list(msg.name), list(msg.position), now)
        self.received += 1
        if problem:
            self._node.get_logger().warning(f"joint state ignored: {problem}", throttle_duration_sec=2.0)
            if self._on_problem is not None:
                self._on_problem(problem)
            return
        full = self.assembler.complete()
        if full is not None:
            self._on_state(*full)


class CommandOutputs:
    """One sender per command output of a profile; `send(positions[A])` takes the model's action order.

    JointState carries the robot's names and a stamp; Float64MultiArray only the values, in the
    output's joint order (the controller's `joints` order). A JointTrajectory output is not sent per
    tick: `stream(trajectory)` publishes each core.trajectory_stream.StreamedTrajectory (header stamp
    = its first point, positions and velocities per point, mapped like positions: velocities scaled
    by the map, zero where its clip holds the value). A GripperCommand output is an action client (e.g.
    franka_gripper's ~/gripper_action): each tick it sends a goal (position in the robot's units, the
    output's max_effort) when the target moved more than the output's deadband since the last goal,
    without waiting for the result (the server's next goal preempts it), so a gripper server is not
    flooded at the control rate. Where control_msgs is not installed the output is not served: its
    joint is not commanded (the gripper holds where it is), said once at start and listed in
    `unserved`.
    """

    def __init__(self, node: Node, profile: RobotProfile, dt: float) -> None:
        self._node = node
        self._senders: list[Callable[[np.ndarray], None]] = []
        self._streams: list[Callable[[StreamedTrajectory], None]] = []
        self.unserved: list[CommandOutput] = []
        for k, out in enumerate(profile.commands):
            if out.type == GRIPPER_COMMAND:
                sender = self._make_gripper(out)
                if sender is None:
                    self.unserved.append(out)
                    node.get_logger().warning(
                        f"{profile.source}: commands[{k}] ({out.type} {out.topic}) is not served: control_msgs is "
                        f"not installed; {list(out.slice.robot_joints)} are not commanded and hold where they are")
                else:
                    self._senders.append(sender)
                continue
            if out.type == JOINT_TRAJECTORY:
                self._streams.append(self._make_stream(out))
            else:
                self._senders.append(self._make(out, dt))

    @property
    def streams(self) -> bool:
        """True when some output takes whole trajectories (`stream`)."""
        return bool(self._streams)

    def send(self, positions: np.ndarray) -> None:
        for sender in self._senders:
            sender(positions)

    def stream(self, trajectory: StreamedTrajectory) -> None:
        for sender in self._streams:
            sender(trajectory)

    def _make_stream(self, out: CommandOutput) -> Callable[[StreamedTrajectory], None]:
        node, names = self._node, list(out.slice.robot_joints)
        pub = node.create_publisher(JointTrajectory, out.topic, qos.from_spec(out.qos))
        idx = list(out.indices)
        scale = np.array([m.scale for m in out.slice.maps], dtype=np.float64)
        offset = np.array([m.offset for m in out.slice.maps], dtype=np.float64)
        lo = np.array([-np.inf if m.clip is None else m.clip[0] for m in out.slice.maps], dtype=np.float64)
        hi = np.array([np.inf if m.clip is None else m.clip[1] for m in out.slice.maps], dtype=np.float64)

        def send(traj: StreamedTrajectory) -> None:
            raw = traj.positions[:, idx] * scale + offset
            positions = np.clip(raw, lo, hi)
            velocities = np.where(raw == positions, traj.velocities[:, idx] * scale, 0.0)
            msg = JointTrajectory(joint_names=names)
            seconds_to_stamp(traj.stamp, msg.header.stamp)
            msg.points = [
                JointTrajectoryPoint(positions=p.tolist(), velocities=v.tolist(), time_from_start=_duration_msg(t))
                for t, p, v in zip(traj.time_from_start, positions, velocities, strict=True)
            ]
            pub.publish(msg)

        return send

    def _make_gripper(self, out: CommandOutput) -> Callable[[np.ndarray], None] | None:
        try:  # apt's ros-<distro>-control-msgs on a robot; the tests' stand-in in the repo venvs
            from control_msgs.action import GripperCommand
        except ImportError:
            return None
        from rclpy.action import ActionClient

        node = self._node
        client = ActionClient(node, GripperCommand, out.topic)
        effort = float(out.max_effort or 0.0)
        last_goal: list[float] = []

        def send(positions: np.ndarray) -> None:
            target = float(out.robot_values(positions)[0])
            if last_goal and abs(target - last_goal[0]) <= out.deadband:
                return
            if not client.server_is_ready():
                node.get_logger().warning(f"gripper action {out.topic}: no server yet; goal {target:.4f} not sent",
                                          throttle_duration_sec=5.0)
                return
            goal = GripperCommand.Goal()
            goal.command.position = target
            goal.command.max_effort = effort
            client.send_goal_async(goal)
            last_goal[:] = [target]

        return send

    def _make(self, out: CommandOutput, dt: float) -> Callable[[np.ndarray], None]:
        node, names = self._node, list(out.slice.robot_joints)
        if out.type == JOINT_STATE:
            pub = node.create_publisher(JointState, out.topic, qos.from_spec(out.qos))

            def send(positions: np.ndarray) -> None:
                msg = JointState(name=names, position=out.robot_values(positions).tolist())
                msg.header.stamp = node.get_clock().now().to_msg()
                pub.publish(msg)
        elif out.type == FLOAT64_ARRAY:
            pub = node.create_publisher(Float64MultiArray, out.topic, qos.from_spec(out.qos))

            def send(positions: np.ndarray) -> None:
                pub.publish(Float64MultiArray(data=out.robot_values(positions).tolist()))
        else:
            assert out.type == JOINT_TRAJECTORY, out.type
            pub = node.create_publisher(JointTrajectory, out.topic, qos.from_spec(out.qos))
            reach = Duration(sec=0, nanosec=int(dt * 1e9))

            def send(positions: np.ndarray) -> None:
                msg = JointTrajectory(joint_names=names)
                msg.header.stamp = node.get_clock().now().to_msg()
                msg.points = [JointTrajectoryPoint(positions=out.robot_values(positions).tolist(),
                                                   time_from_start=reach)]
                pub.publish(msg)
        return send


def _duration_msg(seconds: float) -> Duration:
    ns = int(round(float(seconds) * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
