"""The recorder node as a real process: it discovers topics over DDS, records them, and SIGINT leaves a finished MCAP."""

from __future__ import annotations

import time

import numpy as np
from dreamzero_msgs.msg import ActionChunk, ActionGroup
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from dreamzero_ros.ros import qos
from dreamzero_ros.runs.recording import read_messages, topic_counts, topic_types

MODULE = "dreamzero_ros.nodes.recorder_node"
N_CHUNKS, N_IMAGES, N_STATES = 4, 12, 30


def _chunk(i: int, stamp) -> ActionChunk:
    msg = ActionChunk(chunk_id=i, instruction="pick up the cup", joint_names=["j1", "j2"], dt=1 / 15, horizon=3,
                      positions=[float(i + k) for k in range(6)], inference_latency=0.1 * (i + 1))
    msg.header.stamp = stamp
    msg.extra_groups = [ActionGroup(name="base_velocity", names=["linear_x", "angular_z"], values=[0.5] * 6)]
    return msg


def _image(i: int, stamp) -> Image:
    h, w = 48, 64
    pixels = np.full((h, w, 3), i, dtype=np.uint8)
    msg = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=pixels.tobytes())
    msg.header.stamp = stamp
    msg.header.frame_id = "wrist_camera_link"
    return msg


def test_recorder_writes_every_published_message_and_a_finished_mcap_after_sigint(launcher, probe, tmp_path):
    output = tmp_path / "run" / "recording.mcap"
    # Latched and published before the recorder exists: recorded only if the recorder matches transient local.
    instruction = probe.publisher(String, "/dreamzero/instruction", qos.LATCHED)
    instruction.publish(String(data="pick up the cup"))
    recorder = launcher.start("recorder", MODULE, {
        "output": str(output), "discovery_period": 0.2, "exclude": ["/camera/ignored/"],
    })

    chunks = probe.publisher(ActionChunk, "/dreamzero/action_chunk", qos.COMMANDS, wait_for_subscribers=1, timeout=30)
    images = probe.publisher(Image, "/camera/wrist/image_raw", qos.SENSOR, wait_for_subscribers=1, timeout=30)
    states = probe.publisher(JointState, "/joint_states", qos.JOINT_STATES, wait_for_subscribers=1, timeout=30)
    ignored = probe.publisher(Image, "/camera/ignored/image_raw", qos.SENSOR)
    unrelated = probe.publisher(String, "/not_ours/chatter", 10)
    assert recorder.wait_for_line(lambda s: "topic=/dreamzero/instruction" in s, 30), recorder.output()

    for i in range(N_STATES):
        stamp = probe.now_msg()
        states.publish(JointState(name=["j1", "j2"], position=[0.01 * i, -0.01 * i]))
        if i < N_IMAGES:
            images.publish(_image(i, stamp))
            ignored.publish(_image(i, stamp))
        if i < N_CHUNKS:
            chunks.publish(_chunk(i, stamp))
        unrelated.publish(String(data="x"))
        time.sleep(0.01)  # a 100 Hz burst; best-effort images stay within the depth-50 history
    time.sleep(1.0)  # let the last messages cross DDS and the writer queue before the SIGINT

    recorder.stop(timeout=15)
    assert recorder.returncode == 0, recorder.output()
    log = recorder.output()
    assert "recorded topic=/dreamzero/action_chunk messages=4 dropped=0" in log, log

    counts = topic_counts(output)  # reads the summary: present only if the file was finished
    assert counts == {
        "/dreamzero/instruction": 1,
        "/dreamzero/action_chunk": N_CHUNKS,
        "/camera/wrist/image_raw": N_IMAGES,
        "/joint_states": N_STATES,
    }
    assert topic_types(output) == {
        "/dreamzero/instruction": "std_msgs/msg/String",
        "/dreamzero/action_chunk": "dreamzero_msgs/msg/ActionChunk",
        "/camera/wrist/image_raw": "sensor_msgs/msg/Image",
        "/joint_states": "sensor_msgs/msg/JointState",
    }

    decoded = list(read_messages(output, ["/dreamzero/action_chunk", "/camera/wrist/image_raw"]))
    got_chunks = [m for t, _, m in decoded if t == "/dreamzero/action_chunk"]
    assert [c.chunk_id for c in got_chunks] == list(range(N_CHUNKS))
    assert got_chunks[2].positions == [float(2 + k) for k in range(6)]
    assert got_chunks[2].extra_groups[0].names == ["linear_x", "angular_z"]
    got_images = [m for t, _, m in decoded if t == "/camera/wrist/image_raw"]
    assert [bytes(im.data)[0] for im in got_images] == list(range(N_IMAGES))
    log_times = [t_ns for _, t_ns, _ in decoded]
    assert log_times == sorted(log_times) and abs(log_times[0] * 1e-9 - time.time()) < 120


def test_default_prefixes_cover_every_shipped_embodiments_cameras_joint_states_and_commands():
    from dreamzero_ros.core.embodiment import available_embodiments, load_embodiment
    from dreamzero_ros.nodes.recorder_node import DEFAULT_PREFIXES

    for name in available_embodiments():
        emb = load_embodiment(name)
        topics = [c.topic for c in emb.cameras] + [emb.command.topic, emb.command.joint_states_topic]
        topics += [g.topic for g in emb.extra_actions]
        missed = [t for t in topics if not any(t.startswith(p) for p in DEFAULT_PREFIXES)]
        assert not missed, f"{name}: topics not recorded by default: {missed}"


def test_an_output_path_that_is_not_mcap_stops_the_recorder_with_the_parameter_named(launcher, tmp_path):
    recorder = launcher.start("recorder", MODULE, {"output": str(tmp_path / "run.bag")})
    assert recorder.wait(30) == 2, recorder.output()
    assert "parameter 'output': expected a path ending in .mcap" in recorder.output()
    assert not (tmp_path / "run.bag").exists()


def test_a_namespaced_recorder_records_its_robots_dreamzero_and_remapped_robot_topics(launcher, probe, tmp_path):
    """As a bringup with namespace /robot1 starts it: `-r __ns:=/robot1` and the embodiment's absolute
    joint-state topic remapped into the namespace. The root namespace's joint states are another robot's."""
    output = tmp_path / "robot1.mcap"
    recorder = launcher.start("recorder", MODULE, {"output": str(output), "discovery_period": 0.2,
                                                   "embodiment": "franka_droid", "include_prefixes": ["/nothing/"]},
                              extra_args=["--ros-args", "-r", "__ns:=/robot1", "-r", "/joint_states:=joint_states"])
    chunks = probe.publisher(ActionChunk, "/robot1/dreamzero/action_chunk", qos.COMMANDS, wait_for_subscribers=1,
                             timeout=30)
    mine = probe.publisher(JointState, "/robot1/joint_states", qos.JOINT_STATES, wait_for_subscribers=1, timeout=30)
    other = probe.publisher(JointState, "/joint_states", qos.JOINT_STATES)
    for i in range(5):
        chunks.publish(_chunk(i, probe.now_msg()))
        mine.publish(JointState(name=["j1"], position=[0.1 * i]))
        other.publish(JointState(name=["j1"], position=[9.0]))
        time.sleep(0.02)
    time.sleep(1.0)
    recorder.stop(timeout=15)
    assert recorder.returncode == 0, recorder.output()
    assert topic_counts(output) == {"/robot1/dreamzero/action_chunk": 5, "/robot1/joint_states": 5}
