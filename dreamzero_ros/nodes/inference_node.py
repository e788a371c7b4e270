"""inference node: stitched frames + joint states + instruction -> ActionChunks.

A thin shell over core.inference_loop.InferenceLoop (what/when to request) and a PolicyBackend
(local model, remote server, scripted, expert). Generation runs on its own worker thread, never in a
subscription callback, so inputs keep flowing while the model thinks; each ActionChunk is
stamped with the observation time it was conditioned on.

Diagnostics (/diagnostics, "dreamzero: inference") carry, besides the PolicyStatus numbers, the
input counters and what arrived during the last generation (generation_s,
joint_states_during_generation, frames_during_generation for chunk generation_chunk_id): the
evidence that callbacks are not blocked while the backend works; and the episode counter.
"""

from __future__ import annotations

import json
import threading
import time
import traceback

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from dreamzero_msgs.msg import ActionChunk, ActionGroup, PolicyStatus
from dreamzero_msgs.srv import SetInstruction
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from dreamzero_ros.backends import BACKEND_KINDS, make_backend
from dreamzero_ros.backends.base import BackendError, Observation
from dreamzero_ros.core.inference_loop import (
    InferenceLoop,
    InferenceSettings,
    InstructionError,
    validate_instruction,
)
from dreamzero_ros.core.robot_profile import load_robot
from dreamzero_ros.core.stitch import stale_views_of
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.convert import CameraViews, diagnostic_status, image_to_rgb, rgb_to_image
from dreamzero_ros.ros.names import (
    CHUNK_TOPIC,
    DIAGNOSTICS_TOPIC,
    INSTRUCTION_TOPIC,
    PREDICTED_VIDEO_TOPIC,
    RESET_EPISODE_SERVICE,
    SET_INSTRUCTION_SERVICE,
    SIM_TASK_TOPIC,
    STATUS_TOPIC,
    STITCHED_TOPIC,
)
from dreamzero_ros.ros.robot_io import JointStateInputs
from dreamzero_ros.ros.runtime import (
    EMBODIMENT_PARAM,
    ROBOT_PARAM,
    Param,
    ParameterError,
    declare_parameters,
    run_node,
    seconds_to_stamp,
    stamp_to_seconds,
)

PARAMS = (
    EMBODIMENT_PARAM,
    ROBOT_PARAM,
    Param("backend", "local", "policy backend", choices=BACKEND_KINDS),
    Param("server", "", "policy server URL (remote backend), e.g. ws://127.0.0.1:8000"),
    Param("token", "", "shared token for the policy server (remote backend)"),
    Param("checkpoint", "", "checkpoint directory (local backend); empty = tiny preset, random weights"),
    Param("instruction", "", "initial instruction; empty = wait for one"),
    Param("seed", 0, "sampling seed (local backend)", minimum=0),
    Param("torch_threads", 1, "torch CPU threads; keep low on small machines so 30 Hz loops keep their rate",
          minimum=1, maximum=256),
    Param("publish_predicted_video", False, "decode and publish the model's predicted frames"),
    Param("max_frame_age", 1.0, "s: a stitched frame older than this is stale", minimum=0.01),
    Param("max_state_age", 0.5, "s: a joint state older than this is stale", minimum=0.01),
    Param("latency_margin", 0.25, "s: request the next chunk this long before it is needed", minimum=0.0),
    Param("execute_steps", 0, "control steps between the observations of consecutive chunks where latency allows: "
          "0 = the checkpoint's training cadence (none recorded: as late as latency allows); the horizon = as late "
          "as latency allows", minimum=0),
    Param("status_rate", 2.0, "Hz of PolicyStatus and diagnostics", minimum=0.1, maximum=100.0),
)


