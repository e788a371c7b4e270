"""Tasks with success in the built-in simulator: seeded episodes, instructions and success predicates.

A task names a coloured object in its instruction; an episode is one seeded draw of where the objects and the
target pad lie and of the arm's start pose. The predicates read only simulator state (body positions and the
gripper's tool centre point), never images, so the same check serves the scripted expert, a trained model and
an evaluation through the ROS nodes.

Tasks (franka_droid), over three 6 cm cubes (red, green, blue) and a yellow pad, all placed anew per seed:
* ``reach``: "touch the <colour> cube" -- the tool centre point comes within `REACH_DISTANCE` of the cube's centre;
* ``push``: "push the <colour> cube onto the yellow pad" -- the cube rests with its centre on the pad;
* ``push_forward``: "push the <colour> cube forward" -- the cube, still on the table, has slid `FORWARD_DISTANCE`
  further from the robot (world +x) than where it was placed; the pad is only a distractor here;
* ``lift``: "pick up the <colour> cube" -- the cube's centre is `LIFT_HEIGHT` above where it rested.

The task scene is `task_layout(embodiment)`: the embodiment's demo layout with the task objects instead of the
demo objects, so the demo scene itself is unchanged. `reset_episode` resets a `SimRobot` built from it.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import mujoco
import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.sim.robot import SimRobot
from dreamzero_ros.sim.scene import SceneLayout, SceneMarker, SceneObject, home_pose, layout_for

CUBE_HALF = 0.03  # m: 6 cm cubes are ~10 px across in a 180x320 exterior view and fit the 8 cm gripper
PAD_RADIUS = 0.07  # m
COLOURS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.1, 0.1, 1.0),
    "green": (0.1, 0.7, 0.2, 1.0),
    "blue": (0.15, 0.3, 0.9, 1.0),
}
PAD_NAME = "target_pad"
PAD_RGBA = (0.95, 0.8, 0.1, 1.0)

REACH_DISTANCE = 0.05  # m, tool centre point to cube centre: fingertips on the top face are ~0.037
PUSH_TOLERANCE = PAD_RADIUS - 0.02  # m, cube centre to pad centre (the cube lies mostly on the pad)
LIFT_HEIGHT = 0.06  # m above the cube's resting height
START_JITTER = 0.1  # rad, uniform per arm joint around home
WORKSPACE_X = (0.38, 0.62)  # m, where objects are drawn: reachable and seen by every camera
WORKSPACE_Y = (-0.22, 0.22)
MIN_OBJECT_GAP = 0.12  # m between cube centres
MIN_PAD_DISTANCE = 0.15  # m from the named cube to the pad centre (a hold-still policy never succeeds)
PUSH_LANE = 0.09  # m: other cubes keep this far from the named cube's push path
FORWARD_DISTANCE = 0.08  # m the named cube must slide away from the robot (+x) for push_forward
FORWARD_PUSH = 0.12  # m the expert slides it: a margin over FORWARD_DISTANCE
FORWARD = (1.0, 0.0)  # world xy direction of "forward": away from the robot's base


@dataclass(frozen=True, slots=True)
class TaskRig:
    """What the tasks need to know about an arm: its hand, tool centre point, arm joints and gripper."""

    hand_body: str
    tcp_offset: float  # m along the hand's +z from its origin to the point between the fingertips
    arm_joints: tuple[str, ...]
    gripper_joint: str
    gripper_open: float  # joint position (m)
    gripper_closed: float


RIGS: dict[str, TaskRig] = {
    "franka_droid": TaskRig(
        hand_body="panda_hand", tcp_offset=0.1034,
        arm_joints=tuple(f"panda_joint{i}" for i in range(1, 8)),
        gripper_joint="panda_finger_joint1", gripper_open=0.04, gripper_closed=0.0,
    ),
}


def rig_for(embodiment: EmbodimentConfig) -> TaskRig:
    try:
        return RIGS[embodiment.name]
    except KeyError:
        raise KeyError(
            f"{embodiment.source}: no simulated tasks for embodiment {embodiment.name!r}; tasks exist for {sorted(RIGS)}"
        ) from None


def cube_name(colour: str) -> str:
    return f"{colour}_cube"


def task_layout(embodiment: EmbodimentConfig) -> SceneLayout:
    """The task scene: the embodiment's layout with the three cubes and the pad instead of the demo objects."""
    rig_for(embodiment)
    base = layout_for(embodiment)
    x0, y0 = sum(WORKSPACE_X) / 2, 0.0
    objects = tuple(
        SceneObject(cube_name(colour), "box", (CUBE_HALF,) * 3, (x0, y0 + 0.15 * (i - 1)), rgba, mass=0.1)
        for i, (colour, rgba) in enumerate(COLOURS.items())
    )
    return dataclasses.replace(
        base, objects=objects, markers=(SceneMarker(PAD_NAME, PAD_RADIUS, (x0 + 0.1, 0.0), PAD_RGBA),)
    )


