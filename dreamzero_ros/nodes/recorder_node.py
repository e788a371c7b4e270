"""Recorder node: writes the dreamzero, camera, joint and command topics of a run into one MCAP file.

The ROS side of `dreamzero_ros.recording` (our stand-in for `ros2 bag record -s mcap`, which pip ROS
lacks). It discovers topics from the graph every `discovery_period`, subscribes to the selected
ones with raw=True (the CDR bytes go to disk untouched, no deserialization cost) and hands each
message to a writer thread with a bounded queue, so a burst of camera frames never blocks the
executor; messages that do not fit are dropped and counted. Ctrl-C (SIGINT) finishes the file
(summary and indexes written) and logs the count per topic.

QoS, per topic, depth 50 (keep last): best effort + volatile matches every publisher, which is why it
is the floor; the subscription asks for reliable and/or transient local only when every publisher
present offers it (as `ros2 bag record` adapts), so chunks and commands are lossless and the latched
/dreamzero/instruction published before discovery is still recorded. A later publisher that offers
less makes the recorder re-subscribe with the weaker profile. Topics with no publisher yet wait.

Run: python -m dreamzero_ros.nodes.recorder_node --ros-args -p output:=/tmp/run/recording.mcap
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from dreamzero_ros.core.robot_profile import GRIPPER_COMMAND, load_robot
from dreamzero_ros.nodes.common import Param, ParameterError, declare_parameters, run_node
from dreamzero_ros.recording import COMPRESSIONS, RecordingError, ThreadedMcapWriter, compatible_qos

#: Command topics of ros2_control's position controllers and the shipped embodiments (config/*.yaml).
DEFAULT_PREFIXES = (
    "/dreamzero/", "/camera/", "/joint_states", "/diagnostics",
    "/forward_position_controller/", "/joint_trajectory_controller/", "/yam/", "/cmd_vel",
)
#: Depth of each recording subscription: a few hundred ms of 30 Hz traffic, so a writer hiccup or a
#: busy executor thread does not lose messages from the DDS history before we take them.
DEPTH = 50

PARAMS = (
    Param("output", "", "Path of the .mcap file to write (folders are created); empty: ./dreamzero_<time>.mcap"),
    Param("include_prefixes", list(DEFAULT_PREFIXES),
          "Record every topic whose name starts with one of these (used when 'topics' is empty); ['/'] = all"),
    Param("embodiment", "", "Embodiment name or YAML: also record its camera, joint-state and command topics"),
    Param("robot", "", "Robot profile name or YAML: record its camera, joint-state and command topics instead"),
    Param("discovery_period", 1.0, "Seconds between graph scans for new topics", minimum=0.05, maximum=60.0),
    Param("compression", "zstd", "MCAP chunk compression", choices=tuple(COMPRESSIONS)),
    Param("max_queue_mb", 256.0, "Writer queue bound in MiB; messages beyond it are dropped and counted",
          minimum=1.0, maximum=16384.0),
)
#: String-list parameters whose default is empty: declared with an explicit STRING_ARRAY type, because
#: rclpy infers BYTE_ARRAY from [] and would then reject `-p topics:=[/a,/b]`.
EMPTY_LIST_PARAMS = (
    ("topics", "Exact topic names to record; empty: every topic matching include_prefixes"),
    ("exclude", "Topic names or prefixes never to record"),
)


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    output: Path
    topics: tuple[str, ...]
    include_prefixes: tuple[str, ...]
    exclude: tuple[str, ...]
    discovery_period: float
    compression: str
    max_queue_bytes: int

    def wants(self, topic: str) -> bool:
        if any(topic.startswith(p) for p in self.exclude):
            return False
        if self.topics:
            return topic in self.topics
        return any(topic.startswith(p) for p in self.include_prefixes)


def _declare_empty_lists(node: Node) -> dict[str, list[str]]:
    values = {}
    for name, description in EMPTY_LIST_PARAMS:
        param = node.declare_parameter(name, Parameter.Type.STRING_ARRAY,
                                       ParameterDescriptor(description=description, read_only=True))
        value = param.value if param.value is not None else []
        if not all(isinstance(v, str) and v.startswith("/") for v in value):
            raise ParameterError(f"node {node.get_name()}: parameter '{name}': expected absolute topic names, "
                                 f"got {value!r}")
        values[name] = list(value)
    return values


class RecorderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder", **kwargs)
        values = declare_parameters(self, PARAMS)
        values.update(_declare_empty_lists(self))
        self.settings = self._settings(values)
        self._writer = ThreadedMcapWriter(self.settings.output, compression=self.settings.compression,
                                          max_queue_bytes=self.settings.max_queue_bytes)
        self._subs: dict[str, tuple[Any, tuple[bool, bool]]] = {}  # topic -> (subscription, (reliable, latched))
        self._skipped: set[str] = set()
        self._closed = False
        self._discover()
        self.create_timer(self.settings.discovery_period, self._discover)
        self.get_logger().info(f"recording output={self.settings.output} compression={self.settings.compression} "
                               f"topics={list(self.settings.topics) or 'prefixes'} "
                               f"include_prefixes={list(self.settings.include_prefixes)}")

    def _settings(self, v: dict[str, Any]) -> RecorderSettings:
        topics = list(v["topics"])
        prefixes = list(v["include_prefixes"])
        if v["embodiment"] or v["robot"]:
            profile = load_robot(v["robot"], v["embodiment"])
            extra = [c.topic for c in profile.cameras] + [s.topic for s in profile.joint_states]
            extra += [c.topic for c in profile.commands if c.type != GRIPPER_COMMAND]  # an action is no topic
            extra += [g.topic for g in profile.extra_outputs]
            # With an explicit topic list the embodiment's topics are added to it, else to the prefixes.
            (topics if topics else prefixes).extend(t for t in extra if t not in topics and t not in prefixes)
        output = Path(v["output"]) if v["output"] else Path(f"dreamzero_{datetime.now():%Y%m%d_%H%M%S}.mcap")
        if output.suffix != ".mcap":
            raise ParameterError(f"node {self.get_name()}: parameter 'output': expected a path ending in .mcap, "
                                 f"got {str(output)!r}")
        return RecorderSettings(output=output, topics=tuple(topics), include_prefixes=tuple(prefixes),
                                exclude=tuple(v["exclude"]), discovery_period=v["discovery_period"],
                                compression=v["compression"], max_queue_bytes=int(v["max_queue_mb"] * 2**20))

    # ---------------------------------------------------------------- discovery

    def _discover(self) -> None:
        if self._closed:
            return
        for topic, types in self.get_topic_names_and_types():
            if topic in self._skipped or not self.settings.wants(topic):
                continue
            if len(types) != 1:
                self._skip(topic, f"it carries {len(types)} types {types}; a channel has exactly one")
                continue
            offered = [(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE,
                        p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL)
                       for p in self.get_publishers_info_by_topic(topic)]
            if not offered:
                continue  # subscribers only (e.g. a command topic before the executor starts): QoS unknown yet
            wanted = compatible_qos(offered)
            current = self._subs.get(topic)
            if current is not None:
                have = current[1]
                # Only ever weaken: a new best-effort/volatile publisher would not match what we asked for.
                if have[0] <= wanted[0] and have[1] <= wanted[1]:
                    continue
                self.destroy_subscription(current[0])
                # Volatile from now on: the latched history was recorded by the first subscription and a
                # transient-local re-subscription would deliver it again as duplicates.
                wanted = (have[0] and wanted[0], False)
            try:
                if current is None and topic not in self._writer.stats.written:
                    self._writer.add_topic(topic, types[0])
                self._subscribe(topic, types[0], wanted)
            except (RecordingError, ImportError, AttributeError) as exc:
                self._skip(topic, str(exc))

    def _skip(self, topic: str, why: str) -> None:
        self._skipped.add(topic)
        self.get_logger().warning(f"not recording topic={topic}: {why}")

    def _subscribe(self, topic: str, type_name: str, qos_flags: tuple[bool, bool]) -> None:
        msg_type = _import_type(type_name)
        reliable, latched = qos_flags
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=DEPTH,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
        writer = self._writer
        clock = self.get_clock()

        def on_message(data: bytes, info: Any) -> None:
            # DDS reception time: not delayed by the executor, so control periods measured from the
            # recording are the publisher's, not ours.
            received = info.get("received_timestamp") or clock.now().nanoseconds
            seq = info.get("publication_sequence_number") or 0
            writer.submit(topic, data, received, info.get("source_timestamp") or received, seq & 0xFFFFFFFF)

        sub = self.create_subscription(msg_type, topic, on_message, qos, raw=True)
        self._subs[topic] = (sub, qos_flags)
        self.get_logger().info(f"recording topic={topic} type={type_name} reliable={reliable} "
                               f"transient_local={latched}")

    # ---------------------------------------------------------------- shutdown

    def close(self) -> None:
        """Finish the MCAP (summary + indexes) and log what was written and dropped per topic."""
        if self._closed:
            return
        self._closed = True
        for sub, _ in self._subs.values():
            self.destroy_subscription(sub)
        started = time.monotonic()
        stats = self._writer.close()
        for topic in sorted(stats.written):
            self._final_log(f"recorded topic={topic} messages={stats.written[topic]} "
                            f"dropped={stats.dropped.get(topic, 0)}")
        self._final_log(f"recording finished output={self.settings.output} "
                        f"messages={sum(stats.written.values())} dropped={sum(stats.dropped.values())} "
                        f"close_s={time.monotonic() - started:.2f}")

    def _final_log(self, text: str) -> None:
        # After SIGINT the context is already shut down and the rosout publisher is gone: rclpy would
        # print "Failed to publish log message to rosout" after every line, so write to stderr directly.
        if self.context.ok():
            self.get_logger().info(text)
        else:
            print(f"[INFO] [{self.get_name()}]: {text}", file=sys.stderr, flush=True)


def _import_type(type_name: str) -> Any:
    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def main(args: list[str] | None = None) -> None:
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
