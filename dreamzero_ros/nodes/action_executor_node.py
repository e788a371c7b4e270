"""action_executor node: ActionChunks -> joint commands at the robot's control rate.

A thin shell over core.executor.ExecutorCore (latest chunk wins, time alignment, cross-fade,
smoothing, limits, watchdog hold, arming, latching e-stop). Every callback is short (a chunk's
validation and smoothing is well under a millisecond), so one executor thread keeps the control
timer on time; see run_node for why not a MultiThreadedExecutor. Joint states come from the robot
profile's topics and commands go to its outputs, in the robot's names and units (ros.robot_io);
dry_run sends to the preview topic only.

JointTrajectory outputs (a joint_trajectory_controller) are not sent per tick: after each tick the
core.trajectory_stream.TrajectoryStreamer decides whether the controller needs a new trajectory
(a new chunk took over, a hold began, homing started) and only then one is published. Disarming
sends such a controller a hold (it would otherwise play the rest of the trajectory it has).
/dreamzero/home (std_srvs/Trigger) starts homing to the embodiment's start pose (core.executor).
"""

from __future__ import annotations

import collections
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from dreamzero_msgs.msg import ActionChunk, PolicyStatus
from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from dreamzero_ros.core.chunk import RawChunk
from dreamzero_ros.core.executor import Command, ExecutorCore, ExecutorSettings
from dreamzero_ros.core.robot_profile import load_robot
from dreamzero_ros.core.trajectory_stream import TrajectoryStreamer
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.convert import diagnostic_status
from dreamzero_ros.ros.names import (
    ARM_SERVICE,
    CHUNK_TOPIC,
    DIAGNOSTICS_TOPIC,
    ESTOP_TOPIC,
    HOME_SERVICE,
    PREVIEW_TOPIC,
    RESET_ESTOP_SERVICE,
    STATUS_TOPIC,
)
from dreamzero_ros.ros.robot_io import CommandOutputs, JointStateInputs
from dreamzero_ros.ros.runtime import (
    EMBODIMENT_PARAM,
    ROBOT_PARAM,
    Param,
    ParameterError,
    declare_parameters,
    run_node,
    stamp_to_seconds,
)

_DEFAULTS = ExecutorSettings()
PARAMS = (
    EMBODIMENT_PARAM,
    ROBOT_PARAM,
    Param("dry_run", False, "publish commands to the preview topic only, never to the robot"),
    Param("arm_on_start", False, "arm as soon as the first joint state arrives (simulation only!)"),
    Param("crossfade_steps", _DEFAULTS.crossfade_steps, "steps over which a new chunk fades in", minimum=0),
    Param("crossfade_source", _DEFAULTS.crossfade_source, "fade from the previous 'trajectory' or the 'commanded' point",
          choices=("trajectory", "commanded")),
    Param("smoothing", _DEFAULTS.smoothing, "2x upsample -> Savitzky-Golay -> downsample each chunk"),
    Param("savgol_window", _DEFAULTS.savgol_window, "Savitzky-Golay window (upsampled samples, odd)", minimum=3),
    Param("savgol_order", _DEFAULTS.savgol_order, "Savitzky-Golay polynomial order", minimum=0),
    Param("chunk_timeout", _DEFAULTS.chunk_timeout, "s: hold when the newest chunk's observation is older",
          minimum=0.01),
    Param("max_chunk_age", _DEFAULTS.max_chunk_age, "s: drop a chunk whose observation is older on arrival",
          minimum=0.01),
    Param("max_future", _DEFAULTS.max_future, "s: reject a chunk stamped further ahead (clock mismatch)",
          minimum=0.01),
    Param("arm_tolerance", _DEFAULTS.arm_tolerance,
          "rad|m: refuse arming while a non-effector joint is further from the last command (home first)",
          minimum=1e-6),
    Param("trajectory_lead", 0.1, "s: a streamed trajectory hands over to the new rows this long after "
          "sending (must exceed the publish-to-controller latency)", minimum=0.001, maximum=1.0),
    Param("trajectory_min_segment", 0.03, "s: rows closer than this after a trajectory's first point are left out",
          minimum=0.001, maximum=1.0),
    Param("status_rate", 2.0, "Hz of PolicyStatus and diagnostics", minimum=0.1, maximum=100.0),
)