@dataclass(frozen=True, slots=True)
class Episode:
    """One seeded draw of a task: what to say, where everything starts, and what counts as done."""

    task: str
    seed: int
    colour: str  # the named cube's colour
    instruction: str
    objects: dict[str, tuple[float, float]]  # cube body -> (x, y) m
    pad: tuple[float, float]  # m
    start: dict[str, float]  # joint -> position (rad | m)
    max_duration: float  # s an episode may run before it counts as failed

    @property
    def target(self) -> str:
        """Body name of the named cube."""
        return cube_name(self.colour)


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    template: str  # instruction with {colour}
    max_duration: float  # s
    predicate: Callable[[SimRobot, Episode], bool] = field(repr=False)

    def instruction(self, colour: str) -> str:
        return self.template.format(colour=colour)


def tcp_position(robot: SimRobot) -> np.ndarray:
    """World (x, y, z) of the tool centre point, between the fingertips."""
    rig = rig_for(robot.embodiment)
    with robot.lock:
        return _tcp(robot.data, rig)


def tcp_at(robot: SimRobot, joints: Mapping[str, float]) -> np.ndarray:
    """World (x, y, z) of the tool centre point with the named joints at `joints` (joint -> position, the others as
    they are now), by kinematics alone on a copy: the simulation is untouched. ValueError for an unknown joint."""
    rig = rig_for(robot.embodiment)
    model = robot.model
    scratch = mujoco.MjData(model)
    with robot.lock:
        scratch.qpos[:] = robot.data.qpos
    for name, value in joints.items():
        try:
            joint = model.joint(name)
        except KeyError:
            raise ValueError(f"tcp_at: the simulated robot has no joint {name!r}") from None
        scratch.qpos[model.jnt_qposadr[joint.id]] = value
    mujoco.mj_kinematics(model, scratch)
    return _tcp(scratch, rig)


def _tcp(data: mujoco.MjData, rig: TaskRig) -> np.ndarray:
    hand = data.body(rig.hand_body)
    return hand.xpos + hand.xmat.reshape(3, 3)[:, 2] * rig.tcp_offset


def _table_top(robot: SimRobot) -> float:
    return robot.layout.table_top


def _reached(robot: SimRobot, episode: Episode) -> bool:
    return float(np.linalg.norm(tcp_position(robot) - robot.body_position(episode.target))) < REACH_DISTANCE


def _pushed(robot: SimRobot, episode: Episode) -> bool:
    pos = robot.body_position(episode.target)
    on_table = pos[2] < _table_top(robot) + CUBE_HALF + 0.01
    return on_table and float(np.hypot(pos[0] - episode.pad[0], pos[1] - episode.pad[1])) < PUSH_TOLERANCE


def _lifted(robot: SimRobot, episode: Episode) -> bool:
    return float(robot.body_position(episode.target)[2]) > _table_top(robot) + CUBE_HALF + LIFT_HEIGHT


def _pushed_forward(robot: SimRobot, episode: Episode) -> bool:
    pos = robot.body_position(episode.target)
    on_table = pos[2] < _table_top(robot) + CUBE_HALF + 0.01
    start = np.array(episode.objects[episode.target])
    return on_table and float(np.dot(pos[:2] - start, FORWARD)) >= FORWARD_DISTANCE


