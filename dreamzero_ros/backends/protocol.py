"""The DreamZero / openpi-style remote serving protocol: msgpack codec, request and handshake maps.

Wire format (matches the reference release byte for byte where it matters):
  * WebSocket binary frames carrying msgpack; packed with use_bin_type=True, unpacked with
    raw=False (so str stays str and bytes stay bytes; invalid UTF-8 in a str is an error).
  * numpy arrays -> a map with BIN keys {b"__ndarray__": True, b"data": C-order bytes,
    b"dtype": dtype.str (e.g. "|u1", "<f4"), b"shape": [..]}; numpy scalars ->
    {b"__npgeneric__": True, b"data": value.item(), b"dtype": dtype.str}, decoded as
    np.dtype(dtype).type(data) (np.float64 subclasses Python float, so msgpack packs it as a
    plain float before the hook is asked, with the reference packer too). Top-level keys are str. No pickle: object, void, complex and
    datetime values are refused on both sides.
  * The server sends its config (the handshake) first, as one binary frame: exactly the six
    fields of the reference server's PolicyServerConfig (see server_config). The reference
    client builds PolicyServerConfig(**config) from it and fails on any other key.
  * Request: {"observation/<wire_key>": uint8 [H, W, 3] or [T, H, W, 3] per camera,
    "observation/<state group>": float [D] in MODEL units (DROID: joint_position [7] rad,
    gripper_position [1] in [0, 1]), "prompt": str (the RAW instruction: the server applies the
    embodiment's template itself), "session_id": str, "endpoint": "infer" | "reset"}.
  * Infer reply: one float32 array [H, A], absolute, MODEL units, action groups then extras
    (DROID [24, 8]). Reset reply: the TEXT frame "reset successful". Errors: a text frame
    (the reference sends the traceback then closes with 1011).

Our own extension, invisible to the reference client: the richer description of the embodiment
(server_metadata: name, cameras, state keys, action groups, horizon, rates, joint names) is the
reply to {"endpoint": "metadata"}. Our client offers the websocket subprotocol SUBPROTOCOL on
connect and sends that request only when the server selected it (ours does). The reference
client offers no subprotocol and never sends that endpoint; a reference server selects no
subprotocol, so our client never sends it there (a reference server would run inference on it
and close with 1011).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.core.frame_window import FIRST_CALL_FRAMES, LATER_CALL_FRAMES
from dreamzero_ros.core.inference_loop import valid_execute_steps

PROTOCOL_VERSION = 2
#: websocket subprotocol our client offers and our server selects; it unlocks the metadata endpoint
SUBPROTOCOL = "dreamzero.v2"
RESET_REPLY = "reset successful"
METADATA_ENDPOINT = "metadata"
ENDPOINTS = ("infer", "reset", METADATA_ENDPOINT)
#: the reference server's PolicyServerConfig fields, in its order, with their wire types
HANDSHAKE_FIELDS: dict[str, tuple[type, ...]] = {
    "image_resolution": (list, tuple),
    "needs_wrist_camera": (bool,),
    "n_external_cameras": (int,),
    "needs_stereo_camera": (bool,),
    "needs_session_id": (bool,),
    "action_space": (str,),
}
#: frames the server feeds the model per request: 1 on the first call of an episode, then the last 4
#: default websocket message limit on both sides: a 4-frame AgiBot/YAM request (3 x 4 x 480x640x3)
#: is ~11 MB and the websockets default of 1 MiB would close a 4-frame DROID request with 1009.
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

_ND = b"__ndarray__"
_NG = b"__npgeneric__"
# dtype kinds that never cross the wire: object / void (would need pickle), complex and datetime
# (their .item() is no msgpack type)
_REFUSED_KINDS = "OVcMm"


class ProtocolError(ValueError):
    """A frame or map does not follow the protocol; the message says what was expected and got."""


# --------------------------------------------------------------------------------------------
# msgpack codec
# --------------------------------------------------------------------------------------------


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in _REFUSED_KINDS:
            raise ProtocolError(f"cannot encode an ndarray of dtype {obj.dtype} (object arrays are not allowed)")
        data = np.ascontiguousarray(obj).tobytes()  # C order, whatever the array's strides
        return {_ND: True, b"data": data, b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        if obj.dtype.kind in _REFUSED_KINDS:
            raise ProtocolError(f"cannot encode a numpy scalar of dtype {obj.dtype}")
        return {_NG: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _decode(obj: dict) -> Any:
    if _ND in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
            shape = tuple(int(s) for s in obj[b"shape"])
            data = obj[b"data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed ndarray map: {exc}") from exc
        if dtype.kind in _REFUSED_KINDS:
            raise ProtocolError(f"refusing ndarray of dtype {dtype} (object arrays are not allowed)")
        if not isinstance(data, bytes):
            raise ProtocolError(f"ndarray data: expected bytes, got {type(data).__name__}")
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if any(s < 0 for s in shape) or expected != len(data):
            raise ProtocolError(f"ndarray: shape {list(shape)} x {dtype.str} needs {expected} bytes, got {len(data)}")
        # frombuffer gives a read-only view of the message bytes; copy so callers may write.
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if _NG in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
            value = obj[b"data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed numpy scalar map: {exc}") from exc
        if dtype.kind in _REFUSED_KINDS:
            raise ProtocolError(f"refusing numpy scalar of dtype {dtype}")
        if not isinstance(value, (bool, int, float, str, bytes)):
            raise ProtocolError(f"numpy scalar data: expected a number, str or bytes, got {type(value).__name__}")
        try:
            return dtype.type(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"numpy scalar: {value!r} is not a valid {dtype.str}: {exc}") from exc
    return obj


def packb(obj: Any) -> bytes:
    """msgpack-encode `obj` (dicts, lists, str, numbers, bytes, numpy arrays and scalars)."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode one msgpack frame; raises ProtocolError on anything that is not valid protocol msgpack."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected a binary frame, got {type(data).__name__}")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False)
    except ProtocolError:
        raise
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        # ValueError covers invalid UTF-8 in a str and truncated data (msgpack raises ValueError subclasses)
        raise ProtocolError(f"not a valid msgpack frame: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def image_key(wire_key: str) -> str:
    return f"observation/{wire_key}"


def state_key(group: str) -> str:
    return f"observation/{group}"


# --------------------------------------------------------------------------------------------
# Handshake
# --------------------------------------------------------------------------------------------


def server_config(embodiment: EmbodimentConfig) -> dict[str, Any]:
    """The handshake the server sends first: exactly the reference server's six PolicyServerConfig fields.

    DROID gets the reference values verbatim ([180, 320], wrist, 2 external cameras, no stereo,
    session id, joint_position). Other embodiments use the same six fields with their own values:
    image_resolution [H, W] of the first camera (all cameras share it in the shipped configs),
    the first two cameras counted as external and the last as the wrist camera (the reference
    schema has no other way to say "three views"). Everything else is in server_metadata.
    """
    e = embodiment
    return {
        "image_resolution": list(e.cameras[0].source_size),
        "needs_wrist_camera": True,
        "n_external_cameras": len(e.cameras) - 1,
        "needs_stereo_camera": False,
        "needs_session_id": True,
        "action_space": "joint_position",
    }


def server_metadata(embodiment: EmbodimentConfig, execute_steps: int | None = None) -> dict[str, Any]:
    """The reply to {"endpoint": "metadata"}: what our client checks beyond the six handshake fields.

    protocol_version, embodiment (name), cameras [{name, wire_key, image_resolution}], state_keys
    {request key: dim}, state_joints, action_groups {group: dim} (joint groups then extras),
    action_joints, action_horizon, action_dim, control_rate_hz, video_fps,
    frames_per_request [first call, later calls], and execute_steps (the served checkpoint's training
    cadence, `CheckpointInfo.execute_steps`) when it records one.
    """
    e = embodiment
    groups = {g.name: len(g.joints) for g in e.action}
    groups.update({g.name: len(g.components) for g in e.extra_actions})
    return {
        "protocol_version": PROTOCOL_VERSION,
        "embodiment": e.name,
        "cameras": [
            {"name": c.name, "wire_key": c.wire_key, "image_resolution": list(c.source_size)} for c in e.cameras
        ],
        "state_keys": {state_key(g.name): len(g.joints) for g in e.state},
        "state_joints": list(e.state_joints),
        "action_groups": groups,
        "action_joints": list(e.action_joints),
        "action_horizon": e.control.horizon,
        "action_dim": sum(groups.values()),
        "control_rate_hz": e.control.rate_hz,
        "video_fps": e.video.fps,
        "frames_per_request": [FIRST_CALL_FRAMES, LATER_CALL_FRAMES],
    } | ({} if execute_steps is None else {"execute_steps": execute_steps})


def validate_server_config(config: Any, embodiment: EmbodimentConfig, *, where: str = "server") -> dict[str, Any]:
    """Check a six-field handshake against the embodiment we drive; raises ProtocolError naming the mismatch.

    Any server speaking the reference protocol (the released DROID server, ours) passes this.
    Keys beyond the six are tolerated here; our server never sends any.
    """
    e = embodiment
    if not isinstance(config, Mapping):
        raise ProtocolError(f"{where}: handshake: expected a config map, got {type(config).__name__}")
    for key, types in HANDSHAKE_FIELDS.items():
        if key not in config:
            raise ProtocolError(f"{where}: handshake: missing key {key!r}; got keys {sorted(map(str, config))}")
        if not isinstance(config[key], types):
            raise ProtocolError(f"{where}: handshake: {key}: expected {types[0].__name__}, got {config[key]!r}")
    if config["action_space"] != "joint_position":
        got = config["action_space"]
        raise ProtocolError(f"{where}: handshake: action_space: expected 'joint_position', got {got!r}")
    if config["needs_stereo_camera"]:
        raise ProtocolError(f"{where}: handshake: the server needs stereo cameras; {e.name} has none")
    n_cams = int(config["needs_wrist_camera"]) + config["n_external_cameras"]
    if n_cams != len(e.cameras):
        raise ProtocolError(
            f"{where}: handshake: server wants {n_cams} cameras, {e.name} has {len(e.cameras)} {list(e.camera_names)}"
        )
    res = list(config["image_resolution"])
    for cam in e.cameras:
        if list(cam.source_size) != res:
            raise ProtocolError(
                f"{where}: handshake: image_resolution: server wants {res}, camera {cam.name!r} is "
                f"{list(cam.source_size)}"
            )
    return dict(config)


def validate_server_metadata(metadata: Any, embodiment: EmbodimentConfig, *, where: str = "server") -> dict[str, Any]:
    """Check our server's metadata reply against the embodiment we drive; raises ProtocolError naming the mismatch."""
    e = embodiment
    if not isinstance(metadata, Mapping):
        raise ProtocolError(f"{where}: metadata: expected a map, got {type(metadata).__name__}")
    want_version = PROTOCOL_VERSION
    if metadata.get("protocol_version") != want_version:
        got = metadata.get("protocol_version")
        raise ProtocolError(f"{where}: metadata: protocol_version: expected {want_version}, got {got!r}")
    if metadata.get("embodiment") != e.name:
        raise ProtocolError(f"{where}: metadata: embodiment: expected {e.name!r}, got {metadata.get('embodiment')!r}")
    cams = metadata.get("cameras")
    got = [(c.get("wire_key"), list(c.get("image_resolution", []))) for c in cams if isinstance(c, Mapping)] \
        if isinstance(cams, list) else cams
    want = [(c.wire_key, list(c.source_size)) for c in e.cameras]
    if got != want:
        raise ProtocolError(f"{where}: metadata: cameras: expected (wire_key, [H, W]) {want}, got {got}")
    want_state = {state_key(g.name): len(g.joints) for g in e.state}
    got_state = metadata.get("state_keys")
    if not isinstance(got_state, Mapping) or dict(got_state) != want_state:
        raise ProtocolError(f"{where}: metadata: state_keys: expected {want_state}, got {got_state!r}")
    for key, value in (("action_horizon", e.control.horizon), ("action_dim", e.action_dim),
                       ("action_joints", list(e.action_joints))):
        if metadata.get(key) != value:
            raise ProtocolError(f"{where}: metadata: {key}: expected {value}, got {metadata.get(key)!r}")
    steps = metadata.get("execute_steps")
    if steps is not None and not valid_execute_steps(steps, e.control.horizon):
        raise ProtocolError(f"{where}: metadata: execute_steps: expected whole control steps in "
                            f"1..{e.control.horizon} (the horizon), got {steps!r}")
    return dict(metadata)



# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def infer_request(
    embodiment: EmbodimentConfig,
    images: Mapping[str, np.ndarray],
    state_model: np.ndarray,
    prompt: str,
    session_id: str,
) -> dict[str, Any]:
    """The infer request map.

    images: {camera name: uint8 [H, W, 3] or [T, H, W, 3] at the camera's source_size}.
    state_model: [S] state in MODEL units (effectors mapped), state_joints order; split per group
        into float64 arrays "observation/<group>" (DROID: joint_position [7], gripper_position [1]).
    prompt: the raw instruction.
    """
    e = embodiment
    msg: dict[str, Any] = {}
    for cam in e.cameras:
        if cam.name not in images:
            raise ProtocolError(f"request: missing image for camera {cam.name!r}; cameras are {list(e.camera_names)}")
        img = np.asarray(images[cam.name])
        if img.dtype != np.uint8 or img.ndim not in (3, 4) or img.shape[-3:] != (*cam.source_size, 3):
            raise ProtocolError(
                f"request: camera {cam.name!r}: expected uint8 [H, W, 3] or [T, H, W, 3] with (H, W) = "
                f"{tuple(cam.source_size)}, got {img.dtype} {list(img.shape)}"
            )
        msg[image_key(cam.wire_key)] = np.ascontiguousarray(img)
    state = np.asarray(state_model, dtype=np.float64)
    if state.shape != (len(e.state_joints),):
        raise ProtocolError(f"request: state: expected shape [{len(e.state_joints)}], got {list(state.shape)}")
    start = 0
    for g in e.state:
        msg[state_key(g.name)] = state[start : start + len(g.joints)].copy()
        start += len(g.joints)
    msg["prompt"] = prompt
    msg["session_id"] = session_id
    msg["endpoint"] = "infer"
    return msg


def reset_request(session_id: str) -> dict[str, Any]:
    return {"endpoint": "reset", "session_id": session_id}


def metadata_request() -> dict[str, Any]:
    """Our extension: ask our server for server_metadata (only after it selected SUBPROTOCOL)."""
    return {"endpoint": METADATA_ENDPOINT}
