"""Backends on their own: scripted determinism and limits, LocalBackend around a fake (and the tiny) model,
make_backend, and RemoteBackend against hand-written misbehaving servers (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass

import msgpack
import numpy as np
import pytest
from websockets.asyncio.server import serve

from dreamzero_ros.backends import BACKEND_KINDS, make_backend, protocol
from dreamzero_ros.backends.base import BackendError, Observation
from dreamzero_ros.backends.local import LocalBackend
from dreamzero_ros.backends.remote import RemoteBackend
from dreamzero_ros.backends.scripted import ScriptedBackend
from dreamzero_ros.core.action_space import ActionSpace
from dreamzero_ros.core.embodiment import load_embodiment

DROID = load_embodiment("franka_droid")
G1 = load_embodiment("agibot_g1")
YAM = load_embodiment("yam")
EMBODIMENTS = (DROID, G1, YAM)
HOME_DROID = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8, 0.02])


def observation(e, stamp: float = 10.0, state: np.ndarray | None = None, frames: int = 1) -> Observation:
    s = np.zeros(len(e.state_joints)) if state is None else state
    if state is None:  # a valid pose: the middle of each joint's range
        lo, hi, _ = e.limits_arrays(e.state_joints)
        s = 0.5 * (lo + hi)
    views = {c.name: np.full((frames, *c.source_size, 3), i, np.uint8) for i, c in enumerate(e.cameras)}
    return Observation(stamp, np.zeros((frames, *e.stitch.frame_size, 3), np.uint8), s, views)


# --------------------------------------------------------------------------------------------
# Scripted
# --------------------------------------------------------------------------------------------


def test_scripted_chunk_is_a_pure_function_of_the_stamp_and_the_first_state():
    a, b = ScriptedBackend(DROID), ScriptedBackend(DROID)
    obs = observation(DROID, 12.5, HOME_DROID)
    ra, rb = a.infer(obs), b.infer(obs)
    np.testing.assert_array_equal(ra.positions, rb.positions)
    # predicted from the documented formula: centre = first state, t_k = stamp + (k + 1) dt
    times = 12.5 + DROID.control.dt * np.arange(1, 25)
    expected = HOME_DROID + a.amplitude * np.sin(2 * math.pi * times[:, None] / a.period + a.phase)
    np.testing.assert_allclose(ra.positions, expected, atol=1e-12)
    assert ra.joint_names == DROID.action_joints and ra.dt == pytest.approx(1 / 15)
    # a later state does not move the centre within the episode; reset() takes the next state
    moved = observation(DROID, 12.5, HOME_DROID + np.r_[[0.1] * 7, 0.0])
    np.testing.assert_array_equal(a.infer(moved).positions, ra.positions)
    a.reset()
    np.testing.assert_allclose(a.infer(moved).positions - ra.positions, np.tile(np.r_[[0.1] * 7, 0.0], (24, 1)),
                               atol=1e-9)


@pytest.mark.parametrize("e", EMBODIMENTS, ids=lambda e: e.name)
def test_scripted_stays_inside_position_limits_with_margin_and_under_velocity_limits(e):
    lower, upper, velocity = e.limits_arrays()
    span = upper - lower
    backend = ScriptedBackend(e, amplitude=1.0, period=2.0, margin=0.05, velocity_fraction=0.8)
    for state in (np.array([lo for lo, _ in zip(*e.limits_arrays(e.state_joints)[:2], strict=True)]),
                  e.limits_arrays(e.state_joints)[1]):
        backend.reset()
        for stamp in np.arange(0.0, 4.0, 0.37):
            p = backend.infer(observation(e, stamp, state)).positions
            assert np.all(p >= lower + 0.05 * span - 1e-9) and np.all(p <= upper - 0.05 * span + 1e-9)
            steps = np.abs(np.diff(p, axis=0)) / e.control.dt
            assert np.all(steps <= 0.8 * velocity + 1e-9)
    result = backend.infer(observation(e))
    assert set(result.extras) == {g.name for g in e.extra_actions}
    for g in e.extra_actions:
        np.testing.assert_array_equal(result.extras[g.name], np.zeros((e.control.horizon, len(g.components))))


def test_scripted_refuses_nonsense_settings():
    with pytest.raises(ValueError, match=r"period: expected a positive number of seconds, got 0"):
        ScriptedBackend(DROID, period=0)
    with pytest.raises(ValueError, match=r"home: expected 8 finite values"):
        ScriptedBackend(DROID, home=np.zeros(3))


def test_a_state_of_the_wrong_length_is_refused_naming_the_backend():
    frames = np.zeros((1, 352, 640, 3), np.uint8)
    with pytest.raises(BackendError, match=r"scripted: state: expected shape \[8\], got \[7\]"):
        ScriptedBackend(DROID).infer(Observation(0.0, frames, np.zeros(7)))


# --------------------------------------------------------------------------------------------
# Local, around a fake model implementing the WorldActionModel contract
# --------------------------------------------------------------------------------------------


@dataclass
class FakeGeneration:
    actions: np.ndarray
    video_latents: object
    dit_forwards: int
    seconds: float


class FakeWam:
    """Records every call; actions are a fixed ramp so the expected chunk can be computed by hand."""

    def __init__(self, horizon: int, action_dim: int, metadata: dict | None = None) -> None:
        self.metadata = metadata
        self.calls: list[tuple] = []
        self.actions = np.linspace(-0.5, 0.5, horizon * action_dim, dtype=np.float32).reshape(horizon, action_dim)

    def reset(self) -> None:
        self.calls.append(("reset",))

    def set_instruction(self, prompt: str) -> None:
        self.calls.append(("set_instruction", prompt))

    def observe(self, frames: np.ndarray, state: np.ndarray) -> None:
        self.calls.append(("observe", frames.shape, state.copy()))

    def generate(self, seed=None) -> FakeGeneration:
        self.calls.append(("generate", seed))
        return FakeGeneration(self.actions.copy(), "latents", 8, 0.01)

    def decode_video(self, latents) -> np.ndarray:
        assert latents == "latents"
        return np.full((8, 352, 640, 3), 7, np.uint8)


def droid_metadata() -> dict:
    def entry(lo, hi):
        return {"q01": lo, "q99": hi, "min": lo, "max": hi, "mean": lo, "std": lo}

    return {"statistics": {
        "state": {"joint_position": entry([-2.0] * 7, [2.0] * 7), "gripper_position": entry([0.0], [1.0])},
        "action": {"joint_position": entry([-0.2] * 7, [0.2] * 7), "gripper_position": entry([0.0], [1.0])},
    }}


def test_local_backend_templates_the_prompt_normalises_and_returns_absolute_si():
    model = FakeWam(24, 8, droid_metadata())
    backend = LocalBackend(DROID, model, seed=5, decode_video=True)
    backend.set_instruction("Pick up the cup")
    backend.reset()
    obs = observation(DROID, 3.0, HOME_DROID, frames=4)
    result = backend.infer(obs)
    assert model.calls[0] == ("set_instruction", DROID.format_prompt("Pick up the cup"))
    assert model.calls[1] == ("reset",)
    kind, shape, state = model.calls[2]
    assert kind == "observe" and shape == (4, 352, 640, 3)
    space = ActionSpace.from_metadata(DROID, droid_metadata())
    np.testing.assert_allclose(state, space.encode_state(HOME_DROID))
    assert model.calls[3] == ("generate", 5)
    # by hand for joint 1, step 0: normalised -0.5 -> (0.5 / 2) * 0.4 - 0.2 = -0.1 rad relative, + state
    assert result.positions[0, 0] == pytest.approx(HOME_DROID[0] - 0.1)
    positions, _ = space.decode_actions(model.actions, HOME_DROID)
    np.testing.assert_allclose(result.positions, positions)
    assert result.joint_names == DROID.action_joints and result.predicted_frames.shape == (8, 352, 640, 3)
    backend.infer(obs)
    assert model.calls[-1] == ("generate", 6)  # seed + chunk index: an episode replays exactly


def test_local_backend_restarts_its_seed_count_on_a_one_frame_observation_and_leaves_per_call_seeding_to_the_model():
    model = FakeWam(24, 8, droid_metadata())
    backend = LocalBackend(DROID, model, seed=5)
    backend.set_instruction("pick up the cup")
    for count in (1, 4, 4, 1, 4):
        backend.infer(observation(DROID, 3.0, HOME_DROID, frames=count))
    seeds = [c[1] for c in model.calls if c[0] == "generate"]
    assert seeds == [5, 6, 7, 5, 6]  # a 1-frame observation starts a new episode in the model
    seeded = FakeWam(24, 8, droid_metadata())
    seeded.noise_seed = 1140  # the model draws every call's noise itself, as the release
    backend = LocalBackend(DROID, seeded, seed=5)
    backend.set_instruction("pick up the cup")
    backend.infer(observation(DROID, 3.0, HOME_DROID, frames=1))
    assert [c for c in seeded.calls if c[0] == "generate"] == [("generate", None)]


def test_local_backend_changes_instruction_only_when_it_differs_and_refuses_bad_inputs():
    model = FakeWam(24, 22)
    backend = LocalBackend(G1, model)
    with pytest.raises(BackendError, match="no instruction set"):
        backend.infer(observation(G1))
    backend.set_instruction("wave")
    backend.set_instruction("wave")
    assert [c for c in model.calls if c[0] == "set_instruction"] == [("set_instruction", G1.format_prompt("wave"))]
    bad = observation(G1)
    bad.frames = np.zeros((1, 176, 320, 3), np.uint8)
    with pytest.raises(BackendError, match=r"frames: expected uint8 \[T>=1, 352, 640, 3\], got uint8 \[1, 176, 320"):
        backend.infer(bad)
    result = backend.infer(observation(G1))
    assert result.positions.shape == (24, 20) and result.extras["robot_velocity"].shape == (24, 2)


def test_local_backend_with_the_real_tiny_preset_produces_a_finite_chunk_inside_the_contract():
    pytest.importorskip("dreamzero_ros.model.wam")
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    backend = make_backend("local", DROID, seed=0)
    backend.set_instruction("pick up the cup")
    result = backend.infer(observation(DROID, 1.0, HOME_DROID))
    assert result.positions.shape == (24, 8) and np.all(np.isfinite(result.positions))
    assert time.perf_counter() - start < 15.0


# --------------------------------------------------------------------------------------------
# make_backend
# --------------------------------------------------------------------------------------------


def test_make_backend_builds_each_kind_and_ignores_the_nodes_common_options():
    assert BACKEND_KINDS == ("local", "remote", "scripted", "expert")
    backend = make_backend("scripted", DROID, checkpoint=None, server=None, token=None, seed=0, decode_video=False)
    assert isinstance(backend, ScriptedBackend)
    with pytest.raises(ValueError, match=r"backend: expected one of \['local', 'remote', 'scripted', 'expert'\], got 'gpu'"):
        make_backend("gpu", DROID)
    with pytest.raises(TypeError, match=r"unknown options \['amplitud'\]"):
        make_backend("scripted", DROID, amplitud=0.1)
    with pytest.raises(ValueError, match="server: expected a URL"):
        make_backend("remote", DROID, server=None)
    expert = make_backend("expert", DROID, checkpoint=None, server=None, token=None, seed=0, decode_video=False)
    assert expert.name == "expert" and expert.uses_sim_task and not backend.uses_sim_task
    remote = make_backend("remote", DROID, server="127.0.0.1:9", connect_now=False, seed=0, decode_video=False)
    assert isinstance(remote, RemoteBackend) and remote.url == "ws://127.0.0.1:9" and not remote.connected


# --------------------------------------------------------------------------------------------
# Remote against hand-written servers
# --------------------------------------------------------------------------------------------


class RawServer:
    """A websockets server on 127.0.0.1 running `handler(ws)` on a background loop."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    def _main(self) -> None:
        async def open_():
            self.server = await serve(self.handler, "127.0.0.1", 0, max_size=None, compression=None)
            self.port = self.server.sockets[0].getsockname()[1]

        self.loop.run_until_complete(open_())
        self.ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def close(self) -> None:
        async def shut():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def raw_server():
    servers = []

    def start(handler):
        servers.append(RawServer(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.mark.parametrize(
    ("first_frame", "match"),
    [
        ("hello from some other server", "got a text frame"),
        (b"\xc1\xc1 not msgpack", "not a valid msgpack frame"),
        (protocol.packb({"image_resolution": [180, 320]}), "missing key 'needs_wrist_camera'"),
        (protocol.packb(protocol.server_config(YAM)), r"image_resolution: server wants \[480, 640\]"),
    ],
)
def test_remote_refuses_a_server_that_speaks_something_else(raw_server, first_frame, match):
    async def handler(ws):
        await ws.send(first_frame)
        await asyncio.sleep(1)

    server = raw_server(handler)
    with pytest.raises(BackendError, match=match):
        RemoteBackend(DROID, server.url, connect_now=False).connect()


def test_remote_never_returns_a_late_reply_as_the_answer_to_a_later_request(raw_server):
    """The first reply arrives after the request timeout: it must be dropped with its connection,
    and the second request (on a new connection and session) gets its own reply."""
    sessions: list[str] = []

    async def handler(ws):
        await ws.send(protocol.packb(protocol.server_config(DROID)))
        async for message in ws:
            req = protocol.unpackb(message)
            sessions.append(req["session_id"])
            n = len(sessions)
            if n == 1:
                await asyncio.sleep(0.6)  # longer than the client's request timeout
            await ws.send(protocol.packb(np.full((24, 8), float(n), np.float32)))

    server = raw_server(handler)
    backend = RemoteBackend(DROID, server.url, request_timeout=0.3, backoff_initial=0.05)
    backend.set_instruction("wave")
    first_session = backend.session_id
    with pytest.raises(BackendError, match="no reply within 0.3 s"):
        backend.infer(observation(DROID))
    assert not backend.connected
    time.sleep(0.1)  # past the backoff
    result = backend.infer(observation(DROID))
    # reply 2 (not the late reply 1): joints are 2.0 rad, gripper model 2.0 -> 0.04 - 2 * 0.04 m
    np.testing.assert_allclose(result.positions[:, :7], 2.0)
    np.testing.assert_allclose(result.positions[:, 7], -0.04)
    assert sessions[0] == first_session != sessions[1] == backend.session_id


def test_remote_sends_one_frame_first_then_the_last_four_model_unit_state_and_the_raw_prompt(raw_server):
    requests: list[dict] = []

    async def handler(ws):
        await ws.send(protocol.packb(protocol.server_config(DROID)))
        async for message in ws:
            req = protocol.unpackb(message)
            requests.append(req)
            if req["endpoint"] == "reset":
                await ws.send(protocol.RESET_REPLY)
            else:
                await ws.send(protocol.packb(np.zeros((24, 8), np.float32)))

    server = raw_server(handler)
    backend = RemoteBackend(DROID, server.url, token="s3cret")
    backend.set_instruction("Pick up the cup")
    obs = observation(DROID, state=HOME_DROID, frames=6)
    backend.infer(obs)
    backend.infer(obs)
    backend.reset()
    backend.infer(obs)
    first, second, reset, third = requests
    assert first["observation/wrist_image_left"].shape == (1, 180, 320, 3)
    assert second["observation/exterior_image_0_left"].shape == (4, 180, 320, 3)
    assert third["observation/exterior_image_1_left"].shape == (1, 180, 320, 3)  # new session: first call again
    assert first["prompt"] == "Pick up the cup"  # raw; the server applies its template
    np.testing.assert_allclose(first["observation/joint_position"], HOME_DROID[:7])
    np.testing.assert_allclose(first["observation/gripper_position"], [0.5])  # 0.02 m -> model 0.5
    assert first["session_id"] == second["session_id"]
    assert reset == {"endpoint": "reset", "session_id": third["session_id"]}
    assert third["session_id"] != first["session_id"]


REFERENCE_DROID_HANDSHAKE = {  # DREAMZERO_FACTS.md, Remote serving protocol
    "image_resolution": [180, 320], "needs_wrist_camera": True, "n_external_cameras": 2,
    "needs_stereo_camera": False, "needs_session_id": True, "action_space": "joint_position",
}


def test_remote_drives_a_reference_behaving_server_and_never_sends_it_anything_but_infer_and_reset(raw_server):
    """A peer written from the facts: no subprotocol, the six-field greeting, "infer" answered with a
    float32 [24, 8] array and anything else with the reset text, as the released server does."""
    endpoints: list[str] = []
    offered: list[str | None] = []

    async def reference_peer(ws):
        offered.append(ws.request.headers.get("Sec-WebSocket-Protocol"))
        await ws.send(msgpack.packb(REFERENCE_DROID_HANDSHAKE, use_bin_type=True))
        async for message in ws:
            req = msgpack.unpackb(message, raw=False)
            endpoints.append(req["endpoint"])
            if req["endpoint"] == "reset":
                await ws.send("reset successful")
            else:  # the release runs the policy on every non-reset request
                chunk = np.full((24, 8), 0.25, "<f4")
                await ws.send(msgpack.packb({b"__ndarray__": True, b"data": chunk.tobytes(), b"dtype": "<f4",
                                             b"shape": [24, 8]}, use_bin_type=True))

    server = raw_server(reference_peer)
    backend = RemoteBackend(DROID, server.url)
    assert backend.connected and backend.server_config == REFERENCE_DROID_HANDSHAKE
    assert backend.server_metadata is None  # nothing beyond the six fields from a reference server
    backend.set_instruction("wave")
    result = backend.infer(observation(DROID))
    np.testing.assert_allclose(result.positions[:, :7], 0.25)  # model units are SI radians for the joints
    backend.reset()
    backend.infer(observation(DROID))
    assert endpoints == ["infer", "reset", "infer"]
    assert offered == ["dreamzero.v2"]  # offered, not selected: the peer ignores it like the release


def test_remote_fails_fast_with_backoff_when_nothing_listens():
    backend = RemoteBackend(DROID, "ws://127.0.0.1:9", connect_timeout=0.5, backoff_initial=5.0, connect_now=False)
    backend.set_instruction("wave")
    with pytest.raises(BackendError, match="cannot connect to ws://127.0.0.1:9"):
        backend.infer(observation(DROID))
    start = time.perf_counter()
    with pytest.raises(BackendError, match=r"next reconnect in \d"):
        backend.infer(observation(DROID))
    assert time.perf_counter() - start < 0.1
