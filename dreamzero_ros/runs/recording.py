"""MCAP recording in the rosbag2 layout: message definitions, a writer (direct and threaded) and readers.

This module owns the on-disk format of a dreamzero run recording, so that a file we write opens in
Foxglove and `ros2 bag play/info` like one written by `ros2 bag record -s mcap`:
- profile "ros2"; one schema per message type, named like "sensor_msgs/msg/Image", encoding
  "ros2msg", data = the type's .msg text followed by every nested type's .msg text, each preceded by
  a line of 80 '=' and "MSG: pkg/Type" (depth first, as rosbag2's LocalMessageDefinitionSource does);
- one channel per topic, message encoding "cdr", the CDR bytes exactly as they came off DDS;
- log_time = receive time, publish_time = the publisher's source timestamp, both in ns.

No rclpy at module level: the recorder node hands us serialized bytes, and tests/reports that pass
ROS message objects get them serialized through a lazy `rclpy.serialization` import. Reading goes
through `mcap_ros2`'s decoder, i.e. through the stored schema, exactly as Foxglove decodes it.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.reader import make_reader
from mcap.writer import CompressionType
from mcap.writer import Writer as _McapWriter

PROFILE = "ros2"
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
SEPARATOR = "=" * 80
COMPRESSIONS = {"none": CompressionType.NONE, "lz4": CompressionType.LZ4, "zstd": CompressionType.ZSTD}
LIBRARY = "dreamzero_ros.runs.recording"

# .msg field types that are not messages (rosbag2's list plus wstring).
_PRIMITIVES = frozenset({
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "string", "wstring",
})
_TYPE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)/(?:(msg|srv|action)/)?([A-Za-z][A-Za-z0-9_]*)$")


class RecordingError(RuntimeError):
    """A recording cannot be written or read; the message names the file, topic or type."""


# --------------------------------------------------------------------------------------------
# Message definitions
# --------------------------------------------------------------------------------------------


def split_type_name(type_name: str) -> tuple[str, str, str]:
    """("sensor_msgs", "msg", "Image") for "sensor_msgs/msg/Image" or "sensor_msgs/Image"."""
    match = _TYPE_RE.match(type_name)
    if match is None:
        raise RecordingError(f"message type {type_name!r}: expected 'pkg/msg/Type' or 'pkg/Type'")
    return match.group(1), match.group(2) or "msg", match.group(3)


def share_prefixes() -> list[Path]:
    """Install prefixes to search for share/<pkg>/msg/*.msg, most specific first.

    A colcon or apt install lists its prefixes in AMENT_PREFIX_PATH; the pip `ros-*` wheels and our
    dreamzero_msgs build install share/ into the venv prefix, which needs no environment at all.
    """
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(Path(sys.prefix))
    return list(dict.fromkeys(prefixes))


def find_interface_file(type_name: str) -> Path:
    """The installed .msg file of `type_name` ("sensor_msgs/msg/Image")."""
    pkg, kind, name = split_type_name(type_name)
    searched = []
    for prefix in share_prefixes():
        path = prefix / "share" / pkg / kind / f"{name}.msg"
        if path.is_file():
            return path
        searched.append(str(path.parent))
    raise RecordingError(f"message type {type_name!r}: no {name}.msg in {searched} (is the package installed?)")


def _msg_dependencies(text: str, package: str) -> list[str]:
    """Nested message types of a .msg text as written ("std_msgs/Header"), sorted like rosbag2's std::set."""
    deps: set[str] = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        ftype = re.split(r"[\s\[<]", line, maxsplit=1)[0]
        if ftype in _PRIMITIVES:
            continue
        deps.add(ftype if "/" in ftype else f"{package}/{ftype}")
    return sorted(deps)


def message_definition(type_name: str) -> str:
    """The rosbag2 'ros2msg' complete definition of `type_name`: its .msg text plus every nested type's.

    Each nested type appears once, depth first, after "\\n" + 80 '=' + "\\nMSG: pkg/Type\\n".
    """
    seen: set[str] = set()

    def expand(name: str, depth: int) -> str:
        if depth > 50:
            raise RecordingError(f"message type {type_name!r}: nesting deeper than 50 levels at {name!r}")
        text = find_interface_file(name).read_text()
        result = text
        for dep in _msg_dependencies(text, split_type_name(name)[0]):
            if dep not in seen:
                seen.add(dep)
                result += f"\n{SEPARATOR}\nMSG: {dep}\n" + expand(dep, depth + 1)
        return result

    return expand(type_name, 0)


def ros_type_name(msg: Any) -> str:
    """'sensor_msgs/msg/Image' for an instance (or class) of a rosidl-generated Python message."""
    cls = msg if isinstance(msg, type) else type(msg)
    module = cls.__module__.split(".")
    if len(module) < 2 or module[1] not in ("msg", "srv", "action"):
        raise RecordingError(f"{cls.__module__}.{cls.__name__} is not a rosidl-generated message class")
    return f"{module[0]}/{module[1]}/{cls.__name__}"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class McapWriter:
    """Synchronous rosbag2-layout MCAP writer; one channel per topic. Not thread-safe (see ThreadedMcapWriter)."""

    def __init__(self, path: str | Path, *, compression: str = "zstd", chunk_size: int = 4 * 1024 * 1024) -> None:
        if compression not in COMPRESSIONS:
            raise RecordingError(f"{path}: compression must be one of {sorted(COMPRESSIONS)}, got {compression!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = open(self.path, "wb")
        self._writer = _McapWriter(self._stream, chunk_size=chunk_size, compression=COMPRESSIONS[compression])
        self._writer.start(profile=PROFILE, library=LIBRARY)
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._types: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    def add_topic(self, topic: str, type_name: str, *, definition: str | None = None,
                  metadata: dict[str, str] | None = None) -> int:
        """Register `topic` with its type (schema shared between topics of one type); returns the channel id."""
        if topic in self._channels:
            if self._types[topic] != type_name:
                raise RecordingError(f"{self.path}: topic {topic} already recorded as {self._types[topic]}, "
                                     f"got {type_name}")
            return self._channels[topic]
        schema_id = self._schemas.get(type_name)
        if schema_id is None:
            text = definition if definition is not None else message_definition(type_name)
            schema_id = self._writer.register_schema(type_name, SCHEMA_ENCODING, text.encode())
            self._schemas[type_name] = schema_id
        channel_id = self._writer.register_channel(topic, MESSAGE_ENCODING, schema_id, metadata or {})
        self._channels[topic] = channel_id
        self._types[topic] = type_name
        self.counts[topic] = 0
        return channel_id

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None,
              sequence: int = 0) -> None:
        """Write serialized CDR bytes on a topic registered with add_topic."""
        channel_id = self._channels.get(topic)
        if channel_id is None:
            raise RecordingError(f"{self.path}: topic {topic} was not added before writing")
        self._writer.add_message(channel_id, int(log_time_ns), bytes(data),
                                 int(log_time_ns if publish_time_ns is None else publish_time_ns), sequence)
        self.counts[topic] += 1

    def write_message(self, topic: str, msg: Any, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        """Serialize a rosidl message object with rclpy and write it (registers the topic on first use)."""
        from rclpy.serialization import serialize_message

        self.add_topic(topic, ros_type_name(msg))
        self.write(topic, serialize_message(msg), log_time_ns, publish_time_ns)

    def close(self) -> None:
        """Write the summary (schemas, channels, statistics, chunk indexes) and close the file."""
        if self.closed:
            return
        self.closed = True
        try:
            self._writer.finish()
        finally:
            self._stream.close()

    def __enter__(self) -> McapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class WriterStats:
    written: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    queued_bytes_max: int = 0


_STOP = object()


class ThreadedMcapWriter:
    """McapWriter behind a bounded queue and one writer thread, so callers (ROS callbacks) never block.

    The bound is in bytes (camera frames dominate); a message that does not fit is dropped and
    counted per topic rather than stalling the executor that delivers the next control message.
    """

    def __init__(self, path: str | Path, *, compression: str = "zstd", max_queue_bytes: int = 256 * 1024 * 1024,
                 chunk_size: int = 4 * 1024 * 1024) -> None:
        self._writer = McapWriter(path, compression=compression, chunk_size=chunk_size)
        self.path = self._writer.path
        self.max_queue_bytes = max_queue_bytes
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued_bytes = 0
        self.stats = WriterStats()
        self.error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mcap-writer", daemon=True)
        self._thread.start()

    def add_topic(self, topic: str, type_name: str, *, definition: str | None = None,
                  metadata: dict[str, str] | None = None) -> None:
        """Queue a channel registration (the definition is looked up now, so a missing one raises here)."""
        text = definition if definition is not None else message_definition(type_name)
        with self._lock:
            self.stats.written.setdefault(topic, 0)
            self.stats.dropped.setdefault(topic, 0)
        self._queue.put(("topic", topic, type_name, text, metadata))

    def submit(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None,
               sequence: int = 0) -> bool:
        """Enqueue one message without blocking; False (and counted as dropped) if the queue is full or closed."""
        size = len(data)
        with self._lock:
            if self._closed or self.error is not None or self._queued_bytes + size > self.max_queue_bytes:
                self.stats.dropped[topic] = self.stats.dropped.get(topic, 0) + 1
                return False
            self._queued_bytes += size
            self.stats.queued_bytes_max = max(self.stats.queued_bytes_max, self._queued_bytes)
            # Under the lock, so nothing lands behind the stop marker that close() enqueues.
            self._queue.put(("msg", topic, data, log_time_ns, publish_time_ns, sequence))
        return True

    @property
    def queued_bytes(self) -> int:
        with self._lock:
            return self._queued_bytes

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                if item[0] == "topic":
                    _, topic, type_name, text, metadata = item
                    self._writer.add_topic(topic, type_name, definition=text, metadata=metadata)
                else:
                    _, topic, data, log_ns, pub_ns, seq = item
                    with self._lock:
                        self._queued_bytes -= len(data)
                    if self.error is None:
                        self._writer.write(topic, data, log_ns, pub_ns, seq)
                        with self._lock:
                            self.stats.written[topic] = self.stats.written.get(topic, 0) + 1
            except Exception as exc:  # noqa: BLE001 - kept and re-raised by close(); the thread must drain
                self.error = exc

    def close(self, timeout: float = 30.0) -> WriterStats:
        """Drain the queue, finish the file (summary + indexes) and return the counts; raises a write error."""
        with self._lock:
            if self._closed:
                return self.stats
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RecordingError(f"{self.path}: writer thread still draining after {timeout} s")
        self._writer.close()
        if self.error is not None:
            raise RecordingError(f"{self.path}: writing failed: {self.error}") from self.error
        return self.stats


# --------------------------------------------------------------------------------------------
# Subscription QoS that matches every publisher of a topic (as rosbag2 adapts its QoS)
# --------------------------------------------------------------------------------------------


def compatible_qos(offered: Iterable[tuple[bool, bool]]) -> tuple[bool, bool]:
    """(reliable, transient_local) for a recorder subscription, from each publisher's (reliable, transient_local).

    A reliable subscription does not match a best-effort publisher and a transient-local one does
    not match a volatile publisher, so we only ask for either when every publisher offers it:
    reliable gets lossless chunks and commands, transient local gets the latched instruction that
    was published before the recorder discovered the topic. With no publisher info, best effort +
    volatile matches anything.
    """
    offers = list(offered)
    if not offers:
        return False, False
    return all(r for r, _ in offers), all(t for _, t in offers)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _open(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such recording")
    return open(path, "rb")


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, int, Any]]:
    """(topic, log_time_ns, decoded message) in log-time order, decoded through the stored schema."""
    from mcap_ros2.decoder import DecoderFactory

    wanted = None if topics is None else list(topics)
    with _open(path) as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _schema, channel, message, decoded in reader.iter_decoded_messages(topics=wanted):
            yield channel.topic, message.log_time, decoded


def topic_types(path: str | Path) -> dict[str, str]:
    """Topic -> schema name ("sensor_msgs/msg/Image") from the file's summary."""
    with _open(path) as stream:
        summary = make_reader(stream).get_summary()
    if summary is None:
        raise RecordingError(f"{path}: no summary section (the recorder did not finish the file)")
    return {ch.topic: summary.schemas[ch.schema_id].name if ch.schema_id else "" for ch in summary.channels.values()}


def topic_counts(path: str | Path) -> dict[str, int]:
    """Messages per topic: from the summary statistics when present, else by scanning the file."""
    with _open(path) as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        counts: dict[str, int] = {}
        if summary is not None and summary.statistics is not None:
            for channel_id, channel in summary.channels.items():
                n = summary.statistics.channel_message_counts.get(channel_id, 0)
                counts[channel.topic] = counts.get(channel.topic, 0) + n
            return counts
        for _schema, channel, _message in reader.iter_messages(log_time_order=False):
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
        return counts
