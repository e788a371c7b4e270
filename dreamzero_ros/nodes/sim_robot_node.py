"""sim_robot node: a MuJoCo `SimRobot` behind the topics a real robot driver offers.

It speaks a robot profile's wiring (core.robot_profile; default: the embodiment's own): every camera on its
topic as sensor_msgs/Image rgb8 or CompressedImage JPEG at its source size, all rendered at one simulated
instant and stamped identically; joint states on each of the profile's input topics under the robot's names,
in the robot's units (each input's value map inverted); joint commands on each command output (JointState,
Float64MultiArray, JointTrajectory; each output's value map inverted back to the model's joints); base
velocity as Twist where the profile has that output; and resets the episode on /sim/reset (std_srvs/Trigger). Physics keeps wall-clock time: each physics
tick advances it by the time elapsed since the previous one.

With the `task` parameter set (reach | push | push_forward | lift, see sim/tasks.py) the scene is the task scene and every
reset starts the next seeded episode of the task named by `task` then (it may change between resets): seed
`seed` first (the scene also starts in it), then seed + 1, ...; setting `seed` again jumps there. The reset
reply names the task, seed and instruction; /sim/task (std_msgs/String, JSON, latched) carries them at the
joint-state rate with the simulated time, whether the task's success predicate holds, where the cubes and the
pad are (what an evaluation harness or a privileged expert needs) and how many resets were served (so a client
whose reply DDS lost can tell whether its reset happened).

Threads: physics, joint states and commands run in the node's (single-threaded) executor; camera rendering
(the expensive part, ~8 ms per 480x640 view on one core) runs on a thread of its own, so it never holds up the
joint-state rate. A bad command is rejected with a throttled log and counted, never fatal.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dreamzero_ros.core.image import encode_compressed
from dreamzero_ros.core.robot_profile import (
    FLOAT64_ARRAY,
    GRIPPER_COMMAND,
    JOINT_STATE,
    JOINT_TRAJECTORY,
    CommandOutput,
    load_robot,
)
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.convert import diagnostic_status, rgb_to_image
from dreamzero_ros.ros.names import CLOCK_TOPIC, DIAGNOSTICS_TOPIC, SIM_RESET_SERVICE, SIM_TASK_TOPIC
from dreamzero_ros.ros.runtime import (
    EMBODIMENT_PARAM,
    ROBOT_PARAM,
    Param,
    declare_parameters,
    log_info,
    run_node,
    seconds_to_stamp,
    stamp_to_seconds,
)
from dreamzero_ros.sim.robot import BASE_VELOCITY_COMPONENTS, SimRobot  # its package picks headless GL first
from dreamzero_ros.sim.tasks import Episode, get_task, is_success, reset_episode, task_layout, tcp_position
from dreamzero_ros.sim.trajectory import JointTrajectory as Trajectory

PARAMS = (
    EMBODIMENT_PARAM,
    ROBOT_PARAM,
    Param("camera_rate", 10.0, "Hz at which all cameras are rendered, at one sim instant; 0 = no cameras",
          minimum=0.0, maximum=60.0),
    Param("joint_state_rate", 0.0, "Hz of joint states; 0 = the embodiment's control rate", minimum=0.0,
          maximum=1000.0),
    Param("physics_rate", 100.0, "Hz of physics ticks; each advances physics by the wall time since the last",
          minimum=10.0, maximum=1000.0),
    # Catching up is cheap (1 s of physics is ~20 ms of CPU) and keeps the arm where the commands put it after
    # a scheduling stall on busy cores; the cap only stops a suspended process from simulating minutes at once.
    Param("max_catch_up", 1.0, "s; a longer stall of the physics thread is dropped, not caught up (sim lags)",
          minimum=0.005, maximum=10.0),
    Param("base_command_timeout", 0.5, "s without a base velocity command before the base stops; 0 = never",
          minimum=0.0),
    Param("use_sim_clock", False, "publish /clock from simulated time and stamp messages with it"),
    Param("task", "", "simulated task whose seeded episodes /sim/reset starts ('' = the demo scene); "
                      "set at start to build the task scene", read_only=False),
    Param("seed", 0, "episode seed of the first reset (then +1 each reset; setting it jumps there)", minimum=0,
          read_only=False),
)


class SimRobotNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_robot")
        p = declare_parameters(self, PARAMS)
        self.profile = load_robot(p["robot"], p["embodiment"])
        self.embodiment = self.profile.embodiment
        self.robot = SimRobot(self.embodiment)
        self.task_scene = bool(p["task"])
        self.episode: Episode | None = None
        self._seed_param = p["seed"]
        self._next_seed = p["seed"]
        if self.task_scene:
            get_task(p["task"])  # an unknown task stops the node at start, naming the tasks
            self.robot = SimRobot(self.embodiment, layout=task_layout(self.embodiment))
            # The scene starts in the episode the first reset will also give (a reset before each run is usual).
            self.episode = reset_episode(self.robot, p["task"], p["seed"])
        else:
            self.robot = SimRobot(self.embodiment)
        self.max_catch_up: float = p["max_catch_up"]
        self.base_timeout: float = p["base_command_timeout"]
        self.use_sim_clock: bool = p["use_sim_clock"]
        self.joint_names = list(self.robot.joint_names)
        self._index = {name: i for i, name in enumerate(self.joint_names)}

        # Simulated time never runs backwards for the outside world: a reset restarts SimRobot.time at 0,
        # so `_sim_before_reset` carries what came before. Wall stamps = `_wall_offset` + total sim time.
        self._lock = threading.Lock()
        self._sim_before_reset = 0.0
        self._resets = 0  # a camera set rendered across a reset is dropped (see _publish_cameras)
        self._wall_offset = self._ros_now()  # re-anchored at the first physics tick
        self._last_tick = 0.0  # monotonic s of the last physics tick; 0 = not started (building took a while)
        self._start = time.monotonic()
        self._trajectory: Trajectory | None = None
        self._last_base_cmd = -math.inf
        self.counts = {"joint_states": 0, "camera_sets": 0, "camera_sets_skipped": 0, "physics_ticks": 0,
                       "accepted": 0, "rejected": 0}
        self._lagged = 0.0  # s of wall time physics skipped (stalls longer than max_catch_up)
        self._render_s = 0.0
        self._diag_last = (self._start, dict(self.counts), 0.0)

        self.joint_pubs = [(self.create_publisher(JointState, inp.topic, qos.from_spec(inp.qos)), inp)
                           for inp in self.profile.joint_states]
        self.camera_pubs = {
            c.name: (self.create_publisher(CompressedImage if c.compressed else Image, c.topic, qos.from_spec(c.qos)),
                     self.embodiment.camera(c.name).frame, c.compressed)
            for c in self.profile.cameras}
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, qos.STATUS)
        self.task_pub = self.create_publisher(String, SIM_TASK_TOPIC, qos.LATCHED) if self.task_scene else None
        # rclpy's time source subscribes to /clock best effort, depth 1; a reliable publisher matches it.
        self.clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, 10) if self.use_sim_clock else None

        self._action_servers: list = []  # GripperCommand servers (kept so they live as long as the node)
        for out in self.profile.commands:
            self._subscribe_command(out)
        base_groups = [g for g in self.embodiment.extra_actions if tuple(g.components) == BASE_VELOCITY_COMPONENTS]
        base_topics = [o.topic for o in self.profile.extra_outputs if o.name in {g.name for g in base_groups}]
        for topic in base_topics if self.robot.has_mobile_base else ():
            self.create_subscription(Twist, topic, self._on_twist, qos.COMMANDS)
        self.create_service(Trigger, SIM_RESET_SERVICE, self._on_reset)

        self.joint_state_rate = p["joint_state_rate"] or float(self.embodiment.control.rate_hz)
        self.camera_rate = p["camera_rate"]
        self.create_timer(1.0 / p["physics_rate"], self._advance)
        self.create_timer(1.0 / self.joint_state_rate, self._publish_joint_states)
        # Rendering (~10 ms a view on llvmpipe) runs on a thread of its own so physics and joint
        # states keep their rate; SimRobot.render_all snapshots the scene under its own lock.
        self._stop = threading.Event()
        self._render_thread: threading.Thread | None = None
        if self.camera_rate > 0 and self.camera_pubs:
            self.robot.render_all()  # create the GL contexts now: a GL problem stops the node at start
            self._render_thread = threading.Thread(target=self._render_loop, name="sim-render", daemon=True)
            self._render_thread.start()
        self.create_timer(1.0, self._diagnostics)
        self.get_logger().info(
            f"sim embodiment={self.embodiment.name} robot={self.profile.name} joints={len(self.joint_names)} "
            f"cameras={list(self.embodiment.camera_names)} camera_rate={self.camera_rate:g}Hz "
            f"joint_state_rate={self.joint_state_rate:g}Hz physics_rate={p['physics_rate']:g}Hz "
            f"commands={[f'{c.type}@{c.topic}' for c in self.profile.commands]} base={base_topics} "
            f"use_sim_clock={self.use_sim_clock}"
        )

    # -- time ---------------------------------------------------------------------------------------

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _sim_total(self) -> float:
        """s of simulated time since the node started (continuous across resets)."""
        return self._sim_before_reset + self.robot.time

    def _stamp_of(self, sim_total: float) -> float:
        return sim_total if self.use_sim_clock else self._wall_offset + sim_total

    def _publish(self, pub: Any, msg: Any) -> None:
        try:
            pub.publish(msg)
        except Exception:  # rclpy raises once SIGINT has shut the context down under a running callback
            if self.context.ok():
                raise

    # -- physics and joint states ---------------------------------------------------------------------

    def _advance(self) -> None:
        """Step physics by the wall time since the last tick, following any trajectory on the way."""
        with self._lock:
            now = time.monotonic()
            if not self._last_tick:  # sim time starts now, not when the node was built (GL warm-up etc.)
                self._last_tick = self._start = now
                self._wall_offset = self._ros_now() - self._sim_total()
                self._diag_last = (now, dict(self.counts), self._sim_total())
            dt, self._last_tick = now - self._last_tick, now
            if dt > self.max_catch_up:  # a long stall: skip it rather than freeze to catch up
                self._lagged += dt - self.max_catch_up
                self._wall_offset += dt - self.max_catch_up
                dt = self.max_catch_up
            if dt <= 0:
                return
            if self._trajectory is not None:
                traj = self._trajectory
                self.robot.set_targets(traj.joints, traj.sample(self._sim_total() + dt))
                if self._sim_total() + dt >= traj.end:
                    self._trajectory = None
            if self.base_timeout and now - self._last_base_cmd > self.base_timeout and self.robot.has_mobile_base:
                self.robot.set_base_velocity(0.0, 0.0)
            self.robot.step(dt)
            self.counts["physics_ticks"] += 1
            if self.clock_pub is not None:
                msg = Clock()
                seconds_to_stamp(self._sim_total(), msg.clock)
                self._publish(self.clock_pub, msg)

    def _publish_joint_states(self) -> None:
        """One JointState per profile input: the robot's names, values through the input's inverted map."""
        self._advance()  # state as of now, not of the last physics tick
        with self._lock:
            stamp = self._stamp_of(self._sim_total())
            q = self.robot.joint_positions()
            v = self.robot.joint_velocities()
        for pub, inp in self.joint_pubs:
            sl = inp.slice
            model_q = [q[j] for j in sl.joints]
            # d(robot)/d(model) = 1 / scale of the robot -> model map (inside its clip range).
            msg = JointState(name=list(sl.robot_joints), position=sl.invert_values(model_q).tolist(),
                             velocity=[v[j] / m.scale for j, m in zip(sl.joints, sl.maps, strict=True)])
            seconds_to_stamp(stamp, msg.header.stamp)
            self._publish(pub, msg)
        self.counts["joint_states"] += 1
        if self.task_pub is not None:
            self._publish_task(stamp)

    def _publish_task(self, stamp: float) -> None:
        with self._lock:
            episode = self.episode
            if episode is None:
                return
            success = is_success(self.robot, episode)
            objects = {name: self.robot.body_position(name).round(4).tolist() for name in episode.objects}
            tcp = tcp_position(self.robot).round(4).tolist()
            episode_time = self.robot.time
            resets = self._resets
        # `resets` (served so far) tells a client whose reset reply DDS lost whether its reset happened.
        state = {"task": episode.task, "seed": episode.seed, "instruction": episode.instruction, "resets": resets,
                 "success": success, "stamp": round(stamp, 4), "episode_time": round(episode_time, 4),
                 "objects": objects, "target": episode.target, "tcp": tcp, "pad": list(episode.pad)}
        self._publish(self.task_pub, String(data=json.dumps(state)))

    # -- cameras (own thread) ------------------------------------------------------------------------

    def _render_loop(self) -> None:
        period = 1.0 / self.camera_rate
        due = time.monotonic()
        while not self._stop.is_set():
            due += period
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            if time.monotonic() - due > period:
                due = time.monotonic()  # fell behind by a whole frame: skip, do not burst to catch up
            try:
                self._publish_cameras()
            except Exception as exc:  # noqa: BLE001 - a failed frame is logged; the thread keeps the camera alive
                if not self.context.ok():
                    return
                self.get_logger().error(f"camera render failed: {exc}", throttle_duration_sec=5.0)

    def _publish_cameras(self) -> None:
        if not any(pub.get_subscription_count() for pub, _, _ in self.camera_pubs.values()):
            self.counts["camera_sets_skipped"] += 1  # nobody is looking: rendering is most of this node's CPU
            return
        t0 = time.perf_counter()
        with self._lock:
            resets, before = self._resets, self._sim_before_reset
        # SimRobot snapshots every view's scene at one instant, then draws without holding up physics.
        sim_time, images = self.robot.render_all()
        with self._lock:
            if self._resets != resets:
                # A reset came between: the snapshot's time belongs to one episode and the offset maybe to the
                # next (a set stamped a whole episode ahead of now, which made the executor reject the chunks).
                self.counts["camera_sets_skipped"] += 1
                return
            stamp = self._stamp_of(before + sim_time)
        for name, (pub, frame, compressed) in self.camera_pubs.items():
            self._publish(pub, self._compressed(images[name], stamp, frame) if compressed
                          else rgb_to_image(images[name], stamp, frame))
        self._render_s += time.perf_counter() - t0
        self.counts["camera_sets"] += 1

    # -- commands ------------------------------------------------------------------------------------

    def _reject(self, what: str, reason: str) -> None:
        self.counts["rejected"] += 1
        self.get_logger().warning(f"{what} rejected ({self.counts['rejected']} so far): {reason}",
                                  throttle_duration_sec=2.0)

    def _set(self, what: str, names: list[str], positions: list[float]) -> None:
        unknown = [n for n in names if n not in self._index]
        if unknown:
            return self._reject(what, f"unknown joints {unknown}; joints are {self.joint_names}")
        if len(names) != len(positions):
            return self._reject(what, f"{len(names)} joint names but {len(positions)} positions")
        try:
            with self._lock:
                self.robot.set_targets(names, positions)
                if self._trajectory is not None and set(names) & set(self._trajectory.joints):
                    self._trajectory = None  # the latest command wins (another output's trajectory runs on)
        except ValueError as exc:  # non-finite values
            return self._reject(what, str(exc))
        self.counts["accepted"] += 1

    @staticmethod
    def _compressed(rgb: np.ndarray, stamp: float, frame: str) -> CompressedImage:
        msg = CompressedImage()
        seconds_to_stamp(stamp, msg.header.stamp)
        msg.header.frame_id = frame
        msg.format, msg.data = encode_compressed(rgb, "jpeg")
        return msg

    def _subscribe_command(self, out: CommandOutput) -> None:
        """Listen where the profile's output publishes, as the robot's controller would."""
        if out.type == GRIPPER_COMMAND:
            self._serve_gripper(out)
            return
        msg_type = {FLOAT64_ARRAY: Float64MultiArray, JOINT_TRAJECTORY: JointTrajectory, JOINT_STATE: JointState}[out.type]
        handler = {FLOAT64_ARRAY: self._on_forward_position, JOINT_TRAJECTORY: self._on_trajectory,
                   JOINT_STATE: self._on_joint_state_command}[out.type]
        self.create_subscription(msg_type, out.topic, lambda m, o=out: handler(o, m), qos.from_spec(out.qos))

    def _serve_gripper(self, out: CommandOutput) -> None:
        """A GripperCommand action server where the profile's gripper server is (franka_gripper's
        ~/gripper_action): each goal's position becomes the finger target; it succeeds at once."""
        try:  # apt's control_msgs on a robot computer, the tests' stand-in in the repo venvs
            from control_msgs.action import GripperCommand
        except ImportError:
            self.get_logger().warning(f"{out.type} output {out.topic} is not simulated (control_msgs is not "
                                      f"installed); {list(out.slice.joints)} hold their position")
            return
        from rclpy.action import ActionServer

        def execute(goal_handle):
            position = float(goal_handle.request.command.position)
            mapped = self._to_model("GripperCommand", out, None, [position])
            if mapped is not None:
                self._set("GripperCommand", *mapped)
            goal_handle.succeed()
            return GripperCommand.Result(position=position, reached_goal=mapped is not None)

        self._action_servers.append(ActionServer(self, GripperCommand, out.topic, execute))

    def _to_model(self, what: str, out: CommandOutput, names: list[str] | None,
                  values: list[float]) -> tuple[list[str], list[float]] | None:
        """Robot names/values of one output -> model joints and values (the output's map inverted)."""
        sl = out.slice
        if names is None or not names:  # positional (Float64MultiArray, or a JointState without names)
            names = list(sl.robot_joints)
        if len(names) != len(values):
            self._reject(what, f"{out.topic}: {len(names)} joint names but {len(values)} positions")
            return None
        index = {r: k for k, r in enumerate(sl.robot_joints)}
        unknown = [n for n in names if n not in index]
        if unknown:
            self._reject(what, f"{out.topic}: unknown joints {unknown}; this output's joints are {list(sl.robot_joints)}")
            return None
        model = [sl.joints[index[n]] for n in names]
        return model, [float(sl.maps[index[n]].invert(v)) for n, v in zip(names, values, strict=True)]

    def _on_forward_position(self, out: CommandOutput, msg: Float64MultiArray) -> None:
        if len(msg.data) != len(out.slice.joints):
            return self._reject("Float64MultiArray", f"{out.topic}: expected {len(out.slice.joints)} values in order "
                                                     f"{list(out.slice.robot_joints)}, got {len(msg.data)}")
        mapped = self._to_model("Float64MultiArray", out, None, list(msg.data))
        if mapped is not None:
            self._set("Float64MultiArray", *mapped)

    def _on_joint_state_command(self, out: CommandOutput, msg: JointState) -> None:
        mapped = self._to_model("JointState", out, list(msg.name), list(msg.position))
        if mapped is not None:
            self._set("JointState", *mapped)

    def _on_trajectory(self, out: CommandOutput, msg: JointTrajectory) -> None:
        robot_names = list(msg.joint_names)
        mapped = self._to_model("JointTrajectory", out, robot_names, [0.0] * len(robot_names))
        if mapped is None:
            return
        names = mapped[0]
        index = {r: k for k, r in enumerate(out.slice.robot_joints)}
        maps = [out.slice.maps[index[n]] for n in robot_names]
        with self._lock:
            if not msg.points:  # joint_trajectory_controller: an empty trajectory means hold where you are
                self._trajectory = None
                self.counts["accepted"] += 1
                return
            targets = self.robot.targets()
            # As joint_trajectory_controller: points are timed from header.stamp (zero = on receipt);
            # from now until a future first point the targets move from where they are to it.
            now = self._sim_total()
            stamp = stamp_to_seconds(msg.header.stamp)
            start = now if stamp == 0.0 else stamp - self._stamp_of(0.0)
            shift = max(start - now, 0.0)
            try:
                self._trajectory = Trajectory.build(
                    tuple(names), min(start, now), np.array([targets[n] for n in names]),
                    [stamp_to_seconds(pt.time_from_start) + shift for pt in msg.points],
                    [[float(m.invert(x)) for m, x in zip(maps, pt.positions, strict=False)] for pt in msg.points])
            except ValueError as exc:
                return self._reject("JointTrajectory", str(exc))
        self.counts["accepted"] += 1

    def _on_twist(self, msg: Twist) -> None:
        try:
            with self._lock:
                self.robot.set_base_velocity(float(msg.linear.x), float(msg.angular.z))
                self._last_base_cmd = time.monotonic()
        except ValueError as exc:
            return self._reject("Twist", str(exc))
        self.counts["accepted"] += 1

    def _start_episode(self, task: str) -> Episode:
        seed = int(self.get_parameter("seed").value)
        if seed != self._seed_param:  # the user set a new seed: start there
            self._seed_param = self._next_seed = seed
        self.episode = reset_episode(self.robot, task, self._next_seed)
        self._next_seed += 1
        return self.episode

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        task = str(self.get_parameter("task").value)
        if task and not self.task_scene:
            response.success = False
            response.message = (f"task {task!r}: this sim_robot runs the demo scene; start it with the task "
                                "parameter set to build the task scene")
            return response
        with self._lock:
            self._sim_before_reset += self.robot.time
            self._resets += 1
            self._trajectory = None
            if task:
                try:
                    episode = self._start_episode(task)
                except ValueError as exc:
                    self.robot.reset()
                    self.episode = None
                    response.success, response.message = False, f"{exc}; reset to home instead"
                    return response
            else:
                self.robot.reset()
                self.episode = None
        if task:
            text = f"task={episode.task} seed={episode.seed} instruction={episode.instruction!r}"
            self.get_logger().info(f"episode reset: {text}")
            response.success, response.message = True, f"{self.embodiment.name}: {text}"
        else:
            self.get_logger().info("episode reset: joints at home, objects at their start")
            response.success, response.message = True, f"{self.embodiment.name}: reset to home"
        return response

    # -- rates ---------------------------------------------------------------------------------------

    def rates(self, since: tuple[float, dict[str, int], float]) -> dict[str, float]:
        """Achieved rates (Hz) and the physics real-time factor since `since` = (monotonic s, counts, sim s)."""
        t0, counts0, sim0 = since
        wall = max(time.monotonic() - t0, 1e-9)
        with self._lock:
            sim = self._sim_total()
        return {"joint_state_hz": (self.counts["joint_states"] - counts0["joint_states"]) / wall,
                "camera_hz": (self.counts["camera_sets"] - counts0["camera_sets"]) / wall,
                "physics_hz": (self.counts["physics_ticks"] - counts0["physics_ticks"]) / wall,
                "real_time_factor": (sim - sim0) / wall}

    def _diagnostics(self) -> None:
        rates = self.rates(self._diag_last)
        with self._lock:
            self._diag_last = (time.monotonic(), dict(self.counts), self._sim_total())
        low = rates["joint_state_hz"] < 0.9 * self.joint_state_rate or rates["real_time_factor"] < 0.9
        task = {}
        if self.episode is not None:
            with self._lock:
                success = is_success(self.robot, self.episode)
            task = {"task": self.episode.task, "seed": self.episode.seed, "instruction": self.episode.instruction,
                    "task_success": success}
        values = {**rates, **task, "joint_state_target_hz": self.joint_state_rate, "camera_target_hz": self.camera_rate,
                  "render_ms_mean": 1e3 * self._render_s / max(self.counts["camera_sets"], 1),
                  "camera_sets_skipped": self.counts["camera_sets_skipped"],
                  "lagged_s": self._lagged, "commands_accepted": self.counts["accepted"],
                  "commands_rejected": self.counts["rejected"]}
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status.append(diagnostic_status("dreamzero: sim_robot", 1 if low else 0,
                                            "below target rate" if low else "ok", values))
        self._publish(self.diag_pub, msg)

    def close(self) -> None:
        self._stop.set()
        if self._render_thread is not None:
            self._render_thread.join(timeout=5.0)
        rates = self.rates((self._start, dict.fromkeys(self.counts, 0), 0.0))
        text = " ".join(f"{k}={v:.3g}" for k, v in rates.items()) + f" lagged_s={self._lagged:.3g} " + " ".join(
            f"{k}={v}" for k, v in self.counts.items())
        log_info(self, text)
        self.robot.close()


def main(args=None) -> None:
    run_node(SimRobotNode, args)


if __name__ == "__main__":
    main()
