"""MuJoCo scene for an embodiment: the repo's URDF + table, objects, lights, actuators and cameras.

Owns turning `urdf/<robot>.urdf` into a simulation-ready `mujoco.MjModel` through `mujoco.MjSpec`:

* the URDF is compiled with fixed links kept (`fusestatic` off) so every camera link survives as a body;
* robot collision geoms are hidden (geom group 3) and collide with the world but not with each other
  (contype 2 / conaffinity 1 vs. world 1 / 3): the simple primitive shapes overlap at the joints and
  self-contact would only fight the position actuators;
* every robot body gets gravity compensation, every state/action joint a position actuator whose
  ctrlrange is the joint range and whose damping is critical for the joint's reflected inertia, so
  arms hold their pose and track targets without tuning per robot;
* a camera named after each embodiment camera sits at its URDF `frame` link. URDF camera links are
  OPTICAL frames (+z viewing direction, +x image right, +y image down); a MuJoCo camera looks along
  its -z with +y up, so it is the optical frame rotated 180 deg about x (quat 0 1 0 0);
* shadows and reflections are disabled in the model (lights do not cast shadows, materials do not
  reflect): offscreen rendering is ~10x cheaper without them (see the design notes).

Where the robot stands, the table, the objects and the home pose are simulation-only facts, kept here
per embodiment in `SceneLayout`, not in the embodiment YAML (which describes the real robot).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco  # dreamzero_ros.sim (imported first, as our parent package) chose the headless GL backend
import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig

# Geom groups: MuJoCo renders groups 0-2 by default; collision shapes go to a hidden group.
VISUAL_GROUP = 1
COLLISION_GROUP = 3
# Contact bit masks: robot collides with the world, not with itself.
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1
WORLD_CONTYPE, WORLD_CONAFFINITY = 1, 3

MUJOCO_CAMERA_IN_OPTICAL = (0.0, 1.0, 0.0, 0.0)  # (w, x, y, z): 180 deg about the optical frame's x


@dataclass(frozen=True, slots=True)
class SceneObject:
    """A free-floating coloured object resting on the table."""

    name: str
    shape: str  # "box" | "cylinder" | "sphere"
    size: tuple[float, ...]  # MuJoCo geom size (half extents for a box; radius, half height for a cylinder)
    xy: tuple[float, float]  # m, in the world frame
    rgba: tuple[float, float, float, float]
    mass: float = 0.1  # kg


@dataclass(frozen=True, slots=True)
class SceneMarker:
    """A flat, visual-only disc on the table (a target region); it moves with its mocap body, never collides."""

    name: str
    radius: float  # m
    xy: tuple[float, float]  # m, in the world frame (tasks move it per episode through data.mocap_pos)
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class SceneLayout:
    """Simulation-only placement: the robot root pose, the table, the objects and the home pose."""

    table_center: tuple[float, float]  # (x, y) m
    table_half_size: tuple[float, float]  # (x, y) m
    table_top: float  # z of the table surface, m
    floor_z: float  # m
    home: dict[str, float]  # joint -> position; unlisted joints home to 0 clamped into their limits
    camera_fovy: dict[str, float]  # camera name -> vertical field of view, deg
    objects: tuple[SceneObject, ...]
    base_mocap: bool = False  # root moves kinematically (mobile base driven by set_base_velocity)
    kp_revolute: float = 400.0  # N m / rad
    kp_prismatic: float = 2000.0  # N / m
    dampratio: float = 1.0  # actuator damping relative to critical for the joint's reflected inertia
    physics_timestep: float = 0.002  # s
    arm_armature: float = 0.05  # kg m^2, motor inertia reflected through the gearbox; steadies stiff control
    markers: tuple[SceneMarker, ...] = ()  # target regions drawn on the table (tasks)


def _objects(x0: float, y0: float, scale: float = 1.0) -> tuple[SceneObject, ...]:
    """Four objects spread around (x0, y0) on the table; `scale` shrinks them for small grippers."""
    s = scale
    return (
        SceneObject("red_cube", "box", (0.025 * s, 0.025 * s, 0.025 * s), (x0, y0 + 0.12), (0.85, 0.1, 0.1, 1)),
        SceneObject("green_cylinder", "cylinder", (0.025 * s, 0.04 * s), (x0 + 0.12, y0 - 0.1), (0.1, 0.7, 0.2, 1)),
        SceneObject("blue_block", "box", (0.05 * s, 0.02 * s, 0.02 * s), (x0 - 0.04, y0 - 0.2), (0.15, 0.3, 0.9, 1)),
        SceneObject("yellow_puck", "cylinder", (0.035 * s, 0.012 * s), (x0 + 0.14, y0 + 0.2), (0.95, 0.8, 0.1, 1)),
    )


LAYOUTS: dict[str, SceneLayout] = {
    # DROID: the Panda stands at the back edge of the table, base at table height.
    "franka_droid": SceneLayout(
        table_center=(0.45, 0.0),
        table_half_size=(0.7, 0.75),
        table_top=0.0,
        floor_z=-0.76,
        home={  # DROID's reset pose: gripper ~0.45 m in front of the base, pointing down
            "panda_joint1": 0.0, "panda_joint2": -np.pi / 5, "panda_joint3": 0.0, "panda_joint4": -4 * np.pi / 5,
            "panda_joint5": 0.0, "panda_joint6": 3 * np.pi / 5, "panda_joint7": np.pi / 4,
            "panda_finger_joint1": 0.04,
        },
        camera_fovy={"exterior_1": 60.0, "exterior_2": 60.0, "wrist": 75.0},
        objects=_objects(0.5, 0.0),
    ),
    # AgiBot G1: mobile base on the floor in front of a 0.75 m table.
    "agibot_g1": SceneLayout(
        table_center=(0.85, 0.0),
        table_half_size=(0.4, 0.7),
        table_top=0.75,
        floor_z=0.0,
        home={
            "waist_lift_joint": 0.4, "waist_pitch_joint": 0.2, "head_yaw_joint": 0.0, "head_pitch_joint": 0.5,
            "left_arm_joint1": -0.6, "left_arm_joint2": -0.2, "left_arm_joint3": 0.0, "left_arm_joint4": -1.3,
            "left_arm_joint5": 0.0, "left_arm_joint6": 0.9, "left_arm_joint7": 0.0,
            "right_arm_joint1": -0.6, "right_arm_joint2": -0.2, "right_arm_joint3": 0.0, "right_arm_joint4": -1.3,
            "right_arm_joint5": 0.0, "right_arm_joint6": 0.9, "right_arm_joint7": 0.0,
            "left_effector_joint": 0.0, "right_effector_joint": 0.0,
        },
        camera_fovy={"top_head": 58.0, "hand_left": 70.0, "hand_right": 70.0},
        objects=_objects(0.7, 0.0),
        base_mocap=True,
    ),
    # YAM: both arms clamped to the table, 0.6 m apart.
    "yam": SceneLayout(
        table_center=(0.2, 0.0),
        table_half_size=(0.55, 0.7),
        table_top=0.0,
        floor_z=-0.76,
        home={
            "left_joint1": -0.25, "left_joint2": 1.65, "left_joint3": 1.45, "left_joint4": 0.7, "left_joint5": 0.0,
            "left_joint6": 0.0, "left_gripper_joint": 0.037,
            "right_joint1": 0.25, "right_joint2": 1.65, "right_joint3": 1.45, "right_joint4": 0.7,
            "right_joint5": 0.0, "right_joint6": 0.0, "right_gripper_joint": 0.037,
        },
        camera_fovy={"top": 60.0, "left": 75.0, "right": 75.0},
        objects=_objects(0.35, 0.0, 0.8),
        kp_revolute=150.0,
        kp_prismatic=1000.0,
        arm_armature=0.02,
    ),
}


def layout_for(embodiment: EmbodimentConfig) -> SceneLayout:
    """The scene layout of an embodiment; a robot without one has no simulation yet."""
    try:
        return LAYOUTS[embodiment.name]
    except KeyError:
        raise KeyError(
            f"{embodiment.source}: no simulation scene for embodiment {embodiment.name!r}; "
            f"known: {sorted(LAYOUTS)} (add a SceneLayout in dreamzero_ros/sim/scene.py)"
        ) from None


@dataclass(frozen=True, slots=True)
class SceneInfo:
    """What `build_scene` produced, by name: the robot's root body and the controlled joints."""

    model: mujoco.MjModel
    layout: SceneLayout
    root_body: str
    joint_names: tuple[str, ...]  # actuated joints, actuator i drives joint_names[i]
    camera_names: tuple[str, ...]


