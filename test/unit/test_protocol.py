"""The wire codec and maps: byte-level marker keys, dtype/shape round trips, handshake and request maps."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from reference_client import ReferencePolicyServerConfig

from dreamzero_ros.backends import protocol
from dreamzero_ros.core.embodiment import load_embodiment

DROID = load_embodiment("franka_droid")
G1 = load_embodiment("agibot_g1")

REFERENCE_DROID_CONFIG = {
    "image_resolution": [180, 320],
    "needs_wrist_camera": True,
    "n_external_cameras": 2,
    "needs_stereo_camera": False,
    "needs_session_id": True,
    "action_space": "joint_position",
}


def test_packed_arrays_use_bin_marker_keys_and_dtype_str_on_the_wire():
    packed = protocol.packb({"a": np.arange(6, dtype="<f4").reshape(2, 3)})
    # msgpack bin 8 = 0xc4 + length byte: the marker keys are BIN, not str (0xa0 | len)
    for key in (b"__ndarray__", b"data", b"dtype", b"shape"):
        assert bytes([0xC4, len(key)]) + key in packed
        assert bytes([0xA0 | len(key)]) + key not in packed
    assert b"\xa1a" in packed  # the top-level key is a str
    assert b"\xa3<f4" in packed  # dtype.str as a str value
    raw = msgpack.unpackb(packed, raw=False)  # a plain decoder sees the documented structure
    marker = raw["a"]
    assert marker[b"__ndarray__"] is True and marker[b"dtype"] == "<f4" and marker[b"shape"] == [2, 3]
    assert marker[b"data"] == np.arange(6, dtype="<f4").tobytes()


@pytest.mark.parametrize("dtype", ["|u1", "<f4", "<f8", "<i8", "|b1", "<u2"])
@pytest.mark.parametrize("shape", [(), (0,), (7,), (2, 3), (4, 180, 320, 3)])
def test_arrays_round_trip_with_dtype_and_shape(dtype, shape):
    rng = np.random.default_rng(0)
    arr = np.asarray(rng.random(shape) * 100).astype(dtype)  # asarray: keep 0-d arrays arrays
    out = protocol.unpackb(protocol.packb({"x": arr}))["x"]
    assert out.dtype == np.dtype(dtype) and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    if out.size:
        out.flat[0] = out.flat[0]  # decoded arrays are writable copies, not views of the message


def test_non_contiguous_arrays_are_sent_in_c_order():
    arr = np.arange(12, dtype=np.int32).reshape(3, 4).T
    np.testing.assert_array_equal(protocol.unpackb(protocol.packb(arr)), arr)


@pytest.mark.parametrize(
    ("value", "python_value", "dtype_str"),
    [
        (np.float32(2.5), 2.5, "<f4"),
        (np.int64(-3), -3, "<i8"),
        (np.uint16(65535), 65535, "<u2"),
        (np.uint8(7), 7, "|u1"),
        (np.bool_(True), True, "|b1"),
    ],
)
def test_numpy_scalars_go_on_the_wire_as_the_reference_npgeneric_map_of_their_python_value(
        value, python_value, dtype_str):
    # the reference's map written by hand: {b"__npgeneric__": True, b"data": value.item(), b"dtype": dtype.str}
    expected = msgpack.packb(
        {"s": {b"__npgeneric__": True, b"data": python_value, b"dtype": dtype_str}}, use_bin_type=True)
    assert protocol.packb({"s": value}) == expected
    out = protocol.unpackb(expected)["s"]
    assert type(out) is type(value) and out.dtype == np.dtype(dtype_str) and out == value


def test_a_float64_scalar_is_a_plain_msgpack_float_as_with_the_reference_packer():
    # np.float64 subclasses Python float, so msgpack packs it natively and never calls the
    # default hook: the reference packer (same msgpack, same hook) puts a plain float on the wire too
    assert protocol.packb(np.float64(-0.125)) == b"\xcb" + np.array(-0.125, ">f8").tobytes()


def test_a_numpy_scalar_map_with_a_value_its_dtype_cannot_hold_or_a_forbidden_dtype_is_refused():
    too_big = msgpack.packb({b"__npgeneric__": True, b"data": 300, b"dtype": "|u1"}, use_bin_type=True)
    with pytest.raises(protocol.ProtocolError, match=r"numpy scalar: 300 is not a valid \|u1"):
        protocol.unpackb(too_big)
    not_a_number = msgpack.packb({b"__npgeneric__": True, b"data": [1], b"dtype": "<f4"}, use_bin_type=True)
    with pytest.raises(protocol.ProtocolError, match="numpy scalar data: expected a number, str or bytes, got list"):
        protocol.unpackb(not_a_number)
    obj = msgpack.packb({b"__npgeneric__": True, b"data": 1, b"dtype": "|O"}, use_bin_type=True)
    with pytest.raises(protocol.ProtocolError, match="refusing numpy scalar of dtype object"):
        protocol.unpackb(obj)
    with pytest.raises(protocol.ProtocolError, match="cannot encode a numpy scalar of dtype complex64"):
        protocol.packb(np.complex64(1 + 2j))


def test_object_arrays_are_refused_both_ways():
    with pytest.raises(protocol.ProtocolError, match="object arrays are not allowed"):
        protocol.packb(np.array([object()], dtype=object))
    forged = msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "|O", b"shape": [0]}, use_bin_type=True)
    with pytest.raises(protocol.ProtocolError, match="object arrays are not allowed"):
        protocol.unpackb(forged)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xc1garbage", "not a valid msgpack frame"),
        (protocol.packb({"a": 1})[:-1], "not a valid msgpack frame"),
        (b"\x81\xa6prompt\xa2\xff\xfe", "not a valid msgpack frame"),  # invalid UTF-8 in a str
        (msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 3, b"dtype": "<f4", b"shape": [1]}, use_bin_type=True),
         "needs 4 bytes, got 3"),
        ("text", "expected a binary frame"),
    ],
)
def test_malformed_frames_raise_protocol_error(data, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        protocol.unpackb(data)




# per embodiment: the training resolution of its views (DREAMZERO_FACTS.md, Inputs), three views
HANDSHAKES = {
    "franka_droid": REFERENCE_DROID_CONFIG,
    "agibot_g1": {**REFERENCE_DROID_CONFIG, "image_resolution": [480, 640]},
    "yam": {**REFERENCE_DROID_CONFIG, "image_resolution": [480, 640]},
}


@pytest.mark.parametrize("name", sorted(HANDSHAKES))
def test_the_handshake_is_exactly_the_reference_six_fields_for_every_embodiment(name):
    e = load_embodiment(name)
    config = protocol.unpackb(protocol.packb(protocol.server_config(e)))
    assert config == HANDSHAKES[name]
    ReferencePolicyServerConfig(**config)  # what the reference client does with it
    protocol.validate_server_config(config, e)
    with pytest.raises(TypeError, match="unexpected keyword argument 'embodiment'"):
        ReferencePolicyServerConfig(**config, embodiment=name)  # the failure the six fields avoid


def test_droid_metadata_describes_the_embodiment_beyond_the_handshake():
    meta = protocol.unpackb(protocol.packb(protocol.server_metadata(DROID)))
    assert meta["embodiment"] == "franka_droid" and meta["protocol_version"] == protocol.PROTOCOL_VERSION
    assert meta["state_keys"] == {"observation/joint_position": 7, "observation/gripper_position": 1}
    assert meta["action_horizon"] == 24 and meta["action_dim"] == 8 and meta["control_rate_hz"] == 15
    assert meta["video_fps"] == 5 and meta["frames_per_request"] == [1, 4]
    assert [c["wire_key"] for c in meta["cameras"]] == [
        "exterior_image_0_left", "exterior_image_1_left", "wrist_image_left"]
    assert all(c["image_resolution"] == [180, 320] for c in meta["cameras"])
    assert len(meta["action_joints"]) == 8 and len(meta["state_joints"]) == 8
    protocol.validate_server_metadata(meta, DROID)
    assert "execute_steps" not in meta  # a checkpoint that records no cadence: the key is absent
    cadenced = protocol.validate_server_metadata(protocol.server_metadata(DROID, execute_steps=12), DROID)
    assert cadenced["execute_steps"] == 12


def test_the_released_droid_handshake_validates_for_franka_but_not_for_agibot():
    protocol.validate_server_config(REFERENCE_DROID_CONFIG, DROID)
    with pytest.raises(protocol.ProtocolError, match=r"image_resolution: server wants \[180, 320\]"):
        protocol.validate_server_config(REFERENCE_DROID_CONFIG, G1)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"action_space": "cartesian_position"}, "action_space: expected 'joint_position'"),
        ({"n_external_cameras": 1}, "server wants 2 cameras"),
        ({"needs_stereo_camera": True}, "needs stereo cameras"),
        ({"needs_session_id": "yes"}, "needs_session_id: expected bool"),
        ({"image_resolution": [480, 640]}, r"image_resolution: server wants \[480, 640\]"),
    ],
)
def test_handshake_mismatches_are_named(change, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        protocol.validate_server_config({**protocol.server_config(DROID), **change}, DROID)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"embodiment": "yam"}, "embodiment: expected 'franka_droid', got 'yam'"),
        ({"action_dim": 7}, "action_dim: expected 8, got 7"),
        ({"action_horizon": 48}, "action_horizon: expected 24, got 48"),
        ({"protocol_version": 1}, "protocol_version: expected 2, got 1"),
        ({"state_keys": {"observation/joint_position": 7}}, "state_keys: expected"),
        ({"cameras": []}, r"cameras: expected \(wire_key, \[H, W\]\)"),
        ({"execute_steps": 30}, r"execute_steps: expected whole control steps in 1\.\.24 \(the horizon\), got 30"),
        ({"execute_steps": True}, r"execute_steps: expected whole control steps in 1\.\.24 \(the horizon\), got True"),
    ],
)
def test_metadata_mismatches_are_named(change, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        protocol.validate_server_metadata({**protocol.server_metadata(DROID), **change}, DROID)


def test_a_handshake_missing_a_key_or_not_a_map_is_refused():
    config = dict(REFERENCE_DROID_CONFIG)
    del config["action_space"]
    with pytest.raises(protocol.ProtocolError, match="missing key 'action_space'"):
        protocol.validate_server_config(config, DROID)
    with pytest.raises(protocol.ProtocolError, match="expected a config map, got list"):
        protocol.validate_server_config([1, 2], DROID)


def test_droid_infer_request_has_exactly_the_reference_keys_and_shapes():
    images = {c.name: np.zeros((4, 180, 320, 3), np.uint8) for c in DROID.cameras}
    msg = protocol.infer_request(DROID, images, np.arange(8.0), "pick up the cup", "abc")
    assert set(msg) == {
        "observation/exterior_image_0_left", "observation/exterior_image_1_left", "observation/wrist_image_left",
        "observation/joint_position", "observation/gripper_position", "prompt", "session_id", "endpoint",
    }
    assert msg["observation/joint_position"].shape == (7,) and msg["observation/gripper_position"].tolist() == [7.0]
    assert msg["endpoint"] == "infer" and msg["prompt"] == "pick up the cup"
    out = protocol.unpackb(protocol.packb(msg))
    assert out["observation/wrist_image_left"].shape == (4, 180, 320, 3)
    assert protocol.reset_request("abc") == {"endpoint": "reset", "session_id": "abc"}


def test_infer_request_refuses_images_at_the_wrong_size():
    images = {c.name: np.zeros((176, 320, 3), np.uint8) for c in DROID.cameras}
    with pytest.raises(protocol.ProtocolError, match=r"camera 'exterior_1': expected uint8 .* \(180, 320\)"):
        protocol.infer_request(DROID, images, np.zeros(8), "x", "s")
