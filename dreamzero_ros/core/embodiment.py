"""Embodiment configuration: the typed, validated form of `config/<robot>.yaml`.

Everything robot-specific (cameras, stitch layout, state/action vectors, limits, command
interface, prompt template) lives in the YAML; this module owns parsing it into frozen
dataclasses and checking every field once, so the rest of the suite can trust the values.
Errors name the file and the dotted field: `config/franka.yaml: cameras[1].topic: ...`.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import numpy as np

PACKAGE_ROOT = Path(__file__).resolve().parents[2]

LAYOUTS = ("droid", "grid_2x2")
STALE_POLICIES = ("black", "hold", "stop")
#: how a camera image whose aspect differs from source_size gets there: "letterbox" (the reference
#: client's resize_with_pad: keep aspect, PIL bilinear, black bars) or "stretch" (squash to fit)
ASPECTS = ("letterbox", "stretch")
COMMAND_INTERFACES = ("forward_position", "joint_trajectory", "joint_state")


class ConfigError(ValueError):
    """A config file is malformed; the message names the file and the field."""

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        self.field = field
        super().__init__(f"{source}: {field}: {message}" if field else f"{source}: {message}")


# --------------------------------------------------------------------------------------------
# Dataclasses mirroring the YAML
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """One camera view, listed in the model's view order."""

    name: str
    topic: str
    compressed: bool
    source_size: tuple[int, int]  # (H, W) the training data stored; images are resized to it first
    wire_key: str  # key in the remote protocol, e.g. "exterior_image_0_left"
    frame: str  # URDF link the camera is mounted on (optical frame)
    aspect: str = "letterbox"  # one of ASPECTS: how an image of another aspect reaches source_size


@dataclass(frozen=True, slots=True)
class StitchConfig:
    layout: str  # one of LAYOUTS
    view_size: tuple[int, int]  # (H, W) of each view after crop + resize
    crop_scale: float
    sync_slop: float  # s
    sync_queue_size: int
    stale_timeout: float  # s
    stale_policy: str  # one of STALE_POLICIES

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the stitched frame: two rows and two columns of views."""
        return 2 * self.view_size[0], 2 * self.view_size[1]


@dataclass(frozen=True, slots=True)
class VideoConfig:
    fps: float  # model video rate
    frames_per_chunk: int  # real frames observed per chunk (4x temporal VAE: 8 -> 2 latents)


@dataclass(frozen=True, slots=True)
class ControlConfig:
    rate_hz: float
    horizon: int  # steps per chunk

    @property
    def dt(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def chunk_duration(self) -> float:
        return self.horizon / self.rate_hz


@dataclass(frozen=True, slots=True)
class JointGroup:
    """A named slice of the state or action vector (the name is the normalisation key)."""

    name: str
    joints: tuple[str, ...]
    relative: bool = False  # actions only: predicted as (target - state at chunk start)


@dataclass(frozen=True, slots=True)
class ExtraActionGroup:
    """A non-joint action output, e.g. AgiBot's base velocity (absolute, published as Twist)."""

    name: str
    components: tuple[str, ...]
    topic: str
    limits: tuple[tuple[float, float], ...]  # per component (min, max)


@dataclass(frozen=True, slots=True)
class EffectorMapping:
    """Linear map between an effector joint's position and the model's value range."""

    joint: str
    joint_range: tuple[float, float]  # joint positions that map to model_range[0], model_range[1]
    model_range: tuple[float, float]

    def to_model(self, joint_value: float) -> float:
        (j0, j1), (m0, m1) = self.joint_range, self.model_range
        return m0 + (joint_value - j0) * (m1 - m0) / (j1 - j0)

    def to_joint(self, model_value: float) -> float:
        (j0, j1), (m0, m1) = self.joint_range, self.model_range
        return j0 + (model_value - m0) * (j1 - j0) / (m1 - m0)


@dataclass(frozen=True, slots=True)
class JointLimits:
    lower: float  # rad or m
    upper: float
    velocity: float  # rad/s or m/s, > 0


@dataclass(frozen=True, slots=True)
class CommandConfig:
    interface: str  # one of COMMAND_INTERFACES
    topic: str
    joint_states_topic: str