class InferenceNode(Node):
    def __init__(self) -> None:
        super().__init__("inference")
        p = declare_parameters(self, PARAMS)
        if p["instruction"]:
            try:
                validate_instruction(p["instruction"])
            except InstructionError as exc:
                raise ParameterError(f"node {self.get_name()}: parameter 'instruction': {exc}") from exc
        self.profile = load_robot(p["robot"], p["embodiment"])
        self.embodiment = self.profile.embodiment
        self.backend_kind = p["backend"]
        self.publish_video = p["publish_predicted_video"]
        if self.backend_kind == "local":
            import torch

            torch.set_num_threads(p["torch_threads"])
        self.backend = self._make_backend(p)
        # 0: follow the backend's cadence (a local checkpoint's, or a remote server's once connected)
        self.cadence_from_backend = not p["execute_steps"]
        try:
            self.loop = InferenceLoop(
                self.embodiment,
                InferenceSettings(max_frame_age=p["max_frame_age"], max_state_age=p["max_state_age"],
                                  latency_margin=p["latency_margin"],
                                  execute_steps=p["execute_steps"] or self.backend.execute_steps),
            )
        except ValueError as exc:
            source = "the checkpoint's execute_steps" if self.cadence_from_backend else "parameter 'execute_steps'"
            raise ParameterError(f"node {self.get_name()}: {source}: {exc}") from exc
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reset_pending = False
        self.chunk_id = 0
        self.superseded_chunks = 0
        self.last_error = ""
        self.received_frames = 0
        self.received_states = 0
        self.generating = False
        self.last_generation: dict[str, float | int] = {
            "generation_chunk_id": 0, "generation_s": 0.0, "joint_states_during_generation": 0,
            "frames_during_generation": 0,
        }

        self.chunk_pub = self.create_publisher(ActionChunk, CHUNK_TOPIC, qos.COMMANDS)
        self.status_pub = self.create_publisher(PolicyStatus, STATUS_TOPIC, qos.STATUS)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, qos.STATUS)
        self.video_pub = self.create_publisher(Image, PREDICTED_VIDEO_TOPIC, qos.FRAMES) if self.publish_video else None
        self.create_subscription(Image, STITCHED_TOPIC, self._on_frame, qos.FRAMES)
        self.joint_inputs = JointStateInputs(self, self.profile, self._on_joint_state, self._on_bad_joint_state)
        # Latched (the operator commands) and plain publishers (`ros2 topic pub`) are both heard.
        qos.subscribe_latched_and_volatile(self, String, INSTRUCTION_TOPIC, self._on_instruction_msg)
        self.views = None
        if self.backend_kind == "remote":
            # The wire protocol carries per-camera images (the server stitches them itself): the
            # stitcher publishes them with its frames (bringup sets its publish_views).
            self.views = CameraViews(self, self.embodiment)
        if self.backend.uses_sim_task:  # the scripted expert acts on the simulator's privileged episode state
            self.create_subscription(String, SIM_TASK_TOPIC, self._on_sim_task, qos.LATCHED)
        self.create_service(SetInstruction, SET_INSTRUCTION_SERVICE, self._on_set_instruction)
        self.create_service(Trigger, RESET_EPISODE_SERVICE, self._on_reset)
        self.create_timer(1.0 / p["status_rate"], self._publish_status)

        if p["instruction"]:
            self._apply_instruction(p["instruction"])
        self._worker = threading.Thread(target=self._work, name="inference-worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"inference ready embodiment={self.embodiment.name} robot={self.profile.name} backend={self.backend_kind} "
            f"horizon={self.embodiment.control.horizon} rate={self.embodiment.control.rate_hz:g}Hz "
            f"execute_steps={self.loop.settings.execute_steps or 'latency'}"
        )

    def _make_backend(self, p: dict):
        """The policy backend; a bad option stops the node with the parameter named (exit 2)."""
        kind = self.backend_kind
        try:
            return make_backend(
                kind, self.embodiment, checkpoint=p["checkpoint"] or None, server=p["server"] or None,
                token=p["token"] or None, seed=p["seed"], decode_video=self.publish_video,
            )
        except (ValueError, TypeError, OSError, RuntimeError) as exc:
            # Name the option that most likely caused it: the checkpoint or the server URL, else the kind.
            name = "checkpoint" if kind == "local" and p["checkpoint"] else "server" if kind == "remote" else "backend"
            raise ParameterError(
                f"node {self.get_name()}: parameter '{name}' ({p[name]!r}): cannot create the {kind} backend: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    # -- callbacks (fast: convert and hand to the core) ----------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_frame(self, msg: Image) -> None:
        try:
            frame = image_to_rgb(msg)
        except ValueError as exc:
            self.get_logger().warning(f"stitched frame rejected: {exc}", throttle_duration_sec=5.0)
            return
        stamp = msg.header.stamp
        with self._lock:
            self.loop.on_frame(stamp_to_seconds(stamp), frame, stamp.sec * 1_000_000_000 + stamp.nanosec,
                               stale_views_of(msg.header.frame_id))
            self.received_frames += 1
        self._wake.set()

    def _on_joint_state(self, names: list[str], positions: list[float], stamp: float) -> None:
        """A complete model-ordered state from the profile's topics; `stamp` is its oldest input's time."""
        with self._lock:
            self.loop.on_joint_state(names, positions, stamp)
            self.received_states += 1

    def _on_bad_joint_state(self, problem: str) -> None:
        with self._lock:
            self.loop.state_invalid(problem)
            self.received_states += 1

    def _apply_instruction(self, text: str) -> str:
        with self._lock:
            changed = self.loop.set_instruction(text)
            if changed:
                self._reset_pending = True
            instruction = self.loop.instruction
        self._wake.set()
        self.get_logger().info(f"instruction={instruction!r} changed={changed}")
        return instruction

    def _on_instruction_msg(self, msg: String) -> None:
        try:
            self._apply_instruction(msg.data)
        except InstructionError as exc:
            self.last_error = f"instruction refused: {exc}"
            self.get_logger().error(self.last_error)

    def _on_sim_task(self, msg: String) -> None:
        try:
            task = json.loads(msg.data)
        except json.JSONDecodeError as exc:
            self.get_logger().warning(f"{SIM_TASK_TOPIC}: not JSON ({exc})", throttle_duration_sec=5.0)
            return
        self.backend.set_sim_task(task)

    def _on_set_instruction(self, req: SetInstruction.Request, resp: SetInstruction.Response):
        try:
            text = self._apply_instruction(req.instruction)
        except InstructionError as exc:
            resp.success, resp.message = False, str(exc)
            return resp
        resp.success, resp.message = True, f"instruction set to {text!r}"
        return resp

    def _on_reset(self, _req: Trigger.Request, resp: Trigger.Response):
        with self._lock:
            self.loop.reset()
            self._reset_pending = True
        resp.success, resp.message = True, "episode reset"
        return resp

    # -- the worker: the only place that calls the backend --------------------------------------

    def _adopt_backend_cadence(self) -> None:
        """A remote server says its checkpoint's cadence only once connected: adopt it (under the lock)."""
        steps = self.backend.execute_steps
        if self.cadence_from_backend and steps != self.loop.settings.execute_steps:
            try:
                self.loop.set_execute_steps(steps)
            except ValueError as exc:
                self.get_logger().error(f"backend's execute_steps refused, keeping the schedule as it was: {exc}",
                                        throttle_duration_sec=30.0)
                return
            self.get_logger().info(f"execute_steps={steps or 'latency'} (the {self.backend_kind} backend's)")

    def _work(self) -> None:
        while not self._stop.is_set():
            now = self._now()
            with self._lock:
                self._adopt_backend_cadence()
                reset = self._reset_pending
                self._reset_pending = False
                instruction = self.loop.instruction
                request = self.loop.take_request(now, self._views_blocker(now)) if self.loop.due(now) else None
                wait = min(0.1, self.loop.next_request_time() - now)
            if reset and self._backend_call(lambda text=instruction: self._reset_backend(text)) is None:
                with self._lock:
                    self._reset_pending = True  # retried on the next pass; no chunk of the old episode meanwhile
                continue
            if request is None:
                self._wake.wait(timeout=wait if wait > 0 else 0.05)
                self._wake.clear()
                continue
            views = self.views.take(request.stamp) if self.views is not None else None
            observation = Observation(stamp=request.stamp, frames=request.frames, state=request.state, views=views)
            with self._lock:
                self.generating = True
                states0, frames0, t0 = self.received_states, self.received_frames, time.monotonic()
            result = self._backend_call(lambda obs=observation: self.backend.infer(obs))
            with self._lock:
                self.generating = False
                generation = {"generation_s": time.monotonic() - t0,
                              "joint_states_during_generation": self.received_states - states0,
                              "frames_during_generation": self.received_frames - frames0}
                if result is None:
                    continue
                if self._reset_pending:
                    self.superseded_chunks += 1  # instruction changed mid-generation: the old episode's chunk
                    continue
                latency = self.loop.record_chunk(request.stamp, self._now())
                chunk_id = self.chunk_id = self.chunk_id + 1
                self.last_generation = {"generation_chunk_id": chunk_id, **generation}
            self._publish_chunk(result, request, latency, instruction, chunk_id)

    def _reset_backend(self, instruction: str) -> bool:
        """New episode on the backend; the instruction is passed on only once there is one."""
        if instruction:
            self.backend.set_instruction(instruction)
        self.backend.reset()
        return True

    def _views_blocker(self, now: float) -> str:
        return self.views.blocker(now, self.loop.settings.max_frame_age) if self.views is not None else ""

    def _backend_call(self, fn):
        try:
            out = fn()
            self.last_error = ""
            return out
        except BackendError as exc:
            self.last_error = str(exc)
            self.get_logger().error(f"backend error: {exc}", throttle_duration_sec=2.0)
        except Exception as exc:  # noqa: BLE001 - a model bug must not kill the node; it reports and retries
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"backend failed: {traceback.format_exc()}", throttle_duration_sec=2.0)
        time.sleep(0.2)
        return None

    def _publish_chunk(self, result, request, latency: float, instruction: str, chunk_id: int) -> None:
        msg = ActionChunk()
        stamp = request.stamp
        if request.stamp_ns is not None:  # exactly the frame's stamp: consumers match chunks to frames by it
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(request.stamp_ns, 1_000_000_000)
        else:
            seconds_to_stamp(stamp, msg.header.stamp)
        msg.header.frame_id = self.embodiment.name
        msg.chunk_id = chunk_id
        msg.instruction = instruction
        msg.joint_names = list(result.joint_names)
        msg.dt = float(result.dt)
        msg.horizon = int(result.positions.shape[0])
        msg.positions = np.asarray(result.positions, dtype=np.float64).ravel().tolist()
        for name, values in result.extras.items():
            group = next(g for g in self.embodiment.extra_actions if g.name == name)
            msg.extra_groups.append(ActionGroup(name=name, names=list(group.components),
                                                values=np.asarray(values, dtype=np.float64).ravel().tolist()))
        msg.inference_latency = float(latency)
        self.chunk_pub.publish(msg)
        if self.video_pub is not None and result.predicted_frames is not None:
            period = 1.0 / self.embodiment.video.fps
            for k, frame in enumerate(result.predicted_frames):
                self.video_pub.publish(rgb_to_image(frame, stamp + (k + 1) * period, "predicted"))

    # -- status ------------------------------------------------------------------------------

    def _publish_status(self) -> None:
        now = self._now()
        with self._lock:
            last, mean, p95 = self.loop.latency_stats()
            blocker = self.loop.blocker(now) or self._views_blocker(now)
            msg = PolicyStatus()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.node = "inference"
            msg.backend = self.backend_kind
            msg.backend_connected = bool(self.backend.connected)
            if self.last_error:
                msg.state, msg.reason = PolicyStatus.STATE_ERROR, self.last_error
            elif blocker:
                msg.state, msg.reason = PolicyStatus.STATE_IDLE, blocker
            else:
                msg.state = PolicyStatus.STATE_RUNNING
            msg.latency_last, msg.latency_mean, msg.latency_p95 = last, mean, p95
            msg.chunks_produced = self.loop.chunks_produced
            msg.chunks_dropped = self.loop.late_chunks + self.superseded_chunks
            msg.stale_inputs = self.loop.stale_inputs
            msg.control_rate = self.loop.chunk_rate(now)
            msg.last_error = self.last_error
            values = {
                "received_frames": self.received_frames,
                "received_joint_states": self.received_states,
                "late_chunks": self.loop.late_chunks,
                "superseded_chunks": self.superseded_chunks,
                "episode": self.loop.episode,
                "instruction": self.loop.instruction,
                "generating": self.generating,
                **self.last_generation,
            }
        self.status_pub.publish(msg)
        level = 2 if msg.state == PolicyStatus.STATE_ERROR else (1 if msg.state == PolicyStatus.STATE_IDLE else 0)
        diag = DiagnosticArray()
        diag.header.stamp = msg.header.stamp
        diag.status.append(diagnostic_status("dreamzero: inference", level, msg.reason or msg.state, {
            "backend": msg.backend, "backend_connected": msg.backend_connected, "latency_last": last,
            "latency_mean": mean, "latency_p95": p95, "chunks_produced": msg.chunks_produced,
            "stale_inputs": msg.stale_inputs, "chunk_rate": msg.control_rate, **values,
        }))
        self.diag_pub.publish(diag)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=2.0)
        self.backend.close()  # also interrupts a remote request the worker may still be waiting on
        self._worker.join(timeout=3.0)


def main(args=None) -> None:
    run_node(InferenceNode, args)


if __name__ == "__main__":
    main()
