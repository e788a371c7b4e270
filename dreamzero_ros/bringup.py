"""The node plan for an embodiment: which nodes run, with which parameters and remappings.

One function, `node_plan`, decides it. `launch/dreamzero.launch.py` turns the plan into
launch_ros Nodes on a full ROS install; `run_plan` starts the same plan as processes where only
the pip wheels are installed (`dreamzero bringup`), streaming logs with node prefixes and
stopping everything on Ctrl-C or when a required node dies.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dreamzero_ros.core.robot_profile import load_robot
from dreamzero_ros.processes import ManagedProcess, ProcessGroup
from dreamzero_ros.ros_env import ros_environment

BACKENDS = ("local", "remote", "scripted")

# Well-known names shared by the nodes, the CLI and the tests.
STITCHED_TOPIC = "/dreamzero/stitched_image"
CHUNK_TOPIC = "/dreamzero/action_chunk"
INSTRUCTION_TOPIC = "/dreamzero/instruction"
PREDICTED_VIDEO_TOPIC = "/dreamzero/predicted_video"
STATUS_TOPIC = "/dreamzero/status"
ESTOP_TOPIC = "/dreamzero/estop"
PREVIEW_TOPIC = "/dreamzero/command_preview"
SET_INSTRUCTION_SERVICE = "/dreamzero/set_instruction"
RESET_EPISODE_SERVICE = "/dreamzero/reset_episode"
ARM_SERVICE = "/dreamzero/arm"
RESET_ESTOP_SERVICE = "/dreamzero/reset_estop"
HOME_SERVICE = "/dreamzero/home"
SIM_RESET_SERVICE = "/sim/reset"


@dataclass(frozen=True, slots=True)
class BringupOptions:
    """What an operator chooses at bringup (the launch arguments)."""

    embodiment: str = "franka_droid"
    robot: str = ""  # robot profile name/path (config/robots/); "" = the embodiment's own wiring (sim default)
    backend: str = "local"  # local | remote | scripted
    server: str = ""  # ws://host:port for the remote backend
    checkpoint: str = ""  # checkpoint dir for the local backend ("" = tiny random weights)
    sim: bool = True
    dry_run: bool = False
    record: str = ""  # path of an .mcap to record to ("" = no recorder)
    instruction: str = ""  # initial instruction ("" = wait for one)
    predicted_video: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {self.backend!r}")
        if self.backend == "remote" and not self.server:
            raise ValueError("server: the remote backend needs --server ws://host:port")


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of the plan; `executable` is the console script, `module` its python -m path."""

    name: str
    executable: str
    module: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    required: bool = True


def node_plan(options: BringupOptions) -> list[NodeSpec]:
    """The nodes to start for `options`, in start order (validates the profile and embodiment first).

    With a robot profile every node gets `robot` (and the embodiment the profile names); a profile on
    sim time gives every node use_sim_time and makes the simulator publish /clock.
    """
    profile = load_robot(options.robot, options.embodiment)  # fail early, naming the file and field
    embodiment = profile.embodiment.source if options.robot else options.embodiment
    common: dict[str, Any] = {"embodiment": embodiment, "robot": options.robot}
    sim_params: dict[str, Any] = dict(common)
    if profile.use_sim_time:
        common["use_sim_time"] = True
        sim_params["use_sim_clock"] = True
    plan: list[NodeSpec] = []
    if options.sim:
        plan.append(NodeSpec("sim_robot", "sim_robot", "dreamzero_ros.nodes.sim_robot_node", sim_params))
    plan.append(NodeSpec("camera_stitcher", "camera_stitcher", "dreamzero_ros.nodes.camera_stitcher_node", dict(common)))
    plan.append(
        NodeSpec(
            "inference",
            "inference",
            "dreamzero_ros.nodes.inference_node",
            {
                **common,
                "backend": options.backend,
                "server": options.server,
                "checkpoint": options.checkpoint,
                "instruction": options.instruction,
                "publish_predicted_video": options.predicted_video,
            },
        )
    )
    plan.append(
        NodeSpec("action_executor", "action_executor", "dreamzero_ros.nodes.action_executor_node",
                 {**common, "dry_run": options.dry_run})
    )
    if options.record:
        # The recorder adds the profile's camera, joint-state, command and extra topics itself.
        plan.append(
            NodeSpec("recorder", "recorder", "dreamzero_ros.nodes.recorder_node",
                     {"output": options.record, "embodiment": embodiment, "robot": options.robot}, required=False)
        )
    return plan


def params_file(plan: list[NodeSpec], directory: Path) -> Path:
    """A ROS 2 parameters YAML holding every node's parameters (used by the process runner)."""
    path = directory / "dreamzero_params.yaml"
    data = {spec.name: {"ros__parameters": spec.parameters} for spec in plan if spec.parameters}
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    return path


def process_argv(spec: NodeSpec, params_path: Path | None) -> list[str]:
    argv = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    for src, dst in spec.remappings:
        argv += ["-r", f"{src}:={dst}"]
    if params_path is not None and spec.parameters:
        argv += ["--params-file", str(params_path)]
    return argv


def start_plan(
    plan: list[NodeSpec],
    *,
    env: dict[str, str] | None = None,
    sink: Callable[[str], None] | None = None,
    workdir: Path | None = None,
) -> ProcessGroup:
    """Start every node of `plan` as a process; the caller stops the returned group."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="dreamzero-bringup-"))
    path = params_file(plan, workdir)
    group = ProcessGroup()
    for spec in plan:
        group.start(ManagedProcess(spec.name, process_argv(spec, path), env=env, required=spec.required, sink=sink))
    return group


def run_plan(plan: list[NodeSpec], *, localhost_only: bool = True, domain_id: int | None = None,
             duration: float | None = None) -> int:
    """Run `plan` until Ctrl-C, `duration` seconds, or a required node dies; returns an exit code."""
    env = ros_environment(domain_id, localhost_only=localhost_only)
    stop = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    group = start_plan(plan, env=env)
    for proc in group.processes:
        print(f"[bringup] started {proc.name} pid={proc.pid}", file=sys.stderr, flush=True)
    code = 0
    started = time.monotonic()
    try:
        while stop["signal"] is None:
            dead = group.first_required_exit()
            if dead is not None:
                print(f"[bringup] required node {dead.name} exited with code {dead.returncode}; stopping all",
                      file=sys.stderr, flush=True)
                code = 1
                break
            if duration is not None and time.monotonic() - started >= duration:
                break
            time.sleep(0.1)
    finally:
        codes = group.stop_all()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"[bringup] stopped: {codes}", file=sys.stderr, flush=True)
    return code
