"""`dreamzero serve`: the websocket policy server (the GPU box side of the remote backend).

Speaks backends.protocol (the reference release's wire format and six-field handshake, plus a
metadata request only our client makes) in front of one PolicyBackend (normally the local model):

  * binds 127.0.0.1 unless told otherwise; optional shared token, presented by the client as
    "Authorization: Bearer <token>" on the websocket handshake (a missing or wrong token is
    closed with 1008 and a reason before anything is sent);
  * one active client at a time per model, so two robots can never interleave frames into one
    KV cache. Admission rule when a connection arrives while another one holds the session
    (decided under one lock, so simultaneous arrivals are admitted one after the other):
      - the holder's socket is gone or going (closing handshake started, e.g. after 1009 or
        1011, or closed, e.g. dropped or killed): the newcomer takes the session at once;
      - the holder still looks open: it is pinged; no pong within takeover_probe_s (default
        2 s), or the connection dies meanwhile, means it is gone and the newcomer takes the
        session; a pong means a live client holds it and the newcomer is closed with 1013
        ("busy"), the holder served on.
    A superseded holder is closed with 4001 and none of its later requests reach the model (one
    already running finishes; its reply is dropped). A takeover does not reset the episode by
    itself: as in the release, a request with a new session id does (our client always starts
    one on a new connection; a client that reconnects with its session id continues it);
  * sends its config first, as one binary frame: exactly the reference server's six fields
    (protocol.server_config), so the reference client's PolicyServerConfig(**config) works; a
    client that offered protocol.SUBPROTOCOL may then ask {"endpoint": "metadata"} for
    protocol.server_metadata (our client does; the reference client never does);
  * keeps per-camera frame buffers like the reference: each request's frames are appended, the
    model gets 1 frame on the first call of an episode and the last 4 (padded at the front with
    the oldest when fewer arrived) afterwards, each time step stitched with core.stitch;
  * a new session id or a new prompt resets the episode (buffers and model context);
  * inference runs on one worker thread, off the event loop, so keepalive pings are answered
    during a long inference;
  * a bad request (garbage bytes, text frame, wrong types, missing keys, invalid UTF-8, empty or
    oversized prompt) gets an "error: bad request: ..." text frame and the connection keeps
    being served; an inference failure sends the traceback as text and closes with 1011 (as the
    reference does); a message over max_message_size is closed by websockets with 1009;
  * logs one line per request: endpoint, session, sizes, queue/inference/total latency (key=value).

The state arrives in model units and the infer reply is float32 [H, A] absolute in MODEL units: the
server hands both to `PolicyBackend.infer_model_units` as they are (the local backend never goes
through SI; the client converts SI <-> model units once, on its side of the wire).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hmac
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.typing import Subprotocol

from dreamzero_ros.backends import protocol
from dreamzero_ros.backends.base import PolicyBackend
from dreamzero_ros.core.embodiment import DEFAULT_EMBODIMENT, EmbodimentConfig
from dreamzero_ros.core.frame_window import FrameWindow
from dreamzero_ros.core.inference_loop import MAX_INSTRUCTION_CHARS

LOG = logging.getLogger("dreamzero_ros.backends.server")

DEFAULT_PORT = 8000
DEFAULT_MAX_PROMPT_CHARS = MAX_INSTRUCTION_CHARS
DEFAULT_TAKEOVER_PROBE_S = 2.0
SUPERSEDED_CLOSE_CODE = 4001
TOKEN_ENV = "DREAMZERO_SERVER_TOKEN"

StitchFn = Callable[[dict[str, np.ndarray], EmbodimentConfig], np.ndarray]
BackendSource = PolicyBackend | Callable[[], PolicyBackend] | None


class BadRequest(ValueError):
    """A request the server refuses without closing the connection; the message is sent back."""


@dataclass(slots=True)
class _InferRequest:
    session_id: str | None
    prompt: str
    images: dict[str, np.ndarray]  # camera name -> uint8 [T, H, W, 3]
    state_model: np.ndarray  # [S] model units


class PolicyServer:
    """Websocket policy server; `start()` runs it on a background thread (tests), `serve_forever()` blocks."""

    def __init__(
        self,
        backend: BackendSource,
        embodiment: EmbodimentConfig,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        max_message_size: int = protocol.DEFAULT_MAX_MESSAGE_SIZE,
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 60.0,
        stitch: StitchFn | None = None,
        takeover_probe_s: float = DEFAULT_TAKEOVER_PROBE_S,
    ) -> None:
        """
        Args:
            backend: a PolicyBackend, a zero-argument factory called in start(), or None for a
                LocalBackend (tiny preset, random weights) of `embodiment`.
            port: TCP port; 0 picks a free one (read `port` after start()).
            token: shared secret clients must present as "Authorization: Bearer <token>"; None = open.
            max_message_size: bytes per websocket message, both directions.
            max_prompt_chars: longest accepted prompt (the model's text context is 512 tokens).
            stitch: stitch_views(views {camera: [H, W, 3]}, embodiment) -> uint8 [352, 640, 3];
                None = dreamzero_ros.model.stitching.stitch_views.
            takeover_probe_s: s a connection that holds the session and still looks open gets to
                answer a ping before a newcomer takes the session over (see the module docstring).
        """
        if max_prompt_chars < 1:
            raise ValueError(f"server: max_prompt_chars: expected >= 1, got {max_prompt_chars}")
        if not takeover_probe_s > 0:
            raise ValueError(f"server: takeover_probe_s: expected a positive number of seconds, got {takeover_probe_s!r}")
        self.embodiment = embodiment
        self.host = host
        self.port = int(port)
        self.token = token or None
        self.max_message_size = int(max_message_size)
        self.max_prompt_chars = int(max_prompt_chars)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.config = protocol.server_config(embodiment)
        self.metadata = protocol.server_metadata(embodiment)
        self.takeover_probe_s = float(takeover_probe_s)
        self._backend_source = backend
        self._owns_backend = not isinstance(backend, PolicyBackend)
        self.backend: PolicyBackend | None = backend if isinstance(backend, PolicyBackend) else None
        self._stitch = stitch
        # Episode state, touched only on the inference thread.
        self._session: str | None = None
        self._prompt: str | None = None
        self._first_call = True
        self._window = FrameWindow(embodiment.camera_names, protocol.LATER_CALL_FRAMES)
        self._episode_started = False
        self._stitch_cache: dict[tuple[int, ...], tuple[tuple[np.ndarray, ...], np.ndarray]] = {}
        # Serving state, touched only on the event loop.
        self._active: ServerConnection | None = None
        self._admission: asyncio.Lock | None = None
        self._retiring: set[asyncio.Task] = set()
        self.takeovers = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.requests_served = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Create the backend if needed, bind and serve on a background thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("server: already started")
        if self._stitch is None:
            from dreamzero_ros.model.stitching import stitch_views

            self._stitch = stitch_views
        if self.backend is None:
            self.backend = self._make_backend()
        self.metadata = protocol.server_metadata(self.embodiment, self.backend.execute_steps)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dz-serve-infer")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._stopped.clear()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="dz-serve-loop", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"server: not listening on {self.host}:{self.port} after {timeout:g} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        LOG.info("serving url=%s embodiment=%s backend=%s token=%s max_message_bytes=%d",
                 self.url, self.embodiment.name, self.backend.name, "yes" if self.token else "no",
                 self.max_message_size)

    async def _open(self) -> None:
        self._admission = asyncio.Lock()
        self._server = await serve(
            self._handle_connection,
            self.host,
            self.port,
            max_size=self.max_message_size,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=2.0,
            compression=None,
            select_subprotocol=_select_subprotocol,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self, timeout: float = 5.0) -> None:
        """Close all connections (1001) and the listening socket; join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            async def shutdown() -> None:
                if self._server is not None:
                    self._server.close()
                    await self._server.wait_closed()

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
            except (concurrent.futures.TimeoutError, RuntimeError) as exc:
                LOG.warning("server shutdown incomplete: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        self._thread = None
        self._loop = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._owns_backend and self.backend is not None:
            self.backend.close()
            self.backend = None
        self._stopped.set()

    def serve_forever(self) -> None:
        """start() and block until stop() (from another thread or a signal handler)."""
        if self._thread is None:
            self.start()
        self._stopped.wait()

    def __enter__(self) -> PolicyServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _make_backend(self) -> PolicyBackend:
        if callable(self._backend_source):
            backend = self._backend_source()
            if not isinstance(backend, PolicyBackend):
                raise TypeError(f"server: backend factory returned {type(backend).__name__}, expected a PolicyBackend")
            return backend
        from dreamzero_ros.backends.local import LocalBackend

        return LocalBackend(self.embodiment)

    # -- connections (event loop) ------------------------------------------------------------

    async def _handle_connection(self, ws: ServerConnection) -> None:
        peer = _peer(ws)
        if self.token is not None and not self._authorised(ws):
            LOG.warning("refused peer=%s reason=unauthorised", peer)
            await ws.close(1008, "unauthorized: missing or wrong bearer token")
            return
        assert self._admission is not None
        async with self._admission:
            holder = self._active
            gone = None if holder is None else await self._gone(holder)
            admitted = holder is None or gone is not None
            if admitted:
                self._active = ws
        if not admitted:
            LOG.warning("refused peer=%s reason=busy active=%s", peer, _peer(holder))
            await ws.close(1013, "busy: another client is being served; one session per model")
            return
        if holder is not None:
            self.takeovers += 1
            LOG.warning("takeover peer=%s previous=%s reason=%s", peer, _peer(holder), gone)
            task = asyncio.create_task(holder.close(SUPERSEDED_CLOSE_CODE, "superseded: a new connection took over"))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        LOG.info("connected peer=%s subprotocol=%s", peer, ws.subprotocol or "-")
        try:
            await ws.send(protocol.packb(self.config))
            async for message in ws:
                if not await self._handle_message(ws, message):
                    break
        except ConnectionClosed:
            pass
        finally:
            if self._active is ws:
                self._active = None
            LOG.info("disconnected peer=%s code=%s", peer, ws.close_code)

    async def _gone(self, holder: ServerConnection) -> str | None:
        """Why the session holder's connection is gone or going, or None when it answers a ping in time."""
        if holder.state is not State.OPEN:
            return f"state={holder.state.name}"
        try:
            pong = await holder.ping()
            await asyncio.wait_for(pong, self.takeover_probe_s)
        except ConnectionClosed:
            return "closed while probed"
        except TimeoutError:
            return f"no pong within {self.takeover_probe_s:g} s"
        return None

    def _authorised(self, ws: ServerConnection) -> bool:
        header = ws.request.headers.get("Authorization", "") if ws.request is not None else ""
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    async def _handle_message(self, ws: ServerConnection, message: str | bytes) -> bool:
        """Serve one request; False when the connection is done (inference failed and it was closed, or superseded)."""
        if self._active is not ws:  # superseded: its requests never reach the model again
            return False
        t0 = time.perf_counter()
        endpoint = "?"
        try:
            request = self._parse(message)
            endpoint = request.get("endpoint", "infer")
            if endpoint == protocol.METADATA_ENDPOINT:
                await ws.send(protocol.packb(self.metadata))
                return True
            if endpoint == "reset":
                session = _optional_session(request)
                await self._run(self._reset_episode, session)
                await ws.send(protocol.RESET_REPLY)
                LOG.info("request endpoint=reset session=%s total_ms=%.1f", _short(session), _ms(t0))
                return True
            parsed = self._parse_infer(request)
        except BadRequest as exc:
            LOG.warning("bad_request endpoint=%s peer=%s error=%s", endpoint, _peer(ws), exc)
            await ws.send(f"error: bad request: {exc}")
            return True
        try:
            actions, infer_s = await self._run(self._infer, parsed)
        except Exception:  # noqa: BLE001 - report any model failure to the client, as the reference does
            text = traceback.format_exc()
            LOG.error("infer_failed session=%s\n%s", _short(parsed.session_id), text)
            await ws.send(text)
            await ws.close(1011, "inference failed; traceback sent")
            return False
        payload = protocol.packb(actions)
        await ws.send(payload)
        self.requests_served += 1
        frames = next(iter(parsed.images.values())).shape[0]
        LOG.info("request endpoint=infer session=%s frames_in=%d bytes_in=%d bytes_out=%d infer_ms=%.1f total_ms=%.1f",
                 _short(parsed.session_id), frames, len(message), len(payload), infer_s * 1e3, _ms(t0))
        return True

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn` on the single inference thread, leaving the loop free for pings and other clients."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # -- request parsing (event loop, cheap) -------------------------------------------------

    def _parse(self, message: str | bytes) -> dict[str, Any]:
        if isinstance(message, str):
            raise BadRequest("expected a binary msgpack frame, got a text frame")
        try:
            request = protocol.unpackb(message)
        except protocol.ProtocolError as exc:
            raise BadRequest(str(exc)) from exc
        if not isinstance(request, dict):
            raise BadRequest(f"expected a msgpack map, got {type(request).__name__}")
        endpoint = request.get("endpoint", "infer")
        if endpoint not in protocol.ENDPOINTS:
            raise BadRequest(f"endpoint: expected one of {list(protocol.ENDPOINTS)}, got {endpoint!r}")
        return request

    def _parse_infer(self, request: dict[str, Any]) -> _InferRequest:
        e = self.embodiment
        session = _optional_session(request)
        prompt = request.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest(f"prompt: expected a UTF-8 string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise BadRequest("prompt: expected a non-empty instruction, got an empty one")
        if len(prompt) > self.max_prompt_chars:
            raise BadRequest(f"prompt: expected at most {self.max_prompt_chars} characters, got {len(prompt)}")
        images = {}
        for cam in e.cameras:
            key = protocol.image_key(cam.wire_key)
            img = request.get(key)
            if img is None:
                raise BadRequest(f"{key}: missing camera image")
            want = (*cam.source_size, 3)
            ok = isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim in (3, 4)
            if not ok or img.shape[-3:] != want:
                got = f"{img.dtype} {list(img.shape)}" if isinstance(img, np.ndarray) else type(img).__name__
                raise BadRequest(f"{key}: expected uint8 [H, W, 3] or [T, H, W, 3] with (H, W, 3) = {want}, got {got}")
            img = img if img.ndim == 4 else img[None]
            if not len(img):
                raise BadRequest(f"{key}: expected at least one frame, got 0")
            images[cam.name] = img
        parts = []
        for g in e.state:
            key = protocol.state_key(g.name)
            value = request.get(key)
            if value is None:
                raise BadRequest(f"{key}: missing state group ({len(g.joints)} values)")
            arr = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
            if arr is None or arr.dtype.kind not in "fiu" or arr.size != len(g.joints):
                got = f"{arr.dtype} {list(arr.shape)}" if arr is not None else type(value).__name__
                raise BadRequest(f"{key}: expected {len(g.joints)} numbers, got {got}")
            arr = arr.astype(np.float64).reshape(-1)
            if not np.all(np.isfinite(arr)):
                raise BadRequest(f"{key}: expected finite numbers, got {arr.tolist()}")
            parts.append(arr)
        return _InferRequest(session, prompt, images, np.concatenate(parts))

    # -- episode + inference (inference thread) ----------------------------------------------

    def _reset_episode(self, session: str | None) -> None:
        assert self.backend is not None
        self.backend.reset()
        self._session = session
        self._clear_buffers()

    def _clear_buffers(self) -> None:
        self._window.clear()
        self._stitch_cache = {}
        self._first_call = True

    def _stitched(self, views: dict[str, np.ndarray]) -> np.ndarray:
        """stitch_views with a small cache.

        A frame stays in the 4-frame window for up to 4 requests and stitching (resize with
        antialias) costs milliseconds per frame, so each time step is stitched once. Keyed by the
        identity of the buffered frame objects; each entry holds references to those objects, so
        an id cannot be reused by another frame while its entry exists.
        """
        frames = tuple(views[c.name] for c in self.embodiment.cameras)
        key = tuple(map(id, frames))
        hit = self._stitch_cache.get(key)
        if hit is not None:
            return hit[1]
        stitched = self._stitch(views, self.embodiment)
        self._stitch_cache[key] = (frames, stitched)
        while len(self._stitch_cache) > 2 * protocol.LATER_CALL_FRAMES:
            self._stitch_cache.pop(next(iter(self._stitch_cache)))  # oldest first (insertion order)
        return stitched

    def _infer(self, req: _InferRequest) -> tuple[np.ndarray, float]:
        """-> (float32 [H, A] absolute model units, seconds in backend.infer)."""
        backend = self.backend
        assert backend is not None and self._stitch is not None
        if not self._episode_started or (req.session_id is not None and req.session_id != self._session):
            if self._session is not None or req.session_id is not None:
                LOG.info("episode reset reason=new_session session=%s previous=%s", _short(req.session_id),
                         _short(self._session))
            self._reset_episode(req.session_id)
            self._episode_started = True
        if req.prompt != self._prompt:
            backend.set_instruction(req.prompt)  # raw: the backend applies the embodiment's template
            if self._prompt is not None:
                LOG.info("episode reset reason=new_prompt prompt=%r", req.prompt[:80])
            self._prompt = req.prompt
            self._clear_buffers()  # a new instruction starts a new model context: first-call framing again
        for name, frames in req.images.items():
            self._window.push(name, frames)
        n = protocol.FIRST_CALL_FRAMES if self._first_call else protocol.LATER_CALL_FRAMES
        window = self._window.last(n)
        stitched = np.stack([self._stitched({name: frames[t] for name, frames in window.items()}) for t in range(n)])
        views = {name: np.stack(frames) for name, frames in window.items()}
        t0 = time.perf_counter()
        # Model units in, model units out: the client converted SI once on its side of the wire.
        chunk = backend.infer_model_units(stitched, req.state_model, views)
        infer_s = time.perf_counter() - t0
        self._first_call = False
        actions = np.asarray(chunk.actions, dtype=np.float32)
        return actions, infer_s


def _select_subprotocol(ws: ServerConnection, offered: Sequence[str]) -> Subprotocol | None:
    """Ours when offered; no subprotocol otherwise (the reference client offers none and is served as usual)."""
    return Subprotocol(protocol.SUBPROTOCOL) if protocol.SUBPROTOCOL in offered else None


def _optional_session(request: dict[str, Any]) -> str | None:
    session = request.get("session_id")
    if session is not None and (not isinstance(session, str) or not session):
        raise BadRequest(f"session_id: expected a non-empty string, got {session!r}")
    return session


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else "?"


def _short(session: str | None) -> str:
    return session[:8] if session else "-"


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


# --------------------------------------------------------------------------------------------
# CLI: `dreamzero serve`
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dreamzero serve`."""
    parser.add_argument("--embodiment", default=DEFAULT_EMBODIMENT,
                        help="embodiment name or YAML path (default: %(default)s)")
    parser.add_argument("--backend", default="local", choices=("local", "scripted"),
                        help="what answers requests: the model or the scripted test trajectory (default: %(default)s)")
    parser.add_argument("--checkpoint", default="", help="checkpoint dir (default: tiny preset, random weights)")
    parser.add_argument("--device", default="cpu", help="torch device for --backend local (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s; use 0.0.0.0 for other machines, with --token)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port, 0 = any free (default: %(default)s)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV, ""),
                        help=f"shared token clients send as 'Authorization: Bearer <token>' (default: ${TOKEN_ENV})")
    parser.add_argument("--max-message-mb", type=float, default=protocol.DEFAULT_MAX_MESSAGE_SIZE / 2**20,
                        help="largest websocket message in MiB (default: %(default)g)")
    parser.add_argument("--max-prompt-chars", type=int, default=DEFAULT_MAX_PROMPT_CHARS,
                        help="longest accepted prompt (default: %(default)s)")
    parser.add_argument("--takeover-probe-s", type=float, default=DEFAULT_TAKEOVER_PROBE_S,
                        help="s a session holder that still looks connected has to answer a ping before a "
                             "reconnecting client takes the session over (default: %(default)g)")
    parser.add_argument("--scripted-delay", type=float, default=0.0,
                        help="s of simulated inference time for --backend scripted (tests, benchmarks)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch CPU threads, 0 = torch default")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 2 on a configuration or bind error."""
    from dreamzero_ros.core.embodiment import ConfigError, load_embodiment

    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        embodiment = load_embodiment(args.embodiment)
    except ConfigError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        LOG.warning("binding host=%s without a token: anyone who can reach this port can drive the robot", args.host)

    def factory() -> PolicyBackend:
        if args.backend == "scripted":
            from dreamzero_ros.backends.scripted import ScriptedBackend

            return ScriptedBackend(embodiment, delay=args.scripted_delay)
        import torch

        if args.torch_threads > 0:
            torch.set_num_threads(args.torch_threads)
        from dreamzero_ros.backends.local import LocalBackend

        return LocalBackend(embodiment, checkpoint=args.checkpoint or None, seed=args.seed, device=args.device)

    server = PolicyServer(
        factory, embodiment, host=args.host, port=args.port, token=args.token or None,
        max_message_size=int(args.max_message_mb * 2**20), max_prompt_chars=args.max_prompt_chars,
        takeover_probe_s=args.takeover_probe_s,
    )
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", flush=True)
        return 2
    except (ValueError, RuntimeError) as exc:  # checkpoint refused: unreadable, or its timing/sizes differ
        print(f"error: --checkpoint {args.checkpoint!r}: {exc}", flush=True)
        return 2
    print(f"dreamzero serve: listening on {server.url} embodiment={embodiment.name} backend={args.backend}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":  # python -m dreamzero_ros.backends.server (tests start it this way; users run `dreamzero serve`)
    import sys

    _parser = argparse.ArgumentParser(prog="python -m dreamzero_ros.backends.server")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