@dataclass(frozen=True, slots=True)
class HomeConfig:
    """The start pose episodes begin from, and how fast `dreamzero home` may move there."""

    pose: dict[str, float]  # action joint -> position (rad | m), inside joint_limits
    velocity_scale: float  # (0, 1]: homing moves each joint at most this fraction of its velocity limit


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What `dreamzero demo` runs on this embodiment when the command line does not say."""

    task: str  # a built-in simulator task (sim/tasks.py), or "none" for the free-running loop
    checkpoint: str | None  # a folder name under checkpoints/ or a path; None: the tiny preset's random weights


#: an embodiment without a `demo:` section: the free-running loop with random weights
NO_DEMO = DemoConfig(task="none", checkpoint=None)


@dataclass(frozen=True, slots=True)
class EmbodimentConfig:
    name: str
    source: str  # path of the YAML it was loaded from (for messages)
    urdf: Path
    cameras: tuple[CameraConfig, ...]
    stitch: StitchConfig
    video: VideoConfig
    control: ControlConfig
    state: tuple[JointGroup, ...]
    action: tuple[JointGroup, ...]
    extra_actions: tuple[ExtraActionGroup, ...]
    effectors: tuple[EffectorMapping, ...]
    joint_limits: dict[str, JointLimits]
    command: CommandConfig
    prompt_template: str
    home: HomeConfig | None = None  # None: the YAML has no `home:` section (homing is refused)
    demo: DemoConfig = NO_DEMO  # the YAML's `demo:` section

    @property
    def state_joints(self) -> tuple[str, ...]:
        return tuple(j for g in self.state for j in g.joints)

    @property
    def action_joints(self) -> tuple[str, ...]:
        return tuple(j for g in self.action for j in g.joints)

    @property
    def action_dim(self) -> int:
        """Length A of one action row: the action joints, then every extra action group's components."""
        return len(self.action_joints) + sum(len(g.components) for g in self.extra_actions)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"{self.name}: no camera named {name!r}; cameras are {list(self.camera_names)}")

    def effector(self, joint: str) -> EffectorMapping | None:
        return next((e for e in self.effectors if e.joint == joint), None)

    def limits_arrays(self, joints: tuple[str, ...] | None = None):
        """(lower[J], upper[J], velocity[J]) as float64 numpy arrays for `joints` (default: action)."""
        import numpy as np

        names = self.action_joints if joints is None else joints
        lim = [self.joint_limits[j] for j in names]
        return (
            np.array([x.lower for x in lim], dtype=np.float64),
            np.array([x.upper for x in lim], dtype=np.float64),
            np.array([x.velocity for x in lim], dtype=np.float64),
        )

    def home_array(self) -> np.ndarray | None:
        """[J] the home pose in action-joint order (rad | m), or None without a `home:` section."""
        import numpy as np

        if self.home is None:
            return None
        return np.array([self.home.pose[j] for j in self.action_joints], dtype=np.float64)

    def format_prompt(self, instruction: str) -> str:
        """The instruction wrapped in the embodiment's template, lower-cased as in training."""
        text = instruction.strip()
        if text and text[-1] not in ".!?":
            text += "."
        return self.prompt_template.format(instruction=text).lower()


