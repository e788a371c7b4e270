"""The node plan for an embodiment: which nodes run, with which parameters and remappings.

One function, `node_plan`, decides it. `launch/dreamzero.launch.py` turns the plan into
launch_ros Nodes on a full ROS install; `run_plan` starts the same plan as processes where only
the pip wheels are installed (`dreamzero bringup`), streaming logs with node prefixes and
stopping everything on Ctrl-C or when a required node dies.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from dreamzero_ros.backends import BACKEND_KINDS
from dreamzero_ros.bringup.processes import ManagedProcess, ProcessGroup
from dreamzero_ros.bringup.ros_env import ros_environment
from dreamzero_ros.core.embodiment import DEFAULT_EMBODIMENT
from dreamzero_ros.core.robot_profile import RobotProfile, load_robot
from dreamzero_ros.ros.names import normalize_namespace


def _option(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True, slots=True)
class BringupOptions:
    """What an operator chooses at bringup. The one declaration of the options: the launch file's
    arguments (`launch_arguments`) and the CLI's flags (`add_cli_arguments`) are generated from it."""

    embodiment: str = _option(DEFAULT_EMBODIMENT, "embodiment name (config/<name>.yaml) or path to a YAML")
    robot: str = _option("", "robot profile name (config/robots/) or path to a YAML; it names its embodiment "
                               "(empty: the embodiment's own wiring, the built-in simulator's)")
    backend: str = _option("local", "policy backend", choices=BACKEND_KINDS)
    server: str = _option("", "policy server URL for the remote backend, e.g. ws://gpu-box:8000")
    checkpoint: str = _option("", "checkpoint directory for the local backend (empty: tiny random weights)")
    sim: bool = _option(False, "start the MuJoCo simulated robot")
    dry_run: bool = _option(False, "the executor publishes to the preview topic only, never to the robot")
    record: str = _option("", "path of an MCAP file to record to (empty: no recording)")
    instruction: str = _option("", "initial instruction (empty: wait for one on the instruction topic)")
    predicted_video: bool = _option(False, "decode and publish the model's predicted frames")
    namespace: str = _option("", "ROS namespace of every node, e.g. /robot1 (moves the dreamzero topics and "
                                 "services, and the robot's topics unless robot_topics_global)")
    robot_topics_global: bool = _option(False, "keep the robot profile's topics where its YAML names them "
                                               "when a namespace is given (default: they move into the namespace)")
    use_sim_time: bool = _option(False, "every node follows /clock (with sim: the simulator publishes it)")
    params_file: str = _option("", "ROS 2 parameters YAML (`/**:` or per node, `ros__parameters:`) merged "
                                   "over the plan's parameters")
    allow_random_weights: bool = _option(False, "allow a real-robot launch (no sim, not a dry run) with the local "
                                                "backend and no checkpoint, i.e. random weights")

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_KINDS:
            raise ValueError(f"backend: expected one of {list(BACKEND_KINDS)}, got {self.backend!r}")
        if self.backend == "remote" and not self.server:
            raise ValueError("server: the remote backend needs --server ws://host:port")
        object.__setattr__(self, "namespace", normalize_namespace(self.namespace, "namespace"))
        if self.params_file and not Path(self.params_file).is_file():
            raise ValueError(f"params_file: no such file {self.params_file!r}")

    @property
    def random_weights_on_a_robot(self) -> bool:
        """The local backend without a checkpoint (tiny random weights) commanding a real robot."""
        return self.backend == "local" and not self.checkpoint and not self.sim and not self.dry_run

    @classmethod
    def from_strings(cls, values: Mapping[str, str]) -> BringupOptions:
        """Options from launch-argument strings ('true'/'false' for the booleans); unknown names are refused."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown bringup option(s) {unknown}; expected {sorted(known)}")
        parsed: dict[str, Any] = {}
        for name, text in values.items():
            if known[name].type in (bool, "bool"):
                word = text.strip().lower()
                if word not in _TRUE + _FALSE:
                    raise ValueError(f"{name}: expected true or false, got {text!r}")
                parsed[name] = word in _TRUE
            else:
                parsed[name] = text
        return cls(**parsed)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def launch_arguments() -> dict[str, tuple[str, str]]:
    """{option: (default as a launch string, description)} for DeclareLaunchArgument."""
    out = {}
    for f in fields(BringupOptions):
        default = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        choices = f.metadata.get("choices")
        out[f.name] = (default, f.metadata["help"] + (f": {' | '.join(choices)}" if choices else ""))
    return out


def add_cli_arguments(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = (),
                      defaults: Mapping[str, Any] | None = None) -> None:
    """Add a --flag per BringupOptions field (booleans as --x / --no-x) except `skip`, with `defaults` overriding."""
    defaults = dict(defaults or {})
    for f in fields(BringupOptions):
        if f.name in skip:
            continue
        default = defaults.get(f.name, f.default)
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata["help"]
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction,
                                help=f"{text} (default: {'yes' if default else 'no'})")
        else:
            parser.add_argument(flag, dest=f.name, default=default, choices=f.metadata.get("choices"),
                                help=f"{text} (default: {default!r})" if default else text)


def options_from_args(args: argparse.Namespace, **overrides: Any) -> BringupOptions:
    """BringupOptions from parsed CLI arguments (fields the parser skipped keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in fields(BringupOptions) if hasattr(args, f.name)}
    return BringupOptions(**{**values, **overrides})


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of the plan; `executable` is the console script, `module` its python -m path."""

    name: str
    executable: str
    module: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    required: bool = True
    namespace: str = "/"
    params_files: tuple[str, ...] = ()  # operator YAMLs, applied after (over) `parameters`

    @property
    def fqn(self) -> str:
        """The fully qualified node name, e.g. /robot1/inference (the key of its parameters in a params file)."""
        return f"{self.namespace.rstrip('/')}/{self.name}"


class RandomWeightsRefused(ValueError):
    """A real-robot bringup would run random weights and `allow_random_weights` is not set."""


def robot_topics(profile: RobotProfile) -> list[str]:
    """Every robot-side topic (and action) name the plan's nodes use with `profile`, without repeats."""
    names = [c.topic for c in profile.cameras] + [j.topic for j in profile.joint_states]
    names += [c.topic for c in profile.commands] + [e.topic for e in profile.extra_outputs]
    emb = profile.embodiment
    names += [c.topic for c in emb.cameras] + [emb.command.topic, emb.command.joint_states_topic]
    names += [g.topic for g in emb.extra_actions]
    return list(dict.fromkeys(names))


