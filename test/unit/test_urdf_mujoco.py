"""The shipped URDFs honour the embodiment configs and compile in MuJoCo with every camera link kept.

Pins: joint names/types match the configs, config limits lie inside the URDF limits, MuJoCo reads the
same ranges the URDF states, and fixed camera links are not fused away by MuJoCo's URDF import.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

import dreamzero_ros.sim  # noqa: F401 - chooses the headless GL backend before mujoco is first imported
from dreamzero_ros.core.embodiment import available_embodiments, load_embodiment, read_urdf_joints

mujoco = pytest.importorskip("mujoco")

EMBODIMENTS = ("franka_droid", "agibot_g1", "yam")
URDF_TO_MJ_TYPE = {"revolute": mujoco.mjtJoint.mjJNT_HINGE, "prismatic": mujoco.mjtJoint.mjJNT_SLIDE}


@pytest.fixture(scope="module", params=EMBODIMENTS)
def loaded(request):
    emb = load_embodiment(request.param)
    return emb, mujoco.MjModel.from_xml_path(str(emb.urdf)), read_urdf_joints(emb.urdf)


def test_every_shipped_embodiment_has_a_urdf_tested_here() -> None:
    assert set(EMBODIMENTS) <= set(available_embodiments())


def test_every_state_and_action_joint_exists_in_mujoco_with_the_urdf_type(loaded) -> None:
    emb, model, urdf = loaded
    for name in dict.fromkeys(emb.state_joints + emb.action_joints):
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        assert jid >= 0, f"{emb.name}: joint {name} missing from the MuJoCo model"
        assert model.jnt_type[jid] == URDF_TO_MJ_TYPE[urdf[name].type], name


def test_mujoco_joint_ranges_equal_the_urdf_limits(loaded) -> None:
    emb, model, urdf = loaded
    for name, joint in urdf.items():
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        assert model.jnt_limited[jid], f"{emb.name}: {name} should be limited"
        lo, hi = model.jnt_range[jid]
        assert lo == pytest.approx(joint.lower, abs=1e-9) and hi == pytest.approx(joint.upper, abs=1e-9), name


def test_config_limits_lie_inside_the_urdf_limits(loaded) -> None:
    emb, _, urdf = loaded
    for name, lim in emb.joint_limits.items():
        joint = urdf[name]
        assert joint.lower <= lim.lower < lim.upper <= joint.upper, name
        assert joint.velocity is not None and lim.velocity <= joint.velocity, name


def test_every_camera_frame_survives_as_a_mujoco_body(loaded) -> None:
    emb, model, _ = loaded
    for cam in emb.cameras:
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, cam.frame) >= 0, f"{cam.frame} fused away"


def test_every_movable_link_has_positive_mass_and_a_valid_inertia(loaded) -> None:
    emb, model, _ = loaded
    for body in range(1, model.nbody):
        if model.body_jntnum[body] == 0:
            continue  # fixed links (cameras, flanges) are welded to their parent
        inertia = model.body_inertia[body]
        assert model.body_mass[body] > 0, model.body(body).name
        # Principal moments of a physical body satisfy the triangle inequality.
        a, b, c = sorted(inertia)
        assert a > 0 and a + b >= c * (1 - 1e-6), model.body(body).name


def test_urdfs_use_only_primitive_geometry_and_document_the_camera_convention() -> None:
    for name in EMBODIMENTS:
        emb = load_embodiment(name)
        root = ET.parse(emb.urdf).getroot()
        assert not list(root.iter("mesh")), f"{emb.urdf.name} references mesh files"
        assert "OPTICAL" in emb.urdf.read_text(), f"{emb.urdf.name} does not document its camera frames"


def test_mimic_fingers_become_joint_equalities_in_mujoco() -> None:
    emb = load_embodiment("franka_droid")
    model = mujoco.MjModel.from_xml_path(str(emb.urdf))
    follower = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "panda_finger_joint2")
    leader = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "panda_finger_joint1")
    pairs = {(int(model.eq_obj1id[e]), int(model.eq_obj2id[e])) for e in range(model.neq)}
    assert (follower, leader) in pairs
    assert math.isclose(model.eq_data[0][1], 1.0)
