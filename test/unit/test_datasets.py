"""LeRobot datasets: written episodes read back (parquet, MP4, metadata, statistics by hand), the expert generator,
and the MCAP export of a recording with known timings.

Expected values come from the raw arrays with plain numpy / Python loops, the DROID gripper convention
(0.04 m open -> 0, 0 m closed -> 1) and the release loader's relative-statistics rule, never from the writer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.datasets.export import export_mcap
from dreamzero_ros.datasets.lerobot import DatasetError, LeRobotWriter, read_jsonl, read_parquet, read_video
from dreamzero_ros.runs.recording import McapWriter

EMB = load_embodiment("franka_droid")
H, W = 180, 320
VIEWS = {"exterior_1": "exterior_image_1_left", "exterior_2": "exterior_image_2_left", "wrist": "wrist_image_left"}
HORIZON = 24
CODEC_TOLERANCE = 4.0  # mean |decoded - written| grey levels for smooth frames at crf 18


def _gripper_model(finger_m: np.ndarray) -> np.ndarray:
    return (0.04 - finger_m) / 0.04


def _frames(n: int, phase: float) -> np.ndarray:
    """Smooth gradients that move with time (H.264 keeps them within a few grey levels)."""
    y, x = np.mgrid[0:H, 0:W]
    out = np.empty((n, H, W, 3), np.uint8)
    for t in range(n):
        out[t, ..., 0] = (x * 255 // W + 3 * t) % 256
        out[t, ..., 1] = (y * 255 // H + int(phase)) % 256
        out[t, ..., 2] = 128
    return out


def _episode(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    states = np.cumsum(rng.normal(0, 0.02, size=(n, 8)), axis=0)
    states[:, 7] = rng.uniform(0.0, 0.04, size=n)
    actions = states + rng.normal(0, 0.05, size=(n, 8))
    actions[:, 7] = rng.choice([0.0, 0.04], size=n)
    return states, actions


def _stats_by_hand(x: np.ndarray) -> dict[str, list[float]]:
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
            "q01": np.percentile(x, 1, axis=0), "q99": np.percentile(x, 99, axis=0)}


def test_written_episodes_read_back_with_their_values_videos_and_statistics(tmp_path) -> None:
    lengths = (30, 27)
    episodes = [_episode(n, seed) for seed, n in enumerate(lengths)]
    instructions = ["touch the red cube", "pick up the blue cube"]
    with LeRobotWriter(tmp_path, EMB) as writer:
        for (states, actions), n, text in zip(episodes, lengths, instructions, strict=True):
            frames = {cam: _frames(n, phase=40 * k) for k, cam in enumerate(VIEWS)}
            writer.add_episode(states, actions, frames, text, success=True)

    info = json.loads((tmp_path / "meta/info.json").read_text())
    assert info["codebase_version"] == "v2.1"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"], info["total_videos"]) == (2, 57, 2, 6)
    assert info["fps"] == 15 and info["chunks_size"] == 1000 and info["splits"] == {"train": "0:2"}
    assert info["features"]["observation.state"]["shape"] == [8] and info["features"]["action"]["shape"] == [8]
    for view in VIEWS.values():
        feature = info["features"][f"observation.images.{view}"]
        assert feature["dtype"] == "video" and feature["shape"] == [H, W, 3]
        assert feature["info"]["video.codec"] == "h264" and feature["info"]["video.pix_fmt"] == "yuv420p"

    all_states, all_actions, relative = [], [], []
    for index, ((states, actions), n) in enumerate(zip(episodes, lengths, strict=True)):
        table = read_parquet(tmp_path / f"data/chunk-000/episode_{index:06d}.parquet")
        want_state = states.copy()
        want_state[:, 7] = _gripper_model(states[:, 7])
        want_action = actions.copy()
        want_action[:, 7] = _gripper_model(actions[:, 7])
        np.testing.assert_allclose(table["observation.state"], want_state, atol=1e-6)
        np.testing.assert_allclose(table["action"], want_action, atol=1e-6)
        np.testing.assert_allclose(table["timestamp"], np.arange(n) / 15.0, atol=1e-6)
        assert table["frame_index"].tolist() == list(range(n))
        assert table["episode_index"].tolist() == [index] * n
        assert table["index"].tolist() == list(range(sum(lengths[:index]), sum(lengths[:index]) + n))
        assert table["task_index"].tolist() == [index] * n
        assert table["annotation.language.language_instruction"].tolist() == [index] * n
        for k, (cam, view) in enumerate(VIEWS.items()):
            video = read_video(tmp_path / f"videos/chunk-000/observation.images.{view}/episode_{index:06d}.mp4")
            assert video.shape == (n, H, W, 3), cam
            error = np.abs(video.astype(float) - _frames(n, phase=40 * k).astype(float)).mean()
            assert error < CODEC_TOLERANCE, f"{cam}: mean error {error:.2f}"
        all_states.append(want_state)
        all_actions.append(want_action)
        for i in range(n - (HORIZON - 1)):  # the release loader's rule, written out
            for h in range(HORIZON):
                relative.append(want_action[i + h, :7] - want_state[i, :7])

    stats = json.loads((tmp_path / "meta/stats.json").read_text())
    for column, raw in (("observation.state", all_states), ("action", all_actions)):
        for name, value in _stats_by_hand(np.concatenate(raw)).items():
            np.testing.assert_allclose(stats[column][name], value, atol=2e-6, err_msg=f"{column}.{name}")
    rel = json.loads((tmp_path / "meta/relative_stats_dreamzero.json").read_text())
    assert set(rel) == {"joint_position"}, "the gripper is absolute in franka_droid.yaml"
    assert len(relative) == (30 - 23 + 27 - 23) * HORIZON
    for name, value in _stats_by_hand(np.array(relative)).items():
        np.testing.assert_allclose(rel["joint_position"][name], value, atol=2e-6, err_msg=name)

    assert read_jsonl(tmp_path / "meta/tasks.jsonl") == [{"task_index": 0, "task": instructions[0]},
                                                         {"task_index": 1, "task": instructions[1]}]
    assert [(e["episode_index"], e["length"], e["tasks"], e["success"]) for e in read_jsonl(
        tmp_path / "meta/episodes.jsonl")] == [(0, 30, [instructions[0]], True), (1, 27, [instructions[1]], True)]
    per_episode = read_jsonl(tmp_path / "meta/episodes_stats.jsonl")
    np.testing.assert_allclose(per_episode[1]["stats"]["observation.state"]["max"], all_states[1].max(0), atol=2e-6)
    assert per_episode[1]["stats"]["observation.state"]["count"] == [27]
    assert np.array(per_episode[0]["stats"]["observation.images.wrist_image_left"]["mean"]).shape == (3, 1, 1)
    modality = json.loads((tmp_path / "meta/modality.json").read_text())
    assert {k: (v["start"], v["end"]) for k, v in modality["state"].items()} == {
        "joint_position": (0, 7), "gripper_position": (7, 8)}
    assert modality["video"]["wrist_image_left"] == {"original_key": "observation.images.wrist_image_left"}
    assert json.loads((tmp_path / "meta/embodiment.json").read_text())["embodiment_tag"] == "oxe_droid"


def test_bad_episodes_are_refused_naming_what_was_wrong(tmp_path) -> None:
    states, actions = _episode(10, 0)
    frames = {cam: np.zeros((10, H, W, 3), np.uint8) for cam in VIEWS}
    writer = LeRobotWriter(tmp_path / "a", EMB)
    with pytest.raises(DatasetError, match=r"frames\[wrist\]: expected \[10, 180, 320, 3\], got \[10, 90, 160, 3\]"):
        writer.add_episode(states, actions, {**frames, "wrist": np.zeros((10, 90, 160, 3), np.uint8)}, "x")
    with pytest.raises(DatasetError, match=r"actions: expected \[10, 8\], got \[9, 8\]"):
        writer.add_episode(states, actions[:9], frames, "x")
    with pytest.raises(DatasetError, match="no episodes were added"):
        writer.close()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        LeRobotWriter(tmp_path / "b", EMB)
    short = LeRobotWriter(tmp_path / "c", EMB)
    short.add_episode(states, actions, frames, "x")
    with pytest.raises(DatasetError, match="shorter than the horizon"):
        short.close()


# --------------------------------------------------------------------------------------------
# MCAP export
# --------------------------------------------------------------------------------------------

T0 = 1_000_000_000  # ns
STEP = 1e9 / 15
JS_PERIOD = 20_000_000  # 50 Hz joint states
N_JS, N_CAM, N_CMD = 226, 66, 66  # 4.5 s of joint states, 4.33 s of images and commands
SECOND_INSTRUCTION = T0 + 2_600_000_000


def _js_value(i: int) -> list[float]:
    return [0.01 * i + 0.1 * j for j in range(7)] + [0.04 - 0.00015 * i]


def _cam_time(m: int) -> int:
    # The first frame sets the grid start; later ones land 1 ms before their grid tick, so "latest at or
    # before the tick" is frame m at tick m without rounding ties.
    return T0 + 5_000_000 + (int(m * STEP) - 1_000_000 if m else 0)


def _cmd_time(m: int) -> int:
    return T0 + 10_000_000 + int(m * STEP)


def _cmd_value(m: int) -> list[float]:
    return [1.0 + 0.01 * m + 0.1 * j for j in range(7)] + [0.02 if m % 2 else 0.0]


def _solid(m: int, cam: int) -> np.ndarray:
    return np.full((H, W, 3), (3 * m, 250 - 3 * m, 40 * cam), np.uint8)


def _write_recording(path) -> None:
    with McapWriter(path) as w:
        w.write_message("/dreamzero/instruction", String(data="touch the red cube"), T0 - 1_000_000)
        w.write_message("/dreamzero/instruction", String(data="pick up the red cube"), SECOND_INSTRUCTION)
        for i in range(N_JS):
            msg = JointState(name=list(EMB.state_joints), position=_js_value(i))
            w.write_message("/joint_states", msg, T0 + i * JS_PERIOD)
        for m in range(N_CMD):
            w.write_message("/forward_position_controller/commands", Float64MultiArray(data=_cmd_value(m)),
                            _cmd_time(m))
        for m in range(N_CAM):
            for k, cam in enumerate(EMB.cameras):
                img = _solid(m, k)
                msg = Image(height=H, width=W, encoding="rgb8", step=W * 3, data=img.tobytes())
                w.write_message(cam.topic, msg, _cam_time(m))


def _expected_episode(seg_start: int, seg_end: int) -> tuple[list[int], np.ndarray, np.ndarray, list[int]]:
    """(ticks, states [n, 8] SI, actions [n, 8] SI, camera frame index per tick) by brute force."""
    ticks = []
    k = 0
    while seg_start + int(k * STEP) <= seg_end:
        ticks.append(seg_start + int(k * STEP))
        k += 1
    states, actions, frames = [], [], []
    for tick in ticks:
        i = max(i for i in range(N_JS) if T0 + i * JS_PERIOD <= tick)
        states.append(_js_value(i))
        frames.append(max(m for m in range(N_CAM) if _cam_time(m) <= tick))
        cmds = [m for m in range(N_CMD) if _cmd_time(m) <= tick + int(STEP)]
        actions.append(_cmd_value(max(cmds)) if cmds else None)
    for k, a in enumerate(actions):
        if a is None:  # no command yet: the next state
            actions[k] = states[min(k + 1, len(states) - 1)]
    return ticks, np.array(states), np.array(actions), frames


def test_a_recording_exports_one_episode_per_instruction_on_the_control_rate_grid(tmp_path) -> None:
    mcap = tmp_path / "run.mcap"
    _write_recording(mcap)
    report = export_mcap(mcap, tmp_path / "ds", EMB)
    start = _cam_time(0)  # the latest first message of all streams
    end = _cam_time(N_CAM - 1)  # the earliest last message
    segments = [(start, SECOND_INSTRUCTION - 1), (SECOND_INSTRUCTION, end)]
    assert [e["instruction"] for e in report.episodes] == ["touch the red cube", "pick up the red cube"]
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    for index, (seg_start, seg_end) in enumerate(segments):
        ticks, states, actions, frame_index = _expected_episode(seg_start, seg_end)
        table = read_parquet(tmp_path / f"ds/data/chunk-000/episode_{index:06d}.parquet")
        assert len(table["observation.state"]) == len(ticks) == report.episodes[index]["steps"]
        np.testing.assert_allclose(table["observation.state"][:, :7], states[:, :7], atol=1e-5)
        np.testing.assert_allclose(table["observation.state"][:, 7], _gripper_model(states[:, 7]), atol=1e-5)
        np.testing.assert_allclose(table["action"][:, :7], actions[:, :7], atol=1e-5)
        np.testing.assert_allclose(table["action"][:, 7], _gripper_model(actions[:, 7]), atol=1e-5)
        video = read_video(tmp_path / f"ds/videos/chunk-000/observation.images.wrist_image_left/episode_{index:06d}.mp4")
        assert len(video) == len(ticks)
        want = np.stack([_solid(m, 2) for m in frame_index]).astype(float)
        assert np.abs(video.astype(float) - want).mean() < CODEC_TOLERANCE
    assert info["total_episodes"] == 2 and info["total_frames"] == sum(e["steps"] for e in report.episodes)


def test_exporting_a_recording_without_the_camera_topics_names_them(tmp_path) -> None:
    mcap = tmp_path / "joints_only.mcap"
    with McapWriter(mcap) as w:
        for i in range(5):
            w.write_message("/joint_states", JointState(name=list(EMB.state_joints), position=_js_value(i)),
                            T0 + i * JS_PERIOD)
    with pytest.raises(DatasetError, match=r"no topics \['/camera/exterior_1/image_raw'"):
        export_mcap(mcap, tmp_path / "ds", EMB, instruction="x")


def test_the_expert_generator_writes_successful_demonstrations_with_a_frame_per_row(tmp_path) -> None:
    pytest.importorskip("mujoco")
    from dreamzero_ros.datasets.generate import generate

    report = generate(tmp_path, EMB, ["reach"], 1, first_seed=7)
    assert report.written == {"reach": 1} and report.failed == {"reach": []}
    episodes = read_jsonl(tmp_path / "meta/episodes.jsonl")
    assert len(episodes) == 1 and episodes[0]["success"] is True and "cube" in episodes[0]["tasks"][0]
    table = read_parquet(tmp_path / "data/chunk-000/episode_000000.parquet")
    n = episodes[0]["length"]
    assert len(table["action"]) == n == report.frames
    for view in VIEWS.values():
        assert read_video(tmp_path / f"videos/chunk-000/observation.images.{view}/episode_000000.mp4").shape == (
            n, H, W, 3)
    # The expert moves the arm, and reaches with the hand open around the cube: gripper open = DROID value 0.
    assert np.ptp(table["action"][:, :7], axis=0).max() > 0.1
    np.testing.assert_allclose(table["action"][:, 7], 0.0, atol=1e-6)


def test_every_colour_writes_one_seed_once_per_colour_from_the_same_start(tmp_path) -> None:
    pytest.importorskip("mujoco")
    from dreamzero_ros.datasets.generate import generate

    report = generate(tmp_path, EMB, ["reach"], 1, first_seed=7, colours=["red", "green", "blue"])
    assert report.written == {"reach": 3} and report.failed == {"reach": []} and report.failures("reach") == "none"
    episodes = read_jsonl(tmp_path / "meta/episodes.jsonl")
    assert [e["tasks"][0] for e in episodes] == [f"touch the {c} cube" for c in ("red", "green", "blue")]
    # where each came from, for tools that rebuild its scene (scripts/grounding_check.py)
    assert [(e["sim_task"], e["seed"], e["colour"]) for e in episodes] == [("reach", 7, c) for c in ("red", "green", "blue")]
    tables = [read_parquet(tmp_path / f"data/chunk-000/episode_{i:06d}.parquet") for i in range(3)]
    starts = [np.asarray(t["observation.state"][0]) for t in tables]
    np.testing.assert_array_equal(starts[0], starts[1])
    np.testing.assert_array_equal(starts[0], starts[2])
    # ... and the expert goes three different ways from there: its last targets are centimetres apart
    ends = np.array([np.asarray(t["action"][-1])[:7] for t in tables])
    assert min(np.abs(ends[i] - ends[j]).max() for i in range(3) for j in range(i + 1, 3)) > 0.05


def test_shared_scenes_start_every_tasks_episode_of_a_seed_in_one_scene_so_only_the_verb_differs(tmp_path) -> None:
    pytest.importorskip("mujoco")
    from dreamzero_ros.datasets.generate import generate

    report = generate(tmp_path, EMB, ["reach", "push_forward"], 1, first_seed=5, colours=["green"], shared_scenes=True)
    assert report.written == {"reach": 1, "push_forward": 1}
    episodes = read_jsonl(tmp_path / "meta/episodes.jsonl")
    assert [e["tasks"][0] for e in episodes] == ["touch the green cube", "push the green cube forward"]
    reach, push = (read_parquet(tmp_path / f"data/chunk-000/episode_{i:06d}.parquet") for i in range(2))
    np.testing.assert_array_equal(np.asarray(reach["observation.state"][0]), np.asarray(push["observation.state"][0]))
    first = [read_video(tmp_path / f"videos/chunk-000/observation.images.{view}/episode_{i:06d}.mp4")[0]
             for i in range(2) for view in VIEWS.values()]
    n = len(VIEWS)
    for a, b in zip(first[:n], first[n:], strict=True):  # the same scene on every camera (up to H.264)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0
    # without it each task draws its own scene from the seed
    from dreamzero_ros.sim.tasks import sample_episode

    assert sample_episode(EMB, "reach", 5, "green").objects != sample_episode(EMB, "push_forward", 5, "green").objects


def test_two_worker_processes_write_the_same_dataset_as_one(tmp_path) -> None:
    pytest.importorskip("mujoco")
    from dreamzero_ros.datasets.generate import generate

    runs = {}
    for workers in (1, 2):
        report = generate(tmp_path / str(workers), EMB, ["reach"], 1, first_seed=7, colours=["red", "blue"],
                          action_noise=0.015, drift=0.03, workers=workers)
        assert report.written == {"reach": 2}
        runs[workers] = tmp_path / str(workers)
    # episodes in job order (seed, then colour), whichever worker finished first
    one, two = (read_jsonl(runs[w] / "meta/episodes.jsonl") for w in (1, 2))
    assert [(e["seed"], e["colour"]) for e in two] == [(7, "red"), (7, "blue")] and one == two
    for i in range(2):
        a, b = (read_parquet(runs[w] / f"data/chunk-000/episode_{i:06d}.parquet") for w in (1, 2))
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
        for view in VIEWS.values():
            path = f"videos/chunk-000/observation.images.{view}/episode_{i:06d}.mp4"
            np.testing.assert_array_equal(read_video(runs[1] / path), read_video(runs[2] / path), err_msg=path)
    assert (runs[1] / "meta/stats.json").read_text() == (runs[2] / "meta/stats.json").read_text()
    with pytest.raises(ValueError, match="workers"):
        generate(tmp_path / "none", EMB, ["reach"], 1, workers=0)
    with pytest.raises(ValueError, match="drift"):
        generate(tmp_path / "none", EMB, ["reach"], 1, drift=-0.03)


def test_one_colour_names_that_cube_in_every_seed_and_an_unknown_colour_is_refused_by_name(tmp_path) -> None:
    pytest.importorskip("mujoco")
    from dreamzero_ros.datasets.generate import generate
    from dreamzero_ros.sim.tasks import sample_episode

    generate(tmp_path / "red", EMB, ["reach"], 2, first_seed=11, colours=["red"])
    episodes = read_jsonl(tmp_path / "red/meta/episodes.jsonl")
    assert [(e["seed"], e["colour"], e["tasks"][0]) for e in episodes] == [(11, "red", "touch the red cube"),
                                                                           (12, "red", "touch the red cube")]
    table = read_parquet(tmp_path / "red/data/chunk-000/episode_000001.parquet")
    start = sample_episode(EMB, "reach", 12, "red").start  # the placement every colour of seed 12 shares
    np.testing.assert_allclose(np.asarray(table["observation.state"][0])[:7],
                               [start[j] for j in EMB.state_joints[:7]], atol=0.02)
    with pytest.raises(ValueError, match="purple"):
        generate(tmp_path / "bad", EMB, ["reach"], 1, colours=["purple"])


def test_a_failed_expert_episode_is_reported_by_seed_and_named_colour() -> None:
    from dreamzero_ros.datasets.generate import GenerateReport

    report = GenerateReport(failed={"reach": [(3, "red"), (3, "blue")], "lift": []})
    assert report.failures("reach") == "seed 3 (red), seed 3 (blue)"
    assert report.failures("lift") == "none"


def test_dreamzero_export_exits_2_naming_a_missing_recording(tmp_path, capsys) -> None:
    from dreamzero_ros.apps.cli import main

    missing = tmp_path / "nope.mcap"
    assert main(["export", "--mcap", str(missing), "--out", str(tmp_path / "ds")]) == 2
    assert f"{missing}: no such recording" in capsys.readouterr().err


def test_an_agibot_recording_exports_its_base_velocity_from_twist_and_zero_once_commands_stop(tmp_path) -> None:
    from geometry_msgs.msg import Twist

    emb = load_embodiment("agibot_g1")
    rate = emb.control.rate_hz
    mcap = tmp_path / "g1.mcap"
    twist_period, n_twist = 100_000_000, 7  # 10 Hz for 0.7 s, then silence
    with McapWriter(mcap) as w:
        for i in range(201):  # 2 s of joint states at 100 Hz (longer than the 48-step horizon at 30 Hz)
            w.write_message("/joint_states", JointState(name=list(emb.state_joints),
                                                        position=[0.001 * i] * len(emb.state_joints)),
                            T0 + i * 10_000_000)
        for m in range(n_twist):
            msg = Twist()
            msg.linear.x, msg.angular.z = 0.05 * (m + 1), -0.1 * (m + 1)
            w.write_message("/cmd_vel", msg, T0 + 2_000_000 + m * twist_period)
        for m in range(21):  # 2 s of images at 10 Hz (held between frames)
            for k, cam in enumerate(emb.cameras):
                h, w_ = cam.source_size
                img = np.full((h, w_, 3), 10 * k, np.uint8)
                w.write_message(cam.topic, Image(height=h, width=w_, encoding="rgb8", step=w_ * 3,
                                                 data=img.tobytes()), T0 + m * 100_000_000)
    report = export_mcap(mcap, tmp_path / "ds", emb, instruction="wave")
    table = read_parquet(tmp_path / "ds/data/chunk-000/episode_000000.parquet")
    step = 1e9 / rate
    n = len(table["action"])
    assert n == report.episodes[0]["steps"] == int(2e9 // step) + 1
    for k in range(n):
        at = T0 + int(k * step) + int(step)
        sent = [m for m in range(n_twist) if T0 + 2_000_000 + m * twist_period <= at]
        fresh = sent and at - (T0 + 2_000_000 + sent[-1] * twist_period) <= 0.5e9
        want = [0.05 * (sent[-1] + 1), -0.1 * (sent[-1] + 1)] if fresh else [0.0, 0.0]
        np.testing.assert_allclose(table["action"][k, -2:], want, atol=1e-6, err_msg=f"step {k}")
    assert np.all(table["action"][-1, -2:] == 0.0), "the base stopped after its last command"
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["features"]["action"]["names"][-2:] == ["robot_velocity.linear_x", "robot_velocity.angular_z"]  # the release key
    assert info["fps"] == rate
