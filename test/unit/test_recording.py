"""MCAP files written by dreamzero_ros.runs.recording are rosbag2-shaped and read back to what was written."""

from __future__ import annotations

import numpy as np
import pytest
from dreamzero_msgs.msg import ActionChunk, ActionGroup
from mcap.reader import make_reader
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from dreamzero_ros.runs.recording import (
    SEPARATOR,
    McapWriter,
    RecordingError,
    ThreadedMcapWriter,
    compatible_qos,
    find_interface_file,
    message_definition,
    read_messages,
    ros_type_name,
    topic_counts,
    topic_types,
)


def _msg_sections(definition: str) -> list[str]:
    return [line[len("MSG: "):] for line in definition.splitlines() if line.startswith("MSG: ")]


def test_image_definition_is_its_msg_text_followed_by_header_and_time():
    text = message_definition("sensor_msgs/msg/Image")
    assert text.startswith(find_interface_file("sensor_msgs/msg/Image").read_text())
    assert _msg_sections(text) == ["std_msgs/Header", "builtin_interfaces/Time"]
    assert f"\n{SEPARATOR}\nMSG: std_msgs/Header\n" in text
    assert find_interface_file("builtin_interfaces/msg/Time").read_text() in text


def test_joint_state_definition_nests_header_and_time_once():
    assert _msg_sections(message_definition("sensor_msgs/JointState")) == ["std_msgs/Header", "builtin_interfaces/Time"]


def test_action_chunk_definition_includes_action_group_header_and_time_depth_first():
    text = message_definition("dreamzero_msgs/msg/ActionChunk")
    assert _msg_sections(text) == ["dreamzero_msgs/ActionGroup", "std_msgs/Header", "builtin_interfaces/Time"]
    assert find_interface_file("dreamzero_msgs/msg/ActionGroup").read_text() in text


def test_a_type_that_is_not_installed_is_named_in_the_error():
    with pytest.raises(RecordingError, match="no_such_msgs/msg/Thing"):
        message_definition("no_such_msgs/msg/Thing")
    with pytest.raises(RecordingError, match="expected 'pkg/msg/Type'"):
        message_definition("Image")


def test_ros_type_name_of_generated_classes():
    assert ros_type_name(Image()) == "sensor_msgs/msg/Image"
    assert ros_type_name(ActionChunk) == "dreamzero_msgs/msg/ActionChunk"


def _messages():
    image = Image(height=4, width=5, encoding="rgb8", step=15,
                  data=np.arange(60, dtype=np.uint8).tobytes())
    image.header.stamp.sec, image.header.stamp.nanosec = 12, 345
    image.header.frame_id = "wrist"
    state = JointState(name=["a", "b"], position=[0.5, -1.25], velocity=[0.0, 1.0])
    chunk = ActionChunk(chunk_id=9, instruction="stack", joint_names=["a", "b"], dt=0.1, horizon=2,
                        positions=[1.0, 2.0, 3.0, 4.0], inference_latency=0.42)
    chunk.extra_groups = [ActionGroup(name="base_velocity", names=["linear_x", "angular_z"], values=[0.1, 0.2, 0.3, 0.4]),
                          ActionGroup(name="other", names=["x"], values=[7.0, 8.0])]
    command = Float64MultiArray(data=[0.25, 0.75])
    return image, state, chunk, command


@pytest.fixture(params=["zstd", "none"])
def recording(request, tmp_path):
    path = tmp_path / "run.mcap"
    image, state, chunk, command = _messages()
    with McapWriter(path, compression=request.param) as writer:
        for i in range(3):
            t = 1_000_000_000 + i * 100_000_000
            writer.write_message("/camera/wrist/image_raw", image, t)
            writer.write_message("/joint_states", state, t + 1, publish_time_ns=t)
            writer.write_message("/forward_position_controller/commands", command, t + 2)
        writer.write_message("/dreamzero/action_chunk", chunk, 2_000_000_000)
    return path


def test_plain_mcap_reader_sees_the_rosbag2_profile_schema_and_message_encodings(recording):
    with open(recording, "rb") as stream:
        reader = make_reader(stream)
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
    schemas = {s.name: s for s in summary.schemas.values()}
    assert set(schemas) == {"sensor_msgs/msg/Image", "sensor_msgs/msg/JointState",
                            "std_msgs/msg/Float64MultiArray", "dreamzero_msgs/msg/ActionChunk"}
    assert all(s.encoding == "ros2msg" for s in schemas.values())
    assert schemas["dreamzero_msgs/msg/ActionChunk"].data.decode() == message_definition("dreamzero_msgs/msg/ActionChunk")
    assert "MSG: std_msgs/MultiArrayLayout" in schemas["std_msgs/msg/Float64MultiArray"].data.decode()
    assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
    assert summary.statistics.message_count == 10