def node_plan(options: BringupOptions) -> list[NodeSpec]:
    """The nodes to start for `options`, in start order (validates the profile and embodiment first).

    With a robot profile every node gets `robot` (and the embodiment the profile names); a profile on
    sim time, or `use_sim_time`, gives every node use_sim_time and makes the simulator publish /clock.
    A namespace puts every node in it; the robot's topics, absolute in the YAML, are remapped into it
    (`-r /joint_states:=joint_states` resolves to /robot1/joint_states) unless `robot_topics_global`.
    Refuses random weights on a real robot unless `allow_random_weights` (RandomWeightsRefused).
    """
    profile = load_robot(options.robot, options.embodiment)  # fail early, naming the file and field
    if options.random_weights_on_a_robot and not options.allow_random_weights:
        raise RandomWeightsRefused(
            "allow_random_weights: refusing to drive a real robot (sim false, dry_run false) with random weights "
            "(backend local and no checkpoint); give a checkpoint, use the remote backend, add --dry-run, or pass "
            "--allow-random-weights (launch: allow_random_weights:=true) if you really mean it")
    embodiment = profile.embodiment.source if options.robot else options.embodiment
    common: dict[str, Any] = {"embodiment": embodiment, "robot": options.robot}
    sim_params: dict[str, Any] = dict(common)
    if profile.use_sim_time or options.use_sim_time:
        common["use_sim_time"] = True
        if options.sim:
            sim_params["use_sim_clock"] = True  # it is the clock: it does not follow one
        else:
            sim_params["use_sim_time"] = True
    plan: list[NodeSpec] = []
    if options.sim:
        plan.append(NodeSpec("sim_robot", "sim_robot", "dreamzero_ros.nodes.sim_robot_node", sim_params))
    # The remote backend sends per-camera views (the wire protocol's); the stitcher publishes them.
    plan.append(NodeSpec("camera_stitcher", "camera_stitcher", "dreamzero_ros.nodes.camera_stitcher_node",
                         {**common, "publish_views": options.backend == "remote"}))
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
    remappings: tuple[tuple[str, str], ...] = ()
    if options.namespace != "/" and not options.robot_topics_global:
        remappings = tuple((topic, topic.lstrip("/")) for topic in robot_topics(profile) if topic.startswith("/"))
    files = (str(Path(options.params_file).resolve()),) if options.params_file else ()
    return [replace(spec, namespace=options.namespace, remappings=spec.remappings + remappings, params_files=files)
            for spec in plan]


def params_file(plan: list[NodeSpec], directory: Path) -> Path:
    """A ROS 2 parameters YAML holding every node's parameters under its fully qualified name (used by
    the process runner)."""
    path = directory / "dreamzero_params.yaml"
    data = {spec.fqn: {"ros__parameters": spec.parameters} for spec in plan if spec.parameters}
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    return path


def process_argv(spec: NodeSpec, params_path: Path | None) -> list[str]:
    """The node's command line: name, namespace, remappings, then the plan's parameters file and the
    operator's files (rcl applies them in order, so the operator's values win)."""
    argv = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace != "/":
        argv += ["-r", f"__ns:={spec.namespace}"]
    for src, dst in spec.remappings:
        argv += ["-r", f"{src}:={dst}"]
    if params_path is not None and spec.parameters:
        argv += ["--params-file", str(params_path)]
    for extra in spec.params_files:
        argv += ["--params-file", extra]
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