class ActionExecutorNode(Node):
    def __init__(self) -> None:
        super().__init__("action_executor")
        p = declare_parameters(self, PARAMS)
        self.profile = load_robot(p["robot"], p["embodiment"])
        self.embodiment = self.profile.embodiment
        try:
            settings = ExecutorSettings(**{k: p[k] for k in ExecutorSettings.field_names()})
        except ValueError as exc:
            raise ParameterError(f"node action_executor: {exc}") from exc
        self.core = ExecutorCore(self.embodiment, settings)
        self.dry_run = p["dry_run"]
        self.arm_on_start = p["arm_on_start"]
        self._lock = threading.Lock()
        self.dt = self.embodiment.control.dt
        self._tick_times: collections.deque[float] = collections.deque(maxlen=max(10, int(2 * self.embodiment.control.rate_hz)))
        self.published = 0

        # Dry run: the preview topic only; no publisher on any robot topic exists at all.
        self._preview_pub = self.create_publisher(JointState, PREVIEW_TOPIC, qos.COMMANDS) if self.dry_run else None
        self._outputs = None if self.dry_run else CommandOutputs(self, self.profile, self.dt)
        self._streamer: TrajectoryStreamer | None = None
        if self._outputs is not None and self._outputs.streams:
            lower, upper, velocity = self.embodiment.limits_arrays()
            self._streamer = TrajectoryStreamer(lower, upper, velocity, lead=p["trajectory_lead"],
                                                min_segment=p["trajectory_min_segment"],
                                                crossfade_steps=settings.crossfade_steps)
        self._extra_pubs = {} if self.dry_run else {
            g.name: self.create_publisher(Twist, g.topic, qos.from_spec(g.qos)) for g in self.profile.extra_outputs
        }
        self.status_pub = self.create_publisher(PolicyStatus, STATUS_TOPIC, qos.STATUS)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, qos.STATUS)
        self.create_subscription(ActionChunk, CHUNK_TOPIC, self._on_chunk, qos.COMMANDS)
        self.joint_inputs = JointStateInputs(self, self.profile, self._on_joint_state)
        # E-stop on two subscriptions: the latched one hands a late-starting executor the last e-stop of a
        # transient-local publisher; the volatile one also matches default-QoS publishers (a teleop or
        # safety node's `create_publisher(Bool, topic, 10)`), which a transient-local reader refuses. Never
        # de-duplicated (qos.subscribe_latched_and_volatile may drop a sample): _on_estop is idempotent.
        self.create_subscription(Bool, ESTOP_TOPIC, self._on_estop, qos.LATCHED)
        self.create_subscription(Bool, ESTOP_TOPIC, self._on_estop, qos.COMMANDS)
        self.create_service(SetBool, ARM_SERVICE, self._on_arm)
        self.create_service(Trigger, RESET_ESTOP_SERVICE, self._on_reset)
        self.create_service(Trigger, HOME_SERVICE, self._on_home)
        self.create_timer(1.0 / p["status_rate"], self._publish_status)
        self.create_timer(self.dt, self._tick)
        self.get_logger().info(
            f"executor ready embodiment={self.embodiment.name} robot={self.profile.name} "
            f"rate={self.embodiment.control.rate_hz:g}Hz outputs="
            f"{[PREVIEW_TOPIC] if self.dry_run else [f'{c.type}@{c.topic}' for c in self.profile.commands]} "
            f"dry_run={self.dry_run} armed=false"
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _publish_command(self, command: Command, remaining: tuple | None = None) -> None:
        if self._outputs is not None:
            self._outputs.send(command.positions)
            if self._streamer is not None:
                now = self._now()
                traj = self._streamer.on_command((command.source, command.chunk_id), command.positions,
                                                 command.holding, now, remaining)
                if traj is not None:
                    if traj.end <= now:  # by construction never; JTC would reject it
                        self.get_logger().error(f"not sending a trajectory that ends in the past ({traj.end:.3f} s)")
                    else:
                        self._outputs.stream(traj)
            return
        # Dry run: the model-ordered command under the model's joint names.
        msg = JointState(name=list(self.core.joint_names), position=command.positions.tolist())
        msg.header.stamp = self.get_clock().now().to_msg()
        self._preview_pub.publish(msg)

    # -- inputs ---------------------------------------------------------------------------------

    def _on_chunk(self, msg: ActionChunk) -> None:
        raw = RawChunk(
            stamp=stamp_to_seconds(msg.header.stamp), joint_names=list(msg.joint_names), dt=msg.dt,
            horizon=msg.horizon, positions=msg.positions, chunk_id=msg.chunk_id,
            extras={g.name: (list(g.names), g.values) for g in msg.extra_groups},
        )
        with self._lock:
            verdict = self.core.on_chunk(raw, self._now())
        if not verdict.ok:
            # Not throttled: chunks arrive a few per second at most, and each refusal has its own reason.
            self.get_logger().warning(f"chunk {msg.chunk_id} not used: {verdict.message}")

    def _on_joint_state(self, names: list[str], positions: list[float], stamp: float) -> None:
        """A complete model-ordered state from the profile's topics; `stamp` is its oldest input's time."""
        with self._lock:
            verdict = self.core.on_joint_state(names, positions, stamp)
            if verdict.ok and self.arm_on_start and not self.core.armed and not self.core.estopped:
                self.arm_on_start = False
                armed = self.core.arm(self._now())
                if armed.ok:
                    self._stream_from_rest()
                self.get_logger().warning(f"arm_on_start: {armed.message}")
        if not verdict.ok:
            self.get_logger().warning(f"joint state ignored: {verdict.message}", throttle_duration_sec=2.0)

    def _on_estop(self, msg: Bool) -> None:
        if not msg.data:
            return  # only an explicit reset clears the latch
        with self._lock:
            if self.core.estopped:
                return  # already latched (a transient-local publisher reaches both subscriptions)
            self.core.estop(self._now(), "e-stop topic")
            command = self.core.tick(self._now())
        # Hold immediately rather than at the next tick.
        if command is not None:
            self._send(command)
        self.get_logger().error("E-STOP latched: holding; reset then arm to resume")

    def _stream_from_rest(self) -> None:
        """The trajectory controller holds where it was last sent (or where the robot is): stream from there."""
        if self._streamer is not None:
            start = self.core.last_sent if self.core.last_sent is not None else self.core.measured
            if start is not None:
                self._streamer.start(start)

    def _on_arm(self, req: SetBool.Request, resp: SetBool.Response):
        stop = None
        with self._lock:
            if req.data:
                verdict = self.core.arm(self._now())
                if verdict.ok:
                    self._stream_from_rest()
            else:
                # A trajectory controller would play the rest of what it has: tell it to hold first.
                held = self.core.commanded
                if self._streamer is not None and held is not None and (self.core.armed or self.core.state == "homing"):
                    stop = self._streamer.hold(held, self._now())
                verdict = self.core.disarm(self._now())
        if stop is not None and self._outputs is not None:
            self._outputs.stream(stop)
        resp.success, resp.message = verdict.ok, verdict.message
        # Two call sites: rclpy raises if one call site logs at two severities (it killed the node).
        if verdict.ok:
            self.get_logger().info(f"arm={req.data}: {verdict.message}")
        else:
            self.get_logger().warning(f"arm={req.data}: {verdict.message}")
        return resp

    def _on_home(self, _req: Trigger.Request, resp: Trigger.Response):
        with self._lock:
            verdict = self.core.home(self._now())
            if verdict.ok and self.core.state == "homing":
                self._stream_from_rest()
        resp.success, resp.message = verdict.ok, verdict.message
        if verdict.ok:
            self.get_logger().info(f"home: {verdict.message}")
        else:
            self.get_logger().warning(f"home refused: {verdict.message}")
        return resp

    def _on_reset(self, _req: Trigger.Request, resp: Trigger.Response):
        with self._lock:
            verdict = self.core.reset(self._now())
        resp.success, resp.message = verdict.ok, verdict.message
        self.get_logger().info(f"reset: {verdict.message}")
        return resp

    # -- the control tick -----------------------------------------------------------------------

    def _tick(self) -> None:
        with self._lock:
            command = self.core.tick(self._now())
            remaining = self.core.remaining() if self._streamer is not None else None
        if command is not None:
            self._send(command, remaining)

    def _send(self, command: Command, remaining: tuple | None = None) -> None:
        self._publish_command(command, remaining)
        for name, pub in self._extra_pubs.items():
            values = command.extras.get(name)
            twist = Twist()
            if values is not None and len(values) >= 2:
                twist.linear.x, twist.angular.z = float(values[0]), float(values[1])
            pub.publish(twist)
        self._tick_times.append(time.monotonic())
        self.published += 1

    def achieved_rate(self) -> float:
        times = self._tick_times
        if len(times) < 2 or time.monotonic() - times[-1] > 3 * self.dt:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def _publish_status(self) -> None:
        with self._lock:
            st = self.core.status()
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.node = "action_executor"
        msg.state, msg.reason = st.state, st.reason
        msg.chunks_produced = st.chunks_accepted
        msg.chunks_dropped = st.chunks_dropped
        msg.chunks_rejected = st.chunks_rejected
        msg.holds = st.holds
        msg.control_rate = self.achieved_rate()
        msg.armed, msg.estopped = st.armed, st.estopped
        msg.last_error = st.last_rejection
        self.status_pub.publish(msg)
        level = 2 if st.estopped or st.state == "error" else (1 if st.state == "holding" else 0)
        diag = DiagnosticArray()
        diag.header.stamp = msg.header.stamp
        diag.status.append(diagnostic_status("dreamzero: action_executor", level, st.reason or st.state, {
            "state": st.state, "armed": st.armed, "estopped": st.estopped, "dry_run": self.dry_run,
            "control_rate": msg.control_rate, "target_rate": self.embodiment.control.rate_hz, "ticks": st.ticks,
            "published": self.published, "holds": st.holds, "chunks_accepted": st.chunks_accepted,
            "chunks_rejected": st.chunks_rejected, "chunks_dropped": st.chunks_dropped, "chunks_late": st.chunks_late,
            "clock_jumps": st.clock_jumps, "last_rejection": st.last_rejection, "last_drop": st.last_drop,
        }))
        self.diag_pub.publish(diag)


def main(args=None) -> None:
    run_node(ActionExecutorNode, args)


if __name__ == "__main__":
    main()
