"""Shared node plumbing: parameters declared once from a table, the node entry point, stamps.

Each node declares its parameters from a tuple of `Param` (name, default, description, range),
reads them once into a dict and builds its frozen settings from it; a bad value stops the node
at start with the parameter named. `run_node` is every node's `main()`: init, build, spin a
SingleThreadedExecutor, shut down cleanly on Ctrl-C, exit non-zero on a config error.
`call_service` is how every client here (operator commands, eval, test probes) waits for a reply.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from dreamzero_ros.core.embodiment import DEFAULT_EMBODIMENT, ConfigError


class ParameterError(ValueError):
    """A node parameter has a bad value; the message names the node and the parameter."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = True


#: every node that serves one robot takes its embodiment the same way
EMBODIMENT_PARAM = Param("embodiment", DEFAULT_EMBODIMENT, "embodiment name (config/<name>.yaml) or YAML path")
ROBOT_PARAM = Param("robot", "", "robot profile (config/robots/<name>.yaml) or YAML path; empty = the embodiment's own "
                    "wiring (the built-in simulator's)")


#: s an unanswered request waits before it is sent again. Fast DDS (Jazzy, 2 busy cores) drops a reply when the
#: server has not matched the brand-new client's reply reader yet: the server logs "failed to send response
#: (timeout): client will not receive response" and the client would wait forever (CI lost a /sim/reset reply so).
RESEND_AFTER_S = 3.0


def call_service(client: Any, request: Any, wait: Callable[[Callable[[], bool], float], bool], timeout: float,
                 resend_after: float | None = RESEND_AFTER_S) -> Any | None:
    """The reply to `request` on `client` (whose service is available), or None after `timeout` s.

    `wait(done, seconds)` spins the client's node (or sleeps while another thread spins it) until done() or
    the time is up. With `resend_after` an unanswered request is sent again every that many seconds and the
    first reply to any copy wins: only for services that are safe to call twice. None sends it once.
    """
    deadline = time.monotonic() + timeout
    pending = []
    answered = None
    while answered is None:
        pending.append(client.call_async(request))
        left = deadline - time.monotonic()
        wait(lambda: any(f.done() for f in pending), max(0.0, left if resend_after is None else min(resend_after, left)))
        answered = next((f for f in pending if f.done()), None)
        if time.monotonic() >= deadline or resend_after is None:
            break
    for future in pending:
        if future is not answered:
            client.remove_pending_request(future)
    return answered.result() if answered is not None else None


def declare_parameters(node: Node, table: Sequence[Param]) -> dict[str, Any]:
    """Declare every parameter of `table` on `node` and return their validated values."""
    values: dict[str, Any] = {}
    for p in table:
        descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
        if isinstance(p.default, float) and (p.minimum is not None or p.maximum is not None):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(p.minimum if p.minimum is not None else -1e300),
                                   to_value=float(p.maximum if p.maximum is not None else 1e300), step=0.0)
            ]
        elif isinstance(p.default, int) and not isinstance(p.default, bool) and (
            p.minimum is not None or p.maximum is not None
        ):
            descriptor.integer_range = [
                IntegerRange(from_value=int(p.minimum if p.minimum is not None else -(2**62)),
                             to_value=int(p.maximum if p.maximum is not None else 2**62), step=1)
            ]
        try:
            value = node.declare_parameter(p.name, p.default, descriptor).value
        except Exception as exc:
            raise ParameterError(f"node {node.get_name()}: parameter '{p.name}': {exc}") from exc
        values[p.name] = _validate(node.get_name(), p, value)
    return values