def controlled_joints(embodiment: EmbodimentConfig) -> tuple[str, ...]:
    """State joints, then any action joints not in the state, in config order."""
    return tuple(dict.fromkeys(embodiment.state_joints + embodiment.action_joints))


def home_pose(embodiment: EmbodimentConfig, layout: SceneLayout | None = None) -> dict[str, float]:
    """joint -> home position (rad | m) of the controlled joints: the layout's home, else 0, clamped into the
    config limits."""
    home = (layout if layout is not None else layout_for(embodiment)).home
    joints = controlled_joints(embodiment)
    lower, upper, _ = embodiment.limits_arrays(joints)
    return {j: float(np.clip(home.get(j, 0.0), lower[i], upper[i])) for i, j in enumerate(joints)}


def build_spec(
    embodiment: EmbodimentConfig,
    render_size: dict[str, tuple[int, int]] | None = None,
    layout: SceneLayout | None = None,
) -> mujoco.MjSpec:
    """The editable scene: URDF robot, world, actuators and cameras (not compiled yet).

    render_size: camera name -> (H, W) in pixels; sizes the offscreen framebuffer (default: each camera's
    source_size). layout: replaces the embodiment's default `SceneLayout` (e.g. a task scene's objects).
    """
    layout = layout if layout is not None else layout_for(embodiment)
    spec = mujoco.MjSpec.from_file(str(embodiment.urdf))
    # Keep fixed links (camera frames) as bodies even if the URDF lacks its <mujoco> compiler block.
    spec.compiler.fusestatic = False
    spec.compiler.discardvisual = False
    spec.modelname = f"{embodiment.name}_scene"

    _configure_options(spec, layout, embodiment, render_size)
    _prepare_robot(spec, layout)
    _add_world(spec, layout)
    _add_cameras(spec, embodiment, layout)
    _add_actuators(spec, embodiment, layout)
    return spec