TASKS: dict[str, Task] = {
    "reach": Task("reach", "touch the {colour} cube", 5.0, _reached),
    "push": Task("push", "push the {colour} cube onto the yellow pad", 9.0, _pushed),
    "push_forward": Task("push_forward", "push the {colour} cube forward", 7.0, _pushed_forward),
    "lift": Task("lift", "pick up the {colour} cube", 7.0, _lifted),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; tasks are {sorted(TASKS)}") from None


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def push_path(task: str, cube: np.ndarray, pad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a push of the cube at `cube` (xy, m) leaves its centre, and the unit xy direction it slides: onto the
    pad for every task but push_forward (reach and lift place their scenes as push does, so that one seed is one
    scene), `FORWARD_PUSH` along `FORWARD` for push_forward."""
    goal = cube + np.asarray(FORWARD) * FORWARD_PUSH if task == "push_forward" else pad
    return goal, (goal - cube) / np.linalg.norm(goal - cube)


def _placement_valid(task: str, xy: np.ndarray, pad: np.ndarray, colours: list[str], colour: str) -> bool:
    """The lane along which the `colour` cube is pushed (`push_path`) is clear of the other cubes, and but for
    push_forward the pad is far enough from that cube."""
    target = xy[colours.index(colour)]
    if task != "push_forward" and np.linalg.norm(pad - target) < MIN_PAD_DISTANCE:
        return False
    goal, direction = push_path(task, target, pad)
    others = [xy[i] for i, c in enumerate(colours) if c != colour]
    # The push starts behind the cube, so the lane begins a cube and a finger behind it.
    lane_start = target - direction * (CUBE_HALF + 0.05)
    return not any(_segment_distance(o, lane_start, goal) < PUSH_LANE for o in others)


def sample_episode(embodiment: EmbodimentConfig, task: str, seed: int, colour: str | None = None,
                   scene_tasks: Sequence[str] | None = None) -> Episode:
    """The episode `seed` of `task`: pure function of (task, seed, colour, scene_tasks), no simulator needed.

    Cubes are drawn in the workspace at least `MIN_OBJECT_GAP` apart; the pad at least `MIN_PAD_DISTANCE` from
    the named cube (and clear of the others), with the push lane from the cube to the pad free of other cubes;
    for push_forward the pad anywhere and the lane `FORWARD_PUSH` ahead of the cube free instead.
    colour: name this cube instead of the seed's own draw. The placement is then one that is valid whichever cube
    is named, so the episodes of one seed with each colour share their scene and start pose and differ only in
    the instruction (and in what the expert does).
    scene_tasks: place the scene as these tasks (`task` among them) would all accept it, from one random stream, so
    the episodes of one seed of each of them share their scene and start pose and differ only in the instruction
    (with colour: in its verb alone). None: `task`'s own scene.
    """
    spec = get_task(task)
    scene_tasks = (task,) if scene_tasks is None else tuple(dict.fromkeys(scene_tasks))
    if task not in scene_tasks:
        raise ValueError(f"scene_tasks {list(scene_tasks)} must include the episode's task {task!r}")
    for other in scene_tasks:
        get_task(other)
    rig = rig_for(embodiment)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"episode seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([seed, zlib.crc32("+".join(sorted(scene_tasks)).encode())])
    colours = list(COLOURS)
    drawn = colours[int(rng.integers(len(colours)))]  # drawn even when overridden: the same stream after it
    if colour is not None and colour not in colours:
        raise ValueError(f"colour must be one of {colours}, got {colour!r}")
    named = [drawn] if colour is None else colours  # whose placement constraints must hold
    colour = drawn if colour is None else colour
    lo = np.array([WORKSPACE_X[0], WORKSPACE_Y[0]])
    hi = np.array([WORKSPACE_X[1], WORKSPACE_Y[1]])
    for _ in range(10_000):
        xy = rng.uniform(lo, hi, size=(len(colours), 2))
        pad = rng.uniform(lo, hi)
        if min(np.linalg.norm(xy[i] - xy[j]) for i in range(3) for j in range(i + 1, 3)) < MIN_OBJECT_GAP:
            continue
        if all(_placement_valid(t, xy, pad, colours, c) for t in scene_tasks for c in named):
            break
    else:  # pragma: no cover - the workspace is large enough that this never happens
        raise RuntimeError(f"{task} seed {seed}: no valid object placement found")
    home = home_pose(embodiment)
    lower, upper, _ = embodiment.limits_arrays(rig.arm_joints)
    start = dict(home)
    jitter = rng.uniform(-START_JITTER, START_JITTER, size=len(rig.arm_joints))
    for i, joint in enumerate(rig.arm_joints):
        start[joint] = float(np.clip(home[joint] + jitter[i], lower[i], upper[i]))
    start[rig.gripper_joint] = rig.gripper_open
    return Episode(
        task=task, seed=seed, colour=colour, instruction=spec.instruction(colour),
        objects={cube_name(c): (float(xy[i, 0]), float(xy[i, 1])) for i, c in enumerate(colours)},
        pad=(float(pad[0]), float(pad[1])), start=start, max_duration=spec.max_duration,
    )


def reset_episode(robot: SimRobot, task: str, seed: int, colour: str | None = None,
                  scene_tasks: Sequence[str] | None = None) -> Episode:
    """Reset `robot` (built from `task_layout`) to episode `seed` of `task` (naming `colour`, in the scene shared
    with `scene_tasks`, see `sample_episode`); returns the episode."""
    episode = sample_episode(robot.embodiment, task, seed, colour, scene_tasks)
    missing = [name for name in (*episode.objects, PAD_NAME) if name not in _body_names(robot)]
    if missing:
        raise ValueError(
            f"reset_episode: the scene has no {missing}; build the SimRobot with layout=task_layout(embodiment)"
        )
    robot.reset(episode.start)
    top = robot.layout.table_top
    positions = {name: (x, y, top + CUBE_HALF + 1e-4) for name, (x, y) in episode.objects.items()}
    positions[PAD_NAME] = (*episode.pad, top + 0.001)
    robot.place(positions)
    return episode


def _body_names(robot: SimRobot) -> set[str]:
    m = robot.model
    return {m.body(i).name for i in range(m.nbody)}


def is_success(robot: SimRobot, episode: Episode) -> bool:
    """The task's success predicate on the robot's current state, a Python bool (`/sim/task` is JSON)."""
    return bool(get_task(episode.task).predicate(robot, episode))