def _validate(node_name: str, p: Param, value: Any) -> Any:
    where = f"node {node_name}: parameter '{p.name}'"
    if isinstance(p.default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(p.default):
        raise ParameterError(f"{where}: expected {type(p.default).__name__}, got {value!r}")
    if p.minimum is not None and value < p.minimum:
        raise ParameterError(f"{where}: expected >= {p.minimum}, got {value!r}")
    if p.maximum is not None and value > p.maximum:
        raise ParameterError(f"{where}: expected <= {p.maximum}, got {value!r}")
    if p.choices is not None and value not in p.choices:
        raise ParameterError(f"{where}: expected one of {list(p.choices)}, got {value!r}")
    return value


#: s run_node gives rcl's node destruction and shutdown once the node's close() is done (they take ms)
TEARDOWN_S = 2.0


def _tear_down(node: Node | None) -> None:
    if node is not None:
        node.destroy_node()
    rclpy.try_shutdown()


def _leave_during_teardown(code: int) -> None:
    """SIGTERM while the middleware tears down: say where every thread is and exit with `code`, now."""
    faulthandler.dump_traceback(all_threads=True)
    print("[WARN] [run_node]: SIGTERM during the middleware's node teardown; exiting without it",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def _finishes_within(seconds: float, work: Callable[[], None]) -> bool:
    """Run `work` on a daemon thread; whether it returned within `seconds` (if not, it is left running)."""
    thread = threading.Thread(target=work, name="teardown", daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


#: s an error out of spin waits for a shutdown already under way (see run_node) before it counts as a crash
SHUTDOWN_RACE_S = 1.0


def _context_goes_down(within: float) -> bool:
    deadline = time.monotonic() + within
    while rclpy.ok():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


#: s a node has, from its first SIGINT or SIGTERM, to come out of spin into its clean-up before the stop
#: watchdog ends it (ProcessGroup and ros2 launch wait 5 s before they escalate to SIGTERM)
STOP_GRACE_S = 2.5
#: s the watchdog gives a stuck node's close() before it leaves without it
STOP_CLOSE_S = 1.0


class _StopWatchdog:
    """Ends a node that a stop signal does not bring out of spin, saying where every thread was.

    A stop normally travels through rclpy's own signal thread: it shuts the context down and spin returns. CI saw
    action_executor (Jazzy, 2 busy cores) say nothing after SIGINT and nothing after SIGTERM, and be killed (-9):
    that path had hung, and the node never reached the clean-up that would have named where. This watchdog does
    not depend on it. Python handlers installed before rclpy.init are chained by rclpy's C handler, and the
    interpreter's C-level part writes each signal to the wakeup fd at once, whatever the main thread is doing; a
    daemon thread blocked on that fd then gives the main thread STOP_GRACE_S to reach run_node's clean-up. Past
    that it dumps every thread, runs the node's close() (bounded), and exits 0 (1 if close() did not finish).
    It cannot act while a thread holds the GIL and never lets go (nor could any Python code); such a node still
    prints its threads at the runner's SIGTERM once it has reached its clean-up, and is otherwise killed.
    """

    def __init__(self) -> None:
        self.node: Node | None = None
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._lock = threading.Lock()
        self._cleanup_owner: str | None = None  # "main" or "watchdog": whoever claims the clean-up runs it
        self._main_cleaning = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # No-op: the stop itself is rclpy's (its handler, chained before this one, shuts the context down).
            signal.signal(sig, lambda signum, frame: None)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="stop-watchdog", daemon=True).start()

    def _claim_cleanup(self, owner: str) -> bool:
        with self._lock:
            if self._cleanup_owner is None:
                self._cleanup_owner = owner
            return self._cleanup_owner == owner

    def main_thread_cleans_up(self) -> None:
        """Called as run_node's clean-up starts; if the watchdog already owns it, wait here for its exit."""
        if not self._claim_cleanup("main"):
            threading.Event().wait()
        self._main_cleaning.set()

    def _watch(self) -> None:
        os.read(self._read_fd, 1)
        if self._main_cleaning.wait(STOP_GRACE_S) or not self._claim_cleanup("watchdog"):
            return
        print(f"[WARN] [run_node]: not out of spin {STOP_GRACE_S:g} s after the stop signal; every thread follows, "
              "then the node's close() and exit", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        close = getattr(self.node, "close", None)
        code = 0 if close is None or _finishes_within(STOP_CLOSE_S, close) else 1
        sys.stdout.flush()
        os._exit(code)


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None) -> None:
    """Entry point shared by every node: exits 2 with the file/parameter named on a bad config, 1 on a bug.

    Every node spins a SingleThreadedExecutor; work that takes long (generation, rendering) runs on
    a thread of the node's own. Measured with rclpy Kilted on 2 cores: its MultiThreadedExecutor
    busy-waits while a ready timer's or subscription's callback group is still busy (most of the
    sampled GIL time in Future.done), which starved the sim's physics for up to 2 s, and it
    delivered only 23-49 of 50 best-effort camera images per camera (50 of 50 single-threaded).
    """
    watchdog = _StopWatchdog()
    rclpy.init(args=args)
    node: Node | None = None
    code = 0
    try:
        try:
            node = watchdog.node = factory()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            executor.spin()
        except Exception as exc:
            # SIGINT shuts the context down from rclpy's signal thread while this thread may be inside a
            # callback or taking a message: the publish/take then fails (RCLError "context is invalid",
            # InvalidHandle, or a take's "Unable to convert call argument") before spin sees the shutdown, and
            # possibly before the context reads as shut down. That is a clean stop, not a crash (CI
            # saw camera_stitcher exit 1 this way, twice). An error while the context stays up is real.
            if isinstance(exc, ExternalShutdownException) or not _context_goes_down(SHUTDOWN_RACE_S):
                raise
            print(f"[INFO] [run_node]: stopped during a callback: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
    except (ConfigError, ParameterError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001 - a bug: its traceback now; the clean-up below may end the process early
        traceback.print_exc()
        code = 1
    finally:
        watchdog.main_thread_cleans_up()
        # A second Ctrl-C must not cut the clean-up short (the runner escalates to SIGTERM/SIGKILL if it hangs).
        # The watchdog's no-op SIGINT handler already keeps it from raising KeyboardInterrupt (the interpreter's
        # default did, once rclpy had shut down and restored it: the recorder then never closed its MCAP).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # A clean-up that does not finish is escalated to SIGTERM, then SIGKILL, by whoever runs the node
        # (ProcessGroup, ros2 launch): a SIGTERM now prints where every thread is (rclpy's handler still runs
        # after it), so a hang names its cause instead of ending as a bare exit code -9.
        faulthandler.register(signal.SIGTERM, all_threads=True, chain=True)
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()  # the node's own clean-up (a recorder closes its file here) always runs to its end
        # From here only the middleware's goodbye is left: a SIGTERM now means the runner will wait no longer.
        # CI saw the SIGTERM's thread dump (teardown thread in destroy_node, this one waiting on it) and still a
        # SIGKILL, -9: nothing after the dump ended the process. Leave at once with the node's own exit code.
        signal.signal(signal.SIGTERM, lambda signum, frame: _leave_during_teardown(code))
        if not _finishes_within(TEARDOWN_S, lambda: _tear_down(node)):
            # Seen in CI (Fast DDS, 2 busy cores): rcl's node destruction never returned. The node's work is done;
            # leave without the middleware's goodbye rather than be killed (-9) by whoever stops us.
            print(f"[WARN] [run_node]: the middleware's node teardown did not finish within {TEARDOWN_S:g} s; "
                  "exiting without it", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(code)
    if code:
        sys.exit(code)


def log_info(node: Node, text: str) -> None:
    """Log `text` at INFO, also from close() after the context has been shut down.

    After SIGINT the context is already shut down and the rosout publisher is gone: rclpy would print
    "Failed to publish log message to rosout" after every line, so write to stderr directly then.
    """
    if node.context.ok():
        node.get_logger().info(text)
    else:
        print(f"[INFO] [{node.get_name()}]: {text}", file=sys.stderr, flush=True)


def stamp_to_seconds(stamp: Any) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float, stamp: Any) -> Any:
    """Fill a builtin_interfaces/Time in place from float seconds (floor, so nanosec >= 0)."""
    sec = int(seconds // 1)
    stamp.sec = sec
    stamp.nanosec = min(int(round((seconds - sec) * 1e9)), 999_999_999)
    return stamp