def build_scene(
    embodiment: EmbodimentConfig,
    render_size: dict[str, tuple[int, int]] | None = None,
    layout: SceneLayout | None = None,
) -> SceneInfo:
    """Compile the scene for `embodiment`; raises ValueError if the URDF lacks a configured camera frame."""
    layout = layout if layout is not None else layout_for(embodiment)
    spec = build_spec(embodiment, render_size, layout)
    model = spec.compile()
    root = spec.worldbody.first_body().name
    return SceneInfo(
        model=model,
        layout=layout,
        root_body=root,
        joint_names=controlled_joints(embodiment),
        camera_names=embodiment.camera_names,
    )


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def _configure_options(
    spec: mujoco.MjSpec,
    layout: SceneLayout,
    embodiment: EmbodimentConfig,
    render_size: dict[str, tuple[int, int]] | None,
) -> None:
    spec.option.timestep = layout.physics_timestep
    # implicitfast integrates joint damping implicitly: stiff position servos stay stable at 2 ms.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    sizes = [tuple(c.source_size) for c in embodiment.cameras] + list((render_size or {}).values())
    spec.visual.global_.offheight = max(max(h for h, _ in sizes), 480)
    spec.visual.global_.offwidth = max(max(w for _, w in sizes), 640)
    spec.visual.quality.shadowsize = 0  # no shadow map at all (shadows cost ~25x per frame on llvmpipe)
    spec.visual.quality.offsamples = 0  # no multisampling: llvmpipe pays per sample
    spec.visual.map.znear = 0.005  # x extent: near plane ~1 cm so the wrist cameras see their fingertips
    spec.visual.headlight.ambient = (0.35, 0.35, 0.35)
    spec.visual.headlight.diffuse = (0.35, 0.35, 0.35)
    spec.visual.headlight.specular = (0.0, 0.0, 0.0)


def _prepare_robot(spec: mujoco.MjSpec, layout: SceneLayout) -> mujoco.MjsBody:
    root = spec.worldbody.first_body()
    if layout.base_mocap:
        root.mocap = True  # moved kinematically through data.mocap_pos / mocap_quat
    for body in spec.bodies:
        if body.name == "world":
            continue
        body.gravcomp = 1.0  # joint servos only track; gravity is compensated as on the real arms
    for geom in spec.geoms:
        if geom.contype == 0 and geom.conaffinity == 0:
            geom.group = VISUAL_GROUP
        else:
            geom.group = COLLISION_GROUP
            geom.contype, geom.conaffinity = ROBOT_CONTYPE, ROBOT_CONAFFINITY
            geom.friction = (1.5, 0.01, 0.001)  # grippy finger pads
    for joint in spec.joints:
        joint.armature = layout.arm_armature if joint.type == mujoco.mjtJoint.mjJNT_HINGE else 0.01
    return root