def test_counts_and_types_come_from_the_summary(recording):
    assert topic_counts(recording) == {"/camera/wrist/image_raw": 3, "/joint_states": 3,
                                       "/forward_position_controller/commands": 3, "/dreamzero/action_chunk": 1}
    assert topic_types(recording)["/joint_states"] == "sensor_msgs/msg/JointState"


def test_decoding_through_the_stored_schema_returns_the_written_values(recording):
    image, state, chunk, command = _messages()
    got = list(read_messages(recording))
    assert [t for t, _, _ in got][:3] == ["/camera/wrist/image_raw", "/joint_states", "/forward_position_controller/commands"]
    assert [ns for _, ns, _ in got] == sorted(ns for _, ns, _ in got)
    by_topic = {t: m for t, _, m in got}
    im = by_topic["/camera/wrist/image_raw"]
    assert (im.height, im.width, im.encoding, im.step, bytes(im.data)) == (4, 5, "rgb8", 15, bytes(image.data))
    assert (im.header.stamp.sec, im.header.stamp.nanosec, im.header.frame_id) == (12, 345, "wrist")
    js = by_topic["/joint_states"]
    assert (js.name, js.position, js.velocity) == (["a", "b"], [0.5, -1.25], [0.0, 1.0])
    ch = by_topic["/dreamzero/action_chunk"]
    assert (ch.chunk_id, ch.instruction, ch.joint_names, ch.dt, ch.horizon) == (9, "stack", ["a", "b"], 0.1, 2)
    assert ch.positions == [1.0, 2.0, 3.0, 4.0] and ch.inference_latency == 0.42
    assert [(g.name, g.names, g.values) for g in ch.extra_groups] == [
        ("base_velocity", ["linear_x", "angular_z"], [0.1, 0.2, 0.3, 0.4]), ("other", ["x"], [7.0, 8.0])]
    assert by_topic["/forward_position_controller/commands"].data == [0.25, 0.75]


def test_read_messages_filters_topics_and_keeps_publish_time(recording):
    with open(recording, "rb") as stream:
        msgs = [m for _, c, m in make_reader(stream).iter_messages(topics=["/joint_states"])]
    assert [(m.log_time - m.publish_time) for m in msgs] == [1, 1, 1]
    assert [t for t, _, _ in read_messages(recording, ["/joint_states"])] == ["/joint_states"] * 3


def test_threaded_writer_drops_and_counts_what_exceeds_the_queue_bound(tmp_path):
    import threading
    import time

    from rclpy.serialization import serialize_message

    data = serialize_message(Float64MultiArray(data=[1.0] * 16))
    writer = ThreadedMcapWriter(tmp_path / "q.mcap", max_queue_bytes=len(data) * 2)
    writer.add_topic("/cmd", "std_msgs/msg/Float64MultiArray")
    release = threading.Event()
    real_write = writer._writer.write  # stall the disk side so the queue fills deterministically

    def stalled_write(*args, **kwargs):
        release.wait(10)
        real_write(*args, **kwargs)

    writer._writer.write = stalled_write
    assert writer.submit("/cmd", data, 0)
    deadline = time.monotonic() + 5
    while writer.queued_bytes and time.monotonic() < deadline:  # the thread has taken it and is stalled
        time.sleep(0.001)
    accepted = [writer.submit("/cmd", data, i) for i in range(1, 11)]
    assert accepted == [True, True] + [False] * 8, "two messages fit the bound while the disk is stalled"
    release.set()
    stats = writer.close()
    assert (stats.written["/cmd"], stats.dropped["/cmd"]) == (3, 8)
    assert topic_counts(tmp_path / "q.mcap") == {"/cmd": 3}
    assert not writer.submit("/cmd", data, 99), "a closed writer accepts nothing"


def test_writing_a_topic_twice_with_different_types_is_refused(tmp_path):
    with McapWriter(tmp_path / "x.mcap") as writer:
        writer.add_topic("/a", "std_msgs/msg/String")
        with pytest.raises(RecordingError, match="/a already recorded as std_msgs/msg/String"):
            writer.add_topic("/a", "sensor_msgs/msg/Image")
        with pytest.raises(RecordingError, match="topic /b was not added"):
            writer.write("/b", b"", 0)


def test_recorder_qos_asks_for_reliable_or_latched_only_when_every_publisher_offers_it():
    assert compatible_qos([]) == (False, False)
    assert compatible_qos([(True, True)]) == (True, True)
    assert compatible_qos([(True, True), (False, True)]) == (False, True)
    assert compatible_qos([(True, False), (True, True)]) == (True, False)
