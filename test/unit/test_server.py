"""PolicyServer over real websockets on 127.0.0.1: a client written from the protocol description only,
frame buffering, refusals that leave the server serving, one session per model, keepalive during
inference, RemoteBackend per embodiment, and a killed + restarted server process."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import msgpack
import numpy as np
import pytest
from reference_client import ReferencePolicyServerConfig
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dreamzero_ros.backends.base import BackendError, Observation, PolicyBackend
from dreamzero_ros.backends.local import LocalBackend
from dreamzero_ros.backends.remote import RemoteBackend
from dreamzero_ros.backends.scripted import ScriptedBackend
from dreamzero_ros.backends.server import PolicyServer
from dreamzero_ros.core.action_space import ActionSpace
from dreamzero_ros.core.embodiment import PACKAGE_ROOT, load_embodiment
from dreamzero_ros.model.stitching import stitch_views

DROID = load_embodiment("franka_droid")
G1 = load_embodiment("agibot_g1")
YAM = load_embodiment("yam")
HOME_DROID = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8, 0.02])

# The reference server's handshake (DREAMZERO_FACTS.md, Remote serving protocol); AgiBot and YAM
# views are stored at 480x640 (Inputs).
_DROID_HANDSHAKE = {"image_resolution": [180, 320], "needs_wrist_camera": True, "n_external_cameras": 2,
                    "needs_stereo_camera": False, "needs_session_id": True, "action_space": "joint_position"}
REFERENCE_HANDSHAKE = {
    "franka_droid": _DROID_HANDSHAKE,
    "agibot_g1": {**_DROID_HANDSHAKE, "image_resolution": [480, 640]},
    "yam": {**_DROID_HANDSHAKE, "image_resolution": [480, 640]},
}
FACT_RATES = {"franka_droid": 15, "agibot_g1": 30, "yam": 30}  # Embodiments table
FACT_ACTION_DIMS = {"franka_droid": 8, "agibot_g1": 22, "yam": 14}




# --------------------------------------------------------------------------------------------
# A client written from the protocol description (DREAMZERO_FACTS.md), not from our codec
# --------------------------------------------------------------------------------------------


def raw_pack(obj) -> bytes:
    def default(o):
        if isinstance(o, np.ndarray):
            return {b"__ndarray__": True, b"data": o.tobytes(), b"dtype": o.dtype.str, b"shape": list(o.shape)}
        raise TypeError(type(o))

    return msgpack.packb(obj, default=default, use_bin_type=True)


def raw_unpack(data: bytes):
    def hook(d):
        if b"__ndarray__" in d:
            return np.frombuffer(d[b"data"], dtype=np.dtype(d[b"dtype"])).reshape(d[b"shape"])
        return d

    return msgpack.unpackb(data, object_hook=hook, raw=False)


def raw_connect(url: str, **kw):
    return connect(url, max_size=None, compression=None, proxy=None, open_timeout=5, legacy=True, **kw)


def droid_request(frames: int = 1, value: int = 0, prompt: str = "pick up the cup", session: str = "s1",
                  state: np.ndarray = HOME_DROID) -> dict:
    shape = (180, 320, 3) if frames == 1 else (frames, 180, 320, 3)
    return {
        "observation/exterior_image_0_left": np.full(shape, value, np.uint8),
        "observation/exterior_image_1_left": np.full(shape, value, np.uint8),
        "observation/wrist_image_left": np.full(shape, value, np.uint8),
        "observation/joint_position": state[:7].astype(np.float64),
        "observation/gripper_position": np.array([1.0 - state[7] / 0.04]),  # DROID 0 open .. 1 closed
        "prompt": prompt,
        "session_id": session,
        "endpoint": "infer",
    }


# --------------------------------------------------------------------------------------------
# Backends used behind the server
# --------------------------------------------------------------------------------------------


@dataclass
class FakeGeneration:
    actions: np.ndarray
    video_latents: object = None
    dit_forwards: int = 1
    seconds: float = 0.0


class FakeWam:
    """The WorldActionModel contract with fixed normalised actions (so the served values are predictable)."""

    def __init__(self, horizon: int, action_dim: int, metadata: dict | None = None) -> None:
        self.metadata = metadata
        self.actions = np.linspace(-0.9, 0.9, horizon * action_dim, dtype=np.float32).reshape(horizon, action_dim)
        self.prompts: list[str] = []

    def reset(self) -> None:
        pass

    def set_instruction(self, prompt: str) -> None:
        self.prompts.append(prompt)

    def observe(self, frames, state) -> None:
        assert frames.dtype == np.uint8 and frames.shape[1:] == (352, 640, 3)

    def generate(self, seed=None) -> FakeGeneration:
        return FakeGeneration(self.actions.copy())

    def decode_video(self, latents):
        raise AssertionError("not asked for")


def fake_local(e) -> LocalBackend:
    action_dim = len(e.action_joints) + sum(len(g.components) for g in e.extra_actions)
    return LocalBackend(e, FakeWam(e.control.horizon, action_dim))


class Recording(PolicyBackend):
    """Wraps a backend and records what the server hands it."""

    name = "recording"

    def __init__(self, inner: PolicyBackend, fail_with: str = "") -> None:
        self.inner = inner
        self.embodiment = inner.embodiment
        self.observations: list[Observation] = []
        self.events: list[tuple] = []
        self.fail_with = fail_with

    def reset(self) -> None:
        self.events.append(("reset",))
        self.inner.reset()

    def set_instruction(self, instruction: str) -> None:
        self.events.append(("set_instruction", instruction))
        self.inner.set_instruction(instruction)

    def infer(self, observation: Observation):
        self.observations.append(observation)
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        return self.inner.infer(observation)


@pytest.fixture
def serve():
    servers: list[PolicyServer] = []

    def start(backend, e=DROID, **kw) -> PolicyServer:
        server = PolicyServer(backend, e, port=0, **kw)
        server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_a_client_written_from_the_protocol_description_completes_handshake_infer_and_reset(serve):
    server = serve(fake_local(DROID))
    with raw_connect(server.url) as ws:
        config = raw_unpack(ws.recv(timeout=5))
        assert config == REFERENCE_HANDSHAKE["franka_droid"]
        ReferencePolicyServerConfig(**config)  # the reference client's check: no key beyond the six
        assert ws.subprotocol is None
        ws.send(raw_pack({**droid_request(), "observation/cartesian_position": np.zeros(6)}))  # as it sends
        reply = raw_unpack(ws.recv(timeout=10))
        assert isinstance(reply, np.ndarray) and reply.dtype == np.float32 and reply.shape == (24, 8)
        # identity normalisation: absolute model units = fixed action + state (model units) on the 7 joints
        space = ActionSpace(DROID)
        expected = space.to_absolute(FakeWam(24, 8).actions.astype(np.float64), HOME_DROID)
        np.testing.assert_allclose(reply, expected, atol=1e-6)
        ws.send(raw_pack({"endpoint": "reset", "session_id": "s1"}))
        assert ws.recv(timeout=5) == "reset successful"
        ws.send(raw_pack({"endpoint": "reset"}))  # the reference client's reset({}) carries no session id
        assert ws.recv(timeout=5) == "reset successful"


@pytest.mark.parametrize("e", [DROID, G1, YAM], ids=lambda e: e.name)
def test_every_embodiment_greets_with_exactly_the_six_reference_fields_and_no_subprotocol(serve, e):
    server = serve(ScriptedBackend(e), e)
    with raw_connect(server.url) as ws:
        config = raw_unpack(ws.recv(timeout=5))
        assert config == REFERENCE_HANDSHAKE[e.name]
        ReferencePolicyServerConfig(**config)
        assert ws.subprotocol is None


@pytest.mark.parametrize("e", [DROID, G1, YAM], ids=lambda e: e.name)
def test_a_client_offering_our_subprotocol_gets_the_metadata_on_request(serve, e):
    server = serve(ScriptedBackend(e), e)
    with raw_connect(server.url, subprotocols=["dreamzero.v2"]) as ws:
        assert ws.subprotocol == "dreamzero.v2"
        assert raw_unpack(ws.recv(timeout=5)) == REFERENCE_HANDSHAKE[e.name]  # same greeting for everyone
        ws.send(raw_pack({"endpoint": "metadata"}))
        meta = raw_unpack(ws.recv(timeout=5))
    assert meta["embodiment"] == e.name
    assert meta["cameras"] == [{"name": c.name, "wire_key": c.wire_key, "image_resolution": list(c.source_size)}
                               for c in e.cameras]
    assert meta["action_horizon"] == e.control.horizon and meta["control_rate_hz"] == FACT_RATES[e.name]
    assert meta["action_dim"] == FACT_ACTION_DIMS[e.name] == sum(meta["action_groups"].values())
    assert meta["state_keys"] == {f"observation/{g.name}": len(g.joints) for g in e.state}


def test_a_remote_backend_for_another_embodiment_with_the_same_handshake_is_refused_by_the_metadata(serve):
    server = serve(ScriptedBackend(YAM), YAM)  # AgiBot and YAM share the six fields (480x640, 3 views)
    with pytest.raises(BackendError, match="embodiment: expected 'agibot_g1', got 'yam'"):
        RemoteBackend(G1, server.url, connect_now=False).connect()


def test_the_real_tiny_model_serves_a_raw_client():
    pytest.importorskip("dreamzero_ros.model.wam")
    import torch

    torch.set_num_threads(1)
    with PolicyServer(LocalBackend(DROID, seed=0), DROID, port=0) as server, raw_connect(server.url) as ws:
        raw_unpack(ws.recv(timeout=5))
        ws.send(raw_pack(droid_request()))
        reply = raw_unpack(ws.recv(timeout=30))
        assert reply.shape == (24, 8) and np.all(np.isfinite(reply))


def test_frames_are_buffered_per_camera_one_on_the_first_call_then_the_last_four(serve):
    backend = Recording(ScriptedBackend(DROID))
    server = serve(backend)
    with raw_connect(server.url) as ws:
        raw_unpack(ws.recv(timeout=5))
        for req in (droid_request(1, 10), droid_request(2, 20), droid_request(3, 30),
                    droid_request(1, 40, session="s2"), droid_request(1, 50, session="s2", prompt="wave")):
            ws.send(raw_pack(req))
            assert isinstance(raw_unpack(ws.recv(timeout=5)), np.ndarray)
    firsts = [obs.views["exterior_1"][:, 0, 0, 0].tolist() for obs in backend.observations]
    assert firsts == [
        [10],  # first call of session s1: one frame
        [10, 10, 20, 20],  # buffer 10, 20, 20 is front-padded with the oldest to 4
        [20, 30, 30, 30],  # the buffer keeps the last 4 received
        [40],  # new session id: episode reset, first-call framing again
        [50],  # new prompt: model context reset, first-call framing again
    ]
    assert all(obs.frames.shape == (len(f), 352, 640, 3) for obs, f in zip(backend.observations, firsts, strict=True))
    for obs in backend.observations:  # each time step is the core stitch of that step's views (cached or not)
        for t in range(len(obs.frames)):
            np.testing.assert_array_equal(obs.frames[t], stitch_views({n: v[t] for n, v in obs.views.items()}, DROID))
    assert ("set_instruction", "wave") in backend.events
    assert backend.events.count(("reset",)) >= 2  # first session and the new session s2
    np.testing.assert_allclose(backend.observations[0].state, HOME_DROID)  # model units back to SI


BAD_REQUESTS = [
    (b"\xc1\xc1\xc1", "not a valid msgpack frame"),
    ("a text frame", "expected a binary msgpack frame, got a text frame"),
    (raw_pack([1, 2, 3]), "expected a msgpack map, got list"),
    (raw_pack({k: v for k, v in droid_request().items() if k != "observation/wrist_image_left"}),
     "observation/wrist_image_left: missing camera image"),
    (raw_pack({**droid_request(), "observation/exterior_image_0_left": np.zeros((180, 320, 3), np.float32)}),
     "observation/exterior_image_0_left: expected uint8"),
    (raw_pack({**droid_request(), "observation/joint_position": np.zeros(6)}),
     "observation/joint_position: expected 7 numbers"),
    (raw_pack({**droid_request(), "observation/gripper_position": "open"}),
     "observation/gripper_position: expected 1 numbers, got str"),
    (raw_pack({**droid_request(), "prompt": b"pick"}), "prompt: expected a UTF-8 string, got bytes"),
    (raw_pack({**droid_request(), "prompt": "PLACEHOLDER"}).replace(b"\xabPLACEHOLDER", b"\xab" + b"\xff" * 11),
     "not a valid msgpack frame"),
    (raw_pack({**droid_request(), "prompt": "   "}), "prompt: expected a non-empty instruction"),
    (raw_pack({**droid_request(), "prompt": "x" * 1001}), "prompt: expected at most 1000 characters, got 1001"),
    (raw_pack({**droid_request(), "prompt": "x" * 10_000_000}),  # 10 MB: under the message limit, refused by length
     "prompt: expected at most 1000 characters, got 10000000"),
    (raw_pack({**droid_request(), "endpoint": "train"}), "endpoint: expected one of ['infer', 'reset', 'metadata'], got 'train'"),
    (raw_pack({**droid_request(), "session_id": 7}), "session_id: expected a non-empty string, got 7"),
]


def test_bad_requests_get_a_clear_error_and_the_connection_keeps_being_served(serve):
    server = serve(ScriptedBackend(DROID))
    with raw_connect(server.url) as ws:
        raw_unpack(ws.recv(timeout=5))
        for payload, match in BAD_REQUESTS:
            ws.send(payload)
            reply = ws.recv(timeout=5)
            assert isinstance(reply, str) and reply.startswith("error: bad request: ") and match in reply, reply
        ws.send(raw_pack(droid_request()))
        assert raw_unpack(ws.recv(timeout=5)).shape == (24, 8)


def test_an_oversized_message_is_closed_with_1009_and_the_server_keeps_serving(serve):
    server = serve(ScriptedBackend(DROID), max_message_size=1024 * 1024)
    with raw_connect(server.url) as ws:
        raw_unpack(ws.recv(timeout=5))
        ws.send(raw_pack(droid_request(frames=4)))  # ~2 MB
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    with raw_connect(server.url) as ws:
        raw_unpack(ws.recv(timeout=5))
        ws.send(raw_pack(droid_request(frames=1)))  # ~0.5 MB fits
        assert raw_unpack(ws.recv(timeout=5)).shape == (24, 8)


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}])
def test_a_missing_or_wrong_token_is_refused_with_1008_and_a_reason(serve, headers):
    server = serve(ScriptedBackend(DROID), token="s3cret")
    with raw_connect(server.url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd.code == 1008 and "unauthorized" in info.value.rcvd.reason
    with raw_connect(server.url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        assert raw_unpack(ws.recv(timeout=5)) == REFERENCE_HANDSHAKE["franka_droid"]


def test_a_second_concurrent_client_is_refused_and_the_first_keeps_being_served(serve):
    server = serve(ScriptedBackend(DROID))
    with raw_connect(server.url) as first:
        raw_unpack(first.recv(timeout=5))
        with raw_connect(server.url) as second:
            with pytest.raises(ConnectionClosed) as info:
                second.recv(timeout=5)
            assert info.value.rcvd.code == 1013 and "busy" in info.value.rcvd.reason
        first.send(raw_pack(droid_request()))
        assert raw_unpack(first.recv(timeout=5)).shape == (24, 8)
    with raw_connect(server.url) as third:  # the slot frees when the first client leaves
        assert raw_unpack(third.recv(timeout=5)) == REFERENCE_HANDSHAKE["franka_droid"]
    assert server.takeovers == 0


def test_an_inference_failure_sends_the_traceback_closes_1011_and_the_server_survives(serve):
    backend = Recording(ScriptedBackend(DROID), fail_with="model exploded")
    server = serve(backend)
    with raw_connect(server.url) as ws:
        raw_unpack(ws.recv(timeout=5))
        ws.send(raw_pack(droid_request()))
        text = ws.recv(timeout=5)
        assert "Traceback" in text and "RuntimeError: model exploded" in text
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd.code == 1011
    backend.fail_with = ""
    with raw_connect(server.url) as ws:
        raw_unpack(ws.recv(timeout=5))
        ws.send(raw_pack(droid_request()))
        assert raw_unpack(ws.recv(timeout=5)).shape == (24, 8)


def test_keepalive_pings_are_answered_while_a_long_inference_runs(serve):
    server = serve(ScriptedBackend(DROID, delay=1.5))
    with raw_connect(server.url) as ws:
        raw_unpack(ws.recv(timeout=5))
        ws.send(raw_pack(droid_request()))
        time.sleep(0.2)  # inference is now running on the server's worker thread
        pong = ws.ping()
        t0 = time.perf_counter()
        assert pong.wait(1.0), "no pong during inference: the event loop is blocked"
        assert time.perf_counter() - t0 < 1.0
        assert raw_unpack(ws.recv(timeout=5)).shape == (24, 8)


@pytest.mark.parametrize("e", [DROID, G1, YAM], ids=lambda e: e.name)
def test_remote_backend_through_the_server_matches_the_local_backend_for_each_embodiment(serve, e):
    server = serve(fake_local(e), e, token="tok")
    remote = RemoteBackend(e, server.url, token="tok")
    assert remote.server_config == REFERENCE_HANDSHAKE[e.name]
    assert remote.server_metadata["embodiment"] == e.name  # asked for, since our server selected dreamzero.v2
    direct = fake_local(e)
    lo, hi, _ = e.limits_arrays(e.state_joints)
    state = lo + 0.3 * (hi - lo)
    views = {c.name: np.zeros((1, *c.source_size, 3), np.uint8) for c in e.cameras}
    obs = Observation(1.0, np.zeros((1, 352, 640, 3), np.uint8), state, views)
    for backend in (remote, direct):
        backend.set_instruction("Stack the blocks")
    got, want = remote.infer(obs), direct.infer(obs)
    assert got.joint_names == want.joint_names == e.action_joints and got.dt == want.dt
    np.testing.assert_allclose(got.positions, want.positions, atol=1e-5)  # float32 on the wire
    assert set(got.extras) == set(want.extras)
    for name in want.extras:
        np.testing.assert_allclose(got.extras[name], want.extras[name], atol=1e-5)
    # the server applied the embodiment's template to the raw instruction
    assert server.backend.model.prompts[-1] == e.format_prompt("Stack the blocks")
    remote.reset()
    remote.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server_process(port: int, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dreamzero_ros.backends.server", "--backend", "scripted", "--embodiment", "franka_droid",
         "--port", str(port), "--scripted-delay", str(delay), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True, text=True,
    )
    line = proc.stdout.readline()  # "dreamzero serve: listening on ..." once bound
    assert "listening on" in line, line
    return proc


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)
    proc.stdout.close()


def test_a_killed_and_restarted_server_is_reconnected_without_ever_returning_a_stale_chunk():
    port = _free_port()
    proc = _start_server_process(port, delay=0.8)
    remote = RemoteBackend(DROID, f"ws://127.0.0.1:{port}", request_timeout=5, backoff_initial=0.1, backoff_max=0.4)
    try:
        remote.set_instruction("wave")
        views = {c.name: np.zeros((1, 180, 320, 3), np.uint8) for c in DROID.cameras}
        state_a = HOME_DROID
        state_b = HOME_DROID + np.r_[[0.5] * 7, 0.0]
        first = remote.infer(Observation(1.0, np.zeros((1, 352, 640, 3), np.uint8), state_a, views))
        assert np.max(np.abs(first.positions[:, :7] - state_a[:7])) < 0.5  # scripted centre = first state
        old_session = remote.session_id

        # kill -9 while a request is in flight: infer must raise, not return anything
        outcome: list[object] = []
        thread = threading.Thread(target=lambda: outcome.append(_call(remote, state_a, views)))
        thread.start()
        time.sleep(0.3)
        _kill(proc)
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], BackendError), outcome
        assert not remote.connected

        proc = _start_server_process(port, delay=0.0)
        deadline = time.monotonic() + 15
        while True:
            result = _call(remote, state_b, views)
            if not isinstance(result, BackendError) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not isinstance(result, BackendError), result
        assert remote.connected and remote.session_id != old_session
        # new connection = new session: the scripted server centres on state_b, the first state it sees
        assert np.max(np.abs(result.positions[:, :7] - state_b[:7])) < 0.5
        assert np.max(np.abs(result.positions[:, :7] - state_a[:7])) > 0.1
    finally:
        remote.close()
        _kill(proc)


def _call(remote: RemoteBackend, state: np.ndarray, views: dict):
    try:
        return remote.infer(Observation(time.time(), np.zeros((1, 352, 640, 3), np.uint8), state, views))
    except BackendError as exc:
        return exc


# --------------------------------------------------------------------------------------------
# Reconnecting after an abnormal end: the newcomer takes over a session whose socket is gone
# --------------------------------------------------------------------------------------------


def _end_abnormally(ws, how: str) -> None:
    """End a connection the way a robot's link or process does, returning as soon as it has ended."""
    if how == "closed_1009":  # a message over the server's limit: the server closes with 1009
        ws.send(raw_pack(droid_request(frames=4)))  # ~2 MB against a 1 MiB limit
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        return
    sock = ws.socket
    if how == "reset":  # RST, as the kernel sends for a killed process with unread data
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.shutdown(socket.SHUT_RDWR)  # "dropped": FIN with no websocket close frame
    ws.close()