# --------------------------------------------------------------------------------------------
# Strict parsing helpers: every accessor names the dotted field in its error
# --------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, message: str) -> ConfigError:
        return ConfigError(self.source, field, message)

    def mapping(self, value: Any, field: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail(_join(field, str(key)), f"unknown key; allowed keys are {sorted(allowed)}")
        for key in required:
            if key not in value:
                raise self.fail(_join(field, key), "missing required field")
        return value

    def string(self, value: Any, field: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"expected non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(field, f"expected one of {list(choices)}, got {value!r}")
        return value

    def topic(self, value: Any, field: str) -> str:
        text = self.string(value, field)
        if not text.startswith("/") or " " in text:
            raise self.fail(field, f"expected an absolute ROS topic name like '/a/b', got {text!r}")
        return text

    def boolean(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(field, f"expected true or false, got {value!r}")
        return value

    def number(self, value: Any, field: str, *, positive: bool = False, minimum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(field, f"expected a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(field, f"expected a positive number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(field, f"expected a number >= {minimum}, got {value!r}")
        return float(value)

    def integer(self, value: Any, field: str, *, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"expected an integer, got {value!r}")
        if value < minimum:
            raise self.fail(field, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def pair(self, value: Any, field: str, *, kind: str = "number") -> tuple:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise self.fail(field, f"expected a list of two {kind}s, got {value!r}")
        if kind == "integer":
            return tuple(self.integer(v, f"{field}[{i}]") for i, v in enumerate(value))
        return tuple(self.number(v, f"{field}[{i}]") for i, v in enumerate(value))

    def string_list(self, value: Any, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(field, f"expected a non-empty list of strings, got {value!r}")
        items = tuple(self.string(v, f"{field}[{i}]") for i, v in enumerate(value))
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item in seen:
                raise self.fail(f"{field}[{i}]", f"duplicate entry {item!r}")
            seen.add(item)
        return items

    def items(self, value: Any, field: str) -> list:
        if not isinstance(value, list) or not value:
            raise self.fail(field, f"expected a non-empty list, got {value!r}")
        return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# --------------------------------------------------------------------------------------------
# URDF facts (joint names and limits) — read with ElementTree; no URDF library ships as a wheel
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UrdfJoint:
    name: str
    type: str
    lower: float | None
    upper: float | None
    velocity: float | None


def read_urdf_joints(path: Path) -> dict[str, UrdfJoint]:
    """Non-fixed joints of a URDF with their limits, keyed by name."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ConfigError(str(path), "", f"cannot read URDF: {exc}") from exc
    joints: dict[str, UrdfJoint] = {}
    for joint in root.iter("joint"):
        jtype = joint.get("type", "")
        if jtype == "fixed":
            continue
        limit = joint.find("limit")

        def attr(name: str, limit=limit) -> float | None:
            return float(limit.get(name)) if limit is not None and limit.get(name) is not None else None

        joints[joint.get("name", "")] = UrdfJoint(
            joint.get("name", ""), jtype, attr("lower"), attr("upper"), attr("velocity")
        )
    return joints


def read_urdf_links(path: Path) -> set[str]:
    return {link.get("name", "") for link in ET.parse(path).getroot().iter("link")}


# --------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------

_TOP_KEYS = (
    "name", "urdf", "cameras", "stitch", "video", "control", "state", "action", "extra_actions",
    "effectors", "joint_limits", "command", "prompt_template", "home", "demo",
)
_CHUNK_TOLERANCE = 1e-6

#: the embodiment every entry point starts when none is named (the built-in simulator's Franka/DROID)
DEFAULT_EMBODIMENT = "franka_droid"


def config_dir() -> Path:
    """The directory holding the shipped embodiment YAMLs (source tree or installed share/).

    An installed package (colcon) has its YAMLs in <prefix>/share/dreamzero_ros/config for a prefix
    on AMENT_PREFIX_PATH; that variable is read directly, as ament_index_python does, so that this
    pure module needs no ROS package.
    """
    candidates = [PACKAGE_ROOT / "config"]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "dreamzero_ros" / "config")
    for cand in candidates:
        if cand.is_dir():
            return cand
    return candidates[0]


def urdf_dir() -> Path:
    return config_dir().parent / "urdf"


def checkpoints_dir() -> Path:
    """The checkpoints that ship with the package, next to config/ (source tree or installed share/)."""
    return config_dir().parent / "checkpoints"


def resolve_checkpoint(name_or_path: str) -> Path:
    """A shipped checkpoint's folder name (under `checkpoints_dir()`) or a path -> the checkpoint folder; raises
    FileNotFoundError naming where it looked when that folder has no config.json."""
    text = str(name_or_path)
    folder = Path(text).expanduser() if "/" in text or text.startswith(("~", ".")) else checkpoints_dir() / text
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"checkpoint {text!r}: no config.json in {folder}")
    return folder


def available_embodiments() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml") if not p.stem.startswith("_"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """An embodiment name ('franka_droid') or a path to a YAML file."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return Path(text)
    path = config_dir() / f"{text}.yaml"
    if not path.exists():
        raise ConfigError(
            str(path), "", f"unknown embodiment {text!r}; known: {available_embodiments()} (or pass a YAML path)"
        )
    return path


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file; a file that cannot be read or parsed raises ConfigError naming it."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"invalid YAML: {exc}") from exc


def load_embodiment(name_or_path: str | Path) -> EmbodimentConfig:
    """Load and validate an embodiment YAML; raises ConfigError naming file and field."""
    path = resolve_config_path(name_or_path)
    return parse_embodiment(read_yaml(path), source=str(path), base_dir=path.parent)


def parse_embodiment(raw: Any, *, source: str, base_dir: Path) -> EmbodimentConfig:
    r = _Reader(source)
    top = r.mapping(raw, "", _TOP_KEYS, tuple(k for k in _TOP_KEYS if k not in ("extra_actions", "effectors", "home", "demo")))
    name = r.string(top["name"], "name")

    urdf_name = r.string(top["urdf"], "urdf")
    urdf_path = _find_urdf(urdf_name, base_dir)
    if urdf_path is None:
        raise r.fail("urdf", f"URDF file {urdf_name!r} not found next to the config or in urdf/")
    urdf_joints = read_urdf_joints(urdf_path)
    urdf_links = read_urdf_links(urdf_path)

    cameras = _parse_cameras(r, top["cameras"], urdf_links)
    stitch = _parse_stitch(r, top["stitch"], len(cameras))
    video = _parse_video(r, top["video"])
    control = _parse_control(r, top["control"])
    state = _parse_groups(r, top["state"], "state", allow_relative=False)
    action = _parse_groups(r, top["action"], "action", allow_relative=True)
    extra = _parse_extra(r, top.get("extra_actions", []) or [])
    effectors = _parse_effectors(r, top.get("effectors", []) or [])
    limits = _parse_limits(r, top["joint_limits"])
    command = _parse_command(r, top["command"])
    template = r.string(top["prompt_template"], "prompt_template")
    if "{instruction}" not in template:
        raise r.fail("prompt_template", "must contain the placeholder {instruction}")

    # Cross-field checks.
    state_joints = [j for g in state for j in g.joints]
    all_joints = list(dict.fromkeys(state_joints + [j for g in action for j in g.joints]))
    for field, joints in (("state", state), ("action", action)):
        seen: dict[str, str] = {}
        for i, group in enumerate(joints):
            for k, joint in enumerate(group.joints):
                if joint in seen:
                    raise r.fail(f"{field}[{i}].joints[{k}]", f"duplicate joint {joint!r} (also in group {seen[joint]!r})")
                seen[joint] = group.name
                if joint not in urdf_joints:
                    raise r.fail(
                        f"{field}[{i}].joints[{k}]",
                        f"joint {joint!r} is not a movable joint of {urdf_path.name}",
                    )
    for i, group in enumerate(action):
        for k, joint in enumerate(group.joints):
            if group.relative and joint not in state_joints:
                raise r.fail(
                    f"action[{i}].joints[{k}]",
                    f"relative action joint {joint!r} must also be in the state vector (its offset comes from it)",
                )
    for joint in all_joints:
        if joint not in limits:
            raise r.fail("joint_limits", f"missing limits for joint {joint!r}")
    for joint, lim in limits.items():
        if joint not in all_joints:
            raise r.fail(f"joint_limits.{joint}", "limits given for a joint that is in neither state nor action")
        uj = urdf_joints[joint]
        if uj.lower is not None and uj.upper is not None and (lim.lower < uj.lower - 1e-9 or lim.upper > uj.upper + 1e-9):
            raise r.fail(
                f"joint_limits.{joint}.position",
                f"[{lim.lower}, {lim.upper}] exceeds the URDF limits [{uj.lower}, {uj.upper}] of {urdf_path.name}",
            )
        if uj.velocity is not None and lim.velocity > uj.velocity + 1e-9:
            raise r.fail(
                f"joint_limits.{joint}.velocity",
                f"{lim.velocity} exceeds the URDF velocity limit {uj.velocity} of {urdf_path.name}",
            )
    for i, eff in enumerate(effectors):
        if eff.joint not in all_joints:
            raise r.fail(f"effectors[{i}].joint", f"effector joint {eff.joint!r} is in neither state nor action")
    home = None
    if top.get("home") is not None:
        home = _parse_home(r, top["home"], tuple(j for g in action for j in g.joints), limits)
    demo = _parse_demo(r, top["demo"]) if top.get("demo") is not None else NO_DEMO
    return EmbodimentConfig(
        name=name,
        source=source,
        urdf=urdf_path,
        cameras=cameras,
        stitch=stitch,
        video=video,
        control=control,
        state=state,
        action=action,
        extra_actions=extra,
        effectors=effectors,
        joint_limits=limits,
        command=command,
        prompt_template=template,
        home=home,
        demo=demo,
    )


def _find_urdf(name: str, base_dir: Path) -> Path | None:
    for cand in (base_dir / name, base_dir.parent / "urdf" / name, urdf_dir() / name):
        if cand.is_file():
            return cand
    return None


def _parse_cameras(r: _Reader, value: Any, urdf_links: set[str]) -> tuple[CameraConfig, ...]:
    cams = []
    keys = ("name", "topic", "compressed", "source_size", "wire_key", "frame", "aspect")
    for i, item in enumerate(r.items(value, "cameras")):
        f = f"cameras[{i}]"
        m = r.mapping(item, f, keys, ("name", "topic", "source_size", "wire_key", "frame"))
        size = r.pair(m["source_size"], f"{f}.source_size", kind="integer")
        frame = r.string(m["frame"], f"{f}.frame")
        if frame not in urdf_links:
            raise r.fail(f"{f}.frame", f"link {frame!r} is not in the URDF")
        cams.append(
            CameraConfig(
                name=r.string(m["name"], f"{f}.name"),
                topic=r.topic(m["topic"], f"{f}.topic"),
                compressed=r.boolean(m.get("compressed", False), f"{f}.compressed"),
                source_size=size,
                wire_key=r.string(m["wire_key"], f"{f}.wire_key"),
                frame=frame,
                aspect=r.string(m.get("aspect", "letterbox"), f"{f}.aspect", ASPECTS),
            )
        )
    for field in ("name", "topic", "wire_key"):
        seen: set[str] = set()
        for i, cam in enumerate(cams):
            val = getattr(cam, field)
            if val in seen:
                raise r.fail(f"cameras[{i}].{field}", f"duplicate {field} {val!r}")
            seen.add(val)
    return tuple(cams)


def _parse_stitch(r: _Reader, value: Any, n_cameras: int) -> StitchConfig:
    keys = ("layout", "view_size", "crop_scale", "sync_slop", "sync_queue_size", "stale_timeout", "stale_policy")
    m = r.mapping(value, "stitch", keys, keys)
    layout = r.string(m["layout"], "stitch.layout", LAYOUTS)
    if n_cameras != 3:
        raise r.fail("cameras", f"layout {layout!r} tiles exactly 3 views, got {n_cameras}")
    crop = r.number(m["crop_scale"], "stitch.crop_scale", positive=True)
    if crop > 1.0:
        raise r.fail("stitch.crop_scale", f"expected a value in (0, 1], got {crop}")
    return StitchConfig(
        layout=layout,
        view_size=r.pair(m["view_size"], "stitch.view_size", kind="integer"),
        crop_scale=crop,
        sync_slop=r.number(m["sync_slop"], "stitch.sync_slop", positive=True),
        sync_queue_size=r.integer(m["sync_queue_size"], "stitch.sync_queue_size"),
        stale_timeout=r.number(m["stale_timeout"], "stitch.stale_timeout", positive=True),
        stale_policy=r.string(m["stale_policy"], "stitch.stale_policy", STALE_POLICIES),
    )


def _parse_video(r: _Reader, value: Any) -> VideoConfig:
    m = r.mapping(value, "video", ("fps", "frames_per_chunk"), ("fps", "frames_per_chunk"))
    return VideoConfig(
        fps=r.number(m["fps"], "video.fps", positive=True),
        frames_per_chunk=r.integer(m["frames_per_chunk"], "video.frames_per_chunk"),
    )


def _parse_control(r: _Reader, value: Any) -> ControlConfig:
    keys = ("rate_hz", "horizon", "chunk_duration")
    m = r.mapping(value, "control", keys, keys)
    rate = r.number(m["rate_hz"], "control.rate_hz", positive=True)
    horizon = r.integer(m["horizon"], "control.horizon")
    duration = r.number(m["chunk_duration"], "control.chunk_duration", positive=True)
    if abs(horizon / rate - duration) > _CHUNK_TOLERANCE:
        raise r.fail(
            "control.chunk_duration",
            f"horizon x dt = {horizon} x 1/{rate:g} Hz = {horizon / rate:.6g} s, but chunk_duration is {duration:g} s",
        )
    return ControlConfig(rate_hz=rate, horizon=horizon)


def _parse_groups(r: _Reader, value: Any, field: str, *, allow_relative: bool) -> tuple[JointGroup, ...]:
    keys = ("name", "joints", "relative") if allow_relative else ("name", "joints")
    required = keys if allow_relative else ("name", "joints")
    groups = []
    for i, item in enumerate(r.items(value, field)):
        f = f"{field}[{i}]"
        m = r.mapping(item, f, keys, required)
        groups.append(
            JointGroup(
                name=r.string(m["name"], f"{f}.name"),
                joints=r.string_list(m["joints"], f"{f}.joints"),
                relative=r.boolean(m["relative"], f"{f}.relative") if allow_relative else False,
            )
        )
    names = [g.name for g in groups]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise r.fail(f"{field}[{i}].name", f"duplicate group name {n!r}")
    return tuple(groups)


def _parse_extra(r: _Reader, value: Any) -> tuple[ExtraActionGroup, ...]:
    if not isinstance(value, list):
        raise r.fail("extra_actions", f"expected a list, got {type(value).__name__}")
    out = []
    keys = ("name", "components", "topic", "limits")
    for i, item in enumerate(value):
        f = f"extra_actions[{i}]"
        m = r.mapping(item, f, keys, keys)
        comps = r.string_list(m["components"], f"{f}.components")
        lims = m["limits"]
        if not isinstance(lims, list) or len(lims) != len(comps):
            raise r.fail(f"{f}.limits", f"expected {len(comps)} [min, max] pairs (one per component), got {lims!r}")
        pairs = tuple(r.pair(p, f"{f}.limits[{k}]") for k, p in enumerate(lims))
        for k, (lo, hi) in enumerate(pairs):
            if lo >= hi:
                raise r.fail(f"{f}.limits[{k}]", f"min must be below max, got [{lo}, {hi}]")
        out.append(ExtraActionGroup(r.string(m["name"], f"{f}.name"), comps, r.topic(m["topic"], f"{f}.topic"), pairs))
    return tuple(out)


def _parse_effectors(r: _Reader, value: Any) -> tuple[EffectorMapping, ...]:
    if not isinstance(value, list):
        raise r.fail("effectors", f"expected a list, got {type(value).__name__}")
    out = []
    keys = ("joint", "joint_range", "model_range")
    for i, item in enumerate(value):
        f = f"effectors[{i}]"
        m = r.mapping(item, f, keys, keys)
        jr = r.pair(m["joint_range"], f"{f}.joint_range")
        mr = r.pair(m["model_range"], f"{f}.model_range")
        if jr[0] == jr[1]:
            raise r.fail(f"{f}.joint_range", f"the two ends must differ, got {list(jr)}")
        if mr[0] == mr[1]:
            raise r.fail(f"{f}.model_range", f"the two ends must differ, got {list(mr)}")
        out.append(EffectorMapping(r.string(m["joint"], f"{f}.joint"), jr, mr))
    return tuple(out)


def _parse_limits(r: _Reader, value: Any) -> dict[str, JointLimits]:
    if not isinstance(value, dict) or not value:
        raise r.fail("joint_limits", f"expected a mapping of joint name -> limits, got {value!r}")
    out = {}
    for joint, item in value.items():
        f = f"joint_limits.{joint}"
        m = r.mapping(item, f, ("position", "velocity"), ("position", "velocity"))
        lo, hi = r.pair(m["position"], f"{f}.position")
        if lo >= hi:
            raise r.fail(f"{f}.position", f"lower limit must be below upper, got [{lo}, {hi}]")
        out[str(joint)] = JointLimits(lo, hi, r.number(m["velocity"], f"{f}.velocity", positive=True))
    return out


def _parse_command(r: _Reader, value: Any) -> CommandConfig:
    keys = ("interface", "topic", "joint_states_topic")
    m = r.mapping(value, "command", keys, keys)
    return CommandConfig(
        interface=r.string(m["interface"], "command.interface", COMMAND_INTERFACES),
        topic=r.topic(m["topic"], "command.topic"),
        joint_states_topic=r.topic(m["joint_states_topic"], "command.joint_states_topic"),
    )


# --------------------------------------------------------------------------------------------
# A loaded checkpoint's timing against the config
# --------------------------------------------------------------------------------------------


def check_checkpoint_timing(
    embodiment: EmbodimentConfig,
    *,
    horizon: int,
    source: str,
    control_rate_hz: float | None = None,
    video_fps: float | None = None,
    frames_per_chunk: int | None = None,
) -> None:
    """Refuse a config whose chunk timing differs from the checkpoint's: a model trained on 24 steps at 30 Hz must
    not be driven with 48-step chunks or at 15 Hz. Values the checkpoint does not state (None) are not checked.
    The ConfigError names the config file and field, both values and the checkpoint."""
    wanted = (
        ("control.horizon", embodiment.control.horizon, horizon),
        ("control.rate_hz", embodiment.control.rate_hz, control_rate_hz),
        ("video.fps", embodiment.video.fps, video_fps),
        ("video.frames_per_chunk", embodiment.video.frames_per_chunk, frames_per_chunk),
    )
    wrong = [(f, mine, theirs) for f, mine, theirs in wanted if theirs is not None and abs(mine - theirs) > 1e-6]
    if wrong:
        detail = "; ".join(f"{f} is {mine:g} in the config but {theirs:g} in the checkpoint" for f, mine, theirs in wrong)
        raise ConfigError(embodiment.source, "", f"{detail} ({source}); use a config with the checkpoint's chunk timing")


def _parse_home(r: _Reader, value: Any, action_joints: tuple[str, ...], limits: dict[str, JointLimits]) -> HomeConfig:
    keys = ("pose", "velocity_scale")
    m = r.mapping(value, "home", keys, keys)
    pose_raw = m["pose"]
    if not isinstance(pose_raw, dict):
        raise r.fail("home.pose", f"expected a mapping of action joint -> position, got {pose_raw!r}")
    unknown = [str(j) for j in pose_raw if j not in action_joints]
    if unknown:
        raise r.fail("home.pose", f"joints {unknown} are not action joints; action joints are {list(action_joints)}")
    missing = [j for j in action_joints if j not in pose_raw]
    if missing:
        raise r.fail("home.pose", f"missing positions for action joints {missing}")
    pose = {}
    for joint in action_joints:
        v = r.number(pose_raw[joint], f"home.pose.{joint}")
        lim = limits[joint]
        if not lim.lower <= v <= lim.upper:
            raise r.fail(f"home.pose.{joint}", f"{v} is outside joint_limits.{joint}.position [{lim.lower}, {lim.upper}]")
        pose[joint] = v
    scale = r.number(m["velocity_scale"], "home.velocity_scale", positive=True)
    if scale > 1.0:
        raise r.fail("home.velocity_scale", f"expected a fraction of the velocity limits in (0, 1], got {scale}")
    return HomeConfig(pose=pose, velocity_scale=scale)


def _parse_demo(r: _Reader, value: Any) -> DemoConfig:
    m = r.mapping(value, "demo", ("task", "checkpoint"), ("task",))
    task = r.string(m["task"], "demo.task")
    checkpoint = m.get("checkpoint")
    return DemoConfig(task=task, checkpoint=None if checkpoint is None else r.string(checkpoint, "demo.checkpoint"))