def _add_world(spec: mujoco.MjSpec, layout: SceneLayout) -> None:
    wb = spec.worldbody
    spec.add_texture(
        name="floor_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=(0.32, 0.34, 0.38), rgb2=(0.26, 0.28, 0.31), width=256, height=256,
    )
    floor_mat = spec.add_material(name="floor_mat", texrepeat=(6, 6), reflectance=0.0)
    floor_mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "floor_tex"
    wb.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=(4, 4, 0.05), pos=(0, 0, layout.floor_z),
        material="floor_mat", contype=WORLD_CONTYPE, conaffinity=WORLD_CONAFFINITY,
    )
    tx, ty = layout.table_center
    hx, hy = layout.table_half_size
    thick = 0.02
    wb.add_geom(
        name="table_top", type=mujoco.mjtGeom.mjGEOM_BOX, size=(hx, hy, thick), rgba=(0.62, 0.47, 0.32, 1),
        pos=(tx, ty, layout.table_top - thick), contype=WORLD_CONTYPE, conaffinity=WORLD_CONAFFINITY,
    )
    leg_h = (layout.table_top - 2 * thick - layout.floor_z) / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            wb.add_geom(
                type=mujoco.mjtGeom.mjGEOM_BOX, size=(0.03, 0.03, leg_h), rgba=(0.3, 0.22, 0.15, 1),
                pos=(tx + sx * (hx - 0.05), ty + sy * (hy - 0.05), layout.floor_z + leg_h),
                contype=0, conaffinity=0, group=VISUAL_GROUP,
            )
    for obj in layout.objects:
        half_h = obj.size[0] if obj.shape == "sphere" else obj.size[-1]
        body = wb.add_body(name=obj.name, pos=(*obj.xy, layout.table_top + half_h + 1e-4))
        body.add_freejoint(name=f"{obj.name}_free")
        gtype = {"box": mujoco.mjtGeom.mjGEOM_BOX, "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
                 "sphere": mujoco.mjtGeom.mjGEOM_SPHERE}[obj.shape]
        size = tuple(obj.size) + (0.0,) * (3 - len(obj.size))
        body.add_geom(
            type=gtype, size=size, rgba=obj.rgba, mass=obj.mass, contype=WORLD_CONTYPE,
            conaffinity=WORLD_CONAFFINITY, friction=(1.0, 0.01, 0.001), condim=4,
        )
    for marker in layout.markers:
        # 1 mm above the table so it never z-fights with the top; no contact, so objects slide over it.
        body = wb.add_body(name=marker.name, pos=(*marker.xy, layout.table_top + 0.001), mocap=True)
        body.add_geom(
            type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=(marker.radius, 0.001, 0.0), rgba=marker.rgba,
            contype=0, conaffinity=0, group=VISUAL_GROUP,
        )
    # A key light from above-front and a fill light; neither casts shadows (see module docstring).
    for name, pos, direction, diffuse in (
        ("key_light", (0.6, 0.3, 2.5), (-0.1, -0.1, -1.0), (0.6, 0.6, 0.6)),
        ("fill_light", (-0.5, -1.0, 2.0), (0.4, 0.5, -1.0), (0.3, 0.3, 0.3)),
    ):
        wb.add_light(
            name=name, pos=pos, dir=direction, diffuse=diffuse, specular=(0.1, 0.1, 0.1),
            castshadow=False, type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
        )


def _add_cameras(spec: mujoco.MjSpec, embodiment: EmbodimentConfig, layout: SceneLayout) -> None:
    for cam in embodiment.cameras:
        body = spec.body(cam.frame)
        if body is None:
            raise ValueError(
                f"{embodiment.source}: cameras[{cam.name}].frame: link {cam.frame!r} is not a body of the "
                f"compiled {embodiment.urdf.name} (was it fused away?)"
            )
        h, w = cam.source_size
        body.add_camera(
            name=cam.name, quat=MUJOCO_CAMERA_IN_OPTICAL, fovy=layout.camera_fovy.get(cam.name, 60.0),
            resolution=(w, h),
        )


def _add_actuators(spec: mujoco.MjSpec, embodiment: EmbodimentConfig, layout: SceneLayout) -> None:
    for name in controlled_joints(embodiment):
        joint = spec.joint(name)
        if joint is None:
            raise ValueError(f"{embodiment.source}: joint {name!r} is not in the compiled {embodiment.urdf.name}")
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        kp = layout.kp_prismatic if joint.type == mujoco.mjtJoint.mjJNT_SLIDE else layout.kp_revolute
        # dampratio: damping set at compile time to this fraction of critical for the joint's inertia.
        act.set_to_position(kp=kp, dampratio=layout.dampratio, inheritrange=True)
