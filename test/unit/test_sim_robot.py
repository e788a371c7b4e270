"""SimRobot: scene building, home pose, position tracking, cameras and input validation per embodiment.

Runs headless (MUJOCO_GL=egl by default, chosen by importing dreamzero_ros.sim) and without ROS.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import dreamzero_ros.sim  # noqa: F401 - chooses the headless GL backend before mujoco is first imported
from dreamzero_ros.core.embodiment import load_embodiment

mujoco = pytest.importorskip("mujoco")
from dreamzero_ros.sim.robot import SimRobot  # noqa: E402 - only once mujoco is known to be importable

EMBODIMENTS = ("franka_droid", "agibot_g1", "yam")
TRACK_TOL_RAD = 0.02  # revolute joints, after 1 s
TRACK_TOL_M = 0.002  # prismatic joints (grippers, lift), after 1 s
TRACK_OFFSET_RAD = 0.1  # a move every camera can see, small enough to stay clear of the table


@pytest.fixture(scope="module", params=EMBODIMENTS)
def robot(request):
    sim = SimRobot(load_embodiment(request.param))
    yield sim
    sim.close()


def _is_prismatic(sim: SimRobot, joint: str) -> bool:
    return sim.model.jnt_type[sim.model.joint(joint).id] == mujoco.mjtJoint.mjJNT_SLIDE


def _offset_targets(sim: SimRobot) -> np.ndarray:
    """Home moved by +-TRACK_OFFSET_RAD (alternating sign), prismatic joints by +-10% of their range."""
    lo, hi, _ = sim.embodiment.limits_arrays(sim.joint_names)
    home = np.array([sim.home[j] for j in sim.joint_names])
    target = home.copy()
    for i, joint in enumerate(sim.joint_names):
        size = 0.1 * (hi[i] - lo[i]) if _is_prismatic(sim, joint) else TRACK_OFFSET_RAD
        step = size if i % 2 == 0 else -size
        target[i] = home[i] + step if lo[i] <= home[i] + step <= hi[i] else home[i] - step
    return target


def _camera_moves_with_joints(sim: SimRobot, camera: str) -> bool:
    body = sim.model.body(sim.embodiment.camera(camera).frame).id
    while body > 0:
        if sim.model.body_jntnum[body] > 0:
            return True
        body = sim.model.body_parentid[body]
    return False


def test_the_scene_has_an_actuator_per_joint_and_a_camera_per_embodiment_camera(robot: SimRobot) -> None:
    emb = robot.embodiment
    assert robot.joint_names == tuple(dict.fromkeys(emb.state_joints + emb.action_joints))
    assert robot.model.nu == len(robot.joint_names)
    for cam in emb.cameras:
        cam_id = mujoco.mj_name2id(robot.model, mujoco.mjtObj.mjOBJ_CAMERA, cam.name)
        assert cam_id >= 0
        assert robot.model.body(robot.model.cam_bodyid[cam_id]).name == cam.frame


def test_reset_puts_every_joint_at_a_home_pose_inside_the_config_limits(robot: SimRobot) -> None:
    robot.reset()
    q = robot.joint_positions()
    assert robot.time == 0.0
    for joint, lim in robot.embodiment.joint_limits.items():
        assert lim.lower <= q[joint] <= lim.upper, joint
        assert q[joint] == pytest.approx(robot.home[joint], abs=1e-9)


def test_the_arms_hold_their_home_pose_under_gravity(robot: SimRobot) -> None:
    robot.reset()
    for _ in range(15):
        robot.step(1 / 30)
    q = robot.joint_positions()
    drift = max(abs(q[j] - robot.home[j]) for j in robot.joint_names)
    assert drift < 1e-3


def test_joints_track_targets_within_tolerance_after_one_second(robot: SimRobot) -> None:
    robot.reset()
    target = _offset_targets(robot)
    robot.set_targets(robot.joint_names, target)
    for _ in range(30):
        robot.step(1 / 30)
    assert robot.time == pytest.approx(1.0, abs=robot.model.opt.timestep / 2 + 1e-9)
    q = robot.joint_positions()
    for joint, want in zip(robot.joint_names, target, strict=True):
        tol = TRACK_TOL_M if _is_prismatic(robot, joint) else TRACK_TOL_RAD
        assert abs(q[joint] - want) < tol, f"{joint}: at {q[joint]:.4f}, target {want:.4f}"
    assert max(abs(v) for v in robot.joint_velocities().values()) < 0.05


def test_targets_outside_the_limits_are_clamped_to_the_config_limits(robot: SimRobot) -> None:
    robot.reset()
    joint = robot.joint_names[0]
    lim = robot.embodiment.joint_limits[joint]
    robot.set_targets([joint], [lim.upper + 10.0])
    assert robot.targets()[joint] == pytest.approx(lim.upper)


def test_images_have_the_camera_source_size_and_real_content(robot: SimRobot) -> None:
    robot.reset()
    for cam in robot.embodiment.cameras:
        image = robot.render(cam.name)
        assert image.shape == (*cam.source_size, 3) and image.dtype == np.uint8
        colours = np.unique(image.reshape(-1, 3), axis=0)
        assert len(colours) > 20, f"{cam.name}: only {len(colours)} distinct colours"
        assert 10 < image.mean() < 245, f"{cam.name}: mean {image.mean():.1f}, nearly black or white"


def test_cameras_on_the_arms_see_a_different_image_after_the_arms_move(robot: SimRobot) -> None:
    robot.reset()
    moving = [c for c in robot.camera_names if _camera_moves_with_joints(robot, c)]
    assert moving, "every embodiment has at least one wrist or hand camera"
    before = {c: robot.render(c).astype(np.int16) for c in moving}
    robot.set_targets(robot.joint_names, _offset_targets(robot))
    for _ in range(30):
        robot.step(1 / 30)
    for cam in moving:
        change = np.abs(robot.render(cam).astype(np.int16) - before[cam]).mean()
        assert change > 5.0, f"{cam}: mean pixel change {change:.2f}"


def test_render_all_returns_every_camera_at_one_simulated_instant(robot: SimRobot) -> None:
    robot.reset()
    robot.step(0.1)
    sim_time, images = robot.render_all()
    assert sim_time == pytest.approx(robot.time)
    assert set(images) == set(robot.camera_names)
    for cam in robot.embodiment.cameras:
        assert np.array_equal(images[cam.name], robot.render(cam.name)), cam.name


def test_cameras_render_from_a_thread_other_than_the_one_that_rendered_first() -> None:
    # A ROS executor runs each timer callback on whichever worker thread is free, and EGL lets only
    # one thread hold a context: the context must be released after every render.
    with SimRobot(load_embodiment("franka_droid")) as sim:
        camera = sim.camera_names[0]
        first = sim.render(camera)
        results: list[np.ndarray | BaseException] = []

        def render_elsewhere() -> None:
            try:
                results.append(sim.render(camera))
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                results.append(exc)

        for _ in range(2):
            worker = threading.Thread(target=render_elsewhere)
            worker.start()
            worker.join(timeout=30)
        assert len(results) == 2
        for result in results:
            assert isinstance(result, np.ndarray), f"render on another thread failed: {result!r}"
            assert np.array_equal(result, first)
        assert np.array_equal(sim.render(camera), first)


def test_an_unknown_joint_name_raises_and_names_it(robot: SimRobot) -> None:
    with pytest.raises(ValueError, match="unknown joint 'elbow_of_doom'"):
        robot.set_targets([robot.joint_names[0], "elbow_of_doom"], [0.0, 0.0])
    with pytest.raises(ValueError, match="unknown joint 'elbow_of_doom'"):
        robot.reset({"elbow_of_doom": 0.0})


def test_bad_target_vectors_and_cameras_are_rejected(robot: SimRobot) -> None:
    with pytest.raises(ValueError, match="2 joint names but 1 positions"):
        robot.set_targets(robot.joint_names[:2], [0.0])
    with pytest.raises(ValueError, match="non-finite"):
        robot.set_targets(robot.joint_names[:1], [float("nan")])
    with pytest.raises(ValueError, match="unknown camera 'nope'"):
        robot.render("nope")
    joint = robot.joint_names[0]
    with pytest.raises(ValueError, match="outside its limits"):
        robot.reset({joint: robot.embodiment.joint_limits[joint].upper + 1.0})


def test_render_size_overrides_the_camera_source_size() -> None:
    emb = load_embodiment("yam")
    with SimRobot(emb, render_size={"top": (120, 160)}) as sim:
        assert sim.render("top").shape == (120, 160, 3)
        assert sim.render("left").shape == (*emb.camera("left").source_size, 3)
    with pytest.raises(ValueError, match="unknown camera 'nope'"):
        SimRobot(emb, render_size={"nope": (10, 10)})


def test_the_agibot_base_drives_kinematically_and_is_clamped_to_the_config_limits() -> None:
    with SimRobot(load_embodiment("agibot_g1")) as sim:
        assert sim.has_mobile_base
        sim.set_base_velocity(0.2, 0.0)
        for _ in range(30):
            sim.step(1 / 30)
        x, y, yaw = sim.base_pose()
        assert x == pytest.approx(0.2, abs=1e-3) and y == pytest.approx(0.0) and yaw == pytest.approx(0.0)
        sim.set_base_velocity(0.0, 5.0)  # config limit 1.0 rad/s
        sim.step(0.5)
        assert sim.base_pose()[2] == pytest.approx(0.5, abs=1e-3)
        sim.reset()
        assert sim.base_pose() == (0.0, 0.0, 0.0)


def test_a_robot_without_a_mobile_base_rejects_base_velocity() -> None:
    with SimRobot(load_embodiment("franka_droid")) as sim:
        assert not sim.has_mobile_base
        with pytest.raises(ValueError, match="no mobile base"):
            sim.set_base_velocity(0.1, 0.0)


def test_gl_info_names_the_renderer_and_leaves_no_context_bound() -> None:
    with SimRobot(load_embodiment("yam")) as sim:
        info = sim.gl_info()
        assert info["renderer"] and info["version"]
        shapes: list[tuple[int, ...]] = []
        # EGL_BAD_ACCESS on another thread if gl_info had left the context bound to this one.
        worker = threading.Thread(target=lambda: shapes.append(sim.render("top").shape))
        worker.start()
        worker.join(timeout=30)
        assert shapes == [(*sim.embodiment.camera("top").source_size, 3)]
