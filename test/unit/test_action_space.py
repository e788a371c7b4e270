"""ActionSpace maths on hand-computed examples: effector maps, q99 normalisation, relative actions, extras."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamzero_ros.core.action_space import ActionSpace, StatisticsError, select_statistics
from dreamzero_ros.core.embodiment import load_embodiment

DROID = load_embodiment("franka_droid")
G1 = load_embodiment("agibot_g1")
YAM = load_embodiment("yam")


def stats(groups: dict[str, tuple[list[float], list[float]]]) -> dict:
    """{group: (q01, q99)} -> the metadata.json statistics entry for each group."""
    return {name: {"q01": lo, "q99": hi, "min": lo, "max": hi, "mean": lo, "std": lo}
            for name, (lo, hi) in groups.items()}


def droid_statistics() -> dict:
    return {
        "state": stats({"joint_position": ([0.0] * 7, [2.0] * 7), "gripper_position": ([0.5], [0.5])}),
        "action": stats({"joint_position": ([-0.1] * 7, [0.3] * 7), "gripper_position": ([0.0], [1.0])}),
    }


def test_droid_gripper_maps_finger_metres_to_the_model_range_and_back():
    space = ActionSpace(DROID)
    state = np.array([0.1, 0.2, 0.3, -1.5, 0.0, 1.5, 0.7, 0.01])
    model = space.state_to_model(state)
    # Panda finger 0.04 m (open) -> 0, 0 m (closed) -> 1, so 0.01 m -> 0.75; arm joints unchanged.
    np.testing.assert_allclose(model, [0.1, 0.2, 0.3, -1.5, 0.0, 1.5, 0.7, 0.75])
    np.testing.assert_allclose(space.state_from_model(model), state)


def test_state_normalisation_is_q99_clipped_with_identity_where_q01_equals_q99():
    space = ActionSpace(DROID, droid_statistics())
    state = np.array([0.5, 3.0, -1.0, 1.0, 0.0, 2.0, 1.5, 0.03])
    # joints: 2 (x - 0) / 2 - 1 = x - 1, clipped to [-1, 1]; gripper q01 == q99 -> raw model value 0.25
    expected = [-0.5, 1.0, -1.0, 0.0, -1.0, 1.0, 0.5, 0.25]
    out = space.encode_state(state)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_a_server_makes_actions_absolute_in_model_units_from_the_model_unit_state_alone():
    """The policy server's path (absolute_actions) never leaves model units: the chunk-start state arrives
    in model units (gripper 0.75 = 0.01 m) and is added to the relative joints only."""
    space = ActionSpace(DROID, droid_statistics())
    state_model = np.array([0.1, 0.2, 0.3, -1.5, 0.0, 1.5, 0.7, 0.75])
    actions = np.zeros((24, 8))
    actions[:, :7] = 0.5  # -> 0.2 rad relative (see below)
    actions[:, 7] = -1.0  # -> gripper 0.0 (model units), absolute
    expected = np.zeros((24, 8))
    expected[:, :7] = 0.2 + state_model[:7]
    np.testing.assert_allclose(space.absolute_actions(actions, state_model), expected, atol=1e-12)
    with pytest.raises(ValueError, match="state \\(model units\\)"):
        space.absolute_actions(actions, state_model[:7])


def test_relative_joints_get_the_chunk_start_state_added_once_and_the_gripper_stays_absolute():
    space = ActionSpace(DROID, droid_statistics())
    state = np.array([0.1, 0.2, 0.3, -1.5, 0.0, 1.5, 0.7, 0.04])
    actions = np.zeros((24, 8))
    actions[:, :7] = 0.5  # -> (0.5 + 1) / 2 * 0.4 - 0.1 = 0.2 rad relative
    actions[:, 7] = 0.5  # -> gripper 0.75 (model) -> 0.04 - 0.75 * 0.04 = 0.01 m
    actions[3, 0] = -1.0  # -> -0.1 rad relative at step 3 only
    positions, extras = space.decode_actions(actions, state)
    assert positions.shape == (24, 8) and extras == {}
    expected = np.tile(state[:7] + 0.2, (24, 1))
    expected[3, 0] = state[0] - 0.1
    np.testing.assert_allclose(positions[:, :7], expected, atol=1e-12)
    np.testing.assert_allclose(positions[:, 7], 0.01, atol=1e-12)


def test_normalised_actions_outside_minus_one_one_are_clipped_before_unnormalising():
    space = ActionSpace(DROID, droid_statistics())
    state = np.zeros(8)
    state[3], state[5] = -1.5, 1.5
    actions = np.full((24, 8), 3.0)
    positions, _ = space.decode_actions(actions, state)
    np.testing.assert_allclose(positions[:, :7], np.tile(state[:7] + 0.3, (24, 1)))  # q99, not 3 x the range
    np.testing.assert_allclose(positions[:, 7], 0.0)  # gripper model 1.0 = closed = 0 m


def test_absolute_model_units_are_the_wire_reply_and_invert_exactly():
    space = ActionSpace(DROID, droid_statistics())
    state = np.array([0.1, 0.2, 0.3, -1.5, 0.0, 1.5, 0.7, 0.02])
    actions = np.linspace(-1, 1, 24 * 8).reshape(24, 8)
    absolute = space.to_absolute(space.unnormalise_actions(actions), state)
    positions, extras = space.model_to_si_actions(absolute)
    np.testing.assert_allclose(space.si_to_model_actions(positions, extras), absolute, atol=1e-12)
    assert np.all((absolute[:, 7] >= 0) & (absolute[:, 7] <= 1))  # gripper stays in the model's [0, 1]


def test_agibot_relative_effectors_and_absolute_robot_velocity_extras():
    statistics = {
        "state": stats({g.name: ([0.0] * len(g.joints), [0.0] * len(g.joints)) for g in G1.state}),  # identity
        "action": {
            **stats({g.name: ([0.0] * len(g.joints), [0.0] * len(g.joints)) for g in G1.action}),
            **stats({"robot_velocity": ([-0.5, -1.0], [0.5, 1.0])}),
        },
    }
    space = ActionSpace(G1, statistics)
    assert space.action_dim == 22 and space.joint_action_dim == 20
    state = np.zeros(20)
    state[14], state[15] = 0.2, 0.6  # effectors, model value == joint value (0..1 <-> 0..1)
    actions = np.zeros((24, 22))
    actions[:, 14] = 0.1  # effector deltas (identity normalisation)
    actions[:, 20] = 0.5  # base linear_x: (0.5 + 1) / 2 * 1.0 - 0.5 = 0.25 m/s
    actions[:, 21] = -1.0  # base angular_z: -1.0 rad/s
    positions, extras = space.decode_actions(actions, state)
    np.testing.assert_allclose(positions[:, 14], 0.3)
    np.testing.assert_allclose(positions[:, 15], 0.6)
    assert list(extras) == ["robot_velocity"]
    np.testing.assert_allclose(extras["robot_velocity"], np.tile([0.25, -1.0], (24, 1)))


def test_yam_relative_gripper_is_added_in_model_units_then_mapped_to_metres():
    space = ActionSpace(YAM)
    state = np.zeros(14)
    state[6] = 0.0185  # left gripper half open -> model 0.5
    actions = np.zeros((24, 14))
    actions[:, 6] = 0.2  # model delta -> 0.7 -> 0.7 * 0.037 m
    positions, _ = space.decode_actions(actions, state)
    np.testing.assert_allclose(positions[:, 6], 0.7 * 0.037)


def test_missing_statistics_give_identity_and_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="dreamzero_ros.core.action_space"):
        space = ActionSpace(DROID)
    assert "identity normalisation" in caplog.text
    state = np.array([0.1, 0.2, 0.3, -1.5, 0.0, 1.5, 0.7, 0.04])
    np.testing.assert_allclose(space.encode_state(state), space.state_to_model(state).astype(np.float32))


def test_single_and_multi_embodiment_metadata_pick_the_documented_key():
    single = {"statistics": droid_statistics()}
    assert select_statistics(single, DROID) is single["statistics"]
    multi = {"oxe_droid": {"statistics": droid_statistics()}, "agibot": {"statistics": {}}}
    assert select_statistics(multi, DROID) is multi["oxe_droid"]["statistics"]  # reference tag alias
    named = {"franka_droid": {"statistics": droid_statistics()}, "oxe_droid": {"statistics": {}}}
    assert select_statistics(named, DROID) is named["franka_droid"]["statistics"]  # own name first
    assert select_statistics(multi, DROID, key="agibot") is multi["agibot"]["statistics"]
    with pytest.raises(StatisticsError, match="no statistics for embodiment key 'nope'"):
        select_statistics(multi, DROID, key="nope")
    with pytest.raises(StatisticsError, match="cannot pick statistics for embodiment 'yam'"):
        select_statistics(multi, YAM)
    assert select_statistics(None, DROID) is None


def test_statistics_missing_a_group_or_with_the_wrong_length_are_refused():
    bad = droid_statistics()
    del bad["action"]["gripper_position"]
    with pytest.raises(StatisticsError, match=r"statistics.action.gripper_position: missing"):
        ActionSpace(DROID, bad)
    bad = droid_statistics()
    bad["state"]["joint_position"]["q99"] = [1.0] * 6
    with pytest.raises(StatisticsError, match=r"statistics.state.joint_position.q99: expected 7 finite numbers"):
        ActionSpace(DROID, bad)


def test_wrong_shapes_and_non_finite_values_name_what_was_expected():
    space = ActionSpace(DROID)
    with pytest.raises(ValueError, match=r"state: expected shape \[8\], got \[7\]"):
        space.state_to_model(np.zeros(7))
    with pytest.raises(ValueError, match=r"actions: expected shape \[H, 8\], got \[24, 7\]"):
        space.unnormalise_actions(np.zeros((24, 7)))
    with pytest.raises(ValueError, match="NaN or inf"):
        space.encode_state(np.full(8, np.nan))
    with pytest.raises(ValueError, match="extras: missing group 'robot_velocity'"):
        ActionSpace(G1).si_to_model_actions(np.zeros((24, 20)), {})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=8, max_size=8), st.floats(-0.05, 0.09))
def test_state_normalisation_always_lands_in_minus_one_one_on_normalised_components(joints, finger):
    space = ActionSpace(DROID, droid_statistics())
    out = space.encode_state(np.array(joints[:7] + [finger]))
    assert np.all(np.abs(out[:7]) <= 1.0)


# The release's statistics keys and sizes per embodiment tag, in its concatenation order (DREAMZERO_FACTS.md,
# "Checkpoint statistics keys"; the release's modality configs): written here by hand, not read from our configs.
RELEASED_KEYS = {
    "franka_droid": ("oxe_droid", [("joint_position", 7), ("gripper_position", 1)], []),
    "agibot_g1": ("agibot", [("left_arm_joint_position", 7), ("right_arm_joint_position", 7),
                             ("left_effector_position", 1), ("right_effector_position", 1),
                             ("head_position", 2), ("waist_position", 2)], [("robot_velocity", 2)]),
    "yam": ("yam", [("left_joint_pos", 6), ("left_gripper_pos", 1), ("right_joint_pos", 6),
                    ("right_gripper_pos", 1)], []),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RELEASED_KEYS))
def test_a_released_metadata_json_with_the_release_group_keys_normalises_in_the_release_order(name, tmp_path):
    tag, state_groups, extra_groups = RELEASED_KEYS[name]
    action_groups = state_groups + extra_groups
    # group i spans [i, i + 2] in state and [-(i + 1), i + 1] in action, so a value's group shows in the result;
    # the file lists the groups in reverse to show the order comes from the group keys, not the file
    state = {k: {"q01": [float(i)] * n, "q99": [i + 2.0] * n} for i, (k, n) in enumerate(state_groups)}
    action = {k: {"q01": [-(i + 1.0)] * n, "q99": [i + 1.0] * n} for i, (k, n) in enumerate(action_groups)}
    metadata = {tag: {"statistics": {"state": dict(reversed(state.items())), "action": dict(reversed(action.items())),
                                     }, "modalities": {}}, "other_robot": {"statistics": {}}}  # fmt: skip
    path = tmp_path / "experiment_cfg" / "metadata.json"
    path.parent.mkdir()
    path.write_text(json.dumps(metadata))

    space = ActionSpace.from_metadata(load_embodiment(name), json.loads(path.read_text()))
    # state in model units = 1.5 everywhere -> 2 (1.5 - i) / 2 - 1 = 0.5 - i, clipped to [-1, 1]
    expected_state = np.concatenate([np.full(n, np.clip(0.5 - i, -1, 1)) for i, (_, n) in enumerate(state_groups)])
    np.testing.assert_allclose(space.normalise_state(np.full(space.state_dim, 1.5)), expected_state)
    # normalised action 0.5 -> (0.5 + 1) / 2 * 2 (i + 1) - (i + 1) = 0.5 (i + 1)
    expected_action = np.concatenate([np.full(n, 0.5 * (i + 1)) for i, (_, n) in enumerate(action_groups)])
    np.testing.assert_allclose(space.unnormalise_actions(np.full((24, space.action_dim), 0.5))[0], expected_action)
