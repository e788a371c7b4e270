"""The wire codec and maps: byte-level marker keys, dtype/shape round trips, handshake and request maps."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

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


def test_numpy_scalars_use_the_npgeneric_marker():
    packed = protocol.packb({"s": np.float32(2.5), "i": np.int64(-3)})
    assert b"\xc4\x0d__npgeneric__" in packed
    out = protocol.unpackb(packed)
    assert out["s"] == np.float32(2.5) and out["s"].dtype == np.float32
    assert out["i"] == -3 and out["i"].dtype == np.int64


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


def test_droid_handshake_keeps_every_reference_key_and_value():
    config = protocol.server_config(DROID)
    assert {k: config[k] for k in REFERENCE_DROID_CONFIG} == REFERENCE_DROID_CONFIG
    assert config["embodiment"] == "franka_droid"
    assert config["state_keys"] == {"observation/joint_position": 7, "observation/gripper_position": 1}
    assert config["action_horizon"] == 24 and config["action_dim"] == 8
    assert [c["wire_key"] for c in config["cameras"]] == [
        "exterior_image_0_left", "exterior_image_1_left", "wrist_image_left"]
    # it survives the wire and validates against the embodiment it describes
    protocol.validate_server_config(protocol.unpackb(protocol.packb(config)), DROID)


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
        ({"embodiment": "yam"}, "embodiment: expected 'franka_droid', got 'yam'"),
        ({"action_dim": 7}, "action_dim: expected 8, got 7"),
        ({"needs_session_id": "yes"}, "needs_session_id: expected bool"),
    ],
)
def test_handshake_mismatches_are_named(change, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        protocol.validate_server_config({**protocol.server_config(DROID), **change}, DROID)


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