@pytest.mark.parametrize("in_flight", [False, True], ids=["idle", "request_in_flight"])
@pytest.mark.parametrize("how", ["closed_1009", "dropped", "reset"])
def test_a_client_reconnecting_right_after_an_abnormal_end_is_served_every_time(serve, how, in_flight):
    """With a request in flight the old connection's handler is still awaiting the model when the
    newcomer arrives, so the server cannot have cleaned up yet: the race is hit every time."""
    delay, rounds = (0.1, 20) if in_flight else (0.0, 50)
    server = serve(ScriptedBackend(DROID, delay=delay), max_message_size=1024 * 1024)
    ws = raw_connect(server.url)
    assert raw_unpack(ws.recv(timeout=5)) == REFERENCE_HANDSHAKE["franka_droid"]
    for i in range(rounds):
        if in_flight:
            ws.send(raw_pack(droid_request(session=f"old{i}")))
        _end_abnormally(ws, how)
        ws = raw_connect(server.url)  # at once: the server may not have noticed the end yet
        first = ws.recv(timeout=5)  # a refusal would raise ConnectionClosed (1013) here
        assert raw_unpack(first) == REFERENCE_HANDSHAKE["franka_droid"], i
        ws.send(raw_pack(droid_request(session=f"s{i}")))
        assert raw_unpack(ws.recv(timeout=5)).shape == (24, 8), i
    ws.close()
    assert server.requests_served >= rounds


