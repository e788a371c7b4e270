"""Robot profiles: how one physical robot or simulator is wired to an embodiment's model contract.

An embodiment (`config/<name>.yaml`) says what the model was trained on: cameras in view order,
state/action joints, rates. A robot profile (`config/robots/<name>.yaml`) says how one robot stack
connects to it: per camera a topic and message type; joint states from one or more topics, each
naming the robot's joints for a slice of the model's state and a value mapping robot -> model; and
one or more command outputs, each with a topic, a message type, the robot's names for a slice of the
action vector and a value mapping model -> robot. This module owns the frozen dataclasses mirroring
that YAML, its strict loading (errors name file, field, expected, got), the validation against the
embodiment (every model joint read once and commanded once), and the pure per-joint value maps and
joint-state assembly the nodes and the simulator use.

Profile YAML, in short (see config/robots/*.yaml for complete ones)::

    name: fr3_franka_ros2
    embodiment: franka_droid          # name or path of the embodiment it runs
    use_sim_time: false
    cameras:                          # keyed by the embodiment's camera names
      wrist: {topic: /wrist/image_raw/compressed, type: sensor_msgs/CompressedImage}
    joint_states:                     # one or more inputs
      - topic: /joint_states
        joints: {panda_joint1: fr3_joint1, ...}   # model name: robot name, in model order
        map: {panda_finger_joint1: {scale: 0.5}}  # robot -> model, per model joint (optional)
    commands:                         # one or more outputs
      - topic: /fr3_arm_controller/joint_trajectory
        type: trajectory_msgs/JointTrajectory
        joints: {panda_joint1: fr3_joint1, ...}
        map: {...}                    # model -> robot (optional)
        qos: {reliability: reliable, durability: volatile, depth: 10}
    uncommanded: []                   # action joints deliberately not sent (documented per profile)
    extra_outputs: {base_velocity: {topic: /cmd_vel}}

A value map is `y = clip(scale * x + offset, lo, hi)`, written as `{scale, offset, clip}` or as
`{from: [a, b], to: [c, d], clip}` (a -> c and b -> d linearly). Its scale is never 0, so it can be
inverted on its clip range: the simulator speaks a profile by inverting both directions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_ros.core.embodiment import (
    ConfigError,
    EmbodimentConfig,
    _Reader,
    config_dir,
    load_embodiment,
    read_yaml,
)

# Message types, written as in ROS interface names (package/Type, actions package/action/Type).
IMAGE = "sensor_msgs/Image"
COMPRESSED_IMAGE = "sensor_msgs/CompressedImage"
CAMERA_TYPES = (IMAGE, COMPRESSED_IMAGE)

JOINT_STATE = "sensor_msgs/JointState"
FLOAT64_ARRAY = "std_msgs/Float64MultiArray"  # ros2_control forward_command_controller (position)
JOINT_TRAJECTORY = "trajectory_msgs/JointTrajectory"  # joint_trajectory_controller
GRIPPER_COMMAND = "control_msgs/action/GripperCommand"  # an action server, e.g. franka_gripper
COMMAND_TYPES = (JOINT_STATE, FLOAT64_ARRAY, JOINT_TRAJECTORY, GRIPPER_COMMAND)
#: Sent every control tick (the executor's per-tick path); the others are sent per chunk / on change.
PER_TICK_TYPES = (JOINT_STATE, FLOAT64_ARRAY)

RELIABILITIES = ("reliable", "best_effort")
DURABILITIES = ("volatile", "transient_local")

_NAME = re.compile(r"^~?/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


# --------------------------------------------------------------------------------------------
# Dataclasses mirroring the YAML
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QosSpec:
    """The QoS of one topic: reliability, durability, keep-last depth."""

    reliability: str = "reliable"  # one of RELIABILITIES
    durability: str = "volatile"  # one of DURABILITIES
    depth: int = 10


#: Defaults by role when a profile gives no `qos`.
CAMERA_QOS = QosSpec("best_effort", "volatile", 5)  # the sensor-data profile
JOINT_STATE_QOS = QosSpec("reliable", "volatile", 10)
COMMAND_QOS = QosSpec("reliable", "volatile", 10)


@dataclass(frozen=True, slots=True)
class ValueMap:
    """y = clip(scale * x + offset, lo, hi) elementwise; scale != 0, so it inverts on [lo, hi]."""

    scale: float = 1.0
    offset: float = 0.0
    clip: tuple[float, float] | None = None  # (lo, hi), lo < hi

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0 and self.clip is None

    def apply(self, x: float | np.ndarray) -> float | np.ndarray:
        y = self.scale * np.asarray(x, dtype=np.float64) + self.offset
        if self.clip is not None:
            y = np.clip(y, self.clip[0], self.clip[1])
        return float(y) if np.ndim(y) == 0 else y

    def invert(self, y: float | np.ndarray) -> float | np.ndarray:
        """The x that `apply` maps to y (y first clipped to the map's range)."""
        y = np.asarray(y, dtype=np.float64)
        if self.clip is not None:
            y = np.clip(y, self.clip[0], self.clip[1])
        x = (y - self.offset) / self.scale
        return float(x) if np.ndim(x) == 0 else x


IDENTITY = ValueMap()


@dataclass(frozen=True, slots=True)
class JointSlice:
    """Model joints (in model order) <-> the robot's names for them, with one value map each."""

    joints: tuple[str, ...]  # model (embodiment) joint names, in the embodiment's order
    robot_joints: tuple[str, ...]  # the robot's names, same length and order
    maps: tuple[ValueMap, ...]  # same length; direction is the owner's (input: robot->model, output: model->robot)
    _arrays: tuple[np.ndarray, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The maps as arrays once, so a tick maps a whole slice in a few numpy calls.
        lo = [m.clip[0] if m.clip else -np.inf for m in self.maps]
        hi = [m.clip[1] if m.clip else np.inf for m in self.maps]
        object.__setattr__(self, "_arrays", tuple(np.array(x, dtype=np.float64) for x in (
            [m.scale for m in self.maps], [m.offset for m in self.maps], lo, hi)))

    def map_values(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Apply each joint's map to `values` [len(joints)] (in this slice's order)."""
        scale, offset, lo, hi = self._arrays
        return np.clip(scale * np.asarray(values, dtype=np.float64) + offset, lo, hi)

    def invert_values(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """The values [len(joints)] each joint's map takes to `values` (clipped to its range first)."""
        scale, offset, lo, hi = self._arrays
        return (np.clip(np.asarray(values, dtype=np.float64), lo, hi) - offset) / scale


@dataclass(frozen=True, slots=True)
class CameraInput:
    name: str  # the embodiment's camera name
    topic: str
    type: str  # one of CAMERA_TYPES
    qos: QosSpec

    @property
    def compressed(self) -> bool:
        return self.type == COMPRESSED_IMAGE


@dataclass(frozen=True, slots=True)
class JointStateInput:
    """One sensor_msgs/JointState topic; `slice.maps` map robot values -> model values."""

    topic: str
    slice: JointSlice
    qos: QosSpec


@dataclass(frozen=True, slots=True)
class CommandOutput:
    """One command output; `slice.maps` map model values -> robot values.

    `indices` are the positions of `slice.joints` in the embodiment's action vector. `max_effort` (N)
    and `deadband` (robot units: a new goal only when the target moved further) apply to
    GRIPPER_COMMAND outputs only.
    """

    topic: str  # a topic, or the action server's name for GRIPPER_COMMAND
    type: str  # one of COMMAND_TYPES
    slice: JointSlice
    indices: tuple[int, ...]
    qos: QosSpec
    max_effort: float | None = None
    deadband: float = 0.0

    @property
    def per_tick(self) -> bool:
        return self.type in PER_TICK_TYPES

    def robot_values(self, action: Sequence[float] | np.ndarray) -> np.ndarray:
        """The robot's values [len(slice.joints)] from a full model action vector [A]."""
        a = np.asarray(action, dtype=np.float64)
        return self.slice.map_values(a[list(self.indices)])


@dataclass(frozen=True, slots=True)
class ExtraOutput:
    name: str  # an embodiment extra action group (e.g. base_velocity -> geometry_msgs/Twist)
    topic: str
    qos: QosSpec


@dataclass(frozen=True, slots=True)
class RobotProfile:
    name: str
    source: str  # the YAML it was loaded from ("<embodiment>" when built from an embodiment's own wiring)
    embodiment: EmbodimentConfig
    use_sim_time: bool
    cameras: tuple[CameraInput, ...]  # in the embodiment's camera order
    joint_states: tuple[JointStateInput, ...]
    commands: tuple[CommandOutput, ...]
    uncommanded: tuple[str, ...] = ()  # action joints no output carries (they are held by the robot)
    extra_outputs: tuple[ExtraOutput, ...] = field(default=())

    def camera(self, name: str) -> CameraInput:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"{self.source}: no camera named {name!r}")

    @property
    def per_tick_outputs(self) -> tuple[CommandOutput, ...]:
        return tuple(c for c in self.commands if c.per_tick)


# --------------------------------------------------------------------------------------------
# Joint-state assembly: several topics -> one model-ordered state (pure; the nodes lock around it)
# --------------------------------------------------------------------------------------------


class JointStateAssembler:
    """Keeps the newest mapped values of every input; complete once every input has reported.

    `update` takes one message's names and positions (robot names, robot units) for input `index`
    and returns "" or a problem naming the topic. `complete()` returns (model joint names, model
    values, time of the oldest input) over all inputs, or None until each has reported once.
    """

    def __init__(self, profile: RobotProfile) -> None:
        self.inputs = profile.joint_states
        self.joints = tuple(j for inp in self.inputs for j in inp.slice.joints)
        self._values: list[np.ndarray | None] = [None] * len(self.inputs)
        self._times = [0.0] * len(self.inputs)

    def update(self, index: int, names: Sequence[str], positions: Sequence[float], now: float) -> str:
        inp = self.inputs[index]
        if len(names) != len(positions):
            return f"joint_states has {len(names)} names but {len(positions)} positions on {inp.topic}"
        by_name = dict(zip(names, positions, strict=True))
        missing = [r for r in inp.slice.robot_joints if r not in by_name]
        if missing:
            return f"joint_states is missing {missing} on {inp.topic}"
        raw = np.array([by_name[r] for r in inp.slice.robot_joints], dtype=np.float64)
        self._values[index] = inp.slice.map_values(raw)
        self._times[index] = now
        return ""

    def complete(self) -> tuple[list[str], list[float], float] | None:
        if any(v is None for v in self._values):
            return None
        values = np.concatenate([v for v in self._values if v is not None])
        return list(self.joints), values.tolist(), min(self._times)

    def waiting_for(self) -> list[str]:
        """Topics not heard from yet."""
        return [inp.topic for inp, v in zip(self.inputs, self._values, strict=True) if v is None]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_TOP_KEYS = ("name", "embodiment", "use_sim_time", "cameras", "joint_states", "commands", "uncommanded",
             "extra_outputs")
_TOP_REQUIRED = ("name", "embodiment", "cameras", "joint_states", "commands")
_OUTPUT_KEYS = ("topic", "type", "joints", "map", "qos", "max_effort", "deadband")
_GRIPPER_ONLY = ("max_effort", "deadband")


def robots_dir() -> Path:
    return config_dir() / "robots"


def available_robot_profiles() -> list[str]:
    return sorted(p.stem for p in robots_dir().glob("*.yaml") if not p.stem.startswith("_"))


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A profile name ('fr3_franka_ros2') or a path to a YAML file."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return Path(text)
    path = robots_dir() / f"{text}.yaml"
    if not path.exists():
        raise ConfigError(str(path), "", f"unknown robot profile {text!r}; known: {available_robot_profiles()} "
                                         "(or pass a YAML path)")
    return path


def load_robot_profile(name_or_path: str | Path) -> RobotProfile:
    """Load a profile and the embodiment it names; raises ConfigError naming file and field."""
    path = resolve_profile_path(name_or_path)
    source = str(path)
    raw = read_yaml(path)
    r = _Reader(source)
    if not isinstance(raw, dict):
        raise r.fail("", f"expected a mapping at the top level, got {type(raw).__name__}")
    emb_ref = r.string(raw.get("embodiment"), "embodiment")
    if emb_ref.endswith((".yaml", ".yml")) and not Path(emb_ref).is_absolute():
        emb_ref = str(path.parent / emb_ref)
    try:
        embodiment = load_embodiment(emb_ref)
    except ConfigError as exc:
        raise r.fail("embodiment", f"cannot load embodiment {emb_ref!r}: {exc}") from exc
    return parse_robot_profile(raw, embodiment, source=source)


def load_robot(robot: str, embodiment: str) -> RobotProfile:
    """The nodes' entry: a named/path profile, or (robot == "") the embodiment's own default wiring."""
    if robot:
        return load_robot_profile(robot)
    return profile_from_embodiment(load_embodiment(embodiment))


def profile_from_embodiment(emb: EmbodimentConfig) -> RobotProfile:
    """The wiring an embodiment YAML carries itself (camera topics, `command`): the built-in sim's default."""
    types = {"forward_position": FLOAT64_ARRAY, "joint_trajectory": JOINT_TRAJECTORY, "joint_state": JOINT_STATE}
    measured = tuple(dict.fromkeys(emb.state_joints + emb.action_joints))
    actions = emb.action_joints
    ident = lambda names: JointSlice(names, names, (IDENTITY,) * len(names))  # noqa: E731
    return RobotProfile(
        name=f"{emb.name}_default",
        source=emb.source,
        embodiment=emb,
        use_sim_time=False,
        cameras=tuple(CameraInput(c.name, c.topic, COMPRESSED_IMAGE if c.compressed else IMAGE, CAMERA_QOS)
                      for c in emb.cameras),
        joint_states=(JointStateInput(emb.command.joint_states_topic, ident(measured), JOINT_STATE_QOS),),
        commands=(CommandOutput(emb.command.topic, types[emb.command.interface], ident(actions),
                                tuple(range(len(actions))), COMMAND_QOS),),
        extra_outputs=tuple(ExtraOutput(g.name, g.topic, COMMAND_QOS) for g in emb.extra_actions),
    )


def parse_robot_profile(raw: Any, embodiment: EmbodimentConfig, *, source: str) -> RobotProfile:
    """Validate a profile's parsed YAML against `embodiment`."""
    r = _Reader(source)
    top = r.mapping(raw, "", _TOP_KEYS, _TOP_REQUIRED)
    name = r.string(top["name"], "name")
    use_sim_time = r.boolean(top.get("use_sim_time", False), "use_sim_time")
    cameras = _parse_cameras(r, top["cameras"], embodiment)

    measured = list(dict.fromkeys(embodiment.state_joints + embodiment.action_joints))
    inputs = []
    read_by: dict[str, str] = {}
    for i, item in enumerate(r.items(top["joint_states"], "joint_states")):
        f = f"joint_states[{i}]"
        m = r.mapping(item, f, ("topic", "joints", "map", "qos"), ("topic", "joints"))
        sl = _parse_slice(r, m, f, measured, "joint_states")
        for joint in sl.joints:
            if joint in read_by:
                raise r.fail(f"{f}.joints.{joint}", f"model joint {joint!r} is already read from {read_by[joint]}")
            read_by[joint] = f
        inputs.append(JointStateInput(_topic(r, m["topic"], f"{f}.topic"), sl,
                                      _parse_qos(r, m.get("qos"), f"{f}.qos", JOINT_STATE_QOS)))
    unread = [j for j in measured if j not in read_by]
    if unread:
        raise r.fail("joint_states", f"model joints {unread} are read from no input; every state and action joint "
                                     "must be measured exactly once")
    _unique(r, [inp.topic for inp in inputs], "joint_states", "topic")

    actions = list(embodiment.action_joints)
    uncommanded = r.string_list(top["uncommanded"], "uncommanded") if top.get("uncommanded") else ()
    for k, joint in enumerate(uncommanded):
        if joint not in actions:
            raise r.fail(f"uncommanded[{k}]", f"expected an action joint of {embodiment.name} "
                                              f"({actions}), got {joint!r}")
    outputs = []
    sent_by: dict[str, str] = {j: "uncommanded" for j in uncommanded}
    for i, item in enumerate(r.items(top["commands"], "commands")):
        f = f"commands[{i}]"
        m = r.mapping(item, f, _OUTPUT_KEYS, ("topic", "type", "joints"))
        kind = r.string(m["type"], f"{f}.type", COMMAND_TYPES)
        sl = _parse_slice(r, m, f, actions, "commands")
        for joint in sl.joints:
            if joint in sent_by:
                raise r.fail(f"{f}.joints.{joint}", f"model joint {joint!r} is already commanded by {sent_by[joint]}")
            sent_by[joint] = f
        max_effort, deadband = None, 0.0
        if kind == GRIPPER_COMMAND:
            if len(sl.joints) != 1:
                raise r.fail(f"{f}.joints", f"a {GRIPPER_COMMAND} output drives exactly 1 joint, got {len(sl.joints)}")
            if "max_effort" not in m:
                raise r.fail(f"{f}.max_effort", f"missing required field for {GRIPPER_COMMAND} (N)")
            max_effort = r.number(m["max_effort"], f"{f}.max_effort", positive=True)
            deadband = r.number(m.get("deadband", 0.0), f"{f}.deadband", minimum=0.0)
        else:
            for key in _GRIPPER_ONLY:
                if key in m:
                    raise r.fail(f"{f}.{key}", f"only a {GRIPPER_COMMAND} output takes {key!r}; this one is {kind}")
        outputs.append(CommandOutput(
            topic=_topic(r, m["topic"], f"{f}.topic"), type=kind, slice=sl,
            indices=tuple(actions.index(j) for j in sl.joints),
            qos=_parse_qos(r, m.get("qos"), f"{f}.qos", COMMAND_QOS), max_effort=max_effort, deadband=deadband,
        ))
    unsent = [j for j in actions if j not in sent_by]
    if unsent:
        raise r.fail("commands", f"action joints {unsent} are sent by no output; list each in exactly one output's "
                                 "joints (or in uncommanded)")
    _unique(r, [o.topic for o in outputs], "commands", "topic")
    extras = _parse_extras(r, top.get("extra_outputs"), embodiment)
    return RobotProfile(name=name, source=source, embodiment=embodiment, use_sim_time=use_sim_time,
                        cameras=cameras, joint_states=tuple(inputs), commands=tuple(outputs),
                        uncommanded=tuple(uncommanded), extra_outputs=extras)


def _topic(r: _Reader, value: Any, f: str) -> str:
    text = r.string(value, f)
    if not _NAME.match(text):
        raise r.fail(f, f"expected a ROS name like '/a/b' or 'a/b' (letters, digits, _ and /), got {text!r}")
    return text


def _unique(r: _Reader, topics: list[str], f: str, what: str) -> None:
    for i, t in enumerate(topics):
        if t in topics[:i]:
            raise r.fail(f"{f}[{i}].{what}", f"duplicate {what} {t!r} (also {f}[{topics.index(t)}])")


def _parse_cameras(r: _Reader, value: Any, emb: EmbodimentConfig) -> tuple[CameraInput, ...]:
    names = list(emb.camera_names)
    if not isinstance(value, dict):
        raise r.fail("cameras", f"expected a mapping of camera name -> {{topic, type}}, got {type(value).__name__}")
    for key in value:
        if key not in names:
            raise r.fail(f"cameras.{key}", f"unknown camera; {emb.name}'s cameras are {names}")
    out = []
    for cam in names:
        f = f"cameras.{cam}"
        if cam not in value:
            raise r.fail(f, f"missing: every camera of {emb.name} needs a topic ({names})")
        m = r.mapping(value[cam], f, ("topic", "type", "qos"), ("topic", "type"))
        out.append(CameraInput(cam, _topic(r, m["topic"], f"{f}.topic"), r.string(m["type"], f"{f}.type", CAMERA_TYPES),
                               _parse_qos(r, m.get("qos"), f"{f}.qos", CAMERA_QOS)))
    _unique(r, [c.topic for c in out], "cameras", "topic")
    return tuple(out)


def _parse_slice(r: _Reader, m: dict, f: str, allowed: list[str], role: str) -> JointSlice:
    """`joints` (mapping model -> robot, or a list when the names are the robot's too) and `map`."""
    value = m["joints"]
    if isinstance(value, list):
        model = r.string_list(value, f"{f}.joints")
        robot = model
    elif isinstance(value, dict) and value:
        model = tuple(r.string(k, f"{f}.joints") for k in value)
        robot = tuple(r.string(v, f"{f}.joints.{k}") for k, v in value.items())
    else:
        raise r.fail(f"{f}.joints", f"expected a mapping model joint -> robot joint (or a list), got {value!r}")
    what = "state or action" if role == "joint_states" else "action"
    for joint in model:
        if joint not in allowed:
            raise r.fail(f"{f}.joints.{joint}", f"expected a {what} joint of the embodiment ({allowed}), got {joint!r}")
    order = [allowed.index(j) for j in model]
    if order != sorted(order):
        raise r.fail(f"{f}.joints", f"list model joints in the embodiment's order ({[j for j in allowed if j in model]}), "
                                    f"got {list(model)}; rename on the right-hand side instead of reordering")
    for k, name in enumerate(robot):
        if name in robot[:k]:
            raise r.fail(f"{f}.joints.{model[k]}", f"robot joint {name!r} is named twice in this {role} entry")
    maps = dict.fromkeys(model, IDENTITY)
    raw_maps = m.get("map") or {}
    if not isinstance(raw_maps, dict):
        raise r.fail(f"{f}.map", f"expected a mapping model joint -> {{scale, offset, clip}}, got {raw_maps!r}")
    for joint, spec in raw_maps.items():
        if joint not in maps:
            raise r.fail(f"{f}.map.{joint}", f"expected one of this entry's joints {list(model)}, got {joint!r}")
        maps[joint] = parse_value_map(r, spec, f"{f}.map.{joint}")
    return JointSlice(model, robot, tuple(maps[j] for j in model))


def parse_value_map(r: _Reader, value: Any, f: str) -> ValueMap:
    m = r.mapping(value, f, ("scale", "offset", "from", "to", "clip"), ())
    if ("from" in m) != ("to" in m):
        raise r.fail(f, "give both 'from' and 'to' (two ranges), or neither")
    if "from" in m:
        if "scale" in m or "offset" in m:
            raise r.fail(f, "give either scale/offset or from/to, not both")
        a, b = r.pair(m["from"], f"{f}.from")
        c, d = r.pair(m["to"], f"{f}.to")
        if a == b:
            raise r.fail(f"{f}.from", f"the two ends must differ, got {[a, b]}")
        scale = (d - c) / (b - a)
        offset = c - scale * a
    else:
        scale = r.number(m.get("scale", 1.0), f"{f}.scale")
        offset = r.number(m.get("offset", 0.0), f"{f}.offset")
    if scale == 0.0:
        raise r.fail(f, "a scale of 0 maps every value to one and cannot be inverted; expected a non-zero scale")
    clip = None
    if "clip" in m:
        clip = r.pair(m["clip"], f"{f}.clip")
        if not clip[0] < clip[1]:
            raise r.fail(f"{f}.clip", f"expected [lo, hi] with lo < hi, got {list(clip)}")
    return ValueMap(scale, offset, clip)


def _parse_qos(r: _Reader, value: Any, f: str, default: QosSpec) -> QosSpec:
    if value is None:
        return default
    m = r.mapping(value, f, ("reliability", "durability", "depth"), ())
    return QosSpec(
        reliability=r.string(m.get("reliability", default.reliability), f"{f}.reliability", RELIABILITIES),
        durability=r.string(m.get("durability", default.durability), f"{f}.durability", DURABILITIES),
        depth=r.integer(m.get("depth", default.depth), f"{f}.depth"),
    )


def _parse_extras(r: _Reader, value: Any, emb: EmbodimentConfig) -> tuple[ExtraOutput, ...]:
    if value is None:
        return ()
    names = [g.name for g in emb.extra_actions]
    if not isinstance(value, dict):
        raise r.fail("extra_outputs", f"expected a mapping of extra action name -> {{topic}}, got {value!r}")
    out = []
    for key, item in value.items():
        f = f"extra_outputs.{key}"
        if key not in names:
            raise r.fail(f, f"unknown extra action; {emb.name}'s are {names}")
        m = r.mapping(item, f, ("topic", "qos"), ("topic",))
        out.append(ExtraOutput(str(key), _topic(r, m["topic"], f"{f}.topic"),
                               _parse_qos(r, m.get("qos"), f"{f}.qos", COMMAND_QOS)))
    return tuple(out)
