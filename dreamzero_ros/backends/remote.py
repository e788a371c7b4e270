"""Remote backend: a synchronous client of a DreamZero policy server (ours or the reference release).

Speaks backends.protocol over one websocket. Why websockets' *sync* client and not asyncio in a
private thread: infer() is already called from the inference node's worker thread and is strictly
request -> reply, so a blocking API is the simplest correct shape; the sync client still runs its
own background thread that answers and sends keepalive pings while infer() waits.

What it sends per infer() (see protocol.py for the map):
  * per-camera images from Observation.views (camera name -> wire_key) at each camera's
    source_size: the newest frame on the first call of a session, the last 4 frames afterwards,
    which is exactly what the reference server's per-camera buffers use (it appends what it
    receives and feeds the model 1 frame on its first call, then the last 4);
  * the state groups in MODEL units (effectors mapped, e.g. DROID gripper in [0, 1]);
  * "prompt": the RAW instruction (the reference DROID server applies its own template; ours
    applies the embodiment's template on its side too);
  * "session_id": a fresh uuid per episode. reset() starts a new session and calls endpoint
    "reset"; an instruction change starts a new session (both servers reset on a new id).
The reply, float32 [H, A] absolute in model units, goes through ActionSpace.model_to_si_actions.

Handshake: the client offers the websocket subprotocol protocol.SUBPROTOCOL. Every server sends
the reference's six-field config first, which is validated against the embodiment. When the
server selected the subprotocol (ours does), the client then asks {"endpoint": "metadata"} and
validates the embodiment name, cameras, state keys, horizon, action dimension and joints too
(server_metadata). A server that selected none (the reference) is never sent that request:
it would run inference on it and close the connection.

Robustness rules:
  * the handshake (and metadata, where served) is validated against the embodiment on every
    (re)connect;
  * any failed request (timeout, closed connection, error text, malformed reply) DROPS the
    connection: the protocol has no request ids, so a reply that arrives late on a live
    connection could otherwise be taken for the next request's. A new connection always starts a
    new session, so a chunk from a request sent on a previous connection or session is never
    returned;
  * reconnects are lazy (on the next infer) with exponential backoff, bounded by backoff_max;
    while backing off infer() fails fast instead of blocking the worker;
  * message size limit on both directions (default 16 MiB; websockets' 1 MiB default closes a
    4-frame DROID request with 1009);
  * keepalive pings every ping_interval s; ping_timeout defaults to at least request_timeout so a
    server that blocks its event loop during inference (the reference does) is not declared dead.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import uuid
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI, WebSocketException
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from dreamzero_ros.backends import protocol
from dreamzero_ros.backends.base import BackendError, ChunkResult, Observation, PolicyBackend
from dreamzero_ros.core.action_space import ActionSpace
from dreamzero_ros.core.embodiment import EmbodimentConfig

LOG = logging.getLogger(__name__)


def normalise_url(server: str) -> str:
    """'host:port' -> 'ws://host:port'; ws:// and wss:// URLs pass unchanged."""
    text = server.strip()
    if not text:
        raise ValueError("remote: server: expected a URL like ws://127.0.0.1:8000, got ''")
    return text if text.startswith(("ws://", "wss://")) else f"ws://{text}"