_KILLED_CLIENT = """
import sys
from websockets.sync.client import connect
ws = connect(sys.argv[1], max_size=None, proxy=None, open_timeout=5)
ws.recv(timeout=5)
print("holding", flush=True)
sys.stdin.read()
"""


def test_a_client_reconnecting_right_after_its_previous_process_was_killed_is_served(serve):
    server = serve(ScriptedBackend(DROID))
    for i in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, server.url], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert proc.stdout.readline().strip() == "holding"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            proc.stdin.close()
            proc.stdout.close()
        with raw_connect(server.url) as ws:
            assert raw_unpack(ws.recv(timeout=5)) == REFERENCE_HANDSHAKE["franka_droid"], i
            ws.send(raw_pack(droid_request(session=f"s{i}")))
            assert raw_unpack(ws.recv(timeout=5)).shape == (24, 8), i


def _server_frames(sock: socket.socket, deadline: float):
    """(opcode, payload) of the unmasked frames a server sends, read from a raw socket."""
    buf = b""

    def take(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    while True:
        b0, b1 = take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", take(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", take(8))[0]
        yield b0 & 0x0F, take(n)


def test_a_silent_holder_whose_link_is_gone_is_taken_over_after_the_probe_and_closed_4001(serve):
    """The holder completed the websocket handshake and then went silent (a link that dropped
    without a FIN): it answers no ping, so the newcomer gets the session after takeover_probe_s."""
    server = serve(ScriptedBackend(DROID), takeover_probe_s=0.5)
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    silent.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += silent.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    try:
        t0 = time.monotonic()
        with raw_connect(server.url) as ws:
            assert raw_unpack(ws.recv(timeout=5)) == REFERENCE_HANDSHAKE["franka_droid"]
            waited = time.monotonic() - t0
            ws.send(raw_pack(droid_request()))
            assert raw_unpack(ws.recv(timeout=5)).shape == (24, 8)
        assert 0.5 <= waited < 3.0, waited
        frames = _server_frames(silent, time.monotonic() + 5)
        opcode, payload = next(frames)
        assert opcode == 0x2 and msgpack.unpackb(payload) == REFERENCE_HANDSHAKE["franka_droid"]  # greeting
        opcodes, close = [], b""
        for opcode, body in frames:
            opcodes.append(opcode)
            if opcode == 0x8:
                close = body
                break
        assert opcodes[:-1] and set(opcodes[:-1]) == {0x9}  # the probe ping(s), never answered
        assert struct.unpack(">H", close[:2])[0] == 4001 and b"superseded" in close
        assert server.takeovers == 1
    finally:
        silent.close()


