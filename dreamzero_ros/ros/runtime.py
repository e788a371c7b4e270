"""Shared node plumbing: parameters declared once from a table, the node entry point, stamps.

Each node declares its parameters from a tuple of `Param` (name, default, description, range),
reads them once into a dict and builds its frozen settings from it; a bad value stops the node
at start with the parameter named. `run_node` is every node's `main()`: init, build, spin a
SingleThreadedExecutor, shut down cleanly on Ctrl-C, exit non-zero on a config error.
"""

from __future__ import annotations

import signal
import sys
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


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None) -> None:
    """Entry point shared by every node: exits 2 with the file/parameter named on a bad config.

    Every node spins a SingleThreadedExecutor; work that takes long (generation, rendering) runs on
    a thread of the node's own. Measured with rclpy Kilted on 2 cores: its MultiThreadedExecutor
    busy-waits while a ready timer's or subscription's callback group is still busy (most of the
    sampled GIL time in Future.done), which starved the sim's physics for up to 2 s, and it
    delivered only 23-49 of 50 best-effort camera images per camera (50 of 50 single-threaded).
    """
    rclpy.init(args=args)
    node: Node | None = None
    code = 0
    try:
        try:
            node = factory()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            executor.spin()
        except Exception as exc:
            # SIGINT shuts the context down from rclpy's signal thread while this thread may be inside a
            # callback or taking a message: the publish/take then fails (RCLError, "context is invalid")
            # before the KeyboardInterrupt is raised. That is a clean stop, not a crash (CI once saw
            # camera_stitcher exit 1 this way). Any error while the context is still up is real.
            if rclpy.ok():
                raise
            print(f"[INFO] [run_node]: stopped during a callback: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
    except (ConfigError, ParameterError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # A second Ctrl-C (or the runner's SIGINT racing rclpy's handler) must not abort the clean-up
        # half way with a KeyboardInterrupt: the runner escalates to SIGTERM/SIGKILL if this hangs. The
        # second SIGINT can land while SIG_IGN is being installed (seen: the recorder then never closed its
        # MCAP), so retry until it is in place.
        while True:
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                break
            except KeyboardInterrupt:
                continue
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
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