class RemoteBackend(PolicyBackend):
    """Client of a websocket policy server (see the module docstring for the protocol and rules)."""

    name = "remote"

    def __init__(
        self,
        embodiment: EmbodimentConfig,
        server: str,
        *,
        token: str | None = None,
        connect_timeout: float = 5.0,
        request_timeout: float = 60.0,
        max_message_size: int = protocol.DEFAULT_MAX_MESSAGE_SIZE,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        connect_now: bool = True,
    ) -> None:
        """
        Args:
            server: ws://host:port (or host:port).
            token: shared secret, presented as "Authorization: Bearer <token>" on the handshake.
            connect_timeout: s for TCP + websocket handshake + the server's config frame.
            request_timeout: s to wait for one reply (inference included).
            max_message_size: bytes, both directions.
            ping_interval / ping_timeout: s; ping_timeout None = max(60, request_timeout).
            backoff_initial / backoff_max: s; reconnect delays double from initial up to max.
            connect_now: try to connect in the constructor (a failure is logged, not raised).
        """
        for name, value in (("connect_timeout", connect_timeout), ("request_timeout", request_timeout),
                            ("backoff_initial", backoff_initial), ("backoff_max", backoff_max)):
            if not value > 0:
                raise ValueError(f"remote: {name}: expected a positive number of seconds, got {value!r}")
        if max_message_size < 1024:
            raise ValueError(f"remote: max_message_size: expected >= 1024 bytes, got {max_message_size!r}")
        self.embodiment = embodiment
        self.url = normalise_url(server)
        # Units only: the client never normalises (the server owns the statistics).
        self.space = ActionSpace(embodiment, None, warn_if_identity=False)
        self.token = token
        self.connect_timeout = float(connect_timeout)
        self.request_timeout = float(request_timeout)
        self.max_message_size = int(max_message_size)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout if ping_timeout is not None else max(60.0, self.request_timeout)
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.server_config: dict[str, Any] | None = None  # the six-field handshake
        self.server_metadata: dict[str, Any] | None = None  # ours only; None from a reference server
        self.instruction = ""
        self.session_id = ""
        self._first_call = True
        self._ws: ClientConnection | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._last_error = ""
        self._lock = threading.RLock()
        self._new_session()
        if connect_now:
            try:
                self.connect()
            except BackendError as exc:
                LOG.warning("remote initial connect failed url=%s error=%s", self.url, exc)

    # -- connection --------------------------------------------------------------------------

    @property
    def execute_steps(self) -> int | None:  # type: ignore[override]
        """The served checkpoint's training cadence from our server's metadata (None before it, or from the
        reference server, which does not say)."""
        return (self.server_metadata or {}).get("execute_steps")

    @property
    def connected(self) -> bool:
        ws = self._ws
        return ws is not None and ws.state is State.OPEN

    def connect(self) -> None:
        """Open a connection now and validate the handshake; raises BackendError. Starts a new session."""
        with self._lock:
            self._drop("reconnecting")
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
            options = _supported(
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                max_size=self.max_message_size,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2.0,
                compression=None,  # images do not deflate well; compression only costs CPU here
                subprotocols=[protocol.SUBPROTOCOL],  # unlocks the metadata request on our server
                proxy=None,  # policy servers are on the robot's network; never route via env proxies
                legacy=True,  # websockets >= 17.1: a long-lived connection, not a context manager
            )
            try:
                ws = connect(self.url, **options)
            except (OSError, TimeoutError, InvalidURI, InvalidHandshake, WebSocketException) as exc:
                raise self._failed(f"cannot connect to {self.url}: {type(exc).__name__}: {exc}") from exc
            try:
                first = ws.recv(timeout=self.connect_timeout)
                if isinstance(first, str):
                    raise protocol.ProtocolError(
                        f"expected the server config as a binary msgpack frame, got a text frame: {first[:200]!r}"
                    )
                config = protocol.validate_server_config(protocol.unpackb(first), self.embodiment, where=self.url)
                metadata = self._metadata(ws) if ws.subprotocol == protocol.SUBPROTOCOL else None
            except TimeoutError as exc:
                ws.close()
                raise self._failed(f"{self.url}: no server config or metadata within {self.connect_timeout:g} s") from exc
            except ConnectionClosed as exc:
                raise self._failed(f"{self.url}: server closed the connection during the handshake: "
                                   f"{_close_text(exc)}") from exc
            except protocol.ProtocolError as exc:
                ws.close()
                raise self._failed(f"{self.url}: not a compatible DreamZero policy server: {exc}") from exc
            self._ws = ws
            self.server_config = config
            self.server_metadata = metadata
            self._failures = 0
            self._last_error = ""
            self._new_session()
            LOG.info("remote connected url=%s server=%s embodiment=%s session=%s", self.url,
                     "dreamzero" if metadata is not None else "reference", self.embodiment.name, self.session_id)

    def _metadata(self, ws: ClientConnection) -> dict[str, Any]:
        """Ask our server for its metadata and validate it; raises ProtocolError, TimeoutError, ConnectionClosed."""
        ws.send(protocol.packb(protocol.metadata_request()))
        reply = ws.recv(timeout=self.connect_timeout)
        if isinstance(reply, str):
            raise protocol.ProtocolError(f"metadata: expected a binary msgpack map, got the text {reply[:200]!r}")
        return protocol.validate_server_metadata(protocol.unpackb(reply), self.embodiment, where=self.url)

    def _ensure_connected(self) -> ClientConnection:
        if self.connected:
            return self._ws  # type: ignore[return-value]
        if self._ws is not None:
            self._drop("connection lost")
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            raise BackendError(f"not connected to {self.url} ({self._last_error}); next reconnect in {wait:.1f} s")
        self.connect()
        return self._ws  # type: ignore[return-value]

    def _failed(self, message: str) -> BackendError:
        """Schedule the next reconnect attempt (exponential backoff) and build the error."""
        delay = min(self.backoff_max, self.backoff_initial * (2.0 ** self._failures))
        self._failures += 1
        self._next_attempt = time.monotonic() + delay
        self._last_error = message
        LOG.warning("remote failure url=%s retry_in_s=%.2f error=%s", self.url, delay, message)
        return BackendError(message)

    def _drop(self, why: str) -> None:
        """Forget the connection (closing it); whatever it still carries is never read."""
        ws, self._ws = self._ws, None
        if ws is not None:
            LOG.info("remote drop url=%s session=%s reason=%s", self.url, self.session_id, why)
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone either way
                pass

    def _new_session(self) -> None:
        self.session_id = uuid.uuid4().hex
        self._first_call = True

    # -- PolicyBackend -----------------------------------------------------------------------

    def set_instruction(self, instruction: str) -> None:
        with self._lock:
            if instruction != self.instruction:
                self.instruction = instruction
                self._new_session()  # both servers reset their episode on a new session id

    def reset(self) -> None:
        """New session; tells the server (endpoint reset) when connected. The new id alone resets it too."""
        with self._lock:
            self._new_session()
            if not self.connected:
                return
            ws = self._ws
            assert ws is not None
            try:
                ws.send(protocol.packb(protocol.reset_request(self.session_id)))
                reply = ws.recv(timeout=self.request_timeout)
            except (TimeoutError, ConnectionClosed) as exc:
                self._drop(f"reset failed: {exc}")
                raise BackendError(f"{self.url}: reset failed: {type(exc).__name__}: {exc}") from exc
            if reply != protocol.RESET_REPLY:
                self._drop("unexpected reset reply")
                raise BackendError(f"{self.url}: reset: expected the text {protocol.RESET_REPLY!r}, got {_show(reply)}")

    def infer(self, observation: Observation) -> ChunkResult:
        start = time.perf_counter()
        with self._lock:
            if not self.instruction.strip():
                raise BackendError("remote: no instruction set; call set_instruction() before infer()")
            images = self._images(observation)
            try:
                state_model = self.space.state_to_model(observation.state)
            except ValueError as exc:
                raise BackendError(f"remote: {exc}") from exc
            ws = self._ensure_connected()
            n = protocol.FIRST_CALL_FRAMES if self._first_call else protocol.LATER_CALL_FRAMES
            request = protocol.infer_request(
                self.embodiment, {k: v[-n:] for k, v in images.items()}, state_model, self.instruction,
                self.session_id,
            )
            payload = protocol.packb(request)
            try:
                ws.send(payload)
                reply = ws.recv(timeout=self.request_timeout)
            except TimeoutError as exc:
                self._drop("request timeout")
                raise self._failed(f"{self.url}: no reply within {self.request_timeout:g} s; connection dropped "
                                   "so a late reply is never taken for a later request") from exc
            except ConnectionClosed as exc:
                self._drop("closed during request")
                raise self._failed(f"{self.url}: connection closed during the request: {_close_text(exc)}") from exc
            if isinstance(reply, str):
                self._drop("error reply")
                raise self._failed(f"{self.url}: server error: {reply[-2000:]}")
            try:
                actions = self._check_reply(protocol.unpackb(reply))
            except protocol.ProtocolError as exc:
                self._drop("malformed reply")
                raise self._failed(f"{self.url}: malformed infer reply: {exc}") from exc
            self._first_call = False
        positions, extras = self.space.model_to_si_actions(actions)
        latency = time.perf_counter() - start
        LOG.debug("remote infer session=%s bytes_out=%d latency_s=%.3f", self.session_id, len(payload), latency)
        return ChunkResult(self.embodiment.action_joints, positions, self.embodiment.control.dt, latency, extras)

    def close(self) -> None:
        # No lock: close() may be called from another thread to interrupt a blocked infer().
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    # -- helpers -----------------------------------------------------------------------------

    def _images(self, observation: Observation) -> dict[str, np.ndarray]:
        views = observation.views
        if views is None:
            raise BackendError("remote: Observation.views is None; the remote protocol needs per-camera images")
        out = {}
        for cam in self.embodiment.cameras:
            if cam.name not in views:
                raise BackendError(
                    f"remote: views: missing camera {cam.name!r}; expected {list(self.embodiment.camera_names)}"
                )
            img = np.asarray(views[cam.name])
            if img.ndim == 3:
                img = img[None]
            if img.dtype != np.uint8 or img.ndim != 4 or not len(img) or img.shape[1:] != (*cam.source_size, 3):
                raise BackendError(
                    f"remote: views[{cam.name!r}]: expected uint8 "
                    f"[T>=1, {cam.source_size[0]}, {cam.source_size[1]}, 3] "
                    f"(the camera's source_size), got {img.dtype} {list(img.shape)}"
                )
            out[cam.name] = img
        return out

    def _check_reply(self, reply: Any) -> np.ndarray:
        want = (self.embodiment.control.horizon, self.space.action_dim)
        if not isinstance(reply, np.ndarray) or reply.dtype.kind != "f" or reply.shape != want:
            got = f"{reply.dtype} {list(reply.shape)}" if isinstance(reply, np.ndarray) else type(reply).__name__
            raise protocol.ProtocolError(f"expected a float array of shape {list(want)}, got {got}")
        if not np.all(np.isfinite(reply)):
            raise protocol.ProtocolError("the action array holds NaN or inf")
        return reply.astype(np.float64)


_CONNECT_PARAMS = frozenset(inspect.signature(connect).parameters)


def _supported(**options: Any) -> dict[str, Any]:
    """The options this websockets version's sync connect() knows (requirements allow >= 13).

    Unknown keywords would be passed on to socket.create_connection and fail; the ones dropped on
    old versions are keepalive (sync pings arrived in 15), proxy (15) and legacy (17.1).
    """
    return {k: v for k, v in options.items() if k in _CONNECT_PARAMS}


def _close_text(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    return f"code={frame.code} reason={frame.reason!r}" if frame is not None else "no close frame (connection lost)"


def _show(value: Any) -> str:
    return repr(value[:200]) if isinstance(value, (str, bytes)) else type(value).__name__