class SlowFirst(PolicyBackend):
    """The first inference takes `first_s`, later ones are immediate (a scripted trajectory underneath)."""

    name = "slow_first"

    def __init__(self, inner: PolicyBackend, first_s: float) -> None:
        self.inner, self.first_s, self.calls = inner, first_s, 0
        self.embodiment = inner.embodiment

    def reset(self) -> None:
        self.inner.reset()

    def set_instruction(self, instruction: str) -> None:
        self.inner.set_instruction(instruction)

    def infer(self, observation: Observation):
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.first_s)
        return self.inner.infer(observation)


def test_a_remote_backend_that_timed_out_reconnects_at_once_and_is_served_while_its_old_request_runs(serve):
    """The robot's case: a reply is late, the client drops the connection and reconnects while the
    server is still running the old request. The old rule answered that reconnect with 1013."""
    server = serve(SlowFirst(ScriptedBackend(DROID), first_s=1.0))
    remote = RemoteBackend(DROID, server.url, request_timeout=0.3, backoff_initial=0.01, backoff_max=0.01)
    views = {c.name: np.zeros((1, 180, 320, 3), np.uint8) for c in DROID.cameras}
    remote.set_instruction("wave")
    with pytest.raises(BackendError, match="no reply within 0.3 s"):
        remote.infer(Observation(1.0, np.zeros((1, 352, 640, 3), np.uint8), HOME_DROID, views))
    time.sleep(0.02)  # past the client's backoff; the server is still inside the first request
    remote.request_timeout = 5.0
    result = remote.infer(Observation(2.0, np.zeros((1, 352, 640, 3), np.uint8), HOME_DROID, views))
    assert result.positions.shape == (24, 8) and remote.connected
    assert server.takeovers == 1 and server.backend.calls == 2
    remote.close()
